"""Smart KeyPointLabels: the clicks an annotator makes to prompt a mask and to fix it.

Label Studio gives a KeyPointLabels control a smart key point tool (a click is sent to the backend at once)
when the control is smart and Auto-Annotation is on, or always with ``smartOnly="true"``. The backend
serves a KeyPointLabels only when the config asks for it explicitly with ``smart="true"`` or
``smartOnly="true"``: a KeyPointLabels without either is a pose or landmark control whose points are
labels, not prompts (label_config/README.md). Read by :mod:`backend.studio.labeling`.
"""

from __future__ import annotations

from dataclasses import dataclass

_TRUE = {"true", "1", "yes", "on"}


@dataclass(frozen=True)
class KeyPointControl:
    """A smart KeyPointLabels on one Image: each click on it is a point prompt (Alt+click: a negative one)."""

    name: str
    to_name: str
    labels: tuple[str, ...] = ()  # its Label values: the label a click asks for
    smart_only: bool = False      # smartOnly="true": only the smart tool, every click goes to the backend


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


def is_smart_keypoints(tag_lowered: str, attrs: dict[str, str]) -> bool:
    """Whether this tag (lower-cased name, lower-cased attributes) is a KeyPointLabels to serve."""
    return tag_lowered == "keypointlabels" and (_is_true(attrs.get("smart")) or _is_true(attrs.get("smartonly")))


def keypoint_control(name: str, to_name: str, attrs: dict[str, str], label_values) -> KeyPointControl:
    return KeyPointControl(name=name, to_name=to_name, labels=tuple(label_values),
                           smart_only=_is_true(attrs.get("smartonly")))


def unserved_hint(tag_lowered: str) -> str:
    """What to add to the skip reason of a control this backend does not fill."""
    return ' (with smart="true" its clicks prompt masks)' if tag_lowered == "keypointlabels" else ""
