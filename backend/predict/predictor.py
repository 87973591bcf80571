"""Tasks -> Label Studio prediction entries: per-task dispatch within a request's deadline.

Pre-annotation and the region rules are in backend.predict.workflows, interactive contexts in
backend.predict.interactive. One bad task never sinks a batch: it gets an empty result and its reason is
logged. A task the deadline did not reach gets an entry without "result", which Label Studio stores no
result for, while the order and count of entries stay right.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from PIL import Image

from backend.deadline import Deadline
from backend.images import ImageError
from backend.predict.calls import ModelCalls
from backend.predict.config import task_config
from backend.predict.errors import InvalidContext, ModelUnavailable, OutOfTime, TaskError
from backend.predict.holder import ModelHolder, is_out_of_memory, release_gpu_memory
from backend.predict.interactive import context_items_for
from backend.predict.projects import ProjectRun, project_run
from backend.predict.targets import TargetImages, load_target_images, predict_target
from backend.predict.workflows import RegionWorkflows
from backend.settings import Settings
from backend.studio.labeling import LabelingConfig
from backend.studio.results import prediction_entry

log = logging.getLogger("backend.predict")


class Predictor:
    """Predicts Label Studio tasks; `image_loader` fetches task images (HTTP path), batch jobs pass
    decoded images to :meth:`predict_one` instead."""

    def __init__(self, holder: ModelHolder, settings: Settings, image_loader=None):
        self.holder = holder
        self.settings = settings
        self.images = image_loader
        self.flows = RegionWorkflows(settings)

    def run_for(self, config: LabelingConfig, calls: ModelCalls, params: dict | None = None) -> ProjectRun:
        """The settings and model version of predictions with `config` and a project's `params`."""
        return project_run(self.settings, params or {}, config, calls.model_version)

    def predict(self, tasks: list[dict], config: LabelingConfig, context: dict | None,
                deadline: Deadline, run: ProjectRun | None = None) -> list[dict]:
        """One entry per task, in order; `run` (a project's settings and version) defaults to the
        backend's settings."""
        calls = ModelCalls(self.holder, deadline, urgent=context is not None)
        run = run or self.run_for(config, calls)
        entries = []
        for task in tasks:
            if deadline.expired():
                entries.append(not_reached(task, run.model_version))
                continue
            entries.append(self._predict_task(task, config, context, calls, run))
        return entries

    def predict_one(self, task: dict, config: LabelingConfig, context: dict | None,
                    images: Mapping[str, Image.Image | TargetImages], calls: ModelCalls,
                    run: ProjectRun | None = None) -> dict:
        """One task's prediction entry from its decoded images (Image name -> image; for a valueList Image,
        item_index -> image or a list). Raises on failure (TaskError, OutOfTime, model errors):
        :meth:`predict` turns those into an empty entry per task; batch jobs count them. Controls marked
        model_skip are left alone."""
        run = run or self.run_for(config, calls)
        config = task_config(config, task, run.settings)
        flows = self.flows if run.settings is self.settings else RegionWorkflows(run.settings)
        results = []
        for target in config.targets:
            image = images.get(target.name)
            if image is None:
                continue
            items = None if context is None else context_items_for(context, target)
            results += predict_target(flows, task, target.for_model(), image, items, calls)
        return prediction_entry(results, run.model_version)

    def _predict_task(self, task, config, context, calls: ModelCalls, run: ProjectRun) -> dict:
        task_id = task.get("id")
        model_version = run.model_version
        try:
            config = task_config(config, task, self.settings)
            images = self._task_images(task, config, context, calls.deadline)
            return self.predict_one(task, config, context, images, calls, run)
        except (InvalidContext, ModelUnavailable):
            raise
        except OutOfTime:
            if context is not None:  # an annotator is waiting: say so (backend.predict.refusals)
                raise InvalidContext(f"no answer within REQUEST_DEADLINE_S={self.settings.request_deadline_s:g} s; "
                                     "try again") from None
            return not_reached(task, model_version)
        except (ImageError, TaskError) as exc:
            if context is not None:
                raise InvalidContext(f"cannot use the task: {exc}") from None
            log.warning("task %s: no prediction: %s", task_id, exc)
            return prediction_entry([], model_version)
        except Exception as exc:  # noqa: BLE001 - one bad task must not sink the batch
            if not is_out_of_memory(exc):
                log.exception("task %s: no prediction: %s", task_id, type(exc).__name__)
                return prediction_entry([], model_version)
        # CUDA out of memory: only now, with the traceback (and the tensors its frames hold) gone,
        # can the cache be emptied; the request gets 503 and the next one starts clean
        release_gpu_memory()
        log.error("task %s: GPU out of memory; answering 503", task_id)
        raise ModelUnavailable("GPU out of memory; retry later")

    def _task_images(self, task, config: LabelingConfig, context, deadline: Deadline) -> dict[str, TargetImages]:
        """The decoded image(s) of every Image this task's prediction needs (with a context: those it names)."""
        images = {}
        for target in config.targets:
            items = None if context is None else context_items_for(context, target)
            if items is not None and not items:
                continue
            images[target.name] = load_target_images(self.images, task, target, items, deadline)
        return images


def not_reached(task: dict, model_version: str) -> dict:
    log.warning("task %s: skipped, the request deadline passed before it", task.get("id"))
    return {"model_version": model_version, "score": 0.0, "error": "deadline passed before this task"}
