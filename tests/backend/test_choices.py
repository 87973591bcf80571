"""Choices filled by the real NExT-Chat code (tiny random checkpoint, answers forced per question).

Requests go through the Flask app with Label Studio 1.23's bodies; every question the backend asks is
checked word for word, every answer's mapping to the choices (backend.studio.phrases), the results'
shape (whole image / tied to a region by id, geometry repeated) and each prediction against the config
with label-studio-sdk's validator, the check Label Studio itself runs on predictions.
"""

from __future__ import annotations

import logging

import pytest
from label_studio_sdk.label_interface import LabelInterface

from tests.backend.fakes import (
    check_results_fit_config,
    drawn_box_context,
    label_config,
    ls_task,
    make_app,
    predict_body,
)
from tests.backend.scripted import ScriptedNextChat, config_as_shown, image_uri, load_tiny_model

CHOICES = label_config("choices.xml")
SCENE_Q = "Where was this photo taken? Answer with one of: street, indoors, park, beach."
CONTENTS_Q = 'Does "{}" describe the image? Answer yes or no.'
COLOUR_Q = "What colour is [0]? Answer with one of: red, blue, brown."
OCCLUDED_Q = "Is [0] partly hidden behind something? Answer yes or no."
TRUNCATED_Q = "Is [0] cut off by the edge of the image? Answer yes or no."
WIDTH, HEIGHT = 200, 120


@pytest.fixture(scope="module")
def nextchat(random_tiny_checkpoint):
    return load_tiny_model(random_tiny_checkpoint)


def predict(model, config, tasks, context=None) -> list[dict]:
    reply = make_app(model).test_client().post("/predict", json=predict_body(tasks, config, context))
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["results"]


def only(results: list[dict], name: str) -> list[dict]:
    return [item for item in results if item["from_name"] == name]


def sdk_errors(config: str, entry: dict) -> list:
    return LabelInterface(config).validate_prediction(entry, return_errors=True)


def test_image_and_region_choices_from_scripted_answers(nextchat):
    model = ScriptedNextChat(nextchat, {
        SCENE_Q: "It was taken on a city street.",
        CONTENTS_Q.format("person"): "Yes, there is a person.",
        CONTENTS_Q.format("car"): "No.",
        CONTENTS_Q.format("dog"): "Maybe.",
        COLOUR_Q: "It is red.",
        OCCLUDED_Q: "No, it is not.",
        TRUNCATED_Q: "Yes.",
    })
    (entry,) = predict(model, CHOICES, [ls_task(1, image_uri(WIDTH, HEIGHT))])
    result = entry["result"]

    (grounded,) = model.called("ground_many")
    assert grounded[2] == ("person", "car", "dog")  # the box control's labels, one batch
    regions = [region for found in grounded[3] for region in found]
    assert regions, "the tiny checkpoint locates something for each label"
    # three questions per region, its box as [0]; then at image level one listing question and one
    # yes/no question per choice
    asked = model.called("ask")
    per_region = 3 * len(regions)
    assert [call[2] for call in asked[:per_region]] == [COLOUR_Q, OCCLUDED_Q, TRUNCATED_Q] * len(regions)
    assert [call[3] for call in asked[:per_region:3]] == [[tuple(region.box)] for region in regions]
    image_level = asked[per_region:]
    assert [call[2] for call in image_level] == [SCENE_Q] + [CONTENTS_Q.format(c) for c in ("person", "car", "dog")]
    assert all(call[3] == [] for call in image_level)

    (scene,) = only(result, "scene")
    assert scene["value"] == {"choices": ["street"]} and scene["score"] == 1.0 and scene["type"] == "choices"
    (contents,) = only(result, "contents")
    assert contents["value"] == {"choices": ["person"]}  # "No." and "Maybe." select nothing
    boxes = only(result, "box")
    assert len(boxes) == len(regions)
    for name, expected in (("colour", ["red"]), ("state", ["truncated"])):
        attached = only(result, name)
        assert [item["id"] for item in attached] == [box["id"] for box in boxes]
        for item, box in zip(attached, boxes):
            assert item["value"]["choices"] == expected
            geometry = {k: v for k, v in item["value"].items() if k != "choices"}
            assert geometry == {k: v for k, v in box["value"].items() if k != "rectanglelabels"}
            assert (item["original_width"], item["original_height"]) == (WIDTH, HEIGHT)
    check_results_fit_config(result, CHOICES, WIDTH, HEIGHT)
    assert sdk_errors(CHOICES, entry) == []


def test_hedged_unknown_and_empty_answers(nextchat, caplog):
    model = ScriptedNextChat(nextchat, {SCENE_Q: "Maybe a street or a park."})
    config = CHOICES.replace('perRegion="true"', 'perRegion="true" whenLabelValue="bicycle"')
    with caplog.at_level(logging.INFO, logger="backend.predict"):
        (entry,) = predict(model, config, [ls_task(1, image_uri(WIDTH, HEIGHT))])
    (scene,) = only(entry["result"], "scene")
    assert scene["value"]["choices"] == ["street"] and scene["score"] == 0.5  # two choices named: half sure
    assert only(entry["result"], "contents") == []  # "Hard to say." three times, and no catch-all choice
    assert "'contents', 'dog': the answer 'Hard to say.' says neither yes nor no" in caplog.text
    # whenLabelValue names no label a region has: no region is asked about
    assert len(model.questions()) == 4

    model = ScriptedNextChat(nextchat, {SCENE_Q: "On the moon."})
    (entry,) = predict(model, config, [ls_task(1, image_uri(WIDTH, HEIGHT))])
    (scene,) = only(entry["result"], "scene")
    assert scene["value"]["choices"] == ["somewhere else"] and scene["score"] == 0.0  # the catch-all choice
    assert sdk_errors(config, entry) == []


REGION_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="car"/><Label value="dog"/></RectangleLabels>
  <Choices name="make" toName="image" perRegion="true" whenLabelValue="car" prompt="Which brand is it?"
           value="$brands">
    <Choice value="Other brand"/>
  </Choices>
  <Choices name="size" toName="image" perRegion="true" choice="multiple" prompt="How big is [0]?">
    <Choice value="small" alias="S"/><Choice value="large" alias="L"/>
  </Choices>
  <Choices name="bad" toName="image" perRegion="true" prompt="Is [3] bigger?"><Choice value="bigger"/></Choices>
</View>"""
BRANDS = [{"value": "Volvo"}, {"value": "Fiat", "predicted_values": "fiat 500"}]
MAKE_Q = "Regarding [0]: Which brand is it? Answer with one of: Other brand, Volvo, Fiat."


def test_region_questions_dynamic_choices_aliases_and_a_bad_prompt(nextchat, caplog):
    model = ScriptedNextChat(nextchat, {
        MAKE_Q: "A Fiat 500.",
        'How big is [0]? Is "small" a correct answer? Answer yes or no.': "Yes.",
        'How big is [0]? Is "large" a correct answer? Answer yes or no.': "No.",
    })
    task = ls_task(1, image_uri(WIDTH, HEIGHT), brands=BRANDS)
    with caplog.at_level(logging.WARNING, logger="backend.predict"):
        (entry,) = predict(model, REGION_CONFIG, [task])
    result = entry["result"]
    boxes = {item["value"]["rectanglelabels"][0]: item for item in only(result, "box")}
    assert set(boxes) == {"car", "dog"}
    (make,) = only(result, "make")  # whenLabelValue="car": only the car's region is asked its brand
    assert make["id"] == boxes["car"]["id"] and make["value"]["choices"] == ["Fiat"]  # a synonym from the task data
    assert model.questions().count(MAKE_Q) == 1
    assert sorted(item["id"] for item in only(result, "size")) == sorted(box["id"] for box in boxes.values())
    assert all(item["value"]["choices"] == ["S"] for item in only(result, "size"))  # the alias is stored
    assert only(result, "bad") == [] and "Choices 'bad' not asked: box reference [3]" in caplog.text
    check_results_fit_config(result, REGION_CONFIG, WIDTH, HEIGHT, task_data=task["data"])
    # the editor's config for this task (dynamic choices written out); aliases are what the editor stores,
    # which the SDK (it knows only values) does not accept, so that control is left out of its check
    shown = config_as_shown(REGION_CONFIG, task["data"])
    assert sdk_errors(shown, {**entry, "result": [item for item in result if item["from_name"] != "size"]}) == []


@pytest.mark.parametrize("data", [{"brands": "Volvo"}, {"brands": ["Volvo"]}, {"brands": [{"label": "Volvo"}]}])
def test_bad_dynamic_choices_fail_that_task_only(nextchat, caplog, data):
    model = ScriptedNextChat(nextchat)
    with caplog.at_level(logging.WARNING, logger="backend.predict"):
        bad, good = predict(model, REGION_CONFIG, [ls_task(1, image_uri(WIDTH, HEIGHT), **data),
                                                   ls_task(2, image_uri(WIDTH, HEIGHT), brands=BRANDS)])
    assert bad["result"] == [] and good["result"]
    assert "task 1: no prediction: task data 'brands' (dynamic labels of 'make')" in caplog.text


def test_a_drawn_box_gets_its_region_choices(nextchat):
    model = ScriptedNextChat(nextchat, {COLOUR_Q: "Blue.", OCCLUDED_Q: "Yes, it is.", TRUNCATED_Q: "Yes."})
    context = drawn_box_context(label="car", x=10, y=20, width=50, height=50)
    (entry,) = predict(model, CHOICES, [ls_task(1, image_uri(WIDTH, HEIGHT))], context)
    (box,) = only(entry["result"], "box")
    assert box["id"] != context["result"][0]["id"]  # re-emitted under a new id (docs/label-studio.md)
    expected_box = [(20.0, 24.0, 120.0, 84.0)]  # the drawn box in pixels is [0] of every question
    assert [(call[2], call[3]) for call in model.called("ask")] == [
        (COLOUR_Q, expected_box), (OCCLUDED_Q, expected_box), (TRUNCATED_Q, expected_box)]
    (colour,) = only(entry["result"], "colour")
    (state,) = only(entry["result"], "state")
    assert colour["id"] == state["id"] == box["id"]
    assert colour["value"]["choices"] == ["blue"] and state["value"]["choices"] == ["occluded", "truncated"]
    assert only(entry["result"], "scene") == []  # image-level Choices are pre-annotation only
    assert sdk_errors(CHOICES, entry) == []


CAPTION_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <TextArea name="caption" toName="image" role="caption"/>
  <RectangleLabels name="box" toName="image"><Label value="animal" predicted_values="dog,cat"/></RectangleLabels>
  <Choices name="pose" toName="image" perRegion="true"><Choice value="sitting"/><Choice value="running"/></Choices>
</View>"""


def test_regions_of_a_caption_get_their_region_choices(nextchat):
    question = "Which of these best describes [0]? Answer with one of: sitting, running."
    model = ScriptedNextChat(nextchat, {question: "It is running."}, default="A dog <at> <boxes> on a sofa .")
    (entry,) = predict(model, CAPTION_CONFIG, [ls_task(1, image_uri(WIDTH, HEIGHT))])
    (caption,) = model.called("caption")
    assert caption[2] == "A dog on a sofa."
    (box,) = only(entry["result"], "box")  # "a sofa" matches no label: no shape, no question
    (pose,) = only(entry["result"], "pose")
    assert box["value"]["rectanglelabels"] == ["animal"] and pose["id"] == box["id"]
    assert pose["value"]["choices"] == ["running"] and model.questions() == [question]
    assert sdk_errors(CAPTION_CONFIG, entry) == []
