"""In-server training on the tiny checkpoint: "Start Training" -> a job -> a published (or kept) delta, swapped
in atomically, reloaded on restart; coalescing through the GPU lock, the minimum of new records, refusals."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from backend.deadline import Deadline
from backend.predict.calls import ModelCalls
from model import NextChat
from tests.model.stage3_common import CHECKPOINT, DATA_DIR, TOWER, load_model, one_thread
from tests.train.common import START, all_records_dir, make_app, one_record_dir, settings_for, wait_for

single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)
BOX = [7.0, 10.0, 40.0, 44.0]


@pytest.fixture()
def apps():
    """make_app(...) whose training threads are stopped after the test."""
    made = []

    def make(*args, **kwargs):
        app, service = make_app(*args, **kwargs)
        made.append(service)
        return app, service

    yield make
    for service in made:
        service.training.close()


def train_and_wait(client, service, timeout: float = 120.0) -> dict:
    reply = client.post("/webhook", json=START)
    assert reply.status_code == 200, reply.get_json()
    assert service.training.jobs.wait_idle(timeout)
    status = client.get("/train/status").get_json()
    assert status["history"][0]["id"] == reply.get_json()["job"]
    return status["history"][0]


def test_start_training_publishes_a_better_delta_and_a_restart_reloads_it(tmp_path, apps):
    settings = settings_for(tmp_path, one_record_dir(tmp_path / "stage3"))
    nc = load_model()
    base = nc.model_version
    app, service = apps(settings, model=nc)
    client = app.test_client()
    started = time.monotonic()
    reply = client.post("/webhook", json=START)
    assert reply.status_code == 200 and time.monotonic() - started < 1.0  # answered at once
    assert reply.get_json()["status"] == "queued" and reply.get_json()["job"]
    assert service.training.jobs.wait_idle(120)
    status = client.get("/train/status").get_json()
    (job,) = status["history"]
    assert job["id"] == reply.get_json()["job"] and job["state"] == "published", job["reason"]
    assert job["project"] == 7 and job["records"] == job["new_records"] == 1
    assert job["step"] == job["total_steps"] == 4
    assert job["metrics"]["split"] == "train"
    assert job["metrics"]["after"]["ciou"] > job["metrics"]["before"]["ciou"]
    version = nc.model_version
    assert version == f"{base}+ft3.{job['delta_id']}" == job["model_version"] == status["model_version"]
    assert client.post("/setup", json={}).get_json()["model_version"].startswith(version)
    metrics = client.get("/metrics").get_json()
    assert metrics["train_published"] == 1 and metrics["train_state"] == "idle" and metrics["train_last_error"] == ""
    assert status["active"]["run"] == job["id"] and status["active"]["model_version"] == version
    run_dir = tmp_path / "model" / "stage3" / "runs" / job["id"]
    assert (run_dir / "data" / "res.jsonl").read_text() == (tmp_path / "stage3" / "res.jsonl").read_text()
    assert json.loads((run_dir / "metrics.json").read_text())["delta_id"] == job["delta_id"]

    restarted, service2 = apps(settings, load=load_model)  # the server's path: loaded in the background
    assert wait_for(lambda: service2.holder.state().ready)
    assert service2.holder.require().model_version == version
    assert restarted.test_client().get("/train/status").get_json()["last_error"] == ""


def test_a_delta_whose_ciou_drops_is_not_published_and_unchanged_data_is_skipped(tmp_path, apps):
    settings = settings_for(tmp_path, all_records_dir(tmp_path / "stage3"), train_lr=10.0, train_batch_size=2,
                            train_max_steps=2)
    nc = load_model()
    base = nc.model_version
    app, service = apps(settings, model=nc)
    client = app.test_client()
    job = train_and_wait(client, service)
    assert job["state"] == "kept" and job["delta_id"], job
    before, after = job["metrics"]["before"]["ciou"], job["metrics"]["after"]["ciou"]
    assert after < before
    assert job["reason"] == f"not published: train cIoU {before:.4f} -> {after:.4f}; still serving {base}"
    assert nc.model_version == base and client.get("/train/status").get_json()["active"] is None
    again = train_and_wait(client, service)  # nothing new since that run
    assert again["state"] == "skipped"
    assert again["reason"] == "0 new records in STAGE3_DIR since the last run (7 in all); TRAIN_MIN_NEW_RECORDS is 1"


def test_too_few_new_records_skip_the_run(tmp_path, apps):
    settings = settings_for(tmp_path, all_records_dir(tmp_path / "stage3"), train_min_new_records=8,
                            train_cooldown_s=600.0)
    app, service = apps(settings, model=load_model())
    client = app.test_client()
    job = train_and_wait(client, service)
    assert job["state"] == "skipped" and job["step"] == 0
    assert job["reason"] == "7 new records in STAGE3_DIR since the last run (7 in all); TRAIN_MIN_NEW_RECORDS is 8"
    assert not (tmp_path / "model" / "stage3" / "runs" / job["id"]).exists()
    assert client.post("/webhook", json=START).get_json()["starts_in_s"] == 0.0  # a skip imposes no cool-down


def test_requests_while_a_job_waits_for_the_gpu_coalesce_into_one_rerun(tmp_path, apps):
    settings = settings_for(tmp_path, one_record_dir(tmp_path / "stage3"), train_max_steps=1, train_cooldown_s=1.0)
    app, service = apps(settings, model=load_model())
    client = app.test_client()
    lock = service.holder.lock
    assert lock.acquire(1.0, urgent=True)  # the GPU is busy with an annotator's call
    try:
        first = client.post("/webhook", json=START).get_json()["job"]
        assert wait_for(lambda: (service.training.jobs.snapshot()["running"] or {}).get("phase") == "features")
        replies = [client.post("/webhook", json=START).get_json() for _ in range(3)]
        status = client.get("/train/status").get_json()
    finally:
        lock.release()
    rerun = replies[0]["job"]
    assert rerun != first and [r["job"] for r in replies] == [rerun] * 3
    assert [r["status"] for r in replies] == ["queued", "coalesced", "coalesced"] and replies[0]["after"] == first
    assert status["running"]["id"] == first and status["waiting"]["requests"] == 3 and status["counts"]["started"] == 1
    assert service.training.jobs.wait_idle(120)
    second, done = client.get("/train/status").get_json()["history"]
    assert done["id"] == first and done["state"] in ("published", "kept"), done["reason"]
    assert second["id"] == rerun and second["state"] == "skipped" and second["requests"] == 3
    assert second["started_at"] - done["finished_at"] >= 0.95  # the cool-down
    assert client.get("/metrics").get_json()["train_started"] == 2


def test_the_swap_waits_for_calls_in_flight_and_the_image_cache_stays_valid(tmp_path, apps):
    settings = settings_for(tmp_path, one_record_dir(tmp_path / "stage3"))
    nc = load_model()
    base = nc.model_version
    app, service = apps(settings, model=nc)
    image = Image.open(DATA_DIR / "images" / "a_96x64.png").convert("RGB")
    old_mask = nc.segment(image, BOX).mask
    session = nc.encode_image(image)
    seen, entered, finish = {}, threading.Event(), threading.Event()

    def in_flight(model):
        seen["start"] = model.model_version
        entered.set()
        finish.wait(60)
        seen["mask"], seen["end"] = model.segment(image, BOX).mask, model.model_version

    calls = ModelCalls(service.holder, Deadline.after(120), urgent=True)
    app.test_client().post("/webhook", json=START)
    jobs = service.training.jobs
    assert wait_for(lambda: (jobs.snapshot()["running"] or {}).get("phase") == "training")
    caller = threading.Thread(target=calls.run, args=(in_flight,))
    caller.start()
    try:
        assert entered.wait(30)
        assert wait_for(lambda: (jobs.snapshot()["running"] or {}).get("phase") == "publishing")
        time.sleep(0.2)
        assert nc.model_version == base  # the job waits for the call
    finally:
        finish.set()
        caller.join(60)
    assert seen["start"] == seen["end"] == base and np.array_equal(seen["mask"], old_mask)
    assert jobs.wait_idle(60)
    (job,) = jobs.snapshot()["history"]
    assert job["state"] == "published" and nc.model_version == job["model_version"] != base
    assert nc.encode_image(image) is session  # the cached session is kept ...
    new_mask = nc.segment(image, BOX).mask
    delta_path = tmp_path / "model" / "stage3" / "runs" / job["id"] / "delta.safetensors"
    fresh = NextChat.from_pretrained(CHECKPOINT, vision_tower=TOWER, delta=delta_path)
    assert np.array_equal(new_mask, fresh.segment(image, BOX).mask)  # ... and right for the new weights
    assert not np.array_equal(new_mask, old_mask)
