"""`batch --from-project --ray`: the project's tasks labelled by Ray actors, one model replica each (one
per GPU, or one per ``--ray-cpus-per-replica`` CPUs), with the very TaskLabeler of the single-process
job. The driver fetches the images (the Label Studio key never leaves it) and keeps one task per actor
in flight while the next ones download, so memory stays bounded however big the project is; results
come back as they finish (the state is keyed by task id, so the order does not matter).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from backend.batch.ls_project import ProjectError
from backend.batch.ray_runner import connect, replica_plan
from backend.batch.task_labeler import FetchedTask
from backend.predict.errors import ModelUnavailable
from backend.settings import Settings
from model.reasons import one_line


class TaskActor:
    """A Ray actor holding one TaskLabeler."""

    def __init__(self, label_config: str, settings: Settings, params: dict, threads: int | None = None):
        import torch

        from backend.batch.task_labeler import TaskLabeler

        if threads and not torch.cuda.is_available():
            torch.set_num_threads(threads)
        self.labeler = TaskLabeler(label_config, settings, params)

    def model_version(self) -> str:
        return self.labeler.model_version

    def label(self, task: FetchedTask) -> str:
        return self.labeler.label_line(task)


class RayTaskPool:
    """The actors of one job; :meth:`labels` streams state records for fetched tasks."""

    def __init__(self, label_config: str, settings: Settings, params: dict, options):
        ray = connect(options.address)
        plan = replica_plan(ray.cluster_resources(), options.cpus_per_replica, options.replicas)
        actor_class = ray.remote(num_cpus=plan["num_cpus"], num_gpus=plan["num_gpus"])(TaskActor)
        self.ray = ray
        self.actors = [actor_class.remote(label_config, settings, params, plan["threads"])
                       for _ in range(plan["replicas"])]
        try:
            versions = set(ray.get([actor.model_version.remote() for actor in self.actors]))
        except Exception as exc:  # noqa: BLE001 - a replica could not load the model: one line
            raise ModelUnavailable(f"the Ray replicas failed to start: {type(exc).__name__}: {one_line(exc)}") from None
        if len(versions) != 1:
            raise ModelUnavailable(f"the Ray replicas loaded different models: {sorted(versions)}")
        self.model_version = versions.pop()

    def labels(self, tasks: Iterable[FetchedTask]) -> Iterator[dict]:
        from ray.util import ActorPool

        pool = ActorPool(self.actors)
        try:
            for task in tasks:
                while not pool.has_free():
                    yield json.loads(pool.get_next_unordered())
                pool.submit(lambda actor, item: actor.label.remote(item), task)
            while pool.has_next():
                yield json.loads(pool.get_next_unordered())
        except (ModelUnavailable, ProjectError):
            raise
        except Exception as exc:  # noqa: BLE001 - a replica died (GPU memory...): one line, a rerun resumes
            raise ModelUnavailable(f"the Ray job failed: {type(exc).__name__}: {one_line(exc)}") from None

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
