"""Choices results: a whole-image classification, or a region's attributes tied to it by id.

Whole image: ``{"type": "choices", "value": {"choices": [...]}}``. Per region (``perRegion="true"``):
the same ``id`` as the region's shape, its geometry repeated in ``value`` and its ``original_width`` /
``original_height``, as Label Studio's own per-region results are stored (docs/label-studio.md).
A choice with an ``alias`` is stored as its alias, which is what Label Studio's editor selects it by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backend.studio.results.common import clamp_score, new_region_id, region_result
from backend.studio.results.textarea import shape_geometry


class ChoicesResult:
    """Builds results for one Choices control."""

    result_type = "choices"

    def __init__(self, from_name: str, to_name: str) -> None:
        self.from_name, self.to_name = from_name, to_name

    @classmethod
    def for_control(cls, control):
        """The builder for a parsed ``backend.studio.choices_control.ChoicesControl``."""
        return cls(control.name, control.to_name)

    def build(self, values: Sequence[str], *, score: float | None = None,
              region_id: str | None = None) -> dict[str, Any]:
        """A whole-image result selecting ``values``."""
        result: dict[str, Any] = {"id": region_id or new_region_id(), "from_name": self.from_name,
                                  "to_name": self.to_name, "type": self.result_type,
                                  "value": {"choices": [str(value) for value in values]}, "readonly": False}
        clamped = clamp_score(score)
        if clamped is not None:
            result["score"] = clamped
        return result

    def attach(self, values: Sequence[str], shape_result: Mapping[str, Any], *,
               score: float | None = None) -> dict[str, Any]:
        """A per-region result for an existing shape result: its id, geometry and image size."""
        value = {**shape_geometry(shape_result), "choices": [str(value) for value in values]}
        return region_result(region_id=shape_result["id"], from_name=self.from_name, to_name=self.to_name,
                             result_type=self.result_type, width=shape_result["original_width"],
                             height=shape_result["original_height"], value=value, score=score)
