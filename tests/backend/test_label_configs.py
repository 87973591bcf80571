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


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_interactive_tools_are_smart(name):
    """Auto-Annotation needs a smart tool: the first region control of each config has one."""
    target = parse_label_config(read(name)).targets[0]
    assert target.region_controls[0].smart


def test_label_attributes_in_configs():
    target = parse_label_config(read("all_in_one.xml")).targets[0]
    box = next(c for c in target.region_controls if c.kind == "rectanglelabels")
    assert box.label("dog").referring_expression == "a dog"
    assert "man" in box.label("person").synonyms
    assert box.catch_all.value == "object"
    assert [label.value for label in box.prompt_labels] == ["person", "car", "dog"]
    region_descriptions = parse_label_config(read("region_descriptions.xml")).targets[0]
    assert [c.smart for c in region_descriptions.region_controls] == [True, False]


def test_grounded_caption_phrases_map_to_config_labels():
    box = parse_label_config(read("grounded_caption.xml")).targets[0].region_controls[0]
    matcher = PhraseMatcher(box.labels)
    found = {phrase: matcher.match(phrase).label.value for phrase in
             ["a young man", "two dogs", "the red bus", "a bicycle", "a wooden bench"]}
    assert found == {"a young man": "person", "two dogs": "animal", "the red bus": "vehicle",
                     "a bicycle": "vehicle", "a wooden bench": "object"}
