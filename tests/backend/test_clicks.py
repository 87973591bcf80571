"""Clicks that prompt and fix masks (backend/predict/clicks.py), with contexts shaped like Label Studio 1.23.2's:
smart key points with ``is_positive`` true / false, a rectangle plus clicks, clicks on a region the model
predicted, several clicks in one context. The fake model's click rule (tests/backend/fakes.py): each positive
click adds an 8 px square to the mask, each negative one removes one."""

from __future__ import annotations

import numpy as np

from backend.dev.samples import drawn_rectangle
from backend.studio.geometry import keypoint_value_to_pixels
from backend.studio.labeling import parse_label_config
from backend.studio.results import result_mask
from backend.studio.results.readers import result_is_positive, result_point
from tests.backend.fakes import (
    FakeNextChat,
    check_results_fit_config,
    click_context,
    click_item,
    data_uri,
    label_config,
    ls_task,
    make_app,
    png_bytes,
    predict_body,
    textarea_context,
)

ALL = label_config("all_in_one.xml")
CLICKS = label_config("click_to_mask.xml")
IMAGE = data_uri(png_bytes(640, 480, (10, 20, 30)))
SQUARE = FakeNextChat.CLICK_SQUARE_PX // 2
PREDICTED = {"a dog": [((0.1, 0.1, 0.4, 0.5), 0.9)], "a person": [((0.5, 0.2, 0.9, 0.9), 0.8)], "a car": []}


def square(mask_shape, x, y, value=True, mask=None):
    mask = np.zeros(mask_shape, dtype=bool) if mask is None else mask
    mask[y - SQUARE:y + SQUARE, x - SQUARE:x + SQUARE] = value
    return mask


def predict(model, config, context, task=None, **settings):
    client = make_app(model, **settings).test_client()
    reply = client.post("/predict", json=predict_body([task or ls_task(1, IMAGE)], config, context))
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["results"][0]["result"]


def by_type(results, kind):
    return [item for item in results if item["type"] == kind]


# ----------------------------------------------------------------------------- reading clicks
def test_keypoints_read_in_pixels_like_rectangles():
    assert keypoint_value_to_pixels({"x": 25.0, "y": 50.0, "width": 0.6}, 640, 480) == (160.0, 240.0)
    assert result_point(click_item(100.0, 0.0)) == (640.0, 0.0)  # its original_width / height
    assert result_is_positive(click_item(1, 1, positive=True))
    assert not result_is_positive(click_item(1, 1, positive=False))  # Alt+click in LS 1.23
    newer = click_item(1, 1, positive=None)
    assert result_is_positive(newer)  # neither field: positive
    newer["value"]["positive"] = False
    assert not result_is_positive(newer)


def test_config_serves_smart_keypoints_only():
    target = parse_label_config(CLICKS).targets[0]
    (control,) = target.click_controls
    assert (control.name, control.labels, control.smart_only) == ("click", ("person", "car", "dog", "object"), True)
    plain = parse_label_config(CLICKS.replace(' smart="true" smartOnly="true"', ""))
    assert plain.targets[0].click_controls == ()
    (skipped,) = [item for item in plain.skipped if item.name == "click"]
    assert 'smart="true"' in skipped.reason
    smart = parse_label_config(CLICKS.replace(' smartOnly="true"', "")).targets[0].click_controls
    assert [(c.name, c.smart_only) for c in smart] == [("click", False)]


# ----------------------------------------------------------------------------- clicks alone
def test_one_click_gives_its_mask_on_every_control_with_box_and_description():
    model = FakeNextChat()
    results = predict(model, ALL, click_context((50.0, 50.0, True)))
    assert model.calls[0] == ("segment", None, ((320.0, 240.0),), (1,))
    expected = square((480, 640), 320, 240)
    (brush,) = by_type(results, "brushlabels")
    (rect,) = by_type(results, "rectanglelabels")
    polygons = by_type(results, "polygonlabels")
    (text,) = by_type(results, "textarea")
    assert np.array_equal(result_mask(brush), expected)
    assert np.array_equal(result_mask(polygons[0]), expected) and len(polygons) == 1
    assert result_mask(rect).sum() == expected.sum()  # the mask's bounding box
    assert {item["value"][item["type"]][0] for item in (brush, rect, *polygons)} == {"object"}
    assert text["id"] == rect["id"] and text["from_name"] == "description"
    assert model.calls[1] == ("describe", (316.0, 236.0, 324.0, 244.0))
    assert text["value"]["text"] == ["region [316, 236, 324, 244] of 640x480#0a141e"]
    assert all(item["id"] not in {"kp0000000"} for item in results)
    check_results_fit_config(results, ALL, 640, 480)


def test_alt_click_is_negative_and_all_clicks_give_one_mask():
    model = FakeNextChat()
    context = click_context((50.0, 50.0, True), (51.25, 50.0, False), (25.0, 25.0, True))
    results = predict(model, CLICKS, context)
    assert model.calls == [("segment", None, ((320.0, 240.0), (328.0, 240.0), (160.0, 120.0)), (1, 0, 1))]
    expected = square((480, 640), 328, 240, False, square((480, 640), 160, 120, True, square((480, 640), 320, 240)))
    (brush,) = results  # click_to_mask.xml: one brush mask, no description TextArea
    assert brush["type"] == "brushlabels" and brush["value"]["brushlabels"] == ["object"]
    assert np.array_equal(result_mask(brush), expected)


def test_value_positive_false_from_newer_clients_is_negative_too():
    model = FakeNextChat()
    context = click_context((50.0, 50.0, True), (50.0, 50.0, None))
    context["result"][1]["value"]["positive"] = False
    results = predict(model, CLICKS, context)  # the same spot taken away: an empty mask, refused (test_refusals)
    assert model.calls == [("segment", None, ((320.0, 240.0), (320.0, 240.0)), (1, 0))]
    assert not by_type(results, "brushlabels")


def test_the_click_label_names_the_mask_label():
    results = predict(FakeNextChat(), CLICKS, click_context((50.0, 50.0), label="dog"))
    assert [item["value"]["brushlabels"] for item in results] == [["dog"]]


# ----------------------------------------------------------------------------- a rectangle plus clicks
def test_rectangle_sent_with_the_clicks_is_their_box():
    model = FakeNextChat()
    context = click_context((90.0, 50.0, True), (20.0, 30.0, False))
    percent = {"x": 12.5, "y": 25.0, "width": 25.0, "height": 25.0}
    context["result"].insert(0, drawn_rectangle("Box0000001", "box", "image", percent, 640, 480, "dog"))
    results = predict(model, ALL, context)
    assert model.calls[0] == ("segment", (80.0, 120.0, 240.0, 240.0), ((576.0, 240.0), (128.0, 144.0)), (1, 0))
    expected = np.zeros((480, 640), dtype=bool)
    expected[120:240, 80:240] = True
    expected = square((480, 640), 128, 144, False, square((480, 640), 576, 240, True, expected))
    (brush,) = by_type(results, "brushlabels")
    assert np.array_equal(result_mask(brush), expected)
    (rect,) = by_type(results, "rectanglelabels")
    assert rect["id"] != "Box0000001"  # accepting deletes the drawn (dynamic) box: a new region
    assert {item["value"][item["type"]][0] for item in results if item["type"] != "textarea"} == {"dog"}
    assert result_mask(rect).sum() == (580 - 80) * (244 - 120)  # the box of the mask the clicks made


# ----------------------------------------------------------------------------- clicks on a predicted region
def preannotated_task(model, config=ALL, **data):
    """Task 1 as Label Studio sends it after "Retrieve predictions": the backend's own prediction attached."""
    prediction = predict(model, config, None)
    task = ls_task(1, IMAGE, **data)
    task["predictions"] = [{"id": 3, "result": prediction, "model_version": "fake-nextchat-1",
                            "created_at": "2026-11-25T10:01:00.000000Z"}]
    model.calls.clear()
    return task, prediction


def test_clicks_on_a_predicted_region_refine_it_from_its_label_and_replace_it():
    model = FakeNextChat(regions_for=PREDICTED)
    task, prediction = preannotated_task(model)
    dog_ids = {item["from_name"]: item["id"] for item in prediction if item["type"] != "textarea"
               and item["value"][item["type"]] == ["dog"]}
    results = predict(model, ALL, click_context((20.0, 20.0, False), (30.0, 40.0, True), label="person"), task)
    description = "region [64, 48, 256, 240] of 640x480#0a141e"  # its text, grounded first: no overlap
    assert [call[:2] for call in model.calls] == [("ground", description), ("ground", "a dog"), ("refine", "a dog")]
    assert model.calls[2] == ("refine", "a dog", ((128.0, 96.0), (192.0, 192.0)), (0, 1), 0)
    expected = np.zeros((480, 640), dtype=bool)
    expected[48:240, 64:256] = True
    expected = square((480, 640), 128, 96, False, expected)
    (brush,) = by_type(results, "brushlabels")
    assert np.array_equal(result_mask(brush), expected)
    assert {item["from_name"]: item["value"][item["type"]] for item in results if item["type"] != "textarea"} == {
        "box": ["dog"], "polygon": ["dog"], "brush": ["dog"]}  # a fix keeps its label
    shapes = {item["from_name"]: item["id"] for item in results if item["type"] != "textarea"}
    assert shapes == dog_ids  # the same ids: accepting replaces the predicted region
    (text,) = by_type(results, "textarea")
    assert text["id"] == dog_ids["box"] and text["value"]["text"] == [description]  # its own text kept


def test_region_from_a_typed_prompt_is_refined_from_the_prompt_kept_with_it():
    model = FakeNextChat(regions_for={"the dog on the left": [((0.1, 0.1, 0.4, 0.5), 0.9)]})
    accepted = predict(model, CLICKS, textarea_context("the dog on the left"))  # typed, Add, then ✓
    assert {item["type"] for item in accepted} == {"brushlabels", "textarea"}
    task = ls_task(1, IMAGE)
    task["drafts"] = [{"id": 1, "result": accepted, "updated_at": "2026-11-25T10:05:00Z"}]
    model.calls.clear()
    results = predict(model, CLICKS, click_context((30.0, 40.0, True)), task)
    assert [call[:2] for call in model.calls] == [("ground", "the dog on the left"), ("refine", "the dog on the left")]
    assert [item["id"] for item in results] == [item["id"] for item in accepted if item["type"] == "brushlabels"]


def test_the_latest_draft_wins_and_a_box_without_located_match_goes_to_sam_with_the_clicks():
    model = FakeNextChat(regions_for=PREDICTED)
    task, _ = preannotated_task(model)
    drawn = drawn_rectangle("Drawn00001", "box", "image", {"x": 50.0, "y": 50.0, "width": 40.0, "height": 40.0},
                            640, 480, "car")
    task["drafts"] = [{"id": 1, "result": [], "updated_at": "2026-11-25T10:02:00Z"},
                      {"id": 2, "result": [drawn], "updated_at": "2026-11-25T10:05:00Z"}]
    results = predict(model, ALL, click_context((60.0, 60.0, True)), task)
    assert model.calls[0] == ("ground", "a car")  # its label's expression: nothing located
    assert model.calls[1] == ("segment", (320.0, 240.0, 576.0, 432.0), ((384.0, 288.0),), (1,))
    assert {item["id"] for item in by_type(results, "rectanglelabels")} == {"Drawn00001"}


def test_a_click_beside_every_region_is_a_click_alone():
    model = FakeNextChat(regions_for=PREDICTED)
    task, _ = preannotated_task(model)
    predict(model, ALL, click_context((5.0, 95.0, True)), task)
    assert model.calls[0] == ("segment", None, ((32.0, 456.0),), (1,))


def test_clicks_of_another_image_or_a_plain_keypoint_control_are_not_clicks():
    model = FakeNextChat()
    other = click_context((50.0, 50.0))
    other["result"][0]["from_name"] = "landmarks"
    assert predict(model, CLICKS, other) == [] and model.calls == []
