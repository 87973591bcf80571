"""Fields every Label Studio region result shares, and region ids."""

from __future__ import annotations

import math
import secrets
from typing import Any

from backend.studio.geometry import check_size


def new_region_id() -> str:
    """A fresh 10-character region id, like the ones Label Studio makes."""
    return secrets.token_hex(5)


def clamp_score(score: float | None) -> float | None:
    """Scores go to Label Studio in [0, 1] (SAM's IoU guess can overshoot); NaN -> None."""
    if score is None or math.isnan(float(score)):
        return None
    return min(1.0, max(0.0, float(score)))


def region_result(*, region_id: str, from_name: str, to_name: str, result_type: str,
                  width: int, height: int, value: dict[str, Any],
                  score: float | None = None) -> dict[str, Any]:
    """A region result as Label Studio 1.23 stores it (docs/label-studio.md)."""
    result: dict[str, Any] = {
        "id": region_id,
        "from_name": from_name,
        "to_name": to_name,
        "type": result_type,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": value,
        "readonly": False,
    }
    clamped = clamp_score(score)
    if clamped is not None:
        result["score"] = clamped
    return result


class ShapeResultBuilder:
    """Base of the per-control-tag builders: one control (from_name -> to_name) on an image of known
    natural size. Subclasses set ``result_type`` and add ``build``."""

    result_type = ""

    def __init__(self, from_name: str, to_name: str, width: int, height: int) -> None:
        check_size(width, height)
        self.from_name, self.to_name = from_name, to_name
        self.width, self.height = int(width), int(height)

    @classmethod
    def for_control(cls, control, width: int, height: int, **options):
        """The builder for a parsed ``backend.studio.labeling.RegionControl``."""
        return cls(control.name, control.to_name, width, height, **options)

