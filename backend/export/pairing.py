"""Pair mask regions (polygon / brush) with the rectangle of the same object.

This backend's pre-annotations put the per-region description on the rectangle, while the mask is
one PolygonLabels region per connected part and/or a BrushLabels region, each with its own id
(backend/studio/results/assemble.py). So each mask region looks for its rectangle, among rectangles whose
labels are compatible (equal, or one side unlabeled):

1. a Label Studio relation between the two;
2. else the rectangle whose box has the highest IoU with the region's box, if >= MIN_PAIR_IOU;
3. else the smallest rectangle holding >= MIN_CONTAINED of the region's box (a small part of a
   multi-part object), kept only if the union of everything paired with that rectangle still
   overlaps it by >= MIN_PAIR_IOU.

A rectangle may take several mask regions; a mask region takes at most one rectangle.
Works on any objects with `region_id`, `labels`, `bbox` (pixel xyxy).
"""

from __future__ import annotations

MIN_PAIR_IOU = 0.5
MIN_CONTAINED = 0.9


def relations_of(result: list) -> list[tuple[str, str]]:
    """(from_id, to_id) of every relation item in an annotation result."""
    pairs = []
    for item in result or []:
        if isinstance(item, dict) and str(item.get("type", "")).lower() == "relation":
            if item.get("from_id") is not None and item.get("to_id") is not None:
                pairs.append((str(item["from_id"]), str(item["to_id"])))
    return pairs


def area(box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a, b) -> float:
    return area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def box_iou(a, b) -> float:
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def union_box(boxes) -> tuple:
    boxes = list(boxes)
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def labels_compatible(box, mask) -> bool:
    return not box.labels or not mask.labels or bool(set(box.labels) & set(mask.labels))


def by_relation(mask, boxes: dict, relations) -> object | None:
    for from_id, to_id in relations:
        for box_id, mask_id in ((from_id, to_id), (to_id, from_id)):
            if mask_id == mask.region_id and box_id in boxes:
                return boxes[box_id]
    return None


def by_iou(mask, boxes: list) -> object | None:
    scored = [(box_iou(box.bbox, mask.bbox), index) for index, box in enumerate(boxes)]
    best = max(scored, default=(0.0, -1))
    return boxes[best[1]] if best[0] >= MIN_PAIR_IOU else None


def by_containment(mask, boxes: list) -> object | None:
    inside = [box for box in boxes
              if area(mask.bbox) > 0 and intersection(box.bbox, mask.bbox) / area(mask.bbox) >= MIN_CONTAINED]
    return min(inside, key=lambda box: area(box.bbox), default=None)


def pair_masks_with_boxes(boxes: list, masks: list, relations: list[tuple[str, str]]) -> dict:
    """mask region id -> the rectangle it belongs to (see the module doc for the rules)."""
    box_by_id = {box.region_id: box for box in boxes}
    paired, contained = {}, {}
    for mask in masks:
        compatible = [box for box in boxes if labels_compatible(box, mask)]
        chosen = by_relation(mask, box_by_id, relations) or by_iou(mask, compatible)
        if chosen is not None:
            paired[mask.region_id] = chosen
        elif (holder := by_containment(mask, compatible)) is not None:
            contained[mask.region_id] = holder
    mask_by_id = {mask.region_id: mask for mask in masks}
    for mask_id, box in contained.items():
        members = [mask_by_id[m] for m, b in {**paired, **contained}.items() if b is box]
        if box_iou(union_box(member.bbox for member in members), box.bbox) >= MIN_PAIR_IOU:
            paired[mask_id] = box
    return paired
