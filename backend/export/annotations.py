"""Label Studio annotation results -> regions in pixels, with their expressions.

Label Studio ties the items of one region together by their shared `id`: the geometry item
(rectanglelabels / polygonlabels / brushlabels) and the per-region TextArea item (type textarea,
same id). Geometry is in percent of `original_width` x `original_height` (the size the annotator
saw); brush masks are Label Studio RLE at that size. All conversions go through backend.studio.geometry.

A region becomes a stage-3 sample when it has a mask and at least one expression. Everything else
is reported as a `Skip` with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from backend.export.pairing import pair_masks_with_boxes, relations_of, union_box
from backend.studio import geometry
from backend.studio.results.bitmask import bitmask_url_to_mask
from backend.studio.results.readers import GEOMETRY_TYPES, is_textarea, result_labels, result_texts


@dataclass
class Skip:
    """A region (or a whole annotation, region_id None) left out of the dataset, and why."""

    reason: str
    region_id: str | None = None
    annotation_id: int | None = None
    task_id: int | None = None

    def as_dict(self) -> dict:
        return {"reason": self.reason, "region_id": self.region_id,
                "annotation_id": self.annotation_id, "task_id": self.task_id}


class RegionSkipped(Exception):
    """Raised while reading one region; str() is the reason it is skipped."""


@dataclass
class AnnotatedRegion:
    """One region in the pixel frame of the image as shown (width x height)."""

    region_id: str
    kind: str  # "rectangle" | "polygon" | "brush"
    width: int
    height: int
    bbox: tuple[float, float, float, float]
    labels: list[str] = field(default_factory=list)
    expressions: list[str] = field(default_factory=list)
    polygons: list[list[float]] = field(default_factory=list)  # flat [x1, y1, x2, y2, ...] pixels
    mask: np.ndarray | None = None  # bool (height, width), brush regions only
    from_prediction: bool = False  # every item kept origin "prediction": accepted unchanged
    texts: list[str] = field(default_factory=list)  # per-region TextArea texts


@dataclass
class ExportOptions:
    boxes_as_masks: bool = False  # an unpaired rectangle becomes a 4-corner polygon mask
    include_accepted_predictions: bool = False  # keep regions accepted from a prediction unchanged
    label_prompts: Mapping[str, str] = field(default_factory=dict)  # label value -> referring prompt


def group_by_region(result: list) -> dict[str, list[dict]]:
    """Result items grouped by region id, in first-seen order; items without an id are dropped."""
    groups: dict[str, list[dict]] = {}
    for item in result or []:
        if isinstance(item, dict) and item.get("id") is not None and isinstance(item.get("value"), dict):
            groups.setdefault(str(item["id"]), []).append(item)
    return groups


def geometry_item(items: list[dict]) -> dict | None:
    """The item that carries the region's shape: a labels item first, else one whose value has it."""
    for item in items:
        if str(item.get("type", "")).lower() in GEOMETRY_TYPES:
            return item
    for item in items:
        value = item["value"]
        if "points" in value or "rle" in value or {"x", "y", "width", "height"} <= value.keys():
            return item
    return None


def item_kind(item: dict) -> str:
    kind = GEOMETRY_TYPES.get(str(item.get("type", "")).lower())
    if kind:
        return kind
    value = item["value"]
    return "polygon" if "points" in value else "brush" if "rle" in value else "rectangle"


def texts_of(items: list[dict]) -> list[str]:
    """Per-region TextArea texts of a region's items, stripped, each once."""
    texts = [text.strip() for item in items if is_textarea(item) for text in result_texts(item)]
    return list(dict.fromkeys(text for text in texts if text))


def labels_of(items: list[dict]) -> list[str]:
    """The labels of a region's items, each once."""
    return list(dict.fromkeys(label for item in items for label in result_labels(item)))


def expressions_for(texts: list[str], labels: list[str], label_prompts: Mapping[str, str]) -> list[str]:
    """The region's descriptions when it has any; else each label's configured prompt, or the label."""
    if texts:
        return texts
    return list(dict.fromkeys(label_prompts.get(label) or label for label in labels))


def shown_size(item: dict, fallback: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height) the annotator saw: original_width/height, else the fallback (the image)."""
    width, height = item.get("original_width"), item.get("original_height")
    if isinstance(width, (int, float)) and isinstance(height, (int, float)) and width > 0 and height > 0:
        return int(round(width)), int(round(height))
    if fallback is None:
        raise RegionSkipped("no original_width/original_height and no image to take the size from")
    return fallback


def flat_polygon(points: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(points, dtype=np.float64).reshape(-1)]


def clipped_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int):
    box = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise RegionSkipped("region lies outside the image")
    return box


def polygon_geometry(value: dict, width: int, height: int):
    points = value.get("points") or []
    if len(points) < 3:
        raise RegionSkipped(f"polygon has {len(points)} point(s), needs >= 3")
    pixels = geometry.percent_points_to_pixels(points, width, height)
    if not np.isfinite(pixels).all():
        raise RegionSkipped("polygon has non-numeric points")
    x0, y0 = pixels.min(axis=0)
    x1, y1 = pixels.max(axis=0)
    return [flat_polygon(pixels)], clipped_box(x0, y0, x1, y1, width, height)


def rectangle_geometry(value: dict, width: int, height: int):
    """The rectangle's 4 corners (rotation applied) as one polygon, and its box."""
    try:
        corners = geometry.rectangle_value_to_corners(value, width, height)
    except (KeyError, TypeError, ValueError):
        raise RegionSkipped("rectangle value lacks x, y, width or height") from None
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    return [flat_polygon(corners)], clipped_box(x0, y0, x1, y1, width, height)


def brush_geometry(item: dict, width: int, height: int):
    """Brush RLE (or a BitmaskLabels PNG) decoded at its own original size, then resized (nearest) to the
    shown size."""
    value = item["value"]
    rle_width, rle_height = shown_size(item, (width, height))
    if "imageDataURL" in value:
        try:
            mask = bitmask_url_to_mask(value["imageDataURL"], rle_width, rle_height)
        except ValueError as exc:
            raise RegionSkipped(f"bitmask unreadable: {exc}") from None
    elif value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
        raise RegionSkipped(f"brush format {value.get('format')!r} is not Label Studio RLE")
    else:
        try:
            mask = geometry.brush_rle_to_mask(value["rle"], rle_width, rle_height)
        except ValueError as exc:
            raise RegionSkipped(f"brush mask unreadable: {exc}") from None
    if mask.shape != (height, width):
        mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    box = geometry.mask_to_box(mask)
    if box is None:
        raise RegionSkipped("brush mask is empty")
    return mask, box


def read_region(region_id: str, items: list[dict], size: tuple[int, int] | None) -> AnnotatedRegion:
    """One region's shape, labels and texts, in the pixel frame `size` (width, height) if given.

    Expressions are left empty here: they are chosen once rectangles are paired with masks.
    """
    shape = geometry_item(items)
    if shape is None:
        raise RegionSkipped("no geometry (not a region: e.g. a global TextArea)")
    kind = item_kind(shape)
    if shape.get("image_rotation") not in (None, 0, 0.0):
        raise RegionSkipped(f"image rotated in the editor (image_rotation={shape['image_rotation']}) is not supported")
    width, height = size or shown_size(shape, None)
    region = AnnotatedRegion(region_id, kind, width, height, (0.0, 0.0, 0.0, 0.0), labels_of(items),
                    from_prediction=all(item.get("origin") == "prediction" for item in items))
    region.texts = texts_of(items)
    if kind == "polygon":
        region.polygons, region.bbox = polygon_geometry(shape["value"], width, height)
    elif kind == "rectangle":
        region.polygons, region.bbox = rectangle_geometry(shape["value"], width, height)
    else:
        region.mask, region.bbox = brush_geometry(shape, width, height)
    return region


def first_shown_size(result: list) -> tuple[int, int] | None:
    """The size the annotator saw, from the first result item that states it."""
    for item in result or []:
        try:
            return shown_size(item, None)
        except (RegionSkipped, AttributeError):
            continue
    return None


def finish_region(region: AnnotatedRegion, options: ExportOptions) -> AnnotatedRegion:
    """Choose the expressions; raise RegionSkipped when the region cannot be a sample."""
    if region.from_prediction and not options.include_accepted_predictions:
        raise RegionSkipped("prediction accepted unchanged (use --include-accepted-predictions)")
    region.expressions = expressions_for(region.texts, region.labels, options.label_prompts)
    if not region.expressions:
        raise RegionSkipped("no expression: no region text and no label")
    return region


def merge_group(box: AnnotatedRegion, members: list[AnnotatedRegion]) -> AnnotatedRegion:
    """The mask regions of one object (same rectangle, same kind) as one sample with the box's text."""
    first = members[0]
    merged = AnnotatedRegion(
        "+".join(member.region_id for member in members), first.kind, first.width, first.height,
        union_box(member.bbox for member in members),
        labels=list(dict.fromkeys(label for member in members for label in member.labels)) or list(box.labels),
        polygons=[polygon for member in members for polygon in member.polygons],
        from_prediction=box.from_prediction and all(member.from_prediction for member in members),
    )
    if first.mask is not None:
        merged.mask = np.logical_or.reduce([member.mask for member in members])
    merged.texts = list(dict.fromkeys([text for member in members for text in member.texts] + box.texts))
    return merged


def samples_of(parsed: list[AnnotatedRegion], relations) -> tuple[list[AnnotatedRegion], list[AnnotatedRegion]]:
    """(sample regions, unpaired rectangles): mask regions paired with a rectangle are merged per
    (rectangle, kind) and take its text; the rectangles they used are consumed."""
    boxes = [region for region in parsed if region.kind == "rectangle"]
    masks = [region for region in parsed if region.kind != "rectangle"]
    paired = pair_masks_with_boxes(boxes, masks, relations)
    order, groups = [], {}
    for region in masks:
        box = paired.get(region.region_id)
        if box is None:
            order.append(region)
            continue
        key = (box.region_id, region.kind)
        if key not in groups:
            groups[key] = (box, [])
            order.append(key)
        groups[key][1].append(region)
    samples = [merge_group(*groups[item]) if isinstance(item, tuple) else item for item in order]
    used = {box.region_id for box in paired.values()}
    return samples, [box for box in boxes if box.region_id not in used]


def read_regions(result: list, options: ExportOptions, size: tuple[int, int] | None = None):
    """All regions of one annotation result -> (regions, skips); skips name the region and reason.

    Mask regions take the text of their rectangle (see pairing); the rectangles used that way are
    not samples themselves, and the other rectangles are samples only with `boxes_as_masks`.
    """
    parsed, skips = [], []
    for region_id, items in group_by_region(result).items():
        if geometry_item(items) is None and all(str(i.get("type", "")).lower() == "textarea" for i in items):
            continue  # a global TextArea (the prompt): not a region, not a skip
        try:
            parsed.append(read_region(region_id, items, size))
        except RegionSkipped as exc:
            skips.append(Skip(str(exc), region_id))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            skips.append(Skip(f"malformed region value ({type(exc).__name__})", region_id))
    samples, lone_boxes = samples_of(parsed, relations_of(result))
    if options.boxes_as_masks:
        samples += lone_boxes
    else:
        skips += [Skip("rectangle without a mask (use --boxes-as-masks to keep it)", box.region_id)
                  for box in lone_boxes]
    regions = []
    for region in samples:
        try:
            regions.append(finish_region(region, options))
        except RegionSkipped as exc:
            skips.append(Skip(str(exc), region.region_id))
    return regions, skips
