"""Task data for a label config: what the demo, the screenshots and the end-to-end tests import.

``sample_task_data(config_xml, image_values)`` puts the image(s) under each Image's key (a ``valueList``
Image gets the whole list, any other Image the first value), a sample label list under each
dynamic-label key (``value="$labels"``, Label Studio's format) and the sample texts under the keys of
the prompt / question TextAreas, so every config in label_config/ has something to predict.
"""

from __future__ import annotations

from backend.studio.geometry import pixel_box_to_percent
from backend.studio.labeling import parse_label_config

# read by configs with a prompt / question TextArea (the keys are those TextAreas' names in label_config/)
SAMPLE_TEXT = {"prompt": "the red car", "question": "What is next to the red car?"}
# the per-task classes of dynamic_labels.xml; "car" is also one of the config's own labels
SAMPLE_LABELS = [{"value": "car"}, {"value": "dog", "prompt": "a brown dog"}, {"value": "traffic cone"}]


def sample_task_data(config_xml: str, image_values: list[str], texts: dict[str, str] | None = None) -> dict:
    """Task data for ``config_xml`` with these image URLs (see the module doc)."""
    config = parse_label_config(config_xml)
    texts = SAMPLE_TEXT if texts is None else texts
    data: dict = {}
    for target in config.targets:
        data[target.value_key] = list(image_values) if target.value_list else image_values[0]
        keys = [control.labels_key for control in target.region_controls]
        keys += [control.choices_key for control in target.choices]
        data.update({key: list(SAMPLE_LABELS) for key in keys if key})
        data.update({area.data_key: texts[area.name] for area in target.prompt_areas + target.question_areas
                     if area.name in texts})
    return data


def is_multi_image(config_xml: str) -> bool:
    """Whether a task of this config holds a list of images (a ``valueList`` Image)."""
    return any(target.value_list for target in parse_label_config(config_xml).targets)


def accepts_file_upload(config_xml: str) -> bool:
    """Whether Label Studio makes a task from an uploaded image file for this config: only when at most one
    named tag reads a ``value="$key"`` (its rule for direct uploads; a ``valueList`` is not counted)."""
    from xml.etree import ElementTree

    keys = {element.get("value") for element in ElementTree.fromstring(config_xml).iter()
            if element.get("name") and (element.get("value") or "").startswith("$")}
    return len(keys) <= 1


def drawn_box(region_id: str, from_name: str, to_name: str, box, width: int, height: int, label: str) -> dict:
    """A rectangle drawn by hand around the pixel xyxy ``box`` of a width x height image, labelled ``label``:
    the result item the labeling UI sends in an interactive context when the smart rectangle is used."""
    return drawn_rectangle(region_id, from_name, to_name, pixel_box_to_percent(box, width, height), width, height,
                           label)


def drawn_rectangle(region_id: str, from_name: str, to_name: str, percent: dict, width: int, height: int,
                    label: str, item_index: int | None = None) -> dict:
    """The same item from the rectangle's ``percent`` value (``x``, ``y``, ``width``, ``height``, ``rotation``,
    percent of a width x height image, as Label Studio stores it); ``item_index``: the page of a multi-image task."""
    item = {"id": region_id, "from_name": from_name, "to_name": to_name, "type": "rectanglelabels",
            "origin": "manual", "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"rotation": 0, **percent, "rectanglelabels": [label]}}
    if item_index is not None:
        item["item_index"] = item_index
    return item
