"""Read Label Studio results back into pixels (interactive context, webhooks, export).

Each reader takes one result dict as Label Studio sends it and uses its
``original_width`` / ``original_height`` unless ``width`` / ``height`` are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from backend.studio.geometry import (
    Box,
    box_to_mask,
    brush_rle_to_mask,
    keypoint_value_to_pixels,
    percent_points_to_pixels,
    polygons_to_mask,
    rectangle_value_to_corners,
    rectangle_value_to_pixels,
)
from backend.studio.results.bitmask import bitmask_url_to_mask
from backend.studio.results.textarea import MESSAGE_PREFIX


def _size(result: Mapping[str, Any], width: int | None, height: int | None) -> tuple[int, int]:
    width = width or result.get("original_width")
    height = height or result.get("original_height")
    if not width or not height:
        raise ValueError(f"result {result.get('id')!r} has no original_width/original_height")
    return int(width), int(height)


# result type -> the kind of shape it carries (a per-region TextArea repeats its region's geometry)
GEOMETRY_TYPES = {
    "rectanglelabels": "rectangle", "rectangle": "rectangle",
    "polygonlabels": "polygon", "polygon": "polygon",
    "brushlabels": "brush", "brush": "brush",
    "bitmasklabels": "brush", "bitmask": "brush",  # a pixel mask like a brush, stored as a PNG
}
LABEL_KEYS = ("rectanglelabels", "polygonlabels", "brushlabels", "bitmasklabels", "keypointlabels", "labels")


def result_labels(result: Mapping[str, Any]) -> list[str]:
    """The labels of a ``*labels`` result (``value[type]``, else any labels key of its value), stripped;
    [] for results that carry none."""
    value = result.get("value")
    if not isinstance(value, Mapping):
        return []
    own = str(result.get("type", "")).lower()
    for key in (own, *LABEL_KEYS):
        labels = value.get(key)
        if isinstance(labels, list) and labels:
            return [str(label).strip() for label in labels if isinstance(label, str) and label.strip()]
    return []


def result_texts(result: Mapping[str, Any]) -> list[str]:
    """A TextArea result's texts (value.text is a list of strings, or one string), as given, without the
    backend's own messages (MESSAGE_PREFIX): those are never prompts, descriptions or expressions."""
    value = result.get("value")
    texts = value.get("text", []) if isinstance(value, Mapping) else []
    if isinstance(texts, str):
        texts = [texts]
    return [str(text) for text in texts or [] if isinstance(text, str) and not text.startswith(MESSAGE_PREFIX)]


def result_text(result: Mapping[str, Any]) -> str:
    """A TextArea result's text, lines joined with newlines ('' if none)."""
    return "\n".join(result_texts(result))


def is_textarea(result: Mapping[str, Any]) -> bool:
    return str(result.get("type", "")).lower() == "textarea"


def result_box(result: Mapping[str, Any], width: int | None = None,
               height: int | None = None) -> Box:
    """Pixel xyxy box of a rectangle result (axis-aligned hull when rotated), or of the
    geometry repeated in a per-region TextArea's value."""
    width, height = _size(result, width, height)
    return rectangle_value_to_pixels(result["value"], width, height)


def result_polygon(result: Mapping[str, Any], width: int | None = None,
                   height: int | None = None) -> np.ndarray:
    """Pixel (x, y) points, shape (N, 2), of a polygon result."""
    width, height = _size(result, width, height)
    return percent_points_to_pixels(result["value"]["points"], width, height)


def result_point(result: Mapping[str, Any], width: int | None = None,
                 height: int | None = None) -> tuple[float, float]:
    """Pixel (x, y) of a key point result (``value.x``, ``value.y`` in percent)."""
    width, height = _size(result, width, height)
    return keypoint_value_to_pixels(result["value"], width, height)


def result_is_positive(result: Mapping[str, Any]) -> bool:
    """Whether a smart key point is a positive click. Label Studio 1.23's editor puts ``is_positive`` on the
    result (false after Alt+click); ``value.positive`` is read too, for clients that put it there. Neither:
    positive."""
    flag = result.get("is_positive")
    if flag is None and isinstance(result.get("value"), Mapping):
        flag = result["value"].get("positive")
    if flag is None:
        return True
    if isinstance(flag, str):
        return flag.strip().lower() in ("true", "1")
    return bool(flag)


def result_mask(result: Mapping[str, Any], width: int | None = None,
                height: int | None = None) -> np.ndarray:
    """Bool (height, width) mask of a brush, bitmask, polygon or rectangle result."""
    width, height = _size(result, width, height)
    value = result["value"]
    if "imageDataURL" in value:
        return bitmask_url_to_mask(value["imageDataURL"], width, height)
    if "rle" in value:
        return brush_rle_to_mask(value["rle"], width, height)
    if "points" in value:
        return polygons_to_mask([percent_points_to_pixels(value["points"], width, height)],
                                height, width)
    if {"x", "y", "width", "height"} <= value.keys():
        if not value.get("rotation"):
            return box_to_mask(rectangle_value_to_pixels(value, width, height), height, width)
        return polygons_to_mask([rectangle_value_to_corners(value, width, height)],
                                height, width)
    raise ValueError(f"result {result.get('id')!r} has no geometry to rasterise")
