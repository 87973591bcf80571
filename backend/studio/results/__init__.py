"""Label Studio result dicts, one small module per control tag.

Build: :class:`RectangleLabelsResult`, :class:`PolygonLabelsResult`, :class:`BrushLabelsResult`,
:class:`BitmaskLabelsResult`, :class:`RegionTextAreaResult` (perRegion), :class:`TextAreaResult` (whole
image), :class:`ChoicesResult` (whole image or per region);
:func:`region_results` for one model region on every control of an Image;
:func:`prediction_entry` for a task. Read back: ``result_box``, ``result_mask``... in
:mod:`backend.studio.results.readers`.
"""

from backend.studio.results.assemble import PolygonOptions, anchor_shape, prediction_entry, region_results
from backend.studio.results.bitmask import BitmaskLabelsResult
from backend.studio.results.brush import BrushLabelsResult
from backend.studio.results.choices import ChoicesResult
from backend.studio.results.common import clamp_score, new_region_id
from backend.studio.results.polygon import PolygonLabelsResult
from backend.studio.results.readers import (
    result_box,
    result_labels,
    result_mask,
    result_polygon,
    result_text,
)
from backend.studio.results.rectangle import RectangleLabelsResult
from backend.studio.results.textarea import RegionTextAreaResult, TextAreaResult, shape_geometry

__all__ = [
    "BitmaskLabelsResult",
    "BrushLabelsResult",
    "ChoicesResult",
    "PolygonLabelsResult",
    "PolygonOptions",
    "RectangleLabelsResult",
    "RegionTextAreaResult",
    "TextAreaResult",
    "anchor_shape",
    "clamp_score",
    "new_region_id",
    "prediction_entry",
    "region_results",
    "result_box",
    "result_labels",
    "result_mask",
    "result_polygon",
    "result_text",
    "shape_geometry",
]
