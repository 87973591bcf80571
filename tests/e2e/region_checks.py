"""Independent checks that stored Label Studio results fit a label config (no backend code used).

`read_controls(xml)` lists the control tags of a config; `result_problems(result, controls, size)`
returns every way a list of result items breaks the rules of Label Studio 1.23 (docs/label-studio.md):
from_name/to_name/type of a control, labels from the config, percent coordinates in [0, 100],
polygons of >= 3 points, brush RLE that decodes to a mask of the image's size, per-region text tied
to a region of the same result, choices from the config (per-region ones tied to a region), bitmask PNGs
of the image's size, and for a list of images an item_index naming one. An empty list means the result fits.
"""

from __future__ import annotations

import base64
import io
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np
from label_studio_sdk.converter.brush import decode_rle
from PIL import Image

REGION_TYPES = ("rectanglelabels", "polygonlabels", "brushlabels", "bitmasklabels")
EPS = 1e-6


@dataclass
class Control:
    name: str
    type: str  # the result "type": the tag name in lower case
    to_name: str
    labels: set[str] = field(default_factory=set)
    per_region: bool = False
    data_key: str | None = None  # value="$key": labels / choices from the task data
    multiple: bool = False  # Choices choice="multiple"


def read_controls(label_config: str) -> dict[str, Control]:
    controls = {}
    for element in ET.fromstring(label_config).iter():
        kind = element.tag.lower()
        if kind not in (*REGION_TYPES, "textarea", "choices"):
            continue
        labels = {label.get("alias") or label.get("value") for label in element.iter("Label" if kind != "choices"
                                                                                      else "Choice")}
        per_region = element.get("perRegion", "false").lower() == "true"
        value = element.get("value", "")
        controls[element.get("name")] = Control(element.get("name"), kind, element.get("toName"), labels, per_region,
                                                value[1:] if value.startswith("$") else None,
                                                element.get("choice") == "multiple")
    return controls


def controls_for_task(controls: dict[str, Control], data: dict) -> dict[str, Control]:
    """The controls as the editor shows them for a task: task-data labels added where value="$key"."""
    return {name: Control(c.name, c.type, c.to_name, c.labels | {item["value"] for item in data.get(c.data_key, [])},
                          c.per_region, None, c.multiple) if c.data_key else c
            for name, c in controls.items()}

def in_percent(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and -EPS <= value <= 100 + EPS


def rectangle_problems(value: dict) -> list[str]:
    coords = [value.get(key) for key in ("x", "y", "width", "height")]
    if not all(in_percent(c) for c in coords):
        return [f"rectangle outside [0,100]: {coords}"]
    x, y, width, height = coords
    if x + width > 100 + 1e-3 or y + height > 100 + 1e-3:
        return [f"rectangle extends past the image: {coords}"]
    return []


def polygon_problems(value: dict) -> list[str]:
    points = value.get("points") or []
    if len(points) < 3:
        return [f"polygon with {len(points)} points"]
    bad = [p for p in points if len(p) != 2 or not all(in_percent(c) for c in p)]
    return [f"polygon points outside [0,100]: {bad[:3]}"] if bad else []


def brush_problems(value: dict, size: tuple[int, int]) -> list[str]:
    width, height = size
    if value.get("format") != "rle" or not isinstance(value.get("rle"), list):
        return ["brush value is not {format: rle, rle: [...]}"]
    decoded = np.asarray(decode_rle(value["rle"]))
    if decoded.size != width * height * 4:
        return [f"brush RLE decodes to {decoded.size} bytes, expected {width}x{height}x4={width * height * 4}"]
    alpha = decoded.reshape(height, width, 4)[:, :, 3]
    if not set(np.unique(alpha).tolist()) <= {0, 255}:
        return ["brush alpha values other than 0/255"]
    return []


def bitmask_problems(value: dict, size: tuple[int, int]) -> list[str]:
    url = value.get("imageDataURL")
    prefix = "data:image/png;base64,"
    if not isinstance(url, str) or not url.startswith(prefix):
        return ["bitmask value has no PNG data URL in imageDataURL"]
    with Image.open(io.BytesIO(base64.b64decode(url[len(prefix):]))) as image:
        if image.size != size:
            return [f"bitmask PNG is {image.size}, not the image's {size}"]
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
    return [] if alpha.max() == 255 else ["bitmask PNG is empty"]


def choices_problems(item: dict, control: Control, region_ids: set) -> list[str]:
    chosen = (item.get("value") or {}).get("choices")
    if not isinstance(chosen, list) or not chosen or not set(chosen) <= control.labels:
        return [f"choices {chosen} not from the config {sorted(control.labels)}"]
    if len(chosen) > 1 and not control.multiple:
        return [f"{len(chosen)} choices on a single-choice control"]
    if control.per_region and item.get("id") not in region_ids:
        return ["per-region choices not tied to a region of this result"]
    return []


def item_problems(item: dict, controls: dict[str, Control], size: tuple[int, int]) -> list[str]:
    control = controls.get(item.get("from_name"))
    where = f"{item.get('from_name')}/{item.get('id')}"
    if control is None:
        return [f"{where}: from_name not a control of the config"]
    problems = []
    if item.get("to_name") != control.to_name or item.get("type") != control.type:
        problems.append(f"{where}: to_name/type {item.get('to_name')}/{item.get('type')} do not fit the control")
    value = item.get("value") or {}
    if control.type in REGION_TYPES:
        if (item.get("original_width"), item.get("original_height")) != size:
            problems.append(f"{where}: original size {item.get('original_width')}x{item.get('original_height')}"
                            f" is not the image's {size[0]}x{size[1]}")
        labels = value.get(control.type)
        if not labels or not set(labels) <= control.labels:
            problems.append(f"{where}: labels {labels} not from the config {sorted(control.labels)}")
        check = {"rectanglelabels": rectangle_problems, "polygonlabels": polygon_problems}.get(control.type)
        if control.type == "bitmasklabels":
            problems += [f"{where}: {p}" for p in bitmask_problems(value, size)]
        else:
            problems += [f"{where}: {p}" for p in (check(value) if check else brush_problems(value, size))]
    elif control.type == "choices":
        pass  # checked with the whole result (per-region choices need the region ids)
    else:
        text = value.get("text")
        if not (isinstance(text, list) and text and all(isinstance(t, str) for t in text)):
            problems.append(f"{where}: textarea text {text!r} is not a non-empty list of strings")
    score = item.get("score")
    if score is not None and not (isinstance(score, (int, float)) and math.isfinite(score)):
        problems.append(f"{where}: score {score!r}")
    return problems


def result_problems(result: list[dict], controls: dict[str, Control],
                    size: tuple[int, int] | dict[int, tuple[int, int]]) -> list[str]:
    """`size`: the image's (width, height), or item_index -> (width, height) for a list of images, where every
    region result must name its image with item_index."""
    problems = []
    region_ids = {item.get("id") for item in result if item.get("type") in REGION_TYPES}
    for item in result:
        item_size = size
        if isinstance(size, dict):
            if item.get("item_index") not in size and (item.get("type") in REGION_TYPES or item.get("original_width")):
                problems.append(f"{item.get('from_name')}/{item.get('id')}: item_index {item.get('item_index')!r}"
                                f" names no image of the task {sorted(size)}")
                continue
            item_size = size.get(item.get("item_index"), (0, 0))
        problems += item_problems(item, controls, item_size)
        control = controls.get(item.get("from_name"))
        if control is not None and control.type == "choices":
            problems += [f"{control.name}/{item.get('id')}: {p}" for p in choices_problems(item, control, region_ids)]
            continue
        if control is not None and control.per_region and item.get("id") not in region_ids:
            problems.append(f"{control.name}/{item.get('id')}: per-region text not tied to a region of this result")
    return problems
