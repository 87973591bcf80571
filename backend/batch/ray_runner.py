"""The batch job on a Ray cluster: Ray Data over the pending image paths, ``map_batches`` with an actor
class that holds one model replica (one per GPU, or one per ``cpus_per_replica`` CPUs).

Every worker runs the very :class:`~backend.batch.labeler.ImageLabeler` of the single-process job, so
the tasks are the same (only their order differs; the state is keyed by image path). Workers read the
images and the checkpoint at the driver's paths: on a multi-node cluster those must be on a shared
filesystem. Our packages (backend, model) are shipped to the workers with ``py_modules``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path

from backend.batch.job import JobSpec
from model.reasons import one_line

PACKAGE_DIRS = [Path(__file__).resolve().parents[1], Path(__file__).resolve().parents[2] / "model"]


class RayLabeler:
    """Ray Data actor: one model replica; a batch of image keys -> their state lines (JSON text)."""

    def __init__(self, spec: JobSpec, threads: int | None = None):
        import torch

        from backend.batch.labeler import ImageLabeler

        if threads and not torch.cuda.is_available():
            torch.set_num_threads(threads)
        self.labeler = ImageLabeler(spec)

    def __call__(self, batch: dict) -> dict:
        keys = [str(key) for key in batch["key"]]
        lines = [json.dumps(self.labeler.label(key).record(), ensure_ascii=False) for key in keys]
        return {"key": keys, "line": lines}


def connect(address: str):
    """Use the Ray this process already joined (started with :func:`runtime_env`, or from the repository
    root), else join ``address``; ``auto``: a running cluster (RAY_ADDRESS or ``ray start`` on this
    machine), else a new local Ray."""
    import ray

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return ray
    if address == "auto":
        try:
            ray.init(address="auto", runtime_env=runtime_env(), log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError):
            ray.init(runtime_env=runtime_env(), include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, runtime_env=runtime_env(), log_to_driver=False)
    return ray


def runtime_env() -> dict:
    """Ships this checkout's backend and model packages to the workers (pass it to ray.init when
    starting Ray yourself before calling the job)."""
    return {"py_modules": [str(p) for p in PACKAGE_DIRS]}


def replica_plan(resources: dict, cpus_per_replica: int, replicas: int | None) -> dict:
    """map_batches resources per actor and the actor count: a GPU each when the cluster has GPUs,
    else ``cpus_per_replica`` CPUs each."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return {"num_gpus": 1, "num_cpus": 1, "replicas": replicas or gpus, "threads": None}
    cpus = int(resources.get("CPU", 1))
    per = max(1, cpus_per_replica)
    return {"num_gpus": 0, "num_cpus": per, "replicas": replicas or max(1, cpus // per), "threads": per}


def label_on_ray(spec: JobSpec, keys: Iterable[str], options, on_record: Callable[[dict, str], None]) -> None:
    """Label ``keys`` on Ray; ``on_record(record, line)`` is called on the driver as results stream back."""
    ray = connect(options.address)
    pending = list(keys)   # paths only (about 100 bytes each); results are streamed, never collected
    if not pending:
        return
    ray.data.DataContext.get_current().enable_progress_bars = False
    plan = replica_plan(ray.cluster_resources(), options.cpus_per_replica, options.replicas)
    batch_size = max(1, options.batch_size)
    blocks = min(len(pending), max(plan["replicas"] * 4, math.ceil(len(pending) / (batch_size * 8))))
    dataset = ray.data.from_items([{"key": key} for key in pending], override_num_blocks=blocks)
    labelled = dataset.map_batches(
        RayLabeler, fn_constructor_kwargs={"spec": spec, "threads": plan["threads"]}, batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=plan["replicas"]), num_cpus=plan["num_cpus"],
        num_gpus=plan["num_gpus"], batch_format="default")
    del pending
    try:
        for row in labelled.iter_rows():
            line = str(row["line"])
            on_record(json.loads(line), line)
    except Exception as exc:  # noqa: BLE001 - a replica died (model load, GPU memory): one line, rerun resumes
        from backend.predict.errors import ModelUnavailable

        reason = one_line(exc)
        raise ModelUnavailable(f"the Ray job failed: {type(exc).__name__}: {reason}") from None
