"""Every config in label_config/ is valid for Label Studio and reads as the backend expects."""

from __future__ import annotations

from pathlib import Path

import pytest
from label_studio_sdk.label_interface import LabelInterface

from backend.studio.labeling import parse_label_config
from backend.studio.phrases import PhraseMatcher

CONFIG_DIR = Path(__file__).resolve().parents[2] / "label_config"

# file -> (region controls as (name, kind, labels), TextAreas as {name: role})
EXPECTED = {
    "boxes_polygons.xml": (
        [("box", "rectanglelabels", ["person", "car", "dog", "traffic light"]),
         ("polygon", "polygonlabels", ["person", "car", "dog", "traffic light"])],
        {}),
    "brush.xml": (
        [("brush", "brushlabels", ["person", "car", "dog", "sky"])],
        {}),
    "referring_prompt.xml": (
        [("box", "rectanglelabels", ["person", "car", "dog", "object"]),
         ("polygon", "polygonlabels", ["person", "car", "dog", "object"])],
        {"prompt": "prompt"}),
    "region_descriptions.xml": (
        [("box", "rectanglelabels", ["region", "person", "object"]),
         ("polygon", "polygonlabels", ["region", "person", "object"])],
        {"description": "description"}),
    "grounded_caption.xml": (
        [("box", "rectanglelabels", ["person", "animal", "vehicle", "object"]),
         ("polygon", "polygonlabels", ["person", "animal", "vehicle", "object"])],
        {"caption": "caption", "phrase": "description"}),
    "region_qa.xml": (
        [("box", "rectanglelabels", ["person", "animal", "object"])],
        {"question": "question", "answer": "answer", "phrase": "description"}),
    "click_to_mask.xml": (
        [("mask", "brushlabels", ["person", "car", "dog", "object"])],
        {"prompt": "prompt"}),
    "all_in_one.xml": (
        [("box", "rectanglelabels", ["person", "car", "dog", "object"]),
         ("polygon", "polygonlabels", ["person", "car", "dog", "object"]),
         ("brush", "brushlabels", ["person", "car", "dog", "object"])],
        {"prompt": "prompt", "question": "question", "answer": "answer", "caption": "caption",
         "description": "description"}),
    "dynamic_labels.xml": (
        [("box", "rectanglelabels", []), ("polygon", "polygonlabels", ["person", "car"])],
        {}),
    "choices.xml": (
        [("box", "rectanglelabels", ["person", "car", "dog"])],
        {}),
    "multi_image.xml": (
        [("box", "rectanglelabels", ["person", "car", "dog"])],
        {"description": "description"}),
    "bitmask.xml": (
        [("mask", "bitmasklabels", ["person", "car", "dog", "sky"])],
        {}),
}
# file -> the task data key of its Image, when not "image"; whether it is a valueList
IMAGE_KEYS = {"multi_image.xml": ("images", True)}
# file -> Choices as (name, multiple, per_region, per_item, choices)
CHOICES = {
    "choices.xml": [("scene", False, False, False, ["street", "indoors", "park", "beach", "somewhere else"]),
                    ("contents", True, False, False, ["person", "car", "dog"]),
                    ("colour", False, True, False, ["red", "blue", "brown", "another colour"]),
                    ("state", True, True, False, ["occluded", "truncated"])],
    "multi_image.xml": [("page", False, False, True, ["street", "indoors", "somewhere else"])],
}


def read(name: str) -> str:
    return (CONFIG_DIR / name).read_text(encoding="utf-8")


def test_every_config_has_expectations():
    assert {path.name for path in CONFIG_DIR.glob("*.xml")} == set(EXPECTED)


def test_readme_documents_every_config():
    readme = (CONFIG_DIR / "README.md").read_text(encoding="utf-8")
    for name in EXPECTED:
        assert f"`{name}`" in readme


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_label_studio_sdk_accepts_config(name):
    """The SDK runs the checks Label Studio's server runs on a config (schema, names)."""
    LabelInterface(read(name)).validate()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_backend_reads_expected_controls(name):
    expected_controls, expected_areas = EXPECTED[name]
    config = parse_label_config(read(name))
    assert config.skipped == ()
    (target,) = config.targets
    assert (target.name, target.value_key, target.value_list) == ("image", *IMAGE_KEYS.get(name, ("image", False)))
    controls = [(c.name, c.kind, [label.value for label in c.labels]) for c in target.region_controls]
    assert controls == expected_controls
    assert {area.name: area.role for area in target.text_areas} == expected_areas
    assert all(area.per_region == (area.role == "description") for area in target.text_areas)
    assert [(c.name, c.multiple, c.per_region, c.per_item, [choice.value for choice in c.choices])
            for c in target.choices] == CHOICES.get(name, [])


def test_dynamic_labels_config_reads_its_labels_from_the_task():
    box = parse_label_config(read("dynamic_labels.xml")).targets[0].region_controls[0]
    assert box.labels_key == "labels" and box.labels == ()


def test_choice_prompts_in_configs():
    scene, contents, colour, state = parse_label_config(read("choices.xml")).targets[0].choices
    assert scene.prompt == "Where was this photo taken?" and scene.catch_all.value == "somewhere else"
    assert "city" in scene.choices[0].synonyms and contents.prompt is None
    assert colour.prompt == "What colour is [0]?"
    assert [choice.prompt for choice in state.choices] == ["Is [0] partly hidden behind something?",
                                                         "Is [0] cut off by the edge of the image?"]


# file -> the smart KeyPointLabels (name, labels, smartOnly) whose clicks prompt masks
CLICKS = {"click_to_mask.xml": [("click", ("person", "car", "dog", "object"), True)],
          "all_in_one.xml": [("click", ("person", "car", "dog", "object"), True)]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_smart_tools_are_ones_the_backend_answers(name):
    """Label Studio 1.23 has a smart tool for RectangleLabels, KeyPointLabels and BrushLabels, none for
    PolygonLabels; the backend answers drawn rectangles and clicks, so only those are smart in the configs
    (a smart brush stroke would get nothing back). Each config with an interactive workflow has one."""
    target = parse_label_config(read(name)).targets[0]
    assert all(control.kind == "rectanglelabels" for control in target.region_controls if control.smart)
    clicks = [(c.name, c.labels, c.smart_only) for c in target.click_controls]
    assert clicks == CLICKS.get(name, [])
    rectangles = [control for control in target.region_controls if control.smart]
    assert rectangles or clicks or name in ("brush.xml", "bitmask.xml")  # pre-annotation only
    for control in target.click_controls:  # a click's label names a label of every mask control
        masks = [c for c in target.region_controls if c.kind != "rectanglelabels"]
        assert masks and all(c.label(value) for c in masks for value in control.labels)


def test_label_attributes_in_configs():
    target = parse_label_config(read("all_in_one.xml")).targets[0]
    box = next(c for c in target.region_controls if c.kind == "rectanglelabels")
    assert box.label("dog").referring_expression == "a dog"
    assert "man" in box.label("person").synonyms
    assert box.catch_all.value == "object"
    assert [label.value for label in box.prompt_labels] == ["person", "car", "dog"]
    region_descriptions = parse_label_config(read("region_descriptions.xml")).targets[0]
    assert [c.smart for c in region_descriptions.region_controls] == [True, False]
    assert [c.preannotate for c in region_descriptions.region_controls] == [False, False]
    assert all(c.preannotate for c in target.region_controls)


def test_grounded_caption_phrases_map_to_config_labels():
    box = parse_label_config(read("grounded_caption.xml")).targets[0].region_controls[0]
    matcher = PhraseMatcher(box.labels)
    found = {phrase: matcher.match(phrase).label.value for phrase in
             ["a young man", "two dogs", "the red bus", "a bicycle", "a wooden bench"]}
    assert found == {"a young man": "person", "two dogs": "animal", "the red bus": "vehicle",
                     "a bicycle": "vehicle", "a wooden bench": "object"}
