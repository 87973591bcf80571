"""One model region -> every result its Image's controls want; the task-level prediction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.studio.geometry import mask_to_box
from backend.studio.labeling import ImageTarget
from backend.studio.results.bitmask import BitmaskLabelsResult
from backend.studio.results.brush import BrushLabelsResult
from backend.studio.results.common import clamp_score, new_region_id
from backend.studio.results.polygon import PolygonLabelsResult
from backend.studio.results.rectangle import RectangleLabelsResult
from backend.studio.results.textarea import RegionTextAreaResult

_ANCHOR_ORDER = ("rectanglelabels", "polygonlabels", "brushlabels", "bitmasklabels")


@dataclass(frozen=True)
class PolygonOptions:
    """How masks become polygons: approxPolyDP tolerance and the smallest part kept (pixels)."""

    tolerance_px: float = 1.0
    min_area_px: float = 16.0
    max_parts: int | None = 10
    min_part_fraction: float = 0.02


def region_results(target: ImageTarget, width: int, height: int, *,
                   labels: Mapping[str, str], box: Sequence[float] | None = None,
                   mask: np.ndarray | None = None, score: float | None = None,
                   text: str | None = None, polygon: PolygonOptions = PolygonOptions(),
                   new_id: Callable[[], str] = new_region_id) -> list[dict[str, Any]]:
    """Results for one model region on ``target``.

    * ``labels`` maps a region control's name to the label value it gets; controls not in
      it get nothing (use :func:`backend.studio.phrases.labels_for_phrase` or a label you chose).
    * RectangleLabels: ``box`` (pixel xyxy), else the mask's box. PolygonLabels: the mask's
      parts (one result each). BrushLabels: the mask as RLE; BitmaskLabels: the mask as a PNG
      data URL. No or empty mask: no polygon/brush/bitmask.
    * ``text`` goes into every per-region TextArea of the target, attached to the first
      rectangle made (else the first polygon, else the brush), with that shape's id.

    Shapes come first, then their texts. Each shape has its own new id.
    """
    mask_array = None if mask is None else np.asarray(mask).astype(bool)
    has_mask = mask_array is not None and bool(mask_array.any())
    if box is None and has_mask:
        box = mask_to_box(mask_array)
    shapes: list[dict[str, Any]] = []
    for control in target.region_controls:
        label = labels.get(control.name)
        if label is None:
            continue
        if control.kind == "rectanglelabels" and box is not None:
            builder = RectangleLabelsResult.for_control(control, width, height)
            shapes.append(builder.build(box, label, score=score, region_id=new_id()))
        elif control.kind == "polygonlabels" and has_mask:
            builder = PolygonLabelsResult.for_control(
                control, width, height, tolerance_px=polygon.tolerance_px,
                min_area_px=polygon.min_area_px, max_parts=polygon.max_parts,
                min_part_fraction=polygon.min_part_fraction)
            for result in builder.build_from_mask(mask_array, label, score=score):
                result["id"] = new_id()
                shapes.append(result)
        elif control.kind == "brushlabels" and has_mask:
            builder = BrushLabelsResult.for_control(control, width, height)
            shapes.append(builder.build(mask_array, label, score=score, region_id=new_id()))
        elif control.kind == "bitmasklabels" and has_mask:
            builder = BitmaskLabelsResult.for_control(control, width, height)
            shapes.append(builder.build(mask_array, label, score=score, region_id=new_id()))
    return shapes + _texts_for(target, width, height, shapes, text)


def _texts_for(target: ImageTarget, width: int, height: int, shapes: list[dict[str, Any]],
               text: str | None) -> list[dict[str, Any]]:
    anchor = anchor_shape(shapes)
    if text is None or anchor is None:
        return []
    return [RegionTextAreaResult.for_control(area, width, height).attach(text, anchor)
            for area in target.region_areas]


def anchor_shape(shapes: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The shape per-region text attaches to: first rectangle, else polygon, else brush, else bitmask."""
    shapes = list(shapes)
    for kind in _ANCHOR_ORDER:
        for shape in shapes:
            if shape.get("type") == kind:
                return shape
    return None


def prediction_entry(results: Sequence[Mapping[str, Any]], model_version: str,
                     score: float | None = None) -> dict[str, Any]:
    """One task's entry in ``/predict``'s ``results``: ``{"model_version", "score", "result"}``.

    ``score`` defaults to the mean of the region scores (0.0 when none); clamped to [0, 1].
    """
    if score is None:
        region_scores = [float(r["score"]) for r in results if r.get("score") is not None]
        score = sum(region_scores) / len(region_scores) if region_scores else 0.0
    return {"model_version": str(model_version), "score": clamp_score(score) or 0.0,
            "result": [dict(result) for result in results]}
