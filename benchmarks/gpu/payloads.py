"""What the serve check sends: a label config with N labels, tasks with inline PNG images (data: URIs,
so no file or URL access is involved), and a box drawn with the smart tool (Label Studio's shapes)."""

from __future__ import annotations

import base64
import io
from xml.sax.saxutils import quoteattr

from backend.dev.samples import drawn_rectangle
from benchmarks.common import noise_image

IMAGE_WH = (640, 480)


def label_config(labels: list[str], brush: bool = False) -> str:
    """Image + RectangleLabels (+ BrushLabels), smart, with the same labels: each label is grounded and
    each region found gives a box (and its mask as brush RLE); a drawn box is segmented into a brush mask.

    Brush rather than polygons: the random model's masks are speckled, and tracing thousands of holes
    into polygons costs seconds per mask on the CPU, which says nothing about the GPU."""
    items = "".join(f"<Label value={quoteattr(label)}/>" for label in labels)
    masks = f'<BrushLabels name="brush" toName="image" smart="true">{items}</BrushLabels>' if brush else ""
    return ('<View><Image name="image" value="$image"/>'
            f'<RectangleLabels name="box" toName="image" smart="true">{items}</RectangleLabels>{masks}</View>')


def image_data_uri(seed: int, size=IMAGE_WH) -> str:
    buffer = io.BytesIO()
    noise_image(*size, seed=seed).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def predict_body(task_id: int, image_uri: str, config: str, context: dict | None = None) -> dict:
    return {"tasks": [{"id": task_id, "data": {"image": image_uri}}], "project": "1.1", "label_config": config,
            "params": {"login": None, "password": None, "context": context}}


def drawn_box_context(label: str, x: float, y: float, width: float, height: float, size=IMAGE_WH) -> dict:
    """One rectangle drawn by the annotator (percent of the image, as Label Studio sends it)."""
    percent = {"x": x, "y": y, "width": width, "height": height}
    return {"result": [drawn_rectangle(f"drawn{int(x)}x{int(y)}", "box", "image", percent, *size, label)]}


def result_counts(reply: dict) -> dict:
    """{"results": entries, "shapes": {type: count}} of a /predict reply."""
    shapes: dict[str, int] = {}
    entries = reply.get("results") or []
    for entry in entries:
        for item in entry.get("result") or []:
            shapes[item.get("type", "?")] = shapes.get(item.get("type", "?"), 0) + 1
    return {"results": len(entries), "shapes": shapes}
