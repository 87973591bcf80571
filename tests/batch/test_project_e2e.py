"""`--project` against a real Label Studio 1.23 (the e2e fixture): an image that already has a task gets
its prediction there, the others are imported as new tasks with theirs; a rerun uploads nothing twice."""

from __future__ import annotations

import json
import shutil

import pytest
import requests

from backend.batch import main
from backend.batch.job import default_label_config

from .conftest import GOOD_IMAGES, LABELS

pytestmark = pytest.mark.e2e


def test_predictions_written_into_project(label_studio, image_dir, model_args, tmp_path, capsys):
    images = label_studio.local_files_root / "batch-project"
    shutil.copytree(image_dir, images, dirs_exist_ok=True)
    client = label_studio.client(label_studio.personal_access_token)
    project = client.create_project("batch pre-labelling", default_label_config(LABELS))
    existing_reference = "/data/local-files/?d=batch-project/img0.png"
    (existing_id,) = client.import_tasks(project["id"], [{"image": existing_reference}])
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_access_token,
           "LOCAL_FILES_DOCUMENT_ROOT": str(label_studio.local_files_root)}
    argv = ["--images", str(images), "--labels", ",".join(LABELS), "--project", str(project["id"]),
            "--state", str(tmp_path / "state.jsonl"), "--no-progress", *model_args]

    assert main(argv, env=env) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert summary["project"] == {"predictions_on_existing_tasks": 1, "new_tasks": 2, "already_uploaded": 0,
                                  "local_files_storage": "added"}  # so Label Studio serves the images
    tasks = {t["data"]["image"]: t["id"] for t in client.list_tasks(project["id"])}
    assert sorted(tasks) == sorted(f"/data/local-files/?d=batch-project/{name}" for name in GOOD_IMAGES)
    assert tasks[existing_reference] == existing_id
    for task_id in tasks.values():
        (prediction,) = client.list_predictions(task_id=task_id)
        labels = {r["value"][r["type"]][0] for r in prediction["result"]}
        assert labels == set(LABELS) and prediction["model_version"]

    assert main(argv, env=env) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert again["already_done"] == 3 and again["project"]["already_uploaded"] == 3
    assert again["project"]["new_tasks"] == again["project"]["predictions_on_existing_tasks"] == 0
    assert again["project"]["local_files_storage"] == "existing"
    image = requests.get(f"{label_studio.url}{existing_reference}", timeout=30,
                         headers=client.auth_headers())
    assert image.status_code == 200 and image.content == (images / "img0.png").read_bytes()
    assert len(client.list_tasks(project["id"])) == 3
