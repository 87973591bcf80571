"""Geometry between pixels and Label Studio: the one place for these conversions.

Conventions (shared by the predictor and the exporter, tested in tests/backend/test_geometry.py):

* Label Studio stores geometry in **percent of the image's natural size** (0-100):
  ``x = px / original_width * 100``, ``y = py / original_height * 100``.
* Pixel coordinates here are **continuous**: pixel (row r, column c) covers
  ``[c, c + 1) x [r, r + 1)``. A box ``(x0, y0, x1, y1)`` spans ``x0 <= x < x1``, so a
  mask's box is ``(min_col, min_row, max_col + 1, max_row + 1)``.
* A pixel belongs to a shape when its centre ``(col + 0.5, row + 0.5)`` is inside it.
  Outlines traced from a mask run a quarter pixel inside its boundary pixels, so mask ->
  polygon -> mask round-trips. COCO polygons use the same continuous coordinates.
* Label Studio polygons have no holes. A hole is joined to its outer ring by a zero-width
  cut (the ring walks in to the hole, around it the other way, and back out on the same
  segment), so the polygon renders with the hole left empty under both the non-zero and
  the even-odd fill rule.
* Brush masks use Label Studio's RLE through ``label_studio_sdk.converter.brush``
  (``mask2rle`` / ``decode_rle``): RGBA bytes, the mask in the alpha channel as 0/255.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import cv2
import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle
from pycocotools import mask as coco_mask

Box = tuple[float, float, float, float]

__all__ = [
    "Box",
    "box_to_mask",
    "brush_rle_to_mask",
    "check_size",
    "clamp_percent",
    "coco_rle_to_mask",
    "keypoint_value_to_pixels",
    "mask_to_box",
    "mask_to_brush_rle",
    "mask_to_polygons",
    "percent_points_to_pixels",
    "pixel_box_to_percent",
    "pixel_points_to_percent",
    "polygons_to_mask",
    "rectangle_value_to_corners",
    "rectangle_value_to_pixels",
]


# --------------------------------------------------------------------------- percent <-> pixels


def clamp_percent(value: float) -> float:
    """Clamp a percent coordinate into [0, 100] (NaN becomes 0)."""
    if math.isnan(value):
        return 0.0
    return min(100.0, max(0.0, float(value)))


def check_size(width: int, height: int) -> None:
    """ValueError unless both sides of the image are positive."""
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")


def pixel_box_to_percent(box: Sequence[float], width: int, height: int) -> dict[str, float]:
    """Pixel xyxy box -> Label Studio rectangle value ``{x, y, width, height, rotation}``.

    The box is clipped to the image first, so the result always lies inside [0, 100]
    (``x + width <= 100``). Corners given in the wrong order are sorted.
    """
    check_size(width, height)
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    left, right = clamp_percent(x0 / width * 100), clamp_percent(x1 / width * 100)
    top, bottom = clamp_percent(y0 / height * 100), clamp_percent(y1 / height * 100)
    return {"x": left, "y": top, "width": right - left, "height": bottom - top, "rotation": 0}


def rectangle_value_to_corners(value: Mapping, width: int, height: int) -> np.ndarray:
    """Label Studio rectangle value -> its 4 corners in pixels, float array (4, 2).

    Order: top-left, top-right, bottom-right, bottom-left before rotation. ``rotation`` is
    in degrees, clockwise on screen, around the top-left corner (Label Studio's rule).
    """
    check_size(width, height)
    left = float(value["x"]) * width / 100
    top = float(value["y"]) * height / 100
    box_w = float(value["width"]) * width / 100
    box_h = float(value["height"]) * height / 100
    local = np.array([[0, 0], [box_w, 0], [box_w, box_h], [0, box_h]], dtype=np.float64)
    angle = math.radians(float(value.get("rotation") or 0))
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos_a, -sin_a], [sin_a, cos_a]])
    return local @ rotation.T + np.array([left, top])


def rectangle_value_to_pixels(value: Mapping, width: int, height: int) -> Box:
    """Label Studio rectangle value -> pixel xyxy box (the axis-aligned hull if rotated)."""
    corners = rectangle_value_to_corners(value, width, height)
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    return (float(x0), float(y0), float(x1), float(y1))


def pixel_points_to_percent(points: Iterable[Sequence[float]], width: int,
                            height: int) -> list[list[float]]:
    """Pixel (x, y) points -> Label Studio polygon points ``[[x%, y%], ...]``, clamped."""
    check_size(width, height)
    return [[clamp_percent(float(x) / width * 100), clamp_percent(float(y) / height * 100)]
            for x, y in points]


def percent_points_to_pixels(points: Iterable[Sequence[float]], width: int,
                             height: int) -> np.ndarray:
    """Label Studio polygon points (percent) -> float array (N, 2) of pixel (x, y)."""
    check_size(width, height)
    array = np.asarray(list(points), dtype=np.float64).reshape(-1, 2)
    return array * np.array([width / 100, height / 100])


def keypoint_value_to_pixels(value: Mapping, width: int, height: int) -> tuple[float, float]:
    """Label Studio key point value ``{x, y, width}`` (percent; ``width`` is only its drawn size) -> the
    pixel (x, y) it marks, by the rectangles' rule: 25% of a 640 px wide image is x = 160.0 (continuous
    coordinates, so the point lies on the left edge of pixel column 160)."""
    check_size(width, height)
    return (float(value["x"]) * width / 100, float(value["y"]) * height / 100)


# --------------------------------------------------------------------------- masks and polygons


def mask_to_box(mask: np.ndarray) -> Box | None:
    """Tight pixel xyxy box of a mask's pixels, or None for an empty mask."""
    rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    cols = np.flatnonzero(np.asarray(mask).any(axis=0))
    if rows.size == 0:
        return None
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def _simplify(contour: np.ndarray, tolerance_px: float) -> np.ndarray:
    """approxPolyDP at ``tolerance_px``; keeps the raw contour if that would leave < 3 points."""
    if tolerance_px > 0:
        simplified = cv2.approxPolyDP(contour, tolerance_px, True)
        if len(simplified) >= 3:
            return simplified.reshape(-1, 2)
    return contour.reshape(-1, 2)


def _oriented(ring: np.ndarray, positive: bool) -> np.ndarray:
    """Return ``ring`` walking so that its OpenCV signed area is positive (or negative).

    Outer rings and holes get opposite orientations; that is all the cut needs.
    """
    signed = cv2.contourArea(ring.astype(np.float32).reshape(-1, 1, 2), oriented=True)
    return ring if (signed > 0) == positive else ring[::-1]


def _bridge_hole(outer: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Join ``hole`` into ``outer`` with a zero-width cut between their closest vertices."""
    distances = ((outer[:, None, :] - hole[None, :, :]) ** 2).sum(axis=2)
    outer_i, hole_j = np.unravel_index(int(np.argmin(distances)), distances.shape)
    hole_loop = np.concatenate([hole[hole_j:], hole[: hole_j + 1]])
    return np.concatenate([outer[: outer_i + 1], hole_loop, outer[outer_i:]])


def mask_to_polygons(mask: np.ndarray, tolerance_px: float = 1.0, min_area_px: float = 16.0,
                     max_parts: int | None = None, min_part_fraction: float = 0.0) -> list[np.ndarray]:
    """Trace a boolean mask into Label Studio-ready polygons (pixel coordinates).

    * one polygon per connected part (8-connectivity), largest first;
    * holes are bridged into their outer ring by a zero-width cut (see module doc);
    * vertices simplified with ``cv2.approxPolyDP(tolerance_px)`` (0 keeps every corner);
    * the outline runs a quarter pixel inside the boundary pixels (traced on the mask at
      twice the resolution), so every pixel centre is clearly inside or outside it:
      :func:`polygons_to_mask` gives the mask back exactly (without simplification), and
      Label Studio draws it within a quarter pixel of the mask's edge;
    * parts and holes whose outline encloses less than ``min_area_px`` are dropped (an n x m
      block encloses (n - 0.5) * (m - 0.5) pixels, a single pixel 0.25);
    * every polygon has >= 3 vertices;
    * parts smaller than ``min_part_fraction`` of the largest part are dropped, and at most
      ``max_parts`` (largest first) are kept: a speckled mask must not become thousands of
      regions that the labeling UI cannot draw; likewise a part keeps the holes of at least
      ``min_part_fraction`` of its own area, at most ``max_parts`` of them (largest first).

    Returns float arrays of shape (N, 2) holding (x, y).
    """
    binary = np.asarray(mask).astype(bool)
    if binary.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {binary.shape}")
    box = mask_to_box(binary)
    if box is None:
        return []
    left, top = int(box[0]), int(box[1])
    crop = binary[top:int(box[3]), left:int(box[2])].astype(np.uint8)
    doubled = cv2.resize(crop, (crop.shape[1] * 2, crop.shape[0] * 2),
                         interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    offset = np.array([left, top], dtype=np.float64)
    links = hierarchy[0]  # [next, previous, first_child, parent]
    tolerance = 2.0 * tolerance_px
    parts = [(cv2.contourArea(contour) / 4.0, index) for index, contour in enumerate(contours)
             if links[index][3] == -1 and len(contour) >= 3]  # outer rings; holes go with their parent
    parts = sorted((item for item in parts if item[0] >= min_area_px), key=lambda item: -item[0])
    if parts:  # chosen before any hole is bridged: bridging is the costly step on a speckled mask
        smallest = parts[0][0] * min_part_fraction
        parts = [item for item in parts if item[0] >= smallest][:max_parts]
    polygons = []
    for area, index in parts:
        ring = _oriented(_simplify(contours[index], tolerance), positive=True)
        holes = _holes_of(index, contours, links, max(min_area_px, area * min_part_fraction), max_parts)
        for hole in holes:
            ring = _bridge_hole(ring, _oriented(_simplify(hole, tolerance), positive=False))
        polygons.append((ring.astype(np.float64) + 0.5) / 2.0 + offset)
    return polygons


def _holes_of(index: int, contours: Sequence[np.ndarray], links: np.ndarray, min_area_px: float,
              max_holes: int | None) -> list[np.ndarray]:
    """The holes of outer ring ``index`` enclosing at least ``min_area_px``, largest first, at most ``max_holes``."""
    holes = []
    child = links[index][2]
    while child != -1:
        hole = contours[child]
        area = cv2.contourArea(hole) / 4.0
        if len(hole) >= 3 and area >= min_area_px:
            holes.append((area, hole))
        child = links[child][0]
    holes.sort(key=lambda item: -item[0])
    return [hole for _, hole in holes[:max_holes]]


def polygons_to_mask(polygons: Iterable[Sequence[Sequence[float]]], height: int,
                     width: int) -> np.ndarray:
    """Rasterise continuous pixel-coordinate polygons into a bool (height, width) mask.

    A pixel is set when its centre (col + 0.5, row + 0.5) is inside a polygon by the
    even-odd rule (a centre exactly on a left/top edge counts as inside, on a right/bottom
    edge as outside, like :func:`box_to_mask`). Several polygons are united. Bridged holes
    stay empty; the outlines from :func:`mask_to_polygons` give back their mask exactly.
    Polygons of < 3 points are ignored.
    """
    check_size(width, height)
    canvas = np.zeros((height, width), dtype=bool)
    for polygon in polygons:
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if len(points) >= 3:
            canvas |= _even_odd_fill(points, height, width)
    return canvas


def _even_odd_fill(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies inside one closed polygon (even-odd rule, exact)."""
    filled = np.zeros((height, width), dtype=bool)
    start, end = points, np.roll(points, -1, axis=0)
    slanted = start[:, 1] != end[:, 1]  # horizontal edges never cross a row centre line
    start, end = start[slanted], end[slanted]
    low_y, high_y = np.minimum(start[:, 1], end[:, 1]), np.maximum(start[:, 1], end[:, 1])
    centres_x = np.arange(width) + 0.5
    first_row = max(0, int(np.floor(points[:, 1].min() - 0.5)))
    last_row = min(height - 1, int(np.ceil(points[:, 1].max())))
    for row in range(first_row, last_row + 1):
        y = row + 0.5
        crossing = (low_y <= y) & (y < high_y)  # half-open: a shared vertex counts once
        if not crossing.any():
            continue
        a, b = start[crossing], end[crossing]
        xs = np.sort(a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1]))
        filled[row] = np.searchsorted(xs, centres_x, side="right") % 2 == 1
    return filled


def box_to_mask(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """Bool mask of the pixels whose centre lies in the pixel xyxy box ``[x0, x1) x [y0, y1)``."""
    check_size(width, height)
    x0, y0, x1, y1 = (float(v) for v in box)
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    inside_cols = (cols >= min(x0, x1)) & (cols < max(x0, x1))
    inside_rows = (rows >= min(y0, y1)) & (rows < max(y0, y1))
    return inside_rows[:, None] & inside_cols[None, :]


# --------------------------------------------------------------------------- brush RLE and COCO RLE


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """Bool (H, W) mask -> Label Studio brush RLE (``value.rle``), via the SDK's ``mask2rle``.

    The mask is written as 0/255 (Label Studio draws the alpha channel; 0/1 would be
    nearly invisible). Its shape must be (original_height, original_width).
    """
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {array.shape}")
    return [int(v) for v in mask2rle(np.where(array.astype(bool), 255, 0).astype(np.uint8))]


def brush_rle_to_mask(rle: Sequence[int], width: int, height: int,
                      threshold: int = 128) -> np.ndarray:
    """Label Studio brush RLE -> bool (height, width) mask (alpha channel >= ``threshold``).

    Raises ValueError when the RLE does not decode to ``width * height`` RGBA pixels (wrong
    original_width / original_height, or a corrupt RLE).
    """
    check_size(width, height)
    try:
        flat = decode_rle(list(rle))
    except (ValueError, IndexError, TypeError) as error:
        raise ValueError(f"brush RLE does not decode: {error}") from error
    expected = width * height * 4
    if flat.size != expected:
        raise ValueError(f"brush RLE decodes to {flat.size} bytes, expected {expected} "
                         f"for {width}x{height} RGBA")
    return flat.reshape(height, width, 4)[:, :, 3] >= threshold


def coco_rle_to_mask(rle: Mapping) -> np.ndarray:
    """COCO RLE (compressed string/bytes counts, or uncompressed list counts) -> bool mask."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        encoded = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    else:
        raw = counts.encode("ascii") if isinstance(counts, str) else counts
        encoded = {"size": [height, width], "counts": raw}
    return coco_mask.decode(encoded).astype(bool)
