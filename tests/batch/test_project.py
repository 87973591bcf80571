"""`--project`: predictions go onto the project's task for the same image, other images become new tasks."""

from __future__ import annotations

import json

import pytest

from backend.batch.project import UploadError, upload_to_project
from backend.batch.state import StateFile


class FakeProjectApi:
    def __init__(self, existing: dict[str, int], fail_on_call: int | None = None):
        self.existing, self.fail_on_call = existing, fail_on_call
        self.imported: list[dict] = []
        self.predictions: list[dict] = []
        self.calls = 0

    def task_ids_by_image(self, project, image_key):
        assert (project, image_key) == (7, "image")
        return dict(self.existing)

    def _call(self):
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise ConnectionError("connection refused\n(details)")

    def import_tasks(self, project, tasks):
        self._call()
        self.imported += tasks

    def import_predictions(self, project, predictions):
        self._call()
        self.predictions += predictions


def make_state(path, count: int) -> None:
    state = StateFile(path, "fp").open()
    for i in range(count):
        entry = {"model_version": "v1", "score": 0.5, "result": [{"from_name": "box", "value": {"x": i}}]}
        state.add_task(f"img{i}.png", {"data": {"image": f"/data/local-files/?d=img{i}.png"}, "predictions": [entry]})
    state.add_failure("bad.png", "bad image: corrupt")
    state.close()


def upload(path, api, chunk_calls=None):
    return upload_to_project(7, "image", path, "fp", "http://ls", "key", api=api)


def test_existing_tasks_get_predictions_others_are_imported(tmp_path):
    path = tmp_path / "s.jsonl"
    make_state(path, 5)
    api = FakeProjectApi({"/data/local-files/?d=img1.png": 11, "/data/local-files/?d=img3.png": 33})
    counts = upload(path, api)
    assert counts == {"predictions_on_existing_tasks": 2, "new_tasks": 3, "already_uploaded": 0}
    assert sorted((p["task"], p["result"][0]["value"]["x"], p["model_version"]) for p in api.predictions) == [
        (11, 1, "v1"), (33, 3, "v1")]
    assert [t["data"]["image"] for t in api.imported] == [f"/data/local-files/?d=img{i}.png" for i in (0, 2, 4)]
    assert all(t["predictions"][0]["score"] == 0.5 for t in api.imported)

    again = FakeProjectApi({})
    assert upload(path, again)["already_uploaded"] == 5 and again.calls == 0


def test_failed_upload_is_one_line_and_resumes(tmp_path, monkeypatch):
    path = tmp_path / "s.jsonl"
    make_state(path, 450)
    api = FakeProjectApi({}, fail_on_call=2)
    with pytest.raises(UploadError) as caught:
        upload(path, api)
    message = str(caught.value)
    assert "\n" not in message and "ConnectionError" in message and "key" not in message.split(":", 1)[0]
    assert len(api.imported) == 200            # the first chunk went through
    marker = json.loads(next(tmp_path.glob("s.jsonl.uploaded-7.json")).read_text())
    assert marker["records"] == 200
    retry = FakeProjectApi({})
    counts = upload(path, retry)
    assert counts["new_tasks"] == 250 and counts["already_uploaded"] == 200
    assert [t["data"]["image"] for t in retry.imported][0] == "/data/local-files/?d=img200.png"


def test_missing_credentials(tmp_path):
    path = tmp_path / "s.jsonl"
    make_state(path, 1)
    with pytest.raises(UploadError, match="LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"):
        upload_to_project(7, "image", path, "fp", "", "", api=None)
