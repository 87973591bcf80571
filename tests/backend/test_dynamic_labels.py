"""Per-task labels (Label Studio's dynamic labels, value="$labels") and Repeater-expanded Images, with the
real NExT-Chat code (tiny random checkpoint) behind the Flask app.

Each task's label list is that task's prompt list, decoded in one ground_many call with the config's own
labels; results carry the task's labels and pass label-studio-sdk's validation against the config as the
editor shows it for that task.
"""

from __future__ import annotations

import logging

import pytest
from label_studio_sdk.label_interface import LabelInterface

from backend.studio.labeling import parse_label_config
from backend.studio.repeater import expand_repeaters
from tests.backend.fakes import (
    check_results_fit_config,
    label_config,
    ls_task,
    make_app,
    predict_body,
    textarea_context,
)
from tests.backend.scripted import ScriptedNextChat, config_as_shown, image_uri, load_tiny_model, signature_of

DYNAMIC = label_config("dynamic_labels.xml")
WIDTH, HEIGHT = 200, 120
FORKLIFT = [{"value": "forklift"}, {"value": "pallet", "background": "orange"},
            {"value": "helmet", "prompt": "a yellow safety helmet", "predicted_values": "hard hat"},
            {"value": "car"}]


@pytest.fixture(scope="module")
def nextchat(random_tiny_checkpoint):
    return load_tiny_model(random_tiny_checkpoint)


def predict(model, config, tasks, context=None, **settings) -> list[dict]:
    reply = make_app(model, **settings).test_client().post("/predict", json=predict_body(tasks, config, context))
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["results"]


def labels_by_control(result: list[dict]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for item in result:
        found.setdefault(item["from_name"], set()).update(item["value"][item["type"]])
    return found


def test_each_task_grounds_its_own_labels_with_the_configs_in_one_batch(nextchat):
    model = ScriptedNextChat(nextchat)
    tasks = [ls_task(1, image_uri(WIDTH, HEIGHT), labels=FORKLIFT),
             ls_task(2, image_uri(WIDTH, HEIGHT), labels=[{"value": "kayak"}, {"value": "paddle"}]),
             ls_task(3, image_uri(WIDTH, HEIGHT))]  # no list: the config's own labels only
    entries = predict(model, DYNAMIC, tasks)

    # one batch per task: the task's labels (prompt attribute honoured), then the config's own; "car" once
    assert [call[2] for call in model.called("ground_many")] == [
        ("forklift", "pallet", "a yellow safety helmet", "car", "person"),
        ("kayak", "paddle", "person", "car"),
        ("person", "car")]
    assert labels_by_control(entries[0]["result"]) == {"box": {"forklift", "pallet", "helmet", "car"},
                                                      "polygon": {"car", "person"}}
    assert labels_by_control(entries[1]["result"]) == {"box": {"kayak", "paddle"}, "polygon": {"car", "person"}}
    assert labels_by_control(entries[2]["result"]) == {"polygon": {"car", "person"}}
    for task, entry in zip(tasks, entries):
        check_results_fit_config(entry["result"], DYNAMIC, WIDTH, HEIGHT, task_data=task["data"])
        assert LabelInterface(config_as_shown(DYNAMIC, task["data"])).validate_prediction(
            entry, return_errors=True) == []
        assert LabelInterface(DYNAMIC).validate_prediction(entry, return_errors=True) == []


def test_a_typed_prompt_picks_a_label_of_this_task(nextchat):
    model = ScriptedNextChat(nextchat)
    task = ls_task(1, image_uri(WIDTH, HEIGHT), labels=FORKLIFT)
    config = DYNAMIC.replace("</View>", '<TextArea name="prompt" toName="image"/></View>')
    (entry,) = predict(model, config, [task], textarea_context("the hard hat on the left"))
    (grounded,) = model.called("ground")
    assert grounded[2] == "the hard hat on the left"
    boxes = [item for item in entry["result"] if item["from_name"] == "box"]
    assert boxes and all(item["value"]["rectanglelabels"] == ["helmet"] for item in boxes)  # matched by synonym


@pytest.mark.parametrize(("labels", "reason"), [
    (["forklift", "pallet"], "item 0 must be an object with a text \"value\", got str"),
    ("forklift", "must be a list of {\"value\": ...} objects, got str"),
    ([{"value": ""}], "item 0 must be an object with a text \"value\""),
])
def test_labels_label_studio_cannot_show_fail_that_task_only(nextchat, caplog, labels, reason):
    model = ScriptedNextChat(nextchat)
    with caplog.at_level(logging.WARNING, logger="backend.predict"):
        bad, good = predict(model, DYNAMIC, [ls_task(1, image_uri(WIDTH, HEIGHT), labels=labels),
                                             ls_task(2, image_uri(WIDTH, HEIGHT), labels=FORKLIFT)])
    assert bad == {"model_version": bad["model_version"], "score": 0.0, "result": []}
    assert good["result"]
    assert f"task 1: no prediction: task data 'labels' (dynamic labels of 'box'): {reason}" in caplog.text
    assert len(model.called("ground_many")) == 1


def test_task_labels_are_held_to_the_limits(nextchat, caplog):
    model = ScriptedNextChat(nextchat)
    many = [{"value": f"thing {index}"} for index in range(5)]
    long = [{"value": "x" * 60}]
    with caplog.at_level(logging.WARNING, logger="backend.predict"):
        entries = predict(model, DYNAMIC, [ls_task(1, image_uri(WIDTH, HEIGHT), labels=many),
                                           ls_task(2, image_uri(WIDTH, HEIGHT), labels=long)],
                          max_labels=6, max_prompt_chars=50)
    assert [entry["result"] for entry in entries] == [[], []]
    assert "with this task's data: label config has 7 labels, more than MAX_LABELS=6" in caplog.text
    assert "prompt longer than MAX_PROMPT_CHARS=50" in caplog.text
    assert model.called("ground_many") == []


REPEATER = """<View>
  <Repeater on="$pages" indexFlag="{{idx}}">
    <Image name="page_{{idx}}" value="$pages[{{idx}}].url"/>
    <RectangleLabels name="box_{{idx}}" toName="page_{{idx}}"><Label value="car"/></RectangleLabels>
    <TextArea name="note_{{idx}}" toName="page_{{idx}}" perRegion="true"/>
  </Repeater>
</View>"""
PAGES = [(200, 120, (135, 190, 235)), (90, 160, (20, 200, 20)), (120, 90, (240, 240, 10))]


def test_repeater_images_are_each_predicted_under_their_expanded_names(nextchat):
    config = parse_label_config(REPEATER)
    assert config.has_repeater and config.targets == () and config.skipped == ()  # the template is per task
    data = {"pages": [{"url": image_uri(w, h, color)} for w, h, color in PAGES]}
    expanded = parse_label_config(expand_repeaters(REPEATER, data))
    assert [(t.name, t.value_key) for t in expanded.targets] == [
        ("page_0", "pages[0].url"), ("page_1", "pages[1].url"), ("page_2", "pages[2].url")]

    model = ScriptedNextChat(nextchat)
    (entry,) = predict(model, REPEATER, [{"id": 7, "data": data}])
    assert [call[1] for call in model.called("ground_many")] == [signature_of(w, h, c) for w, h, c in PAGES]
    assert [call[1] for call in model.called("describe")] == [signature_of(w, h, c) for w, h, c in PAGES]
    for index, (width, height, _) in enumerate(PAGES):
        on_page = [item for item in entry["result"] if item["to_name"] == f"page_{index}"]
        assert {item["from_name"] for item in on_page} == {f"box_{index}", f"note_{index}"}
        assert all((item["original_width"], item["original_height"]) == (width, height) for item in on_page)
        check_results_fit_config(on_page, REPEATER, width, height, task_data=data)
    assert LabelInterface(expand_repeaters(REPEATER, data)).validate_prediction(entry, return_errors=True) == []


def test_repeater_data_that_is_no_list_gives_no_images():
    assert parse_label_config(expand_repeaters(REPEATER, {"pages": "a.png"})).targets == ()
    assert parse_label_config(expand_repeaters(REPEATER, {})).targets == ()
