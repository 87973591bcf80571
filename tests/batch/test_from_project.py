"""`batch --from-project` without Label Studio: a fake project API, the real job, state and uploads."""

from __future__ import annotations

import json

import pytest

from backend.batch.ls_project import ProjectError, parse_filter
from backend.batch.project_job import ProjectJob, job_fingerprint, prefetched, run_project_job
from backend.batch.task_labeler import TaskLabeler
from backend.images import ImageLoader
from backend.predict.config import parse_config
from backend.settings import load_settings
from tests.backend.fakes import FakeNextChat, data_uri, label_config, png_bytes

BOXES = label_config("boxes_polygons.xml")
SETTINGS = load_settings({})


class FakeProject:
    """The calls of backend.batch.ls_project.LabelStudioProject, on a dict of tasks."""

    def __init__(self, tasks: dict[int, dict], fail_import_on: int | None = None):
        self.project_id, self.all_tasks, self.fail_import_on = 9, tasks, fail_import_on
        self.imports: list[list[dict]] = []
        self.fetched: list[int] = []

    def task_ids(self, view=None, filters=None):
        return sorted(self.all_tasks)

    def tasks(self, ids):
        for task_id in ids:
            self.fetched.append(task_id)
            yield {"id": task_id, "data": self.all_tasks[task_id]}

    def import_predictions(self, predictions):
        if self.fail_import_on is not None and len(self.imports) + 1 == self.fail_import_on:
            raise ProjectError("Label Studio project 9: import predictions: ConnectError: refused")
        self.imports.append(predictions)


def make_tasks(count: int, broken: set[int] = frozenset()) -> dict[int, dict]:
    tasks = {}
    for task_id in range(1, count + 1):
        image = "data:image/png;base64,AAAA" if task_id in broken else data_uri(png_bytes(40 + task_id, 30))
        tasks[task_id] = {"image": image}
    return tasks


def run(project, tmp_path, model, restart=False):
    labeler = TaskLabeler(BOXES, SETTINGS, {}, model=model)
    job = ProjectJob(project, BOXES, parse_config(BOXES, SETTINGS), ImageLoader(SETTINGS))
    return run_project_job(job, lambda tasks: (labeler.label(task) for task in tasks), labeler.model_version,
                           tmp_path / "state.jsonl", restart=restart, show_progress=False), labeler


def test_every_task_predicted_in_bulk_a_bad_one_reported_and_a_rerun_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr("backend.batch.project_job.UPLOAD_CHUNK", 4)
    project = FakeProject(make_tasks(10, broken={3}))
    model = FakeNextChat()
    summary, labeler = run(project, tmp_path, model)
    assert (summary.labelled, summary.failed, summary.uploaded) == (9, 1, 9)
    assert summary.failures[0][0] == "3" and "bad image" in summary.failures[0][1]
    assert [len(chunk) for chunk in project.imports] == [4, 4, 1]  # bulk, never one request per prediction
    sent = [p for chunk in project.imports for p in chunk]
    assert sorted(p["task"] for p in sent) == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert all(p["model_version"] == labeler.model_version and "+cfg." in p["model_version"] for p in sent)
    assert all(p["result"] and 0 < p["score"] <= 1 for p in sent)

    project.all_tasks[3] = {"image": data_uri(png_bytes(50, 50))}  # fixed in Label Studio; rerun
    project.fetched.clear()
    again, _ = run(project, tmp_path, model)
    assert project.fetched == [3] and (again.labelled, again.already_done, again.uploaded) == (1, 9, 1)


def test_an_interrupted_upload_is_sent_by_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setattr("backend.batch.project_job.UPLOAD_CHUNK", 3)
    project = FakeProject(make_tasks(7), fail_import_on=2)
    with pytest.raises(ProjectError):
        run(project, tmp_path, FakeNextChat())
    assert [len(chunk) for chunk in project.imports] == [3]  # the second chunk failed
    project.fail_import_on = None
    again, _ = run(project, tmp_path, FakeNextChat())
    uploaded = sorted(p["task"] for chunk in project.imports for p in chunk)
    assert uploaded == list(range(1, 8))  # each task sent exactly once over both runs
    assert again.labelled + again.already_done == 7


def test_other_settings_need_a_restart(tmp_path):
    project = FakeProject(make_tasks(2))
    run(project, tmp_path, FakeNextChat())
    assert job_fingerprint(9, BOXES, "a+cfg.1", None, None) != job_fingerprint(9, BOXES, "a+cfg.2", None, None)
    strict = TaskLabeler(BOXES, SETTINGS, {"score_threshold": 0.5}, model=FakeNextChat())
    job = ProjectJob(project, BOXES, parse_config(BOXES, SETTINGS), ImageLoader(SETTINGS))
    from backend.batch.state import StateError

    with pytest.raises(StateError, match="--restart"):
        run_project_job(job, lambda tasks: (strict.label(t) for t in tasks), strict.model_version,
                        tmp_path / "state.jsonl", show_progress=False)


def test_prefetch_keeps_order_and_bounds_what_is_in_flight():
    import threading
    import time

    in_flight, peak, lock = [0], [0], threading.Lock()

    def fetch(task):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.01 * (task % 3))
        with lock:
            in_flight[0] -= 1
        return task

    assert list(prefetched(range(40), fetch, threads=4, ahead=6)) == list(range(40))
    assert peak[0] <= 4


def test_filters_are_checked():
    assert parse_filter('{"conjunction": "or", "items": []}') == {"conjunction": "or", "items": []}
    assert parse_filter('{"filters": {"items": [{"filter": "filter:tasks:id"}]}}')["conjunction"] == "and"
    for text, reason in (("{x", "not JSON"), ("[1]", "JSON object"), ('{"a": 1}', "items")):
        with pytest.raises(ValueError, match=reason):
            parse_filter(text)


def test_cli_refuses_project_without_document_root_and_mixed_modes(tmp_path, capsys, random_tiny_checkpoint):
    from backend.batch import main

    (tmp_path / "images").mkdir()
    model = ["--checkpoint", str(random_tiny_checkpoint)]
    assert main(["--images", str(tmp_path / "images"), "--labels", "car", "--project", "3", *model], env={}) == 2
    assert "--document-root" in capsys.readouterr().err
    assert main(["--from-project", "3", "--images", str(tmp_path), *model], env={}) == 2
    assert "drop --images" in capsys.readouterr().err
    assert main(["--from-project", "3", *model], env={}) == 2  # no LABEL_STUDIO_URL / key
    assert json.dumps("LABEL_STUDIO_URL")[1:-1] in capsys.readouterr().err


def test_demo_banner_says_what_to_export_and_where_the_backend_log_is(tmp_path, capsys):
    from backend.dev.demo import print_banner
    from backend.dev.harness import LabelStudioServer

    server = LabelStudioServer("http://127.0.0.1:8080", "0123abcd", "demo@example.com", "pw", tmp_path, tmp_path)
    print_banner(server, "http://127.0.0.1:9090", {"id": 4}, tmp_path / "backend.log")
    out = capsys.readouterr().out
    assert "export LABEL_STUDIO_URL=http://127.0.0.1:8080" in out and "export LABEL_STUDIO_API_KEY=0123abcd" in out
    assert f"{tmp_path / 'backend.log'}" in out and "/projects/4/data" in out
