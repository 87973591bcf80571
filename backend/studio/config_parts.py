"""Pieces every label-config reader shares: XML attributes, ``<Label>``/``<Choice>`` children, task data paths.

The readers (``backend.studio.labeling`` for the whole config, ``backend.studio.choices_control`` for
``<Choices>``, ``backend.studio.repeater`` for ``<Repeater>``) import from here, so none of them imports
another. Attribute names are matched case-insensitively, as Label Studio's editor does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from xml.etree import ElementTree

_TRUE = {"true", "1", "yes", "on"}
# "$image", "$meta.labels", "$pages[0].url": a task data path (Label Studio resolves it like lodash's get)
_VARIABLE = re.compile(r"\s*\$([\w.\-\[\]]+)\s*")
_PATH_PART = re.compile(r"[^.\[\]]+|\[(\d+)\]")


class LabelConfigError(ValueError):
    """The labeling config is not readable XML; the message is one line, safe to return."""


@dataclass(frozen=True)
class Label:
    """One ``<Label>`` of a region control (or one ``<Choice>`` of a Choices control)."""

    value: str
    prompt: str | None = None
    synonyms: tuple[str, ...] = ()
    catch_all: bool = False
    alias: str | None = None  # a Choice's result carries its alias when it has one (Label Studio's rule)

    @property
    def referring_expression(self) -> str:
        """Text to ground for this label: its ``prompt`` attribute, else its value."""
        return self.prompt or self.value

    @property
    def result_value(self) -> str:
        """What a ``choices`` result holds for this choice: its alias, else its value."""
        return self.alias or self.value


def read_xml(xml_text: str) -> ElementTree.Element:
    if not isinstance(xml_text, str) or not xml_text.strip():
        raise LabelConfigError("labeling config is empty")
    if re.search(r"<!(DOCTYPE|ENTITY)", xml_text, flags=re.IGNORECASE):
        raise LabelConfigError("labeling config must not contain a DTD or entity declarations")
    try:
        return ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as error:
        raise LabelConfigError(f"labeling config is not valid XML: {error}") from None


def attrs_of(element: ElementTree.Element) -> dict[str, str]:
    return {key.lower(): value for key, value in element.attrib.items()}


def is_true(value, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


def split_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


def variable_key(value: str | None) -> str | None:
    """``"$image"`` -> ``"image"``, ``"$pages[0].url"`` -> ``"pages[0].url"``; a literal value -> None."""
    match = _VARIABLE.fullmatch(value or "")
    return match.group(1) if match else None


def tag_of(element: ElementTree.Element) -> str:
    return element.tag if isinstance(element.tag, str) else ""


def label_from_attrs(attrs: Mapping[str, object]) -> Label | None:
    """A Label from ``<Label>``/``<Choice>`` attributes or a dynamic-label object of the task data
    (keys case-insensitive); None without a non-empty string ``value``."""
    lowered = {str(key).lower(): item for key, item in attrs.items()}
    value = lowered.get("value")
    if not isinstance(value, str) or not value.strip():
        return None
    synonyms = _text_list(lowered.get("predicted_values")) + _text_list(lowered.get("synonyms"))
    prompt = lowered.get("prompt")
    alias = lowered.get("alias")
    return Label(value=value.strip(), prompt=prompt.strip() or None if isinstance(prompt, str) else None,
                 synonyms=tuple(dict.fromkeys(synonyms)), catch_all=is_true(lowered.get("catch_all")),
                 alias=alias.strip() or None if isinstance(alias, str) else None)


def _text_list(value) -> tuple[str, ...]:
    if isinstance(value, str):
        return split_list(value)
    if isinstance(value, (list, tuple)):
        return tuple(item.strip() for item in value if isinstance(item, str) and item.strip())
    return ()


def read_labels(element: ElementTree.Element, child_tag: str = "label") -> tuple[Label, ...]:
    """The ``<Label>`` (or ``child_tag``) elements anywhere under ``element``, in order."""
    labels = []
    for child in element.iter():
        if tag_of(child).lower() == child_tag:
            label = label_from_attrs(attrs_of(child))
            if label is not None:
                labels.append(label)
    return tuple(labels)


_MISSING = object()


def data_value(data: Mapping, path: str, default=None):
    """``data[path]`` when that key exists, else the value at the dotted / indexed path (``pages[1].url``),
    else ``default`` — how Label Studio reads ``$path`` from task data."""
    if not isinstance(data, Mapping):
        return default
    if path in data:
        return data[path]
    current = data
    for match in _PATH_PART.finditer(path):
        index, key = match.group(1), match.group(0)
        if index is not None:
            current = current[int(index)] if isinstance(current, list) and int(index) < len(current) else _MISSING
        else:
            current = current.get(key, _MISSING) if isinstance(current, Mapping) else _MISSING
        if current is _MISSING:
            return default
    return current
