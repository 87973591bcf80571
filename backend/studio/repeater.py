"""``<Repeater on="$pages">``: the config Label Studio's editor builds for one task.

The editor repeats the Repeater's children once per item of the task data list named by ``on``,
replacing ``indexFlag`` (default ``{{idx}}``) by the item's index in every attribute of the copies (the
first occurrence per attribute, as the editor's string replace does), and puts the copies in Views.
``<Image name="page_{{idx}}" value="$pages[{{idx}}].url"/>`` becomes ``page_0``, ``page_1``... reading
``pages[0].url``, ``pages[1].url``; the controls that point at ``page_{{idx}}`` follow. The backend does
the same per task before reading the config (``expand_repeaters``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from xml.etree import ElementTree

from backend.studio.config_parts import attrs_of, data_value, read_xml, tag_of, variable_key

DEFAULT_INDEX_FLAG = "{{idx}}"
MAX_REPEATED_ITEMS = 1000  # copies over all Repeaters of one task: bounds the config a task can make


class RepeaterError(ValueError):
    """A task's Repeater data cannot be expanded; the message is one line."""


def is_repeater(element: ElementTree.Element) -> bool:
    return tag_of(element).lower() == "repeater"


def has_repeater(root: ElementTree.Element) -> bool:
    return any(is_repeater(element) for element in root.iter())


def expand_repeaters(xml_text: str, data: Mapping) -> str:
    """The config with every Repeater expanded for this task's ``data`` (the XML as text)."""
    root = read_xml(xml_text)
    budget = [MAX_REPEATED_ITEMS]
    _expand_children(root, data, budget)
    return ElementTree.tostring(root, encoding="unicode")


def _expand_children(parent: ElementTree.Element, data: Mapping, budget: list[int]) -> None:
    children = []
    for child in list(parent):
        if is_repeater(child):
            children.append(_expand(child, data, budget))
        else:
            _expand_children(child, data, budget)
            children.append(child)
    parent[:] = children


def _expand(repeater: ElementTree.Element, data: Mapping, budget: list[int]) -> ElementTree.Element:
    attrs = attrs_of(repeater)
    key = variable_key(attrs.get("on"))
    items = data_value(data, key, []) if key else []
    count = len(items) if isinstance(items, list) else 0
    budget[0] -= count
    if budget[0] < 0:
        raise RepeaterError(f"Repeater on={attrs.get('on')!r}: more than {MAX_REPEATED_ITEMS} repeated items in a task")
    flag = attrs.get("indexflag") or DEFAULT_INDEX_FLAG
    view = ElementTree.Element("View")
    for index in range(count):
        copies = ElementTree.SubElement(view, "View")
        for child in repeater:
            clone = copy.deepcopy(child)
            for element in clone.iter():
                for name, value in element.attrib.items():
                    element.set(name, value.replace(flag, str(index), 1))
            copies.append(clone)
    _expand_children(view, data, budget)  # nested Repeaters, their flags already replaced once
    return view
