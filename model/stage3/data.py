"""Stage-3 data as the export writes it: ``DIR/res.jsonl`` + ``DIR/images/``, read as the reference reads it.

A record is ``{img_path, expressions, height, width, bbox, mask}`` (extra keys ignored). ``mask`` is a list:
COCO polygons ``[[x1, y1, ...], ...]`` or one uncompressed RLE ``[{"size": [h, w], "counts": [...]}]``. It is
decoded with pycocotools and summed over its parts, so pixels inside two polygons hold 2 (the reference keeps
those 2s in its loss). Training targets live in SAM's 1024 x 1024 frame: the mask resized with the image's
long-side rule (PIL bilinear on an 'L' image, so values stay integers) and centre-padded with zeros.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..processing import SAM_SIZE, ImageFrame, sam_resized_size, to_rgb

RECORDS_FILE = "res.jsonl"
IMAGES_DIR = "images"
REQUIRED_KEYS = ("img_path", "expressions", "height", "width", "mask")


class Stage3DataError(ValueError):
    """Stage-3 data that cannot be read, with the reason (and the line) in one line."""


@dataclass(frozen=True)
class Record:
    line: int                  # 1-based line in res.jsonl
    img_path: str              # relative to DIR/images
    expressions: tuple[str, ...]
    width: int
    height: int
    bbox: tuple[float, ...]    # xyxy pixels (not used by the reference loss: SAM gets the predicted box)
    mask: list                 # as written: polygons, or an RLE dict in a list

    @property
    def frame(self) -> ImageFrame:
        return ImageFrame(width=self.width, height=self.height)


def read_records(data_dir: str | Path) -> list[Record]:
    """Every record of ``DIR/res.jsonl`` in file order."""
    path = Path(data_dir) / RECORDS_FILE
    if not path.is_file():
        raise Stage3DataError(f"no {RECORDS_FILE} in {data_dir}")
    records = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.strip():
            records.append(parse_record(text, number))
    if not records:
        raise Stage3DataError(f"{path} has no records")
    return records


def parse_record(text: str, line: int) -> Record:
    where = f"{RECORDS_FILE} line {line}"
    try:
        raw = json.loads(text)
    except ValueError as err:
        raise Stage3DataError(f"{where}: not JSON ({err})") from None
    if not isinstance(raw, dict):
        raise Stage3DataError(f"{where}: not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise Stage3DataError(f"{where}: missing {missing}")
    expressions = raw["expressions"]
    if not isinstance(expressions, list) or not expressions or not all(isinstance(e, str) and e for e in expressions):
        raise Stage3DataError(f"{where}: expressions must be a non-empty list of non-empty strings")
    try:
        width, height = int(raw["width"]), int(raw["height"])
        bbox = tuple(float(v) for v in raw.get("bbox") or ())
    except (TypeError, ValueError):
        raise Stage3DataError(f"{where}: width/height/bbox are not numbers") from None
    if width <= 0 or height <= 0:
        raise Stage3DataError(f"{where}: image size {width}x{height}")
    mask = raw["mask"]
    if isinstance(mask, dict):  # a bare RLE: the reference's sum over axis 2 fails on it; read it as one part
        mask = [mask]
    if not isinstance(mask, list) or not mask:
        raise Stage3DataError(f"{where}: mask must be a non-empty list of polygons or an RLE in a list")
    return Record(line=line, img_path=str(raw["img_path"]), expressions=tuple(expressions), width=width,
                  height=height, bbox=bbox, mask=mask)


def decode_mask(record: Record) -> np.ndarray:
    """[H, W] uint8: the record's parts decoded and summed (overlaps of two polygons hold 2)."""
    try:
        rles = mask_utils.frPyObjects(record.mask, record.height, record.width)
        decoded = mask_utils.decode(rles)
    except (TypeError, ValueError, IndexError) as err:
        raise Stage3DataError(f"{RECORDS_FILE} line {record.line}: mask cannot be decoded ({err})") from None
    if decoded.ndim == 2:
        decoded = decoded[:, :, None]
    if decoded.shape[:2] != (record.height, record.width):
        raise Stage3DataError(f"{RECORDS_FILE} line {record.line}: mask is {decoded.shape[1]}x{decoded.shape[0]}, "
                              f"record says {record.width}x{record.height}")
    return np.sum(decoded, axis=2).astype(np.uint8)


def target_1024(mask: np.ndarray, size: int = SAM_SIZE) -> np.ndarray:
    """[H, W] uint8 mask -> [size, size] uint8 in SAM's centre-padded frame (padding = 0, background)."""
    frame = ImageFrame(width=mask.shape[1], height=mask.shape[0])
    new_w, new_h = sam_resized_size(frame, size)
    resized = np.asarray(Image.fromarray(mask, mode="L").resize((new_w, new_h), resample=Image.BILINEAR))
    left, top = (size - new_w) // 2, (size - new_h) // 2
    target = np.zeros((size, size), dtype=np.uint8)
    target[top:top + new_h, left:left + new_w] = resized
    return target


def valid_region_1024(frame: ImageFrame, size: int = SAM_SIZE) -> np.ndarray:
    """[size, size] bool: where the resized image lies inside SAM's padded frame."""
    new_w, new_h = sam_resized_size(frame, size)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    valid = np.zeros((size, size), dtype=bool)
    valid[top:top + new_h, left:left + new_w] = True
    return valid


def load_image(data_dir: str | Path, record: Record) -> Image.Image:
    """The record's image as 8-bit RGB (as inference reads images); its size must be the record's."""
    path = Path(data_dir) / IMAGES_DIR / record.img_path
    try:
        with Image.open(path) as opened:
            image = to_rgb(opened)
    except (OSError, ValueError) as err:
        raise Stage3DataError(f"{RECORDS_FILE} line {record.line}: cannot open image {record.img_path} "
                              f"({type(err).__name__})") from None
    if image.size != (record.width, record.height):
        raise Stage3DataError(f"{RECORDS_FILE} line {record.line}: image {record.img_path} is "
                              f"{image.width}x{image.height}, record says {record.width}x{record.height}")
    return image


def is_validation(img_path: str, fraction: float) -> bool:
    """The split by image: a record is validation when its image's hash falls below ``fraction``. Depends on
    the image path alone, so adding records never moves an image from one side to the other."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(img_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def split_by_image(records: list[Record], fraction: float) -> tuple[list[int], list[int]]:
    """(train indices, validation indices), each in file order."""
    train, val = [], []
    for index, record in enumerate(records):
        (val if is_validation(record.img_path, fraction) else train).append(index)
    return train, val
