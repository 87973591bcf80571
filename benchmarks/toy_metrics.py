"""The rules benchmarks/toy_quality.py scores by (its docstring states them): naming a category,
one-to-one box matching, and a tally of ratios. Box IoU and mask IoU counts come from the project's
homes (backend.predict.clicks.box_iou, model.stage3.metrics.iou_counts)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from backend.predict.clicks import box_iou
from model.toy_world import CATEGORIES

IOU_THRESHOLD = 0.5
_CATEGORY_RE = {category: re.compile(rf"\b{re.escape(category)}\b", re.IGNORECASE) for category in CATEGORIES}

__all__ = ["IOU_THRESHOLD", "Tally", "box_iou", "categories_named", "greedy_matches", "names_category"]


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
