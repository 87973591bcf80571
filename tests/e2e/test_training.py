"""The training loop end to end against a real Label Studio 1.23.2 (tests/ls_fixture.py), on the random tiny
checkpoint: annotations made through the API reach STAGE3_DIR by Label Studio's own webhooks (live export);
"Start Training" goes through Label Studio's /api/ml/{id}/train, which posts START_TRAINING to the backend;
the job publishes a delta, /setup reports the new version, and "Retrieve predictions" stores predictions of
that version next to the old ones. A second train request during the run joins the rerun instead of starting
a second job. Few steps on one small image pair, so the whole module stays well under a minute of training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from backend.dev.demo import draw_sample_image
from backend.dev.harness import free_port, start_backend
from backend.studio.client import LabelStudioError
from tests.e2e.waiting import wait_until
from tests.export.helpers import CONFIG_XML, polygon_item, text_item

pytestmark = pytest.mark.e2e

W, H = 320, 240
# One job of 6 steps on 2 records, at once, nothing filtered. The clean loss and large regions: on so little
# data the random tiny model under the reference loss first shrinks its masks to nothing (its cIoU drops and
# the job rightly keeps the old weights); with these its training-split cIoU rises from about 0.2 to 0.48.
TRAIN_ENV = {
    "TRAIN_SETTLE_S": "1", "TRAIN_COOLDOWN_S": "0", "TRAIN_MIN_NEW_RECORDS": "1", "TRAIN_MAX_STEPS": "6",
    "TRAIN_BATCH_SIZE": "1", "TRAIN_LR": "1e-2", "TRAIN_VAL_FRACTION": "0", "TRAIN_LOSS": "clean",
}
REGIONS = {  # task image -> (polygon in percent, its description)
    "street-a.png": ([(5, 30), (95, 30), (95, 95), (5, 95)], "the road and the car"),
    "street-b.png": ([(10, 5), (90, 5), (90, 60), (10, 60)], "the sky"),
}


def backend_json(url: str, path: str, method: str = "GET", **kwargs) -> dict:
    reply = requests.request(method, url + path, timeout=30, **kwargs)
    reply.raise_for_status()
    return reply.json()



@pytest.fixture(scope="module")
def training_backend(label_studio, random_tiny_checkpoint, tmp_path_factory):
    """`python -m backend serve` with the live export (STAGE3_DIR) and training (MODEL_DIR) on."""
    root = tmp_path_factory.mktemp("training-backend")
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_access_token,
           "STAGE3_DIR": str(root / "stage3"), "MODEL_DIR": str(root / "model"), "LOG_LEVEL": "INFO", **TRAIN_ENV}
    try:
        process, url = start_backend(random_tiny_checkpoint, random_tiny_checkpoint / "vision_tower", free_port(),
                                     root / "backend.log", env_overrides=env, timeout_s=300)
    except LabelStudioError as error:
        pytest.fail(f"the backend did not start: {error}", pytrace=False)
    try:
        yield url, root, process
    finally:
        process.stop()


def annotate(ls, task_ids: dict[str, int]) -> None:
    for name, task_id in task_ids.items():
        points, text = REGIONS[name]
        ls.create_annotation(task_id, [polygon_item("r1", points, label="cat", width=W, height=H),
                                       text_item("r1", [text], width=W, height=H)])


def stored_records(stage3_dir: Path) -> list[dict]:
    path = stage3_dir / "res.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def test_start_training_in_label_studio_publishes_a_new_version(label_studio, training_backend, tmp_path):
    url, root, process = training_backend
    ls = label_studio.client()
    project = ls.create_project("stage-3 training", CONFIG_XML)
    paths = [draw_sample_image(tmp_path / name, (W, H), seed=i) for i, name in enumerate(REGIONS)]
    task_ids = dict(zip(REGIONS, ls.upload_files(project["id"], paths)))
    ml_backend = ls.connect_ml_backend(project["id"], url)
    assert ml_backend["state"] == "CO", ml_backend
    base = backend_json(url, "/setup", "POST", json={"schema": CONFIG_XML})["model_version"]  # as LS asks
    ls.retrieve_predictions(project["id"])
    assert {p["model_version"] for p in ls.list_predictions(project_id=project["id"])} == {base}

    annotate(ls, task_ids)  # Label Studio's webhooks carry them to STAGE3_DIR
    records = wait_until(lambda: len(stored_records(root / "stage3")) == 2 and stored_records(root / "stage3"),
                         60, "the live export of both annotations", process.log_tail)
    assert sorted(r["expressions"][0] for r in records) == sorted(text for _, text in REGIONS.values())

    ls.request_json("POST", f"/api/ml/{ml_backend['id']}/train")  # the "Start Training" button
    ls.request_json("POST", f"/api/ml/{ml_backend['id']}/train")  # again, while the first job runs
    during = backend_json(url, "/train/status")
    assert during["counts"]["requests"] == 2 and during["counts"]["started"] == 1, during
    assert during["running"] is not None and during["waiting"]["requests"] == 1

    status = wait_until(lambda: (s := backend_json(url, "/train/status"))["state"] == "idle" and s, 300,
                        "the training job", process.log_tail)
    rerun, job = status["history"]
    assert job["id"] == during["running"]["id"] and job["state"] == "published", job
    assert job["records"] == 2 and job["metrics"]["after"]["ciou"] > job["metrics"]["before"]["ciou"]
    assert rerun["id"] == during["waiting"]["id"] and rerun["state"] == "skipped", rerun  # no new records
    assert status["counts"]["started"] == 2 and status["counts"]["published"] == 1
    assert job["model_version"] == f"{during['model_version']}+ft3.{job['delta_id']}"
    version = backend_json(url, "/setup", "POST", json={"schema": CONFIG_XML})["model_version"]
    assert version != base and f"+ft3.{job['delta_id']}" in version

    ls.retrieve_predictions(project["id"])  # asks again: no task has a prediction of the new version
    predictions = ls.list_predictions(project_id=project["id"])
    by_version = {v: sorted(p["task"] for p in predictions if p["model_version"] == v) for v in (base, version)}
    assert by_version == {base: sorted(task_ids.values()), version: sorted(task_ids.values())}, predictions
    assert ls.request_json("GET", f"/api/ml/{ml_backend['id']}")["model_version"] == version
