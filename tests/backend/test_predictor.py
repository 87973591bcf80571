"""backend.predict: config limits, per-task isolation, deadlines; and the real model end to end."""

from __future__ import annotations

import logging
import time

import pytest

from backend.deadline import Deadline
from backend.images import ImageLoader
from backend.predict.config import parse_config
from backend.predict.errors import ConfigError
from backend.predict.holder import ModelHolder, load_model
from backend.predict.predictor import Predictor
from backend.settings import load_settings
from tests.backend.fakes import (
    FakeNextChat,
    check_results_fit_config,
    data_uri,
    drawn_box_context,
    label_config,
    ls_task,
    make_app,
    png_bytes,
    predict_body,
)

BOXES = label_config("boxes_polygons.xml")
SETTINGS = load_settings({})


def predictor_for(model, **overrides) -> Predictor:
    settings = load_settings({}, **overrides)
    return Predictor(ModelHolder.loaded(model), settings, ImageLoader(settings))


def config_with_labels(*values: str, prompt: str | None = None) -> str:
    attribute = f' prompt="{prompt}"' if prompt else ""
    labels = "".join(f'<Label value="{v}"{attribute}/>' for v in values)
    return (f'<View><Image name="image" value="$image"/>'
            f'<RectangleLabels name="box" toName="image">{labels}</RectangleLabels></View>')


# ----------------------------------------------------------------------------- config
def test_config_limits():
    assert parse_config(BOXES, SETTINGS).targets[0].name == "image"
    with pytest.raises(ConfigError, match="MAX_LABELS=3"):
        parse_config(config_with_labels("a", "b", "c", "d"), load_settings({}, max_labels=3))
    with pytest.raises(ConfigError, match="MAX_PROMPT_CHARS=500"):
        parse_config(config_with_labels("cat", prompt="x" * 501), SETTINGS)
    with pytest.raises(ConfigError, match="not valid XML"):
        parse_config("<View><Image></View>", SETTINGS)


def test_unknown_tags_are_skipped_not_fatal():
    xml = BOXES.replace("</View>", '<KeyPointLabels name="kp" toName="image"><Label value="eye"/></KeyPointLabels>'
                                   '<Frobnicate name="f"/></View>')
    config = parse_config(xml, SETTINGS)
    assert {item.name for item in config.skipped} >= {"kp", "f"}


# ----------------------------------------------------------------------------- isolation and deadlines
class FailingOnWidth(FakeNextChat):
    """Raises an unexpected error for images of one width."""

    def __init__(self, bad_width: int, **kwargs):
        super().__init__(**kwargs)
        self.bad_width = bad_width

    def ground_many(self, image, expressions):
        if image.width == self.bad_width:
            raise RuntimeError("boom")
        return super().ground_many(image, expressions)


def test_one_bad_task_never_sinks_the_batch(caplog):
    good = data_uri(png_bytes(64, 48))
    tasks = [ls_task(1, good), ls_task(2, "data:image/png;base64,AAAA"), ls_task(3, good),
             ls_task(4, data_uri(png_bytes(33, 33))), {"id": 5, "data": {"other": good}}, ls_task(6, 12345),
             ls_task(7, good)]
    predictor = predictor_for(FailingOnWidth(33))
    config = parse_config(BOXES, SETTINGS)
    with caplog.at_level(logging.WARNING, logger="backend.predict"):
        entries = predictor.predict(tasks, config, None, Deadline.after(30))
    assert len(entries) == 7
    assert [bool(entry["result"]) for entry in entries] == [True, False, True, False, False, False, True]
    assert all(entry["model_version"].startswith("fake-nextchat-1+cfg.") for entry in entries)
    log = caplog.text
    assert "task 2: no prediction" in log and "task 4: no prediction: RuntimeError" in log
    assert "task 5: no prediction: task data has no 'image'" in log and "task 6: no prediction" in log


def test_deadline_returns_what_is_done_and_keeps_the_order():
    predictor = predictor_for(FakeNextChat(delay_s=0.3))
    tasks = [ls_task(i, data_uri(png_bytes(20 + i, 20))) for i in range(6)]
    started = time.monotonic()
    entries = predictor.predict(tasks, parse_config(BOXES, SETTINGS), None, Deadline.after(0.5))
    assert time.monotonic() - started < 1.2
    assert len(entries) == 6
    done = [("result" in entry) for entry in entries]
    assert done[0] and not done[-1] and done == sorted(done, reverse=True)
    skipped = entries[-1]
    assert skipped["model_version"].startswith("fake-nextchat-1+cfg.") and "deadline" in skipped["error"]


def test_parallel_requests_on_different_images_never_mix():
    import concurrent.futures

    client = make_app(FakeNextChat(delay_s=0.01), max_concurrency=4).test_client()
    config = label_config("region_descriptions.xml").replace(' preannotate="false"', "")  # pre-annotated here
    images = [(40 + i, 30 + i, (i * 20, 255 - i * 20, 7)) for i in range(8)]

    def run(spec):
        width, height, color = spec
        body = predict_body([ls_task(1, data_uri(png_bytes(width, height, color)))], config)
        return spec, client.post("/predict", json=body).get_json()["results"][0]["result"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for (width, height, color), result in pool.map(run, images):
            signature = f"{width}x{height}#{color[0]:02x}{color[1]:02x}{color[2]:02x}"
            texts = [r["value"]["text"][0] for r in result if r["type"] == "textarea"]
            assert texts and all(text.endswith(signature) for text in texts)
            assert all(r["original_width"] == width for r in result)


# ----------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint, tiny_vision_tower):
    settings = load_settings({}, checkpoint=str(tiny_checkpoint), vision_tower=str(tiny_vision_tower))
    return load_model(settings)


@pytest.fixture(scope="module")
def locating_model(tmp_path_factory):
    """A random tiny checkpoint biased to emit locations (the shared fixture finds none)."""
    from model.random_checkpoint import write_random_checkpoint

    out = write_random_checkpoint("tiny", tmp_path_factory.mktemp("locating"))
    return load_model(load_settings({}, checkpoint=str(out), vision_tower=str(out / "vision_tower")))


def test_real_model_preannotation_and_drawn_box(tiny_model):
    config = label_config("all_in_one.xml")
    client = make_app(tiny_model).test_client()
    image = data_uri(png_bytes(120, 80, (30, 60, 90)))
    reply = client.post("/predict", json=predict_body([ls_task(1, image), ls_task(2, "/etc/passwd")], config))
    entries = reply.get_json()["results"]
    assert reply.status_code == 200 and len(entries) == 2 and entries[1]["result"] == []
    assert entries[0]["model_version"].startswith(tiny_model.model_version + "+cfg.")
    check_results_fit_config(entries[0]["result"], config, 120, 80)
    assert any(r["from_name"] == "caption" for r in entries[0]["result"])

    context = drawn_box_context(x=10, y=10, width=40, height=50)
    result = client.post("/predict", json=predict_body([ls_task(1, image)], config, context)).get_json()["results"]
    shapes = {r["type"]: r for r in result[0]["result"] if r["type"] != "textarea"}
    text = next(r for r in result[0]["result"] if r["type"] == "textarea")
    assert text["id"] == shapes["rectanglelabels"]["id"] and isinstance(text["value"]["text"][0], str)
    assert {"rectanglelabels", "brushlabels"} <= set(shapes)  # SAM's mask for the drawn box
    check_results_fit_config(result[0]["result"], config, 120, 80)


def test_real_model_takes_special_tokens_in_labels_as_text(tiny_model):
    config = config_with_labels("&lt;image&gt; &lt;at&gt; &lt;boxes&gt; &lt;/s&gt; &lt;im_start&gt;")
    reply = make_app(tiny_model).test_client().post(
        "/predict", json=predict_body([ls_task(1, data_uri(png_bytes(50, 40)))], config))
    assert reply.status_code == 200 and len(reply.get_json()["results"]) == 1


def test_real_regions_become_results(locating_model):
    client = make_app(locating_model).test_client()
    entry = client.post("/predict", json=predict_body([ls_task(1, data_uri(png_bytes(64, 48)))], BOXES)).get_json()
    result = entry["results"][0]["result"]
    assert any(r["type"] == "rectanglelabels" for r in result)
    assert all("score" in r for r in result)
    check_results_fit_config(result, BOXES, 64, 48)
