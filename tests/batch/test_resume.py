"""Resuming: a rerun labels only what is not done; an interrupted run loses at most the image in flight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.batch.runner import run_job
from backend.batch.state import StateError

from .conftest import GOOD_IMAGES, CountingModel, comparable, spec_for, write_images


@pytest.fixture
def folder(tmp_path) -> Path:
    root = write_images(tmp_path / "images", GOOD_IMAGES)
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def run(spec, tmp_path, model, **kwargs):
    return run_job(spec, tmp_path / "tasks.json.state.jsonl", tmp_path / "tasks.json", show_progress=False,
                   model=model, **kwargs)


def test_rerun_skips_done_images(folder, tmp_path, tiny_model, random_tiny_checkpoint):
    spec = spec_for(folder, random_tiny_checkpoint)
    first_model = CountingModel(tiny_model)
    first = run(spec, tmp_path, first_model)
    first_tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert (first_model.calls, first.labelled, first.failed, first.already_done) == (3, 3, 1, 0)

    second_model = CountingModel(tiny_model)
    second = run(spec, tmp_path, second_model)
    assert second_model.calls == 0
    assert (second.labelled, second.failed, second.already_done, second.tasks_written) == (0, 1, 3, 3)
    assert json.loads((tmp_path / "tasks.json").read_text()) == first_tasks   # ids included: read back, not redone

    restarted_model = CountingModel(tiny_model)
    restarted = run(spec, tmp_path, restarted_model, restart=True)
    assert restarted_model.calls == 3 and restarted.already_done == 0 and restarted.tasks_written == 3


def test_interrupted_run_resumes(folder, tmp_path, tiny_model, random_tiny_checkpoint):
    spec = spec_for(folder, random_tiny_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path, CountingModel(tiny_model, fail_after=1))
    state = tmp_path / "tasks.json.state.jsonl"
    done_before = [json.loads(line)["key"] for line in state.read_text().splitlines()[1:]
                   if "task" in json.loads(line)]
    assert len(done_before) == 1
    with state.open("a") as handle:      # a write cut short by the kill
        handle.write('{"key": "img1.png", "task": {"data": {"ima')

    resumed_model = CountingModel(tiny_model)
    resumed = run(spec, tmp_path, resumed_model)
    assert resumed_model.calls == 2 and resumed.already_done == 1 and resumed.tasks_written == 3
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert sorted(Path(t["data"]["image"]).relative_to(folder).as_posix() for t in tasks) == sorted(GOOD_IMAGES)


def test_state_of_another_job_is_refused(folder, tmp_path, tiny_model, random_tiny_checkpoint):
    run(spec_for(folder, random_tiny_checkpoint, labels=["dog"]), tmp_path, CountingModel(tiny_model))
    with pytest.raises(StateError, match="--restart"):
        run(spec_for(folder, random_tiny_checkpoint, labels=["cat"]), tmp_path, CountingModel(tiny_model))


def test_output_matches_a_fresh_run(folder, tmp_path, tiny_model, random_tiny_checkpoint):
    """Resumed output == one uninterrupted run (modulo random region ids)."""
    spec = spec_for(folder, random_tiny_checkpoint)
    whole = tmp_path / "whole"
    whole.mkdir()
    run(spec, whole, tiny_model)
    parts = tmp_path / "parts"
    parts.mkdir()
    with pytest.raises(KeyboardInterrupt):
        run(spec, parts, CountingModel(tiny_model, fail_after=2))
    run(spec, parts, tiny_model)
    assert comparable(json.loads((parts / "tasks.json").read_text())) == comparable(
        json.loads((whole / "tasks.json").read_text()))
