"""A Label Studio task with its fetched image bytes -> its prediction, through the backend's Predictor.

Used by `batch --from-project` in this process and, unchanged, inside Ray actors: it receives the
image *bytes* (fetched by the driver with backend.images.ImageLoader, so the Label Studio key never
leaves the driver) and returns one state record: ``{"key": "<task id>", "task": {"id", "prediction"}}``
or ``{"key": ..., "error": reason}``. It never raises for a bad task; ModelUnavailable (GPU out of
memory) stops the job, and a rerun resumes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from backend.batch.job import JobError
from backend.deadline import Deadline
from backend.images import ImageError, decode_image
from backend.predict.calls import ModelCalls
from backend.predict.config import parse_config
from backend.predict.errors import ConfigError, ModelUnavailable
from backend.predict.holder import ModelHolder, is_out_of_memory, load_model, release_gpu_memory
from backend.predict.predictor import Predictor
from backend.predict.projects import project_run
from backend.settings import Settings
from model.reasons import one_line

NO_DEADLINE_S = 7 * 24 * 3600.0


@dataclass
class FetchedTask:
    """A task and the bytes of each Image it shows (Image name -> bytes), or why they could not be had."""

    id: int
    data: dict
    images: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None


def failure(task_id, reason: str) -> dict:
    return {"key": str(task_id), "error": reason}


class TaskLabeler:
    """One model replica predicting project tasks with the project's config and params."""

    def __init__(self, label_config: str, settings: Settings, params: dict, model=None):
        try:
            self.config = parse_config(label_config, settings)
        except ConfigError as exc:
            raise JobError(f"the project's label config: {exc}") from None
        if not self.config.targets:
            raise JobError("the project's label config has no Image with a control this backend fills")
        self.settings = settings
        self.model = model if model is not None else _load(settings)
        self.holder = ModelHolder.loaded(self.model)
        self.predictor = Predictor(self.holder, settings)
        self.run = project_run(settings, params, self.config, self.model.model_version)

    @property
    def model_version(self) -> str:
        return self.run.model_version

    def label(self, task: FetchedTask) -> dict:
        if task.error:
            return failure(task.id, task.error)
        try:
            images = {name: decode_image(data, self.settings) for name, data in task.images.items()}
        except ImageError as exc:
            return failure(task.id, f"bad image: {exc}")
        calls = ModelCalls(self.holder, Deadline.after(NO_DEADLINE_S))
        try:
            entry = self.predictor.predict_one({"id": task.id, "data": task.data}, self.config, None, images, calls,
                                               self.run)
        except ModelUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed task is counted and skipped, the job goes on
            if is_out_of_memory(exc):
                release_gpu_memory()
                raise ModelUnavailable("GPU out of memory") from None
            return failure(task.id, f"model failed: {one_line(exc)}")
        return {"key": str(task.id), "task": {"id": task.id, "prediction": entry}}

    def label_line(self, task: FetchedTask) -> str:
        return json.dumps(self.label(task), ensure_ascii=False)


def _load(settings: Settings):
    try:
        return load_model(settings)
    except ValueError as exc:  # CheckpointError (missing or broken checkpoint), an unknown DTYPE
        raise JobError(f"cannot load the model: {one_line(exc)}") from None
