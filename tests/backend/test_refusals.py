"""Refused interactive calls are shown to the annotator: 200 with the one-line reason as a marked message in a
TextArea they look at, no shape, nothing a Label Studio save would keep as a label. Callers without a
context keep the HTTP status."""

from __future__ import annotations

import threading
import time

import pytest

from backend.export.annotations import texts_of
from backend.http.app import create_app
from backend.settings import load_settings
from backend.studio.results.textarea import MESSAGE_PREFIX
from tests.backend.fakes import (
    FakeNextChat,
    click_context,
    data_uri,
    drawn_box_context,
    label_config,
    ls_task,
    make_app,
    png_bytes,
    predict_body,
    textarea_context,
)

PROMPT = label_config("referring_prompt.xml")
DESCRIBE = label_config("region_descriptions.xml")
GOOD = data_uri(png_bytes(64, 48))
GOOD_640 = data_uri(png_bytes(640, 480))


def messages_of(reply) -> tuple[list[dict], list[str]]:
    assert reply.status_code == 200, reply.get_data(as_text=True)
    results = reply.get_json()["results"][0]["result"]
    texts = [text for item in results if item["type"] == "textarea" for text in item["value"]["text"]]
    return results, [text[len(MESSAGE_PREFIX):] for text in texts if text.startswith(MESSAGE_PREFIX)]


def test_prompt_too_long_is_shown_under_the_prompt():
    client = make_app(max_prompt_chars=20).test_client()
    reply = client.post("/predict", json=predict_body([ls_task(1, GOOD)], PROMPT, textarea_context("a" * 21)))
    results, messages = messages_of(reply)
    assert [item["from_name"] for item in results] == ["prompt"]
    assert results[0]["value"]["text"][0] == "a" * 21  # what was typed stays, the message below it
    assert messages == ["prompt text longer than MAX_PROMPT_CHARS=20"]


def test_unreadable_image_and_deadline_are_shown():
    client = make_app().test_client()
    reply = client.post("/predict", json=predict_body([ls_task(1, "data:image/png;base64,AAAA")], PROMPT,
                                                      textarea_context("a dog")))
    _, messages = messages_of(reply)
    assert len(messages) == 1 and messages[0].startswith("cannot use the task:")
    slow = make_app(FakeNextChat(delay_s=0.5), request_deadline_s=0.2).test_client()
    _, messages = messages_of(slow.post("/predict", json=predict_body([ls_task(1, GOOD)], PROMPT,
                                                                      textarea_context("a dog"))))
    assert messages == ["no answer within REQUEST_DEADLINE_S=0.2 s; try again"]


def test_busy_server_says_when_to_try_again_and_keeps_429_without_a_context():
    model = FakeNextChat(delay_s=1.0)
    client = make_app(model, max_concurrency=1, max_queue=0, retry_after_s=7).test_client()
    running = threading.Thread(target=lambda: client.post(
        "/predict", json=predict_body([ls_task(1, GOOD)], PROMPT, textarea_context("a cat"))))
    running.start()
    give_up = time.monotonic() + 5
    while not model.calls and time.monotonic() < give_up:
        time.sleep(0.01)
    _, messages = messages_of(client.post("/predict", json=predict_body([ls_task(2, GOOD)], PROMPT,
                                                                        textarea_context("a dog"))))
    plain = client.post("/predict", json=predict_body([ls_task(3, GOOD)], PROMPT))
    running.join(10)
    assert len(messages) == 1 and messages[0].startswith("server busy") and messages[0].endswith("try again in 7 s")
    assert plain.status_code == 429 and plain.headers["Retry-After"] == "7"


def test_model_loading_is_shown_on_a_drawn_box_and_stays_503_without_a_context():
    release = threading.Event()
    client = create_app(load_settings({}), load=lambda: release.wait(10) and FakeNextChat()).test_client()
    try:
        results, messages = messages_of(client.post("/predict", json=predict_body(
            [ls_task(1, GOOD)], DESCRIBE, drawn_box_context())))
        plain = client.post("/predict", json=predict_body([ls_task(1, GOOD)], DESCRIBE))
    finally:
        release.set()
    box, text = results  # the drawn box again, under a new id, with the reason as its text
    assert box["type"] == "rectanglelabels" and box["id"] == text["id"] != "W4yQRdm34L"
    assert text["from_name"] == "description" and messages == ["model is loading; try again in 5 s"]
    assert plain.status_code == 503


def test_messages_are_never_read_back_as_prompts_or_expressions():
    model = FakeNextChat()
    client = make_app(model).test_client()
    context = textarea_context("a dog")
    context["result"][0]["value"]["text"].append(MESSAGE_PREFIX + "server busy; try again in 5 s")
    client.post("/predict", json=predict_body([ls_task(1, GOOD)], PROMPT, context))
    assert model.calls[0] == ("ground", "a dog")
    region_text = {"id": "r1", "type": "textarea", "value": {"text": ["a red car", MESSAGE_PREFIX + "busy"]}}
    assert texts_of([region_text]) == ["a red car"]


# ----------------------------------------------------------------------------- clicks (backend/predict/clicks.py)
CLICKS = label_config("click_to_mask.xml")
SHAPES = {"rectanglelabels", "polygonlabels", "brushlabels"}
NO_X = click_context((50.0, 50.0))
del NO_X["result"][0]["value"]["x"]
CLICK_REFUSALS = {  # id -> (context, settings, the reason shown)
    "only-negative": (click_context((50.0, 50.0, False)), {}, "only negative clicks (Alt+click) and no region "
                                                              "under them; click on the object first, without Alt"),
    "off-image": (click_context((120.0, 50.0)), {}, "the click at (120%, 50%) lies outside the image"),
    "no-x": (NO_X, {}, "a click needs numeric x and y (percent of the image)"),
    "too-many": (click_context((10.0, 10.0), (20.0, 10.0), (30.0, 10.0)), {"max_clicks": 2},
                 "3 clicks in one call, more than MAX_CLICKS=2"),
    "empty-mask": (click_context((50.0, 50.0, True), (50.0, 50.0, False)), {},
                   "the clicks leave an empty mask; click inside the object, without Alt"),
}


@pytest.mark.parametrize("case", sorted(CLICK_REFUSALS))
def test_refused_clicks_are_shown_in_the_prompt_and_draw_nothing(case):
    context, settings, reason = CLICK_REFUSALS[case]
    body = predict_body([ls_task(1, GOOD_640)], CLICKS, context)
    reply = make_app(**settings).test_client().post("/predict", json=body)
    results, messages = messages_of(reply)
    assert messages == [reason]
    assert [(item["type"], item["from_name"]) for item in results] == [("textarea", "prompt")]
    assert texts_of(results) == []  # read back (a later call, the export) the message is no text at all


def test_a_click_the_model_refuses_shows_its_one_line_reason():
    model = FakeNextChat(raise_on={"segment": ValueError("point 0 (700, 20) lies outside the 640x480 image")})
    reply = make_app(model).test_client().post("/predict", json=predict_body([ls_task(1, GOOD_640)], CLICKS,
                                                                             click_context((50.0, 50.0))))
    assert messages_of(reply)[1] == ["point 0 (700, 20) lies outside the 640x480 image"]


@pytest.mark.parametrize(("slow", "reason"), [(True, "no answer within REQUEST_DEADLINE_S=0.2 s; try again"),
                                              (False, "model is loading; try again in 5 s")])
def test_deadline_and_loading_on_a_click_are_shown(slow, reason):
    release = threading.Event()
    if slow:
        app = make_app(FakeNextChat(delay_s=0.5), request_deadline_s=0.2)
    else:
        app = create_app(load_settings({}), load=lambda: release.wait(10) and FakeNextChat())
    try:
        reply = app.test_client().post("/predict", json=predict_body([ls_task(1, GOOD_640)], CLICKS,
                                                                     click_context((50.0, 50.0))))
        results, messages = messages_of(reply)
    finally:
        release.set()
    assert messages == [reason] and not SHAPES & {item["type"] for item in results}


def test_without_a_whole_image_textarea_the_click_comes_back_with_the_reason_as_its_text():
    per_region = CLICKS.replace('<TextArea name="prompt" toName="image" role="prompt"',
                                '<TextArea name="note" toName="image" perRegion="true"')
    reply = make_app().test_client().post("/predict", json=predict_body(
        [ls_task(1, GOOD_640)], per_region, click_context((50.0, 50.0, False))))
    results, messages = messages_of(reply)
    point, text = results
    assert point["type"] == "keypointlabels" and point["id"] == text["id"] != "kp0000000"
    assert point["value"] == {"x": 50.0, "y": 50.0, "width": 0.625, "keypointlabels": ["object"]}
    assert "is_positive" not in point and text["from_name"] == "note" and len(messages) == 1
    silent = CLICKS.replace('<TextArea name="prompt" toName="image" role="prompt"', '<Rating name="r" toName="image"')
    reply = make_app().test_client().post("/predict", json=predict_body(
        [ls_task(1, GOOD_640)], silent, click_context((50.0, 50.0, False))))
    assert reply.status_code == 200 and reply.get_json()["results"][0]["result"] == []  # only the log says why
