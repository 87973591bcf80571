"""TextArea results: per-region text tied to a shape by id, and whole-image text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.studio.labeling import TextAreaControl
from backend.studio.results.common import ShapeResultBuilder, new_region_id, region_result

_GEOMETRY_KEYS = ("x", "y", "width", "height", "rotation", "points", "closed")
# marks a text the backend wrote to tell the annotator something (a refused interactive call): never a
# prompt, a description or an expression when read back (readers.result_texts drops it)
MESSAGE_PREFIX = "⚠ NExT-Chat: "


def shape_geometry(shape_result: Mapping[str, Any]) -> dict[str, Any]:
    """The geometry part of a rectangle/polygon result's value (labels and RLE left out)."""
    value = shape_result.get("value", {})
    return {key: value[key] for key in _GEOMETRY_KEYS if key in value}


class RegionTextAreaResult(ShapeResultBuilder):
    """A ``perRegion="true"`` TextArea: text attached to the shape with the same id.

    Label Studio links per-region results only by a shared ``id`` (docs/label-studio.md);
    the shape's geometry is repeated in ``value`` as Label Studio's own export does.
    """

    result_type = "textarea"

    def build(self, text: str, region_id: str,
              geometry: Mapping[str, Any] | None = None) -> dict[str, Any]:
        value = {**dict(geometry or {}), "text": [str(text)]}
        return region_result(region_id=region_id, from_name=self.from_name,
                             to_name=self.to_name, result_type=self.result_type,
                             width=self.width, height=self.height, value=value)

    def attach(self, text: str, shape_result: Mapping[str, Any]) -> dict[str, Any]:
        """Text for an existing shape result: its id, its geometry."""
        return self.build(text, shape_result["id"], shape_geometry(shape_result))


class TextAreaResult:
    """A whole-image TextArea (prompt, question, caption, answer): ``value.text = [text]``."""

    result_type = "textarea"

    def __init__(self, from_name: str, to_name: str) -> None:
        self.from_name, self.to_name = from_name, to_name

    @classmethod
    def for_control(cls, control: TextAreaControl):
        return cls(control.name, control.to_name)

    def build(self, text: str, *, region_id: str | None = None, message: str | None = None) -> dict[str, Any]:
        """``text`` (none when empty) and, when given, a backend ``message`` as its own marked line."""
        texts = [str(text)] if str(text) else []
        if message:
            texts.append(MESSAGE_PREFIX + " ".join(message.split()))
        return {"id": region_id or new_region_id(), "from_name": self.from_name,
                "to_name": self.to_name, "type": self.result_type,
                "value": {"text": texts}, "readonly": False}
