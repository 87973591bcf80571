"""One image file -> one Label Studio task with its prediction, through the backend's own Predictor
(the same regions, thresholds and result shapes as `/predict` pre-annotation)."""

from __future__ import annotations

from dataclasses import dataclass

from backend.batch.job import JobError, JobSpec
from backend.deadline import Deadline
from backend.images import ImageError, decode_image
from backend.predict.calls import ModelCalls
from backend.predict.errors import ModelUnavailable
from backend.predict.holder import ModelHolder, is_out_of_memory, load_model, release_gpu_memory
from backend.predict.predictor import Predictor
from model.reasons import one_line

NO_DEADLINE_S = 7 * 24 * 3600.0


@dataclass
class Outcome:
    """What became of one image: a task, or the reason it was skipped."""

    key: str
    task: dict | None = None
    error: str | None = None

    def record(self) -> dict:
        return {"key": self.key, "task": self.task} if self.task is not None else {"key": self.key,
                                                                                    "error": self.error}


class ImageLabeler:
    """Holds one model replica; ``label(key)`` never raises for a bad image (ModelUnavailable, e.g. out of
    GPU memory, does propagate: the job stops and a rerun resumes)."""

    def __init__(self, spec: JobSpec, model=None):
        self.spec = spec
        self.config = spec.config()
        self.target = self.config.targets[0]
        self.model = model if model is not None else _load(spec)
        self.holder = ModelHolder.loaded(self.model)
        self.predictor = Predictor(self.holder, spec.settings)

    @property
    def model_version(self) -> str:
        return self.model.model_version

    def read_image(self, key: str):
        """The decoded RGB image of ``key``, or ImageError (missing, too big, corrupt, not an image)."""
        path = self.spec.image_path(key)
        limit = self.spec.settings.max_image_bytes
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError as exc:
            raise ImageError(f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
        if len(data) > limit:
            raise ImageError(f"file larger than MAX_IMAGE_BYTES={limit}")
        return decode_image(data, self.spec.settings)

    def label(self, key: str) -> Outcome:
        try:
            image = self.read_image(key)
        except ImageError as exc:
            return Outcome(key, error=f"bad image: {exc}")
        value = self.spec.image_reference(key)
        task = {"data": {self.target.value_key: value}}
        calls = ModelCalls(self.holder, Deadline.after(NO_DEADLINE_S))
        try:
            entry = self.predictor.predict_one(task, self.config, None, {self.target.name: image}, calls)
        except ModelUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed image is counted and skipped, the job goes on
            if is_out_of_memory(exc):
                release_gpu_memory()
                raise ModelUnavailable("GPU out of memory") from None
            return Outcome(key, error=f"model failed: {one_line(exc)}")
        task["predictions"] = [entry]
        return Outcome(key, task=task)


def _load(spec: JobSpec):
    try:
        return load_model(spec.settings)
    except ValueError as exc:  # CheckpointError (missing or broken checkpoint), an unknown DTYPE
        raise JobError(f"cannot load the model: {one_line(exc)}") from None
