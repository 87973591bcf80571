"""RectangleLabels results: a pixel box -> ``{"type": "rectanglelabels", ...}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.geometry import pixel_box_to_percent
from backend.labeling import RegionControl
from backend.results.common import check_size, new_region_id, region_result


class RectangleLabelsResult:
    """Builds results for one RectangleLabels control on an image of known natural size."""

    result_type = "rectanglelabels"

    def __init__(self, from_name: str, to_name: str, width: int, height: int) -> None:
        check_size(width, height)
        self.from_name, self.to_name = from_name, to_name
        self.width, self.height = int(width), int(height)

    @classmethod
    def for_control(cls, control: RegionControl, width: int, height: int):
        return cls(control.name, control.to_name, width, height)

    def build(self, box: Sequence[float], label: str, *, score: float | None = None,
              region_id: str | None = None) -> dict[str, Any]:
        """Pixel xyxy ``box`` (clipped to the image) labelled ``label``."""
        value = pixel_box_to_percent(box, self.width, self.height)
        value[self.result_type] = [label]
        return region_result(region_id=region_id or new_region_id(), from_name=self.from_name,
                             to_name=self.to_name, result_type=self.result_type,
                             width=self.width, height=self.height, value=value, score=score)
