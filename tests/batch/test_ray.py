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
