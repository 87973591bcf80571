"""Label mapping made explicit: backend/studio/phrases.py is the one place where model phrases meet config labels.

Labels as a config spells them (spaces, hyphens, parentheses, digits, ``&``) against phrases as the
model writes them (case, plurals, articles, adjectives, typos); ``labels_for_region`` (the entry
point every workflow uses); and, through the app, that pre-annotation captions, stored and typed
questions and typed prompts all get their labels from it (no second matcher).
"""

from __future__ import annotations

import pytest

from backend.studio.labeling import parse_label_config
from backend.studio.phrases import LabelMatch, PhraseMatcher, labels_for_region
from tests.backend.fakes import (
    FakeNextChat,
    data_uri,
    drawn_box_context,
    label_config,
    ls_task,
    make_app,
    png_bytes,
    predict_body,
    textarea_context,
)

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image">
    <Label value="traffic light" predicted_values="stop light, signal"/>
    <Label value="T-shirt" synonyms="tee"/>
    <Label value="person (adult)" predicted_values="grown-up, adult person, woman"/>
    <Label value="5G tower"/>
    <Label value="R&amp;D lab"/>
    <Label value="Fire Hydrant"/>
  </RectangleLabels>
  <PolygonLabels name="outline" toName="image">
    <Label value="traffic light"/>
    <Label value="anything else" catch_all="true"/>
  </PolygonLabels>
</View>"""
BOX, OUTLINE = parse_label_config(CONFIG).targets[0].region_controls


def label_of(phrase, control=BOX, **options):
    found = PhraseMatcher(control.labels, **options).match(phrase)
    return None if found is None else (found.label.value, found.how)


def test_config_attributes_are_read_as_written():
    assert [label.value for label in BOX.labels] == [
        "traffic light", "T-shirt", "person (adult)", "5G tower", "R&D lab", "Fire Hydrant"]
    assert BOX.label("traffic light").synonyms == ("stop light", "signal")
    assert BOX.label("person (adult)").synonyms == ("grown-up", "adult person", "woman")
    assert OUTLINE.catch_all.value == "anything else"


@pytest.mark.parametrize(("phrase", "expected"), [
    # case, articles, trailing punctuation, repeated spaces
    ("TRAFFIC LIGHT", ("traffic light", "exact")),
    ("the  Traffic light.", ("traffic light", "exact")),
    ("a t-SHIRT", ("T-shirt", "exact")),
    ("Person (Adult)", ("person (adult)", "exact")),
    ("5g Tower", ("5G tower", "exact")),
    ("the r&d LAB", ("R&D lab", "exact")),
    ("fire hydrant", ("Fire Hydrant", "exact")),
    # plurals; "-", "_" and "/" read as spaces
    ("traffic lights", ("traffic light", "plural")),
    ("T-Shirts", ("T-shirt", "plural")),
    ("t shirts", ("T-shirt", "plural")),
    ("5G Towers", ("5G tower", "plural")),
    ("fire_hydrants", ("Fire Hydrant", "plural")),
    ("R&D labs", ("R&D lab", "plural")),
    # synonyms from predicted_values / synonyms, with spaces, hyphens, plurals and case
    ("Stop Lights", ("traffic light", "synonym")),
    ("a signal", ("traffic light", "synonym")),
    ("tees", ("T-shirt", "synonym")),
    ("Grown-ups", ("person (adult)", "synonym")),
    ("women", ("person (adult)", "synonym")),
])
def test_labels_with_spaces_and_special_characters(phrase, expected):
    assert label_of(phrase) == expected


@pytest.mark.parametrize(("phrase", "expected"), [
    ("two red traffic lights", "traffic light"),
    ("a woman in a striped T-shirt", "person (adult)"),  # the earliest mention wins
    ("a striped T-shirt on a woman", "T-shirt"),
    ("three adult persons", "person (adult)"),  # plural of a synonym with a space
    ("the tall 5G towers behind", "5G tower"),
    ("a man's t-shirt", "T-shirt"),
])
def test_phrases_that_contain_a_label(phrase, expected):
    assert label_of(phrase) == (expected, "contains")


def test_similarity_is_a_fallback_that_can_be_switched_off():
    assert label_of("trafic lihgt") == ("traffic light", "similar")
    assert label_of("trafic lihgt", similarity=False) is None
    assert label_of("trafic lihgt", OUTLINE, similarity=False) == ("anything else", "catch-all")
    # half a label is not similar enough, and no label is contained whole
    assert label_of("tower") is None and label_of("5G") is None and label_of("light") is None


def test_catch_all_or_nothing():
    assert label_of("a kite") is None  # "box" has no catch-all label
    assert label_of("a kite", OUTLINE) == ("anything else", "catch-all")
    assert label_of("anything else", OUTLINE) == ("anything else", "catch-all")


# ----------------------------------------------------------------------------- labels_for_region
def test_labels_for_region_matches_each_control_on_its_own():
    controls = (BOX, OUTLINE)
    assert labels_for_region(controls, "two traffic lights") == {"box": "traffic light", "outline": "traffic light"}
    assert labels_for_region(controls, "a woman") == {"box": "person (adult)", "outline": "anything else"}
    assert labels_for_region(controls, "a kite") == {"outline": "anything else"}  # not drawn on "box"
    assert labels_for_region([BOX], "a kite") == {}


def test_labels_for_region_chosen_label_and_fallback():
    controls = (BOX, OUTLINE)
    # the annotator's label wins where a control has it; elsewhere the phrase decides
    assert labels_for_region(controls, "a woman", chosen="T-shirt") == {"box": "T-shirt", "outline": "anything else"}
    assert labels_for_region(controls, "a woman", chosen="traffic light") == {
        "box": "traffic light", "outline": "traffic light"}
    # fallback: the first label that is not a catch-all, only where nothing else applies
    assert labels_for_region(controls, "a kite", fallback_first=True) == {"box": "traffic light",
                                                                         "outline": "anything else"}
    assert labels_for_region(controls, "trafic lihgt", similarity=False) == {"outline": "anything else"}


# ----------------------------------------------------------------------------- no second matcher
class RecordingMatcher:
    """Replaces PhraseMatcher.match: records each phrase and answers with the control's last label."""

    def __init__(self):
        self.phrases: list[str | None] = []

    def __call__(self, matcher: PhraseMatcher, phrase):
        self.phrases.append(phrase)
        label = matcher.labels[-1]
        return LabelMatch(label, "test", 1.0, label.value)


@pytest.fixture
def recording(monkeypatch):
    recorder = RecordingMatcher()
    monkeypatch.setattr(PhraseMatcher, "match", lambda self, phrase: recorder(self, phrase))
    return recorder


def predict(config_name, task_data=None, context=None):
    task = ls_task(1, data_uri(png_bytes(64, 48)), **(task_data or {}))
    reply = make_app(FakeNextChat()).test_client().post(
        "/predict", json=predict_body([task], label_config(config_name), context))
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["results"][0]["result"]


def shape_labels(result) -> set[str]:
    return {item["value"][item["type"]][0] for item in result if item["type"] != "textarea"}


def test_caption_phrases_are_labelled_by_phrases_py(recording):
    result = predict("grounded_caption.xml")
    assert recording.phrases == ["a man", "a man", "a red car", "a red car"]  # once per control
    assert shape_labels(result) == {"object"}  # what the (replaced) matcher said, nothing else


@pytest.mark.parametrize("how", ["stored", "typed"])
def test_answer_phrases_are_labelled_by_phrases_py(recording, how):
    question = "what is on the sofa?"
    if how == "stored":
        result = predict("region_qa.xml", task_data={"question": question})
    else:
        result = predict("region_qa.xml", context=textarea_context(question, from_name="question"))
    assert recording.phrases == ["the dog"]
    assert shape_labels(result) == {"object"}


def test_typed_prompt_is_labelled_by_phrases_py(recording):
    result = predict("referring_prompt.xml", context=textarea_context("a man in a red shirt"))
    assert recording.phrases == ["a man in a red shirt"] * 2
    assert shape_labels(result) == {"object"}
    # a label named in the prompt is the annotator's choice: no matching needed
    recording.phrases.clear()
    result = predict("referring_prompt.xml", context=textarea_context("dog: the small one"))
    assert recording.phrases == [] and shape_labels(result) == {"dog"}


def test_drawn_box_keeps_its_label_and_maps_it_where_missing(recording):
    result = predict("region_descriptions.xml", context=drawn_box_context(label="person"))
    assert recording.phrases == [] and shape_labels(result) == {"person"}  # both controls have "person"
    result = predict("region_descriptions.xml", context=drawn_box_context(label="region"))
    assert shape_labels(result) == {"region"}


def test_similarity_switch_from_the_config():
    from backend.studio.labeling import parse_label_config
    from backend.studio.phrases import labels_for_region

    xml = """<View><Image name="image" value="$image"/>
      <RectangleLabels name="on" toName="image"><Label value="bicycle"/></RectangleLabels>
      <RectangleLabels name="off" toName="image" matchSimilarity="false"><Label value="bicycle"/></RectangleLabels>
      <RectangleLabels name="strict" toName="image" minSimilarity="0.99"><Label value="bicycle"/></RectangleLabels>
    </View>"""
    controls = parse_label_config(xml).targets[0].region_controls
    assert labels_for_region(controls, "bicycel") == {"on": "bicycle"}
