"""BrushLabels results: a bool mask -> Label Studio brush RLE."""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.studio.geometry import mask_to_brush_rle
from backend.studio.results.common import ShapeResultBuilder, new_region_id, region_result


class BrushLabelsResult(ShapeResultBuilder):
    """Builds results for one BrushLabels control on an image of known natural size."""

    result_type = "brushlabels"

    def build(self, mask: np.ndarray, label: str, *, score: float | None = None,
              region_id: str | None = None) -> dict[str, Any] | None:
        """Brush result for a (height, width) mask; None when the mask is empty."""
        array = np.asarray(mask)
        if array.shape != (self.height, self.width):
            raise ValueError(f"mask shape {array.shape} is not the image size "
                             f"{(self.height, self.width)}")
        if not array.any():
            return None
        value = {"format": "rle", "rle": mask_to_brush_rle(array), self.result_type: [label]}
        return region_result(region_id=region_id or new_region_id(), from_name=self.from_name,
                             to_name=self.to_name, result_type=self.result_type,
                             width=self.width, height=self.height, value=value, score=score)
