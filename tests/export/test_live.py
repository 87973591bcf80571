"""Live mode: webhook payloads keep DIR current, idempotently, off the request thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from backend.export.check import check_stage3_dir
from backend.export.live import LiveExporter
from tests.export.helpers import (
    annotation,
    brush_item,
    image_bytes,
    polygon_item,
    read_records,
    task,
    text_item,
    webhook,
)

POLY = [(10, 10), (60, 10), (60, 70), (10, 70)]
TASK = task(5, "/data/upload/1/img.png", [])


class FakeLoader:
    """Stands in for backend.images.ImageLoader; counts fetches, can be slowed down."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.calls = 0
        self.release = threading.Event()
        self.release.set()

    def load_bytes(self, value, task_id=None):
        self.release.wait(10)
        time.sleep(self.delay)
        self.calls += 1
        return image_bytes(320, 240, seed=task_id or 0)


@pytest.fixture()
def live(tmp_path):
    loader = FakeLoader()
    exporter = LiveExporter(tmp_path / "stage3", images_loader=loader)
    yield exporter, loader, tmp_path / "stage3"
    exporter.close()


def created(text="a cat", points=POLY, updated_at="2026-01-01T10:00:00.000000Z", action="ANNOTATION_CREATED"):
    result = [polygon_item("p1", points), text_item("p1", [text])]
    return webhook(action, annotation(100, 5, result, updated_at=updated_at), TASK)


def test_created_updated_deleted(live):
    exporter, loader, out = live
    exporter.submit(created())
    assert exporter.flush(60)
    (record,) = read_records(out)
    assert record["expressions"] == ["a cat"] and record["bbox"] == [32.0, 24.0, 192.0, 168.0]
    exporter.submit(created("a fat cat", [(20, 20), (60, 20), (60, 70)], "2026-01-01T11:00:00Z", "ANNOTATION_UPDATED"))
    assert exporter.flush(60)
    (record,) = read_records(out)
    assert record["expressions"] == ["a fat cat"] and record["bbox"] == [64.0, 48.0, 192.0, 168.0]
    assert loader.calls == 1  # the stored image of the task is reused
    assert check_stage3_dir(out).ok
    exporter.submit({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 100}], "project": {"id": 1}})
    assert exporter.flush(60)
    assert read_records(out) == []
    assert list((out / "images").iterdir()) == []
    exporter.submit(created("late", action="ANNOTATION_UPDATED", updated_at="2026-01-02T00:00:00Z"))
    assert exporter.flush(60)
    assert read_records(out) == []  # a late event for a deleted annotation is ignored


def test_replay_is_idempotent_and_older_versions_are_ignored(live):
    exporter, _, out = live
    newer = created("newer", updated_at="2026-01-01T12:00:00Z", action="ANNOTATION_UPDATED")
    exporter.submit(newer)
    exporter.flush(60)
    first = (out / "res.jsonl").read_bytes()
    exporter.submit(newer)
    exporter.submit(created("older", updated_at="2026-01-01T09:00:00Z", action="ANNOTATION_UPDATED"))
    exporter.flush(60)
    assert (out / "res.jsonl").read_bytes() == first


def test_submit_returns_at_once_while_the_worker_is_slow(tmp_path):
    loader = FakeLoader(delay=0.5)
    loader.release.clear()
    exporter = LiveExporter(tmp_path / "s", images_loader=loader)
    try:
        start = time.monotonic()
        for index in range(20):
            payload = created()
            payload["annotation"] = {**payload["annotation"], "id": 200 + index}
            exporter.submit(payload)
        assert time.monotonic() - start < 0.2
        assert not exporter.flush(0.2)
        loader.release.set()
        assert exporter.flush(30)
        assert len(read_records(tmp_path / "s")) == 20
    finally:
        exporter.close()


def test_bulk_created_tasks_deleted_and_unrelated_events(live):
    exporter, _, out = live
    mask = np.zeros((240, 320), bool)
    mask[10:50, 10:90] = True
    tasks = [task(5, "/data/upload/1/a.png", []), task(6, "/data/upload/1/b.png", [])]
    annotations = [annotation(1, 5, [polygon_item("p", POLY)]), annotation(2, 6, [brush_item("b", mask)])]
    exporter.submit({"action": "ANNOTATIONS_CREATED", "annotation": annotations, "task": tasks,
                     "project": {"id": 1, "label_config": "<View/>"}})
    exporter.submit({"action": "PROJECT_UPDATED", "project": {"id": 1}})
    exporter.submit({"action": "ANNOTATION_CREATED", "annotation": "junk"})
    exporter.submit("not a dict")
    assert exporter.flush(60)
    assert sorted(r["task_id"] for r in read_records(out)) == [5, 6]
    exporter.submit({"action": "TASKS_DELETED", "tasks": [{"id": 6}], "project": {"id": 1}})
    assert exporter.flush(60)
    assert [r["task_id"] for r in read_records(out)] == [5]
    assert check_stage3_dir(out).ok


def test_restart_cleans_temp_files_and_rebuilds(live, tmp_path):
    exporter, loader, out = live
    exporter.submit(created())
    exporter.flush(60)
    exporter.close()
    (out / "res.jsonl").write_text("")  # as if killed after an entry was stored, before the rebuild
    (out / ".tmp-abc").write_bytes(b"partial")
    restarted = LiveExporter(out, images_loader=loader)
    try:
        assert restarted.flush(10)
        assert len(read_records(out)) == 1
        assert not (out / ".tmp-abc").exists()
    finally:
        restarted.close()


def test_backend_webhook_queues_and_answers_at_once(tmp_path):
    from backend.http.app import create_app
    from backend.settings import load_settings

    loader = FakeLoader(delay=2.0)
    exporter = LiveExporter(tmp_path / "s", images_loader=loader)
    try:
        app = create_app(load_settings({}), model=None, exporter=exporter)
        client = app.test_client()
        start = time.monotonic()
        reply = client.post("/webhook", json=created())
        assert reply.status_code in (200, 201) and time.monotonic() - start < 0.5
        assert exporter.flush(30)
        (record,) = read_records(tmp_path / "s")
        assert record["expressions"] == ["a cat"]
        reply = client.post("/webhook", json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 100}]})
        assert reply.status_code in (200, 201) and exporter.flush(30)
        assert read_records(tmp_path / "s") == []
    finally:
        exporter.close()
