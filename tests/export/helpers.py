"""Label Studio-shaped results (docs/label-studio.md), test images, and
an independent rasteriser for the expected masks."""

from __future__ import annotations

import io
import json

import numpy as np
from label_studio_sdk.converter.brush import mask2rle
from PIL import Image

CONFIG_XML = """<View>
  <TextArea name="prompt" toName="image" editable="true" rows="2"/>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="cat" background="red" prompt="a cat"/><Label value="dog" background="blue"/>
  </RectangleLabels>
  <PolygonLabels name="poly" toName="image"><Label value="cat"/><Label value="dog"/></PolygonLabels>
  <BrushLabels name="brush" toName="image"><Label value="cat"/><Label value="dog"/></BrushLabels>
  <TextArea name="desc" toName="image" perRegion="true" editable="true" rows="2"/>
</View>"""


def _base(region_id, from_name, kind, width, height, value, origin=None):
    item = {"id": region_id, "from_name": from_name, "to_name": "image", "type": kind,
            "original_width": width, "original_height": height, "image_rotation": 0, "value": value}
    if origin:
        item["origin"] = origin
    return item


def rect_item(region_id, box_pct, label="cat", width=320, height=240, rotation=0, origin=None):
    x, y, w, h = box_pct
    value = {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]}
    return _base(region_id, "label", "rectanglelabels", width, height, value, origin)


def polygon_item(region_id, points_pct, label="cat", width=320, height=240, origin=None):
    value = {"points": [list(p) for p in points_pct], "closed": True, "polygonlabels": [label]}
    return _base(region_id, "poly", "polygonlabels", width, height, value, origin)


def brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE of a bool mask, encoded by the SDK (alpha 0/255), as the editor stores it."""
    return [int(v) for v in mask2rle(np.where(mask, 255, 0).astype(np.uint8))]


def brush_item(region_id, mask, label="dog", origin=None):
    height, width = mask.shape
    value = {"format": "rle", "rle": brush_rle(mask), "brushlabels": [label]}
    return _base(region_id, "brush", "brushlabels", width, height, value, origin)


def text_item(region_id, texts, geometry_value=None, width=320, height=240, origin=None):
    value = dict(geometry_value or {})
    value["text"] = list(texts)
    return _base(region_id, "desc", "textarea", width, height, value, origin)


def annotation(annotation_id, task_id, result, *, cancelled=False, updated_at="2026-01-01T10:00:00.000000Z"):
    """An annotation as the JSON export and the webhook show it (fields='__all__')."""
    return {"id": annotation_id, "completed_by": 1, "result": result, "was_cancelled": cancelled,
            "ground_truth": False, "created_at": "2026-01-01T09:00:00.000000Z", "updated_at": updated_at,
            "draft_created_at": None, "lead_time": 12.5, "prediction": {}, "result_count": len(result),
            "unique_id": f"u-{annotation_id}", "import_id": None, "last_action": None, "bulk_created": False,
            "task": task_id, "project": 1, "updated_by": 1, "parent_prediction": None,
            "parent_annotation": None, "last_created_by": None}


def task(task_id, image_url, annotations, predictions=()):
    """A task as Label Studio's JSON export writes it (predictions as ids, drafts expanded)."""
    return {"id": task_id, "annotations": annotations, "file_upload": "x.png", "drafts": [],
            "predictions": list(predictions), "data": {"image": image_url}, "meta": {},
            "created_at": "2026-01-01T08:00:00Z", "updated_at": "2026-01-01T10:00:00Z", "inner_id": task_id,
            "total_annotations": len(annotations), "cancelled_annotations": 0, "total_predictions": 0,
            "comment_count": 0, "unresolved_comment_count": 0, "last_comment_updated_at": None,
            "project": 1, "updated_by": 1, "comment_authors": []}


def webhook(action, ann, tsk, label_config=CONFIG_XML):
    return {"action": action, "annotation": ann, "task": tsk,
            "project": {"id": 1, "title": "t", "label_config": label_config}}


def image_bytes(width=320, height=240, fmt="PNG", orientation=None, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(buffer, format=fmt, exif=exif.tobytes())
    else:
        image.save(buffer, format=fmt)
    return buffer.getvalue()


def rasterize_polygon(points_px, height, width) -> np.ndarray:
    """Even-odd test of every pixel centre (c + 0.5, r + 0.5): independent of the code under test."""
    points = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    ys, xs = np.mgrid[0:height, 0:width]
    px, py = xs + 0.5, ys + 0.5
    inside = np.zeros((height, width), dtype=bool)
    x0, y0 = points[-1]
    for x1, y1 in points:
        crosses = (y1 > py) != (y0 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (x0 - x1) * (py - y1) / (y0 - y1) + x1
        inside ^= crosses & (px < x_at)
        x0, y0 = x1, y1
    return inside


def percent_to_px(points_pct, width, height):
    return [(x * width / 100.0, y * height / 100.0) for x, y in points_pct]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def read_records(out_dir) -> list[dict]:
    text = (out_dir / "res.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def decode_record_mask(record) -> np.ndarray:
    """The release's reading: frPyObjects -> decode -> sum over the last axis."""
    from pycocotools import mask as mask_utils

    decoded = mask_utils.decode(mask_utils.frPyObjects(record["mask"], record["height"], record["width"]))
    return decoded.sum(axis=2)
