"""Deltas that do not fit are refused with one line: a recorded active delta of another base (the server
serves without it and says why), the operator's --delta at load, serve and batch; the HTTP side of training
(auth on Start Training, training off)."""

from __future__ import annotations

import pytest

from backend.__main__ import main as backend_main
from backend.batch.cli import main as batch_main
from backend.http.app import create_app
from backend.predict.holder import load_model as backend_load_model
from backend.settings import load_settings
from backend.train.state import ActiveDelta, TrainState
from model.stage3 import DeltaError
from model.stage3.delta import current_state, save_delta
from tests.model.stage3_common import CHECKPOINT, DATA_DIR, TOWER, load_model
from tests.train.common import START, FlushOnly, make_app, one_record_dir, settings_for, wait_for


@pytest.fixture()
def closing():
    services = []
    yield services.append
    for service in services:
        service.training.close()


def foreign_delta(nc, path):
    """A delta with the right keys and shapes, made for another base checkpoint."""
    return save_delta(path, current_state(nc.model), "0" * 64, "another-checkpoint", {})


def record_active(settings, run: str, operator_delta: str = "") -> None:
    TrainState(settings.model_dir).set_active(
        ActiveDelta(run, "deadbeef", "nextchat-x+ft3.deadbeef", operator_delta, "2026-01-01T00:00:00+00:00"))


def test_a_recorded_delta_of_another_base_is_not_reloaded(tmp_path, closing):
    settings = settings_for(tmp_path, one_record_dir(tmp_path / "stage3"))
    nc = load_model()
    base = nc.model_version
    foreign_delta(nc, TrainState(settings.model_dir).run_dir("r1") / "delta.safetensors")
    record_active(settings, "r1")
    app, service = make_app(settings, model=nc)
    closing(service)
    assert nc.model_version == base
    error = app.test_client().get("/train/status").get_json()["last_error"]
    assert error.startswith("active delta of run r1 not reloaded: ") and "trained on another base" in error
    assert "\n" not in error and app.test_client().get("/metrics").get_json()["train_last_error"] == error


def test_a_recorded_delta_is_not_reloaded_once_the_operator_changed_the_delta(tmp_path, closing):
    settings = settings_for(tmp_path, one_record_dir(tmp_path / "stage3"))
    record_active(settings, "r1", operator_delta="/deltas/old.safetensors")
    app, service = make_app(settings, model=load_model())
    closing(service)
    error = app.test_client().get("/train/status").get_json()["last_error"]
    assert error == ("active delta of run r1 not reloaded: it was trained from "
                     "NEXTCHAT_DELTA='/deltas/old.safetensors', now ''")


def test_the_operators_delta_of_another_base_fails_the_load_in_one_line(tmp_path):
    path = foreign_delta(load_model(), tmp_path / "foreign.safetensors").path
    settings = load_settings({}, checkpoint=str(CHECKPOINT), vision_tower=str(TOWER), device="cpu", dtype="fp32",
                             delta=str(path))
    with pytest.raises(DeltaError) as refused:
        backend_load_model(settings)
    assert "trained on another base" in str(refused.value) and "\n" not in str(refused.value)
    app = create_app(settings, load=lambda: backend_load_model(settings))
    assert wait_for(lambda: app.test_client().get("/health").get_json()["model"] == "failed")
    ready = app.test_client().get("/ready")
    assert ready.status_code == 503 and "trained on another base" in ready.get_json()["reason"]


def test_serve_refuses_a_delta_that_is_not_one_before_starting(tmp_path, capsys):
    (tmp_path / "x.safetensors").write_bytes(b"not a safetensors file")
    for path, start in [(tmp_path / "missing", "does not exist"), (tmp_path / "x.safetensors", "is not a")]:
        assert backend_main(["serve", "--checkpoint", str(CHECKPOINT), "--delta", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: delta {path} {start}") and "\n" not in err


def test_batch_refuses_a_delta_of_another_base_in_one_line(tmp_path, capsys):
    path = foreign_delta(load_model(), tmp_path / "foreign.safetensors").path
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes((DATA_DIR / "images" / "a_96x64.png").read_bytes())
    code = batch_main(["--images", str(tmp_path / "images"), "--labels", "square", "--out", str(tmp_path / "t.json"),
                       "--checkpoint", str(CHECKPOINT), "--vision-tower", str(TOWER), "--device", "cpu",
                       "--dtype", "fp32", "--delta", str(path), "--no-progress"], env={})
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: cannot load the model: ") and "trained on another base" in err
    assert "\n" not in err


def test_start_training_needs_the_backends_auth_when_it_is_set(tmp_path, closing):
    settings = settings_for(tmp_path, one_record_dir(tmp_path / "stage3"), auth_token="s3cret",
                            train_min_new_records=5)
    app, service = make_app(settings, model=load_model())
    closing(service)
    client = app.test_client()
    refused = client.post("/webhook", json=START)
    assert refused.status_code == 401 and "auth" in refused.get_json()["error"]
    assert service.training.jobs.snapshot()["counts"] == {}
    assert client.get("/train/status").status_code == 401
    headers = {"Authorization": "Bearer s3cret"}
    accepted = client.post("/webhook", json=START, headers=headers)
    assert accepted.status_code == 200 and accepted.get_json()["job"]
    annotation = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1}, "task": {"id": 1}, "project": {"id": 7}}
    assert client.post("/webhook", json=annotation).get_json()["status"] == "queued"  # sent without auth
    assert service.training.jobs.wait_idle(60)
    assert client.get("/train/status", headers=headers).get_json()["history"][0]["state"] == "skipped"


def test_without_model_dir_training_is_off_and_says_why(tmp_path):
    settings = load_settings({}, stage3_dir=str(tmp_path / "stage3"))
    client = create_app(settings, model=load_model(), exporter=FlushOnly()).test_client()
    reply = client.post("/webhook", json=START).get_json()
    assert reply["status"] == "ignored" and "MODEL_DIR" in reply["reason"]
    assert client.get("/train/status").get_json() == {"enabled": False, "reason": reply["reason"]}


def test_training_settings_are_read_and_checked():
    from backend.settings import SettingsError

    settings = load_settings({"NEXTCHAT_DELTA": "/runs/r1/delta.safetensors", "MODEL_DIR": "/m",
                              "TRAIN_MIN_NEW_RECORDS": "10", "TRAIN_COOLDOWN_S": "300", "TRAIN_LOSS": "clean"})
    assert (settings.delta, settings.model_dir, settings.train_min_new_records) == ("/runs/r1/delta.safetensors",
                                                                                    "/m", 10)
    assert settings.train_cooldown_s == 300.0 and settings.train_loss == "clean"
    for env, message in [({"TRAIN_LOSS": "focal"}, "TRAIN_LOSS='focal': use reference or clean"),
                         ({"TRAIN_VAL_FRACTION": "1"}, "train_val_fraction must be in [0, 1), got 1.0"),
                         ({"TRAIN_COOLDOWN_S": "-1"}, "train_cooldown_s must be >= 0, got -1.0")]:
        with pytest.raises(SettingsError) as refused:
            load_settings(env)
        assert str(refused.value) == message
