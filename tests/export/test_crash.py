"""A writer killed mid-update (SIGKILL, or a failing os.replace) leaves DIR valid and loses nothing stored."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend import files as files_module
from backend.export.check import check_stage3_dir
from backend.export.live import LiveExporter
from backend.export.store import Stage3Store
from tests.export.helpers import read_records

REPO_ROOT = Path(__file__).resolve().parents[2]


def assert_dir_consistent(out: Path) -> None:
    result = check_stage3_dir(out)
    assert result.ok, result.problems
    for entry_file in (out / ".annotations").glob("*.json"):
        json.loads(entry_file.read_text("utf-8"))  # every stored entry is complete JSON


def start_writer(out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.export.crash_writer", str(out)], cwd=REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        raise AssertionError(f"writer did not start: {line!r} {process.stderr.read()[-2000:]}")
    return process


def kill_during_a_write(writer: subprocess.Popen, out: Path, timeout: float = 10.0) -> bool:
    """SIGKILL the writer as soon as a temp file shows it is mid-write; True if one was seen."""
    deadline = time.monotonic() + timeout
    seen = False
    while time.monotonic() < deadline and not seen:
        seen = any(out.rglob(".tmp-*"))
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(30)
    writer.stdout.close()
    writer.stderr.close()
    return seen


def test_sigkill_during_writes_leaves_a_valid_dir(tmp_path):
    out = tmp_path / "stage3"
    rng = random.Random(4)
    left_partial = 0
    for attempt in range(8):
        writer = start_writer(out)
        if attempt % 2:
            time.sleep(rng.uniform(0.05, 1.0))  # anywhere
        kill_during_a_write(writer, out)
        left_partial += any(out.rglob(".tmp-*"))
        assert_dir_consistent(out)
        assert len(read_records(out)) == 48  # 24 annotations x (brush + polygon): nothing lost
        # what a restarted exporter makes of it: res.jsonl rebuilt from every stored entry
        stored = Stage3Store(out).all_entries()
        restarted = LiveExporter(out, images_loader=lambda value, task_id=None: b"")
        assert restarted.flush(60)
        restarted.close()
        assert_dir_consistent(out)
        assert len(read_records(out)) == sum(len(entry["records"]) for entry in stored) == 48
        assert not list(out.rglob(".tmp-*"))
    assert left_partial >= 2, "the kills should have interrupted some writes"


def test_failing_replace_keeps_the_previous_dataset(tmp_path, monkeypatch):
    out = tmp_path / "stage3"
    store = Stage3Store(out)
    record = {"img_path": "x.png", "expressions": ["old"], "height": 4, "width": 4,
              "bbox": [0, 0, 2, 2], "mask": [[0, 0, 2, 0, 2, 2, 0, 2]]}
    store.put_entry({"annotation_id": 1, "task_id": 1, "records": [record], "skipped": []})
    store.rebuild()
    before = (out / "res.jsonl").read_bytes()
    store.put_entry({"annotation_id": 1, "task_id": 1, "records": [{**record, "expressions": ["new"]}],
                     "skipped": []})

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(files_module.os, "replace", crash)  # the one atomic writer (backend.files)
    with pytest.raises(OSError):
        store.rebuild()
    monkeypatch.undo()
    assert (out / "res.jsonl").read_bytes() == before
    assert not list(out.rglob(".tmp-*"))
    store.rebuild()
    assert read_records(out)[0]["expressions"] == ["new"]
