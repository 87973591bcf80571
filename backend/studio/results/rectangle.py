"""RectangleLabels results: a pixel box -> ``{"type": "rectanglelabels", ...}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.studio.geometry import pixel_box_to_percent
from backend.studio.results.common import ShapeResultBuilder, new_region_id, region_result


class RectangleLabelsResult(ShapeResultBuilder):
    """Builds results for one RectangleLabels control on an image of known natural size."""

    result_type = "rectanglelabels"

    def build(self, box: Sequence[float], label: str, *, score: float | None = None,
              region_id: str | None = None) -> dict[str, Any]:
        """Pixel xyxy ``box`` (clipped to the image) labelled ``label``."""
        value = pixel_box_to_percent(box, self.width, self.height)
        value[self.result_type] = [label]
        return region_result(region_id=region_id or new_region_id(), from_name=self.from_name,
                             to_name=self.to_name, result_type=self.result_type,
                             width=self.width, height=self.height, value=value, score=score)
