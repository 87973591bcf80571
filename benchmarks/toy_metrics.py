"""The rules benchmarks/toy_quality.py scores by (its docstring states them): naming a category,
one-to-one box matching, a label's Label Studio results against the toy world's truth, and a tally of
ratios. Box IoU and mask IoU counts come from the project's homes (backend.predict.clicks.box_iou,
model.stage3.metrics.iou_counts). The end-to-end tests score Label Studio's stored predictions by the
same rules."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from backend.predict.clicks import box_iou
from backend.studio.geometry import percent_points_to_pixels, polygons_to_mask, rectangle_value_to_pixels
from model.stage3.metrics import iou_counts
from model.toy_world import CATEGORIES

IOU_THRESHOLD = 0.5
_CATEGORY_RE = {category: re.compile(rf"\b{re.escape(category)}\b", re.IGNORECASE) for category in CATEGORIES}

__all__ = ["IOU_THRESHOLD", "Tally", "box_iou", "categories_named", "greedy_matches", "label_box_matches",
           "label_polygon_counts", "labelled", "names_category"]


def categories_named(text: str) -> list[str]:
    """The categories whose words appear as whole words in ``text``, in order of first appearance."""
    found = [(match.start(), category) for category, pattern in _CATEGORY_RE.items()
             if (match := pattern.search(text or ""))]
    return [category for _, category in sorted(found)]


def names_category(text: str, category: str) -> bool:
    """True when ``category`` is the first category ``text`` names."""
    named = categories_named(text)
    return bool(named) and named[0] == category


def greedy_matches(predicted: Sequence, truth: Sequence, threshold: float = IOU_THRESHOLD,
                   allowed: Callable[[int, int], bool] | None = None) -> list[tuple[int, int]]:
    """One-to-one (predicted index, true index) pairs of pixel xyxy boxes: pairs taken by box IoU,
    highest first, while IoU >= ``threshold``; ``allowed(p, t)`` may rule pairs out."""
    pairs = sorted(((box_iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)
                    if allowed is None or allowed(i, j)), key=lambda pair: (-pair[0], pair[1], pair[2]))
    used_p, used_t, matches = set(), set(), []
    for iou, i, j in pairs:
        if iou < threshold:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            matches.append((i, j))
    return matches


def labelled(results: list[dict], kind: str, label: str) -> list[dict]:
    """The values of the Label Studio results of type ``kind`` (e.g. "rectanglelabels") that carry ``label``."""
    return [r["value"] for r in results if r.get("type") == kind and label in r["value"].get(kind, [])]


def label_box_matches(results: list[dict], label: str, scene) -> tuple[int, int, int]:
    """(matched, returned, true) for ``label``'s rectangles (percent -> pixels) against the scene's objects of
    that category, matched one to one (greedy_matches)."""
    boxes = [rectangle_value_to_pixels(v, scene.width, scene.height)
             for v in labelled(results, "rectanglelabels", label)]
    truth = [o.box for o in scene.objects if o.category == label]
    return len(greedy_matches(boxes, truth)), len(boxes), len(truth)


def label_polygon_counts(results: list[dict], label: str, scene) -> tuple[int, int]:
    """(intersection, union) in pixels of the union of ``label``'s polygons (rasterised) and the union of the
    masks of the scene's objects of that category."""
    truth = np.zeros((scene.height, scene.width), bool)
    for obj in scene.objects:
        if obj.category == label:
            truth |= obj.mask
    return polygon_mask_counts(results, label, truth)


def polygon_mask_counts(results: list[dict], label: str, truth: np.ndarray) -> tuple[int, int]:
    """(intersection, union) in pixels of the union of ``label``'s polygons (percent points, rasterised on the
    [H, W] image) and the bool mask ``truth``."""
    height, width = truth.shape
    polygons = [percent_points_to_pixels(v["points"], width, height) for v in labelled(results, "polygonlabels", label)]
    return iou_counts(polygons_to_mask(polygons, height, width), truth)


class Tally:
    """Named ratios summed over scenes: value = sum of numerators / sum of denominators (None when the
    denominator is 0); ``count`` is what the metric was measured on (objects, boxes, scenes...)."""

    def __init__(self, names=()):
        self.sums: dict[str, list[float]] = {name: [0.0, 0.0, 0] for name in names}  # the report's order

    def add(self, name: str, numerator: float, denominator: float = 1, count: int = 1) -> None:
        sums = self.sums.setdefault(name, [0.0, 0.0, 0])
        sums[0] += numerator
        sums[1] += denominator
        sums[2] += count

    def report(self) -> dict[str, dict]:
        return {name: {"value": round(num / den, 4) if den else None, "count": int(count)}
                for name, (num, den, count) in self.sums.items()}
