"""Versions that mean something, per-project extra params, per-control attributes, the webhook token."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest

from backend.predict.projects import ParamsError, ProjectStore, parse_extra_params, project_key
from backend.predict.versions import output_suffix, project_version
from backend.settings import deadline_for_timeout, load_settings
from backend.studio.labeling import parse_label_config
from backend.studio.prompts import split_prompt
from model.versioning import checkpoint_version
from tests.backend.fakes import FakeNextChat, data_uri, label_config, ls_task, make_app, png_bytes, predict_body

BOXES = label_config("boxes_polygons.xml")
GOOD = data_uri(png_bytes(64, 48))
DEFAULTS = load_settings({})


def setup(client, config=BOXES, project="3.1795611766", extra=None):
    body = {"project": project, "schema": config, "hostname": "http://localhost:8080", "access_token": "x",
            "extra_params": extra}
    return client.post("/setup", json=body)


def predict(client, config=BOXES, project="3.1795611766", tasks=None):
    body = predict_body(tasks or [ls_task(1, GOOD)], config)
    body["project"] = project
    reply = client.post("/predict", json=body)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["results"]


# ----------------------------------------------------------------------------- the version rule
def test_version_changes_with_what_changes_the_output_only():
    config = parse_label_config(BOXES)
    base = project_version("m@1", config, DEFAULTS)
    assert base.startswith("m@1+cfg.") and len(base.split("+cfg.")[1]) == 8
    prompt_edit = parse_label_config(BOXES.replace('prompt="a dog"', 'prompt="a small dog"'))
    colour_edit = parse_label_config(BOXES.replace('#4363d8', '#00ff00').replace('strokeWidth="2"', ''))
    assert project_version("m@1", prompt_edit, DEFAULTS) != base
    assert project_version("m@1", colour_edit, DEFAULTS) == base  # colours and layout are not output
    assert project_version("m@1", config, DEFAULTS.replace(score_threshold=0.5)) != base
    assert project_version("m@1", config, DEFAULTS.replace(polygon_tolerance=3.0)) != base
    assert project_version("m@1", config, DEFAULTS.replace(max_image_pixels=10)) == base


def test_a_fine_tuned_models_own_suffix_is_kept_and_ours_follows():
    config = parse_label_config(BOXES)
    version = project_version("nextchat-7b-336@1a2b3c4+ft3.0badc0de", config, DEFAULTS)
    assert version == f"nextchat-7b-336@1a2b3c4+ft3.0badc0de+cfg.{output_suffix(config, DEFAULTS)}"


def test_model_version_setting_replaces_the_base():
    client = make_app(model_version="team-v2").test_client()
    assert setup(client).get_json()["model_version"].startswith("team-v2+cfg.")
    assert client.get("/health").get_json()["model_version"] == "team-v2"


def test_checkpoint_version_is_name_and_revision(tmp_path):
    snapshot = tmp_path / "models--AoZhang--nextchat-7b-336" / "snapshots" / ("a1b2c3d4" * 5)
    snapshot.mkdir(parents=True)
    assert checkpoint_version(snapshot) == "nextchat-7b-336@a1b2c3d"
    folder = tmp_path / "my-checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    first = checkpoint_version(folder)
    assert first.startswith("my-checkpoint@") and len(first.split("@")[1]) == 7
    os.utime(folder / "model.safetensors", ns=(time.time_ns(), time.time_ns() + 10**9))
    checkpoint_version.cache_clear()
    assert checkpoint_version(folder) != first  # new weights, new revision


def test_setup_version_matches_the_predictions_and_an_edit_changes_both():
    client = make_app().test_client()
    version = setup(client).get_json()["model_version"]
    assert predict(client)[0]["model_version"] == version
    edited = BOXES.replace('prompt="a dog"', 'prompt="a brown dog"')
    new_version = setup(client, edited).get_json()["model_version"]
    assert new_version != version and predict(client, edited)[0]["model_version"] == new_version
    assert client.get("/versions").get_json()["projects"] == {"3": new_version}


# ----------------------------------------------------------------------------- extra params
def test_extra_params_parse_from_objects_and_from_the_connect_model_text_box():
    assert parse_extra_params(None, DEFAULTS) == {} and parse_extra_params("  ", DEFAULTS) == {}
    typed = '{"SCORE_THRESHOLD": "0.4", "describe-regions": false, "polygon_max_parts": 3}'
    assert parse_extra_params(typed, DEFAULTS) == {"score_threshold": 0.4, "describe_regions": False,
                                                   "polygon_max_parts": 3}
    assert parse_extra_params({"default_prompt": "cat . dog ."}, DEFAULTS) == {"default_prompt": "cat . dog ."}


@pytest.mark.parametrize(("raw", "reason"), [
    ({"threshold": 0.4}, "unknown key 'threshold'"),
    ({"score_threshold": 1.5}, "outside [0.0, 1.0]"),
    ({"score_threshold": "high"}, "SCORE_THRESHOLD"),
    ({"polygon_max_parts": 2.5}, "whole number"),
    ({"describe_regions": 1}, "true or false"),
    ("{not json", "not JSON"),
    ("[1]", "JSON object"),
    ({"default_prompt": "x" * 600}, "MAX_PROMPT_CHARS"),
])
def test_bad_extra_params_are_one_line(raw, reason):
    with pytest.raises(ParamsError) as caught:
        parse_extra_params(raw, DEFAULTS)
    assert reason.lower() in str(caught.value).lower() and "\n" not in str(caught.value)


def test_setup_refuses_bad_extra_params_with_the_reason_logged(caplog):
    reply = setup(make_app().test_client(), extra={"scor_threshold": 0.5})
    assert reply.status_code == 400 and "unknown key 'scor_threshold'" in reply.get_json()["error"]
    assert "scor_threshold" in caplog.text


def test_extra_params_change_one_project_only():
    regions = {"a person": [((0.1, 0.1, 0.4, 0.4), 0.35)]}
    config = BOXES.replace('value="person"', 'value="person" prompt="a person"')
    client = make_app(FakeNextChat(regions_for=regions)).test_client()
    strict = setup(client, config, project="3.1", extra='{"score_threshold": 0.5}').get_json()["model_version"]
    plain = setup(client, config, project="4.1").get_json()["model_version"]
    assert strict != plain

    def labels(project):
        return {r["value"][r["type"]][0] for r in predict(client, config, project)[0]["result"]}

    assert "person" not in labels("3.1") and "person" in labels("4.1")


def test_project_params_survive_a_restart(tmp_path):
    client = make_app(model_dir=str(tmp_path)).test_client()
    version = setup(client, extra={"score_threshold": 0.95}).get_json()["model_version"]
    stored = json.loads((tmp_path / "projects.json").read_text())
    assert stored["projects"]["3"]["params"] == {"score_threshold": 0.95}
    restarted = make_app(model_dir=str(tmp_path)).test_client()  # an interactive call comes before any /setup
    assert predict(restarted)[0]["model_version"] == version
    assert restarted.get("/versions").get_json()["versions"] == [version]
    assert ProjectStore(str(tmp_path)).params("3") == {"score_threshold": 0.95}
    assert project_key("12.1795611766") == "12" and project_key(None) is None and project_key("x.1") is None


# ----------------------------------------------------------------------------- label config attributes
def test_model_skip_and_per_control_score_threshold():
    config = BOXES.replace('<RectangleLabels name="box"', '<RectangleLabels name="box" model_score_threshold="0.6"')
    config = config.replace('<PolygonLabels name="polygon"', '<PolygonLabels name="polygon" model_skip="true"')
    parsed = parse_label_config(config)
    box, polygon = parsed.targets[0].region_controls
    assert (box.model_score_threshold, polygon.model_skip) == (0.6, True)
    regions = {"a dog": [((0.1, 0.1, 0.5, 0.5), 0.5)]}
    results = predict(make_app(FakeNextChat(regions_for=regions, default_score=0.9)).test_client(), config)[0]
    by_control = {(r["from_name"], r["value"][r["type"]][0]) for r in results["result"]}
    assert ("box", "dog") not in by_control and ("box", "car") in by_control  # dog's 0.5 < the box's 0.6
    assert not any(name == "polygon" for name, _ in by_control)
    bad = parse_label_config(BOXES.replace('name="box"', 'name="box" model_score_threshold="2"'))
    assert bad.targets[0].region_controls[0].model_score_threshold is None
    assert any(item.tag == "model_score_threshold" for item in bad.skipped)


def test_grounding_dino_style_prompts_are_phrases_decoded_as_one_batch():
    assert split_prompt("cat . dog .") == ["cat", "dog"]
    assert split_prompt("a red car . the man . a red car") == ["a red car", "the man"]
    assert split_prompt("St. Louis sign") == ["St. Louis sign"] and split_prompt("the dog.") == ["the dog."]
    model = FakeNextChat()
    config = label_config("referring_prompt.xml")
    client = make_app(model).test_client()
    predict(client, config, tasks=[ls_task(1, GOOD, prompt="person . car .")])
    assert ("ground_many", ("person", "car")) in model.calls


def test_default_prompt_is_used_when_a_task_has_none():
    model = FakeNextChat()
    client = make_app(model).test_client()
    config = label_config("referring_prompt.xml")
    setup(client, config, extra={"default_prompt": "the red car"})
    predict(client, config)
    assert ("ground", "the red car") in model.calls


# ----------------------------------------------------------------------------- deadline and webhook
def test_deadline_follows_ml_timeout_predict():
    assert load_settings({"ML_TIMEOUT_PREDICT": "300"}).request_deadline_s == 280.0
    assert load_settings({"ML_TIMEOUT_PREDICT": "30"}).request_deadline_s == 24.0
    assert load_settings({"ML_TIMEOUT_PREDICT": "300", "REQUEST_DEADLINE_S": "50"}).request_deadline_s == 50.0
    assert load_settings({}).request_deadline_s == 80.0 == deadline_for_timeout(100)


def test_webhook_token_is_required_when_set(tmp_path, caplog):
    event = {"action": "PROJECT_UPDATED", "project": {"id": 1}}
    client = make_app(webhook_token="s3cret-token").test_client()
    for headers in ({}, {"X-Webhook-Token": "wrong"}, {"Authorization": "Bearer s3cret-token"}):
        reply = client.post("/webhook", json=event, headers=headers)
        assert reply.status_code == 401 and "X-Webhook-Token" in reply.get_json()["error"]
    assert client.post("/webhook", json=event, headers={"X-Webhook-Token": "s3cret-token"}).status_code == 200
    with caplog.at_level(logging.WARNING):
        open_client = make_app(stage3_dir=str(tmp_path / "stage3")).test_client()
    assert open_client.post("/webhook", json=event).status_code == 200
    assert "WEBHOOK_TOKEN is not set" in caplog.text
