"""PolygonLabels results: pixel polygons, or a mask traced into polygons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from backend.studio.geometry import mask_to_polygons, pixel_points_to_percent
from backend.studio.results.common import ShapeResultBuilder, new_region_id, region_result


class PolygonLabelsResult(ShapeResultBuilder):
    """Builds results for one PolygonLabels control on an image of known natural size."""

    result_type = "polygonlabels"

    def __init__(self, from_name: str, to_name: str, width: int, height: int,
                 tolerance_px: float = 1.0, min_area_px: float = 16.0, max_parts: int | None = None,
                 min_part_fraction: float = 0.0) -> None:
        super().__init__(from_name, to_name, width, height)
        self.tolerance_px, self.min_area_px = float(tolerance_px), float(min_area_px)
        self.max_parts, self.min_part_fraction = max_parts, float(min_part_fraction)

    def build(self, points: Sequence[Sequence[float]], label: str, *,
              score: float | None = None, region_id: str | None = None) -> dict[str, Any]:
        """One polygon from pixel (x, y) points (>= 3), labelled ``label``."""
        if len(points) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
        value = {"points": pixel_points_to_percent(points, self.width, self.height),
                 "closed": True, self.result_type: [label]}
        return region_result(region_id=region_id or new_region_id(), from_name=self.from_name,
                             to_name=self.to_name, result_type=self.result_type,
                             width=self.width, height=self.height, value=value, score=score)

    def build_from_mask(self, mask: np.ndarray, label: str, *,
                        score: float | None = None) -> list[dict[str, Any]]:
        """One result per part of ``mask`` (largest first; holes bridged; specks dropped).

        ``mask`` must be (height, width). An empty mask gives an empty list.
        """
        if np.asarray(mask).shape != (self.height, self.width):
            raise ValueError(f"mask shape {np.asarray(mask).shape} is not the image size "
                             f"{(self.height, self.width)}")
        polygons = mask_to_polygons(mask, self.tolerance_px, self.min_area_px, self.max_parts,
                                    self.min_part_fraction)
        return [self.build(polygon, label, score=score) for polygon in polygons]
