"""What the routes share, one per app: the model holder, the predictor, admission, the live exporter, the
training service, per-project settings and the /metrics counters."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from backend.http.admission import Admission
from backend.predict.holder import ModelHolder
from backend.predict.predictor import Predictor
from backend.predict.projects import ProjectStore
from backend.settings import Settings
from backend.train.service import TrainingService

TRAINING_OFF = "training needs STAGE3_DIR (the live export) and MODEL_DIR (where runs go)"


@dataclass
class Counters:
    """The /metrics counters (thread-safe)."""

    values: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, **increments: int) -> None:
        with self.lock:
            self.values.update(increments)

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.values)


@dataclass
class Service:
    settings: Settings
    holder: ModelHolder
    predictor: Predictor
    admission: Admission
    exporter: object | None
    counters: Counters
    projects: ProjectStore
    training: TrainingService | None = None


def make_exporter(settings: Settings, image_loader):
    """The live stage-3 exporter when STAGE3_DIR is set (it fetches images with our loader); else None."""
    if not settings.stage3_dir:
        return None
    from backend.export.live import LiveExporter

    return LiveExporter(settings.stage3_dir, images_loader=image_loader)


def make_training(settings: Settings, exporter) -> TrainingService | None:
    """In-server stage-3 training when both STAGE3_DIR (its data) and MODEL_DIR (its runs) are set; else None."""
    if not (settings.stage3_dir and settings.model_dir):
        return None
    return TrainingService(settings, exporter)
