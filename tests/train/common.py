"""What the training tests share: stage-3 folders made from the fixture's data, settings for quick runs on the
tiny checkpoint (shared/fixtures/nextchat-tiny), and the app around a model."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from backend.http.app import create_app
from backend.settings import load_settings
from tests.model.stage3_common import DATA_DIR

# one record, 4 steps at lr 1e-2: its training-split cIoU rises from 0 on the tiny model (a publish)
QUICK = {"train_settle_s": 0.0, "train_cooldown_s": 0.0, "train_min_new_records": 1, "train_max_steps": 4,
         "train_batch_size": 1, "train_lr": 1e-2, "train_val_fraction": 0.0}


START = {"action": "START_TRAINING", "project": {"id": 7, "title": "cats"}}  # what Label Studio 1.23 sends


def wait_for(predicate, timeout: float = 60.0) -> bool:
    give_up_at = time.monotonic() + timeout
    while not predicate() and time.monotonic() < give_up_at:
        time.sleep(0.02)
    return predicate()


class FlushOnly:
    """Stands in for the live exporter (it would rebuild the hand-made STAGE3_DIR from its entries)."""

    def __init__(self):
        self.flushes = 0

    def submit(self, payload):
        pass

    def flush(self, timeout=None):
        self.flushes += 1
        return True


def one_record_dir(dest: Path) -> Path:
    """The fixture's first record (the red square on a_96x64.png) as a stage-3 folder."""
    (dest / "images").mkdir(parents=True)
    shutil.copy(DATA_DIR / "images" / "a_96x64.png", dest / "images")
    (dest / "res.jsonl").write_text((DATA_DIR / "res.jsonl").read_text().splitlines()[0] + "\n")
    return dest


def all_records_dir(dest: Path) -> Path:
    """All 7 records of the fixture (3 images)."""
    shutil.copytree(DATA_DIR, dest)
    return dest


def settings_for(tmp_path: Path, stage3_dir: Path, **changes):
    values = {**QUICK, **changes}
    return load_settings({}, stage3_dir=str(stage3_dir), model_dir=str(tmp_path / "model"), **values)


def make_app(settings, model=None, load=None):
    app = create_app(settings, model, load=load, exporter=FlushOnly())
    return app, app.extensions["nextchat"]
