"""Ground truth from a render: visible masks, which objects count, tight boxes and size attributes.

An object's visible mask is its full mask minus the pixels of every object drawn after it. An object
counts (is kept, and mentioned) when its visible area is at least `MIN_VISIBLE_FRACTION` of its full
area and at least `MIN_AREA_FRACTION` of the image. Boxes are pixel xyxy ints with x2, y2 exclusive.
"""

from __future__ import annotations

import numpy as np

from .world import ObjectLayout

MIN_VISIBLE_FRACTION = 0.5
MIN_AREA_FRACTION = 0.003
SIZE_RATIO = 2.0  # "big" / "small" needs this area ratio to every other instance of the category


def visible_masks(full_masks: list[np.ndarray]) -> list[np.ndarray]:
    """Each mask minus the union of the masks after it (drawn later, so on top)."""
    visible: list[np.ndarray] = [None] * len(full_masks)
    covered = np.zeros_like(full_masks[0]) if full_masks else None
    for i in reversed(range(len(full_masks))):
        visible[i] = full_masks[i] & ~covered
        covered |= full_masks[i]
    return visible


def is_visible_enough(full: np.ndarray, visible: np.ndarray, fraction: float, area_fraction: float) -> bool:
    shown = int(visible.sum())
    return shown > 0 and shown >= fraction * int(full.sum()) and shown >= area_fraction * visible.size


def kept_indices(full_masks: list[np.ndarray], visible: list[np.ndarray]) -> list[int]:
    return [i for i, (full, seen) in enumerate(zip(full_masks, visible))
            if is_visible_enough(full, seen, MIN_VISIBLE_FRACTION, MIN_AREA_FRACTION)]


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of the mask's pixels, x2 = max x + 1 and y2 = max y + 1."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def size_labels(objects: list[ObjectLayout]) -> list[str | None]:
    """"big" for the largest of a category when it is >= SIZE_RATIO times every other instance's area,
    "small" for the smallest when every other is >= SIZE_RATIO times its area, else None. Areas are the
    layout boxes', so the labels do not depend on the render size."""
    labels: list[str | None] = []
    for i, obj in enumerate(objects):
        others = [o.area for j, o in enumerate(objects) if j != i and o.category == obj.category]
        if others and obj.area >= SIZE_RATIO * max(others):
            labels.append("big")
        elif others and min(others) >= SIZE_RATIO * obj.area:
            labels.append("small")
        else:
            labels.append(None)
    return labels
