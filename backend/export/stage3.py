"""Stage-3 (RES) records: one jsonl line per annotated region, as the release's RESDataset reads them.

A record holds `img_path` (relative to the image folder, DIR/images), `expressions` (list of str),
`height`, `width` (the image as the annotator saw it), `bbox` (pixel xyxy) and `mask`: always a *list*
(COCO polygons `[[x1, y1, x2, y2, ...], ...]` or uncompressed RLE dicts `[{"size": [h, w], "counts":
[...]}]`) because the reader sums the decoded masks over their last axis. Extra keys (task_id,
annotation_id, region_id, kind, source) are ignored by the trainer and kept for traceability.

Images are written as the annotator saw them: EXIF orientation applied and at the displayed size
(`original_width` x `original_height`). Unchanged images keep their original bytes.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from backend.export.annotations import AnnotatedRegion

# PIL format -> file extension for images copied byte for byte
COPYABLE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}
EXIF_ORIENTATION_TAG = 0x0112


def coco_rle_from_mask(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a 2-D mask: column-major runs that start with a (possibly empty) 0-run."""
    height, width = mask.shape
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    change_points = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    boundaries = np.concatenate(([0], change_points, [flat.size]))
    counts = np.diff(boundaries).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(height), int(width)], "counts": [int(c) for c in counts]}


def region_mask(region: AnnotatedRegion) -> list:
    """The `mask` field of one region: its polygons, or its brush mask as one uncompressed RLE."""
    if region.mask is not None:
        return [coco_rle_from_mask(region.mask)]
    return [[round(float(v), 2) for v in polygon] for polygon in region.polygons]


def build_record(region: AnnotatedRegion, img_path: str, *, task_id, annotation_id, source: str) -> dict:
    """One res.jsonl line for a region whose geometry is already in the image's pixel frame."""
    return {
        "img_path": img_path,
        "expressions": list(region.expressions),
        "height": int(region.height),
        "width": int(region.width),
        "bbox": [round(float(v), 2) for v in region.bbox],
        "mask": region_mask(region),
        "task_id": task_id,
        "annotation_id": annotation_id,
        "region_id": region.region_id,
        "kind": region.kind,
        "source": source,
    }


@dataclass
class PreparedImage:
    """An image ready to be stored: `data` are the file bytes, `suffix` its extension."""

    data: bytes
    suffix: str
    width: int
    height: int


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block: browsers ignore it, so do we
        return 1


def displayed_size(data: bytes) -> tuple[int, int]:
    """(width, height) of the image as a browser shows it: after its EXIF orientation."""
    image = open_image(data)
    width, height = image.size
    if exif_orientation(image) in (5, 6, 7, 8):
        return height, width
    return width, height


def prepare_image(data: bytes, size: tuple[int, int] | None) -> PreparedImage:
    """The image as the annotator saw it: EXIF-oriented, rescaled to `size` (w, h) when that differs.

    Bytes are kept as they are when nothing changes; otherwise the image is re-encoded as PNG (lossless).
    """
    image = open_image(data)
    oriented = exif_orientation(image) != 1
    upright = ImageOps.exif_transpose(image) if oriented else image
    target = tuple(size) if size else upright.size
    resized = upright.size != target
    if not oriented and not resized and image.format in COPYABLE_FORMATS:
        return PreparedImage(data, COPYABLE_FORMATS[image.format], *target)
    if resized:
        upright = upright.resize(target, Image.Resampling.BICUBIC)
    if upright.mode not in ("RGB", "RGBA", "L"):
        upright = upright.convert("RGB")
    buffer = io.BytesIO()
    upright.save(buffer, format="PNG")
    return PreparedImage(buffer.getvalue(), ".png", *target)


def image_stem(task_id, url: str) -> str:
    """File name (without extension) of a task's image in DIR/images."""
    if task_id is not None and str(task_id).isdigit():
        return f"task-{task_id}"
    return "image-" + hashlib.sha1(url.encode("utf-8")).hexdigest()[:16]
