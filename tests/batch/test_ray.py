"""The Ray path (Ray Data, one model replica per N CPUs) gives the single-process tasks."""

from __future__ import annotations

import json

import pytest
import ray

from backend.batch import main

from .conftest import LABELS, comparable


@pytest.fixture(scope="module")
def local_ray():
    from backend.batch.ray_runner import runtime_env

    ray.init(num_cpus=2, include_dashboard=False, runtime_env=runtime_env(), log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_equals_single_process(local_ray, single_run, image_dir, model_args, tmp_path):
    single_out, _, _ = single_run
    out = tmp_path / "ray.json"
    code = main(["--images", str(image_dir), "--labels", ",".join(LABELS), "--out", str(out), "--no-progress",
                 "--absolute-paths", "--ray", "auto", "--ray-cpus-per-replica", "2", *model_args], env={})
    assert code == 0
    ray_tasks = json.loads(out.read_text())
    assert len(ray_tasks) == 3
    assert comparable(ray_tasks) == comparable(json.loads(single_out.read_text()))
    state = [json.loads(line) for line in (tmp_path / "ray.json.state.jsonl").read_text().splitlines()[1:]]
    assert [r["key"] for r in state if "error" in r] == ["broken.jpg"]


def test_from_project_on_ray_equals_single_process(local_ray, random_tiny_checkpoint, tmp_path):
    from backend.batch.project_job import ProjectJob, run_project_job
    from backend.batch.ray_tasks import RayTaskPool
    from backend.batch.runner import RayOptions
    from backend.batch.task_labeler import TaskLabeler
    from backend.images import ImageLoader
    from backend.predict.config import parse_config
    from backend.settings import load_settings
    from tests.batch.test_from_project import BOXES, FakeProject, make_tasks

    settings = load_settings({}, checkpoint=str(random_tiny_checkpoint), device="cpu", dtype="fp32",
                             vision_tower=str(random_tiny_checkpoint / "vision_tower"))
    results = {}
    for mode in ("single", "ray"):
        project = FakeProject(make_tasks(4, broken={2}))
        if mode == "ray":
            pool = RayTaskPool(BOXES, settings, {}, RayOptions("auto", 2, 1))
            labels, version = pool.labels, pool.model_version
        else:
            labeler = TaskLabeler(BOXES, settings, {})
            labels, version = (lambda tasks, labeler=labeler: map(labeler.label, tasks)), labeler.model_version
        job = ProjectJob(project, BOXES, parse_config(BOXES, settings), ImageLoader(settings))
        summary = run_project_job(job, labels, version, tmp_path / f"{mode}.jsonl", show_progress=False)
        assert (summary.labelled, summary.failed) == (3, 1)
        sent = sorted((p for chunk in project.imports for p in chunk), key=lambda p: p["task"])
        results[mode] = json.loads(json.dumps(sent))
        for prediction in results[mode]:
            for item in prediction["result"]:
                item.pop("id", None)
    assert results["ray"] == results["single"] and results["ray"][0]["model_version"].count("+cfg.") == 1
