"""Read a stage-3 directory back the way the release's RESDataset does, and list every problem.

For each res.jsonl line: the image is opened from the image folder (DIR/images) as PIL does in the
trainer (no EXIF handling there, so an orientation tag is a problem), and the mask goes through
`pycocotools.mask.frPyObjects(mask, height, width)` -> `decode` -> sum over the last axis -> uint8.
The decoded mask must have the record's size and pixels, and the bbox must fit it.
"""

from __future__ import annotations

import json
import numbers
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from backend.export.stage3 import exif_orientation
from backend.files import TEMP_PREFIX

REQUIRED_FIELDS = ("img_path", "expressions", "height", "width", "bbox", "mask")


class RecordProblem(ValueError):
    """One thing wrong with one record; str() is the one-line reason."""


@dataclass
class CheckResult:
    counts: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def decode_like_trainer(mask, height: int, width: int) -> np.ndarray:
    """The trainer's reading: frPyObjects -> decode -> sum over the last axis -> uint8 (H, W)."""
    decoded = mask_utils.decode(mask_utils.frPyObjects(mask, height, width))
    return np.sum(decoded, axis=2).astype(np.uint8)


def mask_kind(mask) -> str:
    if not isinstance(mask, list) or not mask:
        raise RecordProblem("mask must be a non-empty list (of polygons or of RLE dicts)")
    if all(isinstance(part, dict) for part in mask):
        return "rle"
    if all(isinstance(part, list) for part in mask):
        return "polygon"
    raise RecordProblem("mask mixes polygons and RLE dicts (frPyObjects reads only one kind)")


def check_mask_parts(mask, kind: str, height: int, width: int) -> None:
    """What frPyObjects would silently misread: short polygons (read as boxes), RLE of another size."""
    for index, part in enumerate(mask):
        if kind == "polygon":
            if len(part) < 6 or len(part) % 2:
                raise RecordProblem(f"polygon {index} has {len(part)} coordinates (need an even count >= 6)")
            if not all(isinstance(v, numbers.Real) for v in part):
                raise RecordProblem(f"polygon {index} has non-numeric coordinates")
        else:
            if part.get("size") != [height, width]:
                raise RecordProblem(f"RLE {index} size {part.get('size')} != [height, width] [{height}, {width}]")
            counts = part.get("counts")
            if not isinstance(counts, list) or not all(isinstance(c, int) and c >= 0 for c in counts):
                raise RecordProblem(f"RLE {index} counts must be a list of non-negative ints (uncompressed)")
            if sum(counts) != height * width:
                raise RecordProblem(f"RLE {index} counts sum to {sum(counts)}, not height*width {height * width}")


def check_fields(record) -> None:
    if not isinstance(record, dict):
        raise RecordProblem("line is not a JSON object")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise RecordProblem(f"missing field(s): {', '.join(missing)}")
    if not isinstance(record["img_path"], str) or not record["img_path"]:
        raise RecordProblem("img_path must be a non-empty string")
    expressions = record["expressions"]
    if not isinstance(expressions, list) or not expressions:
        raise RecordProblem("expressions must be a non-empty list")
    if not all(isinstance(e, str) and e.strip() for e in expressions):
        raise RecordProblem("every expression must be a non-blank string")
    for name in ("height", "width"):
        value = record[name]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise RecordProblem(f"{name} must be a positive int, got {value!r}")
    bbox = record["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, numbers.Real) for v in bbox)):
        raise RecordProblem("bbox must be [x1, y1, x2, y2] numbers")
    x1, y1, x2, y2 = bbox
    if not (x1 < x2 and y1 < y2):
        raise RecordProblem(f"bbox {bbox} is not x1 < x2, y1 < y2")
    tolerance = 1.0
    if x1 < -tolerance or y1 < -tolerance or x2 > record["width"] + tolerance or y2 > record["height"] + tolerance:
        raise RecordProblem(f"bbox {bbox} lies outside the {record['width']}x{record['height']} image")


def check_image(record, image_folder: Path) -> None:
    path = image_folder / record["img_path"]
    if Path(record["img_path"]).is_absolute() or ".." in Path(record["img_path"]).parts:
        raise RecordProblem(f"img_path {record['img_path']!r} must be relative to the image folder")
    if not path.is_file():
        raise RecordProblem(f"image {record['img_path']} not found in {image_folder}")
    try:
        with Image.open(path) as image:
            size, orientation = image.size, exif_orientation(image)
            image.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        raise RecordProblem(f"image {record['img_path']} unreadable: {type(exc).__name__}") from None
    if size != (record["width"], record["height"]):
        raise RecordProblem(
            f"image {record['img_path']} is {size[0]}x{size[1]}, record says {record['width']}x{record['height']}"
        )
    if orientation != 1:
        raise RecordProblem(f"image {record['img_path']} has EXIF orientation {orientation}; the trainer ignores it")


def check_mask_against_bbox(decoded: np.ndarray, bbox) -> None:
    rows = np.flatnonzero(decoded.any(axis=1))
    cols = np.flatnonzero(decoded.any(axis=0))
    if rows.size == 0:
        raise RecordProblem("mask decodes to no pixels")
    tight = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    height, width = decoded.shape
    tolerance = max(2.0, 0.01 * max(height, width))
    worst = max(abs(float(a) - float(b)) for a, b in zip(tight, bbox))
    if worst > tolerance:
        raise RecordProblem(f"bbox {bbox} does not fit the mask's extent {tight} (off by {worst:.1f} px)")


def check_record(record, image_folder: Path, counts: Counter) -> list[str]:
    """Raises RecordProblem for the first problem; returns notes (not problems) otherwise."""
    check_fields(record)
    check_image(record, image_folder)
    height, width = record["height"], record["width"]
    kind = mask_kind(record["mask"])
    check_mask_parts(record["mask"], kind, height, width)
    try:
        decoded = decode_like_trainer(record["mask"], height, width)
    except Exception as exc:  # noqa: BLE001 - pycocotools raises bare Exception
        raise RecordProblem(f"pycocotools cannot read the mask: {exc}") from None
    if decoded.shape != (height, width):
        raise RecordProblem(f"mask decodes to shape {decoded.shape}, not ({height}, {width})")
    check_mask_against_bbox(decoded, record["bbox"])
    counts[f"masks_{kind}"] += 1
    counts["expressions"] += len(record["expressions"])
    counts["mask_pixels"] += int(np.count_nonzero(decoded))
    if decoded.max() > 1:
        return ["mask parts overlap (decoded values > 1)"]
    return []


def check_stage3_dir(out_dir, image_folder=None) -> CheckResult:
    root = Path(out_dir)
    image_folder = Path(image_folder) if image_folder else root / "images"
    result = CheckResult()
    jsonl = root / "res.jsonl"
    if not jsonl.is_file():
        result.problems.append(f"{jsonl} not found")
        return result
    images_named = set()
    for number, line in enumerate(jsonl.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            result.problems.append(f"line {number}: blank line")
            continue
        try:
            record = json.loads(line)
            notes = check_record(record, image_folder, result.counts)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # RecordProblem, bad JSON/types
            result.problems.append(f"line {number}: {exc}")
            continue
        result.counts["records"] += 1
        images_named.add(record["img_path"])
        result.notes += [f"line {number}: {note}" for note in notes]
    result.counts["images"] = len(images_named)
    if not result.counts["records"] and not result.problems:
        result.problems.append(f"{jsonl} holds no records: the dataset is empty (nothing to train on)")
    if image_folder.is_dir():
        temps = [p.name for p in image_folder.iterdir() if p.name.startswith(TEMP_PREFIX)]
        if temps:
            result.notes.append(f"{len(temps)} leftover temp file(s) in {image_folder} (harmless)")
    return result


def format_result(result: CheckResult, out_dir) -> str:
    counts = result.counts
    lines = [
        f"{out_dir}: {counts['records']} records, {counts['images']} images, "
        f"{counts['expressions']} expressions, masks: {counts['masks_polygon']} polygon, "
        f"{counts['masks_rle']} RLE, {counts['mask_pixels']} mask pixels",
    ]
    lines += [f"note: {note}" for note in result.notes]
    lines += [f"PROBLEM: {problem}" for problem in result.problems]
    lines.append("OK" if result.ok else f"{len(result.problems)} problem(s)")
    return "\n".join(lines)
