"""Stage-3 training inside the server: "Start Training" -> a job on the live STAGE3_DIR -> a new model version.

A job (backend.train.jobs runs one at a time):

1. waits ``TRAIN_SETTLE_S`` and for the live export to apply what it has queued (with "train on annotation
   submission" Label Studio asks to train before it sends the annotation's own webhook), then snapshots
   STAGE3_DIR into its run folder (backend.train.state);
2. is skipped when fewer than ``TRAIN_MIN_NEW_RECORDS`` records are new since the last run that trained;
3. runs ``model.stage3.finetune`` on the served model: the frozen features are computed on the GPU lock at
   normal priority, one image at a time (an annotator's interactive call goes first), training runs off the
   lock on copies of the trainable tensors, so serving goes on unchanged meanwhile;
4. publishes the new delta only if the validation cIoU (the training split's when there is no validation
   split) does not drop: the tensors are swapped in under the GPU lock, so calls in flight finish on the
   old weights and every later call sees the new ones. The image cache stays valid: a delta changes only
   ``seg_prompt_mlp`` and SAM's mask decoder, and the cache holds CLIP tokens, the LLM's KV cache of the
   image prefix and SAM's image embedding, which do not depend on them. The model version becomes
   ``...+ft3.<delta id>``, so /setup reports it and "Retrieve predictions" asks again for every task;
5. records the published delta in MODEL_DIR/stage3/state.json, which a restart reloads.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from backend.predict.gpu_lock import PriorityLock
from backend.predict.holder import ModelHolder
from backend.settings import Settings
from backend.train.jobs import JobRecord, TrainingJobs
from backend.train.state import ActiveDelta, TrainState, TrainStateError, snapshot_data
from model.reasons import one_line

log = logging.getLogger("backend.train")

FLUSH_TIMEOUT_S = 120.0
FEATURE_MEMORY_IMAGES = 64  # SAM embeddings kept in memory across runs (the rest are read from features/)


class NormalPriority:
    """The GPU lock as a context manager at normal priority: interactive calls waiting for it go first.
    Waits as long as it takes (a job has no deadline)."""

    def __init__(self, lock: PriorityLock, poll_s: float = 60.0):
        self.lock, self.poll_s = lock, poll_s

    def __enter__(self):
        while not self.lock.acquire(self.poll_s, urgent=False):
            pass
        return self

    def __exit__(self, *exc_info):
        self.lock.release()
        return False


def split_ciou(metrics: dict) -> tuple[str, dict, dict]:
    """(split, before, after) of a finetune metrics dict: validation when there is one, else training."""
    split = "val" if metrics["metrics"]["before"].get("val") else "train"
    return split, metrics["metrics"]["before"][split], metrics["metrics"]["after"][split]


def should_publish(before: dict, after: dict) -> bool:
    """Publish only if cIoU does not drop."""
    return after["ciou"] >= before["ciou"]


def swap_delta(nc, delta) -> None:
    """Apply ``delta`` to the served model (the caller holds the GPU lock); if writing fails part-way, the
    previous tensors are put back, so the model is never left half old and half new."""
    from model.stage3.delta import Delta, apply_delta, current_state, frozen_base_hash

    previous, backup = nc.components.delta, current_state(nc.model)
    try:
        apply_delta(nc, delta)
    except Exception:
        apply_delta(nc, Delta(backup, frozen_base_hash(nc.model), "", short_id="restore"))
        nc.components.delta = previous
        raise


class TrainingService:
    """Training for one server: the queue, the runs, the published delta. Needs STAGE3_DIR and MODEL_DIR."""

    def __init__(self, settings: Settings, exporter=None):
        self.settings = settings
        self.data_dir = Path(settings.stage3_dir)
        self.state = TrainState(settings.model_dir)
        self.exporter = exporter
        self.holder: ModelHolder | None = None
        self.reload_note = ""     # why the active delta was not reloaded at start, one line
        self._store = None        # model.stage3.FeatureStore, kept across runs
        self._closing = threading.Event()
        self.jobs = TrainingJobs(self.run, settings.train_cooldown_s)

    # ------------------------------------------------------------------ wiring
    def attach(self, holder: ModelHolder) -> None:
        self.holder = holder

    def restoring(self, load):
        """``load`` followed by :meth:`restore`, for the holder's background load."""
        return lambda: self.restore(load())

    def restore(self, nc):
        """Reload the published delta recorded in state.json into a freshly loaded model, unless the operator
        changed NEXTCHAT_DELTA since (the operator's choice wins) or it does not fit the checkpoint (refused
        with one line, shown in /train/status; the model is served without it)."""
        try:
            active = self.state.active()
        except TrainStateError as exc:
            self.reload_note = f"active delta not reloaded: {exc}"
            active = None
        if active is None:
            return nc
        if active.operator_delta != self.settings.delta:
            self.reload_note = (f"active delta of run {active.run} not reloaded: it was trained from "
                                f"NEXTCHAT_DELTA={active.operator_delta!r}, now {self.settings.delta!r}")
        else:
            from model.stage3 import DeltaError, apply_delta

            try:
                apply_delta(nc, self.state.active_delta_path(active))
            except DeltaError as exc:
                self.reload_note = f"active delta of run {active.run} not reloaded: {one_line(exc)}"
            else:
                log.info("reloaded the active delta of run %s: %s", active.run, nc.model_version)
        if self.reload_note:
            log.warning("%s", self.reload_note)
        return nc

    def request(self, project=None) -> dict:
        return self.jobs.request(project if isinstance(project, int) else None)

    def close(self) -> None:
        self._closing.set()
        self.jobs.close()

    # ------------------------------------------------------------------ one job
    def run(self, job: JobRecord) -> None:
        job.phase = "settling"
        if self._closing.wait(self.settings.train_settle_s):
            job.state, job.reason = "failed", "the server is stopping"
            return
        flush = getattr(self.exporter, "flush", None)
        if flush is not None and not flush(FLUSH_TIMEOUT_S):
            log.warning("training job %s: the live export is still busy; training on what it wrote", job.id)
        nc = self.holder.require()
        run_dir = self.state.run_dir(job.id)
        keys = snapshot_data(self.data_dir, run_dir / "data")
        job.records, job.new_records = len(keys), len(set(keys) - self.state.last_run_keys())
        minimum = max(1, self.settings.train_min_new_records)
        if job.new_records < minimum:
            job.state = "skipped"
            job.reason = (f"{job.new_records} new records in STAGE3_DIR since the last run "
                          f"({job.records} in all); TRAIN_MIN_NEW_RECORDS is {minimum}")
            shutil.rmtree(run_dir, ignore_errors=True)
            return
        outcome = self._finetune(nc, job, run_dir)
        split, before, after = split_ciou(outcome.metrics)
        job.metrics = {"split": split, "before": _brief(before), "after": _brief(after)}
        job.delta_id = outcome.delta.short_id
        self.state.set_last_run(job.id, keys)
        if not should_publish(before, after):
            job.state = "kept"
            job.reason = (f"not published: {split} cIoU {before['ciou']:.4f} -> {after['ciou']:.4f}; "
                          f"still serving {nc.model_version}")
            return
        self._publish(nc, job, outcome.delta)

    def _finetune(self, nc, job: JobRecord, run_dir: Path):
        from model.stage3 import finetune

        lock = NormalPriority(self.holder.lock)
        job.phase = "features"
        if self._store is None:
            from model.stage3.features import FeatureStore

            with lock:
                self._store = FeatureStore(nc, self.state.features_dir, memory_images=FEATURE_MEMORY_IMAGES)

        def on_step(record, total_steps):
            job.phase, job.step, job.total_steps = "training", record.step, total_steps

        return finetune(nc, run_dir / "data", run_dir, self.train_config(nc), model_lock=lock, store=self._store,
                        on_step=on_step)

    def train_config(self, nc):
        from model.stage3 import TrainConfig

        s = self.settings
        dtype = "bf16" if "bfloat16" in str(nc.dtype) else "fp32"
        return TrainConfig(loss=s.train_loss, batch_size=s.train_batch_size, epochs=s.train_epochs,
                           max_steps=s.train_max_steps or None, lr=s.train_lr, val_fraction=s.train_val_fraction,
                           dtype=dtype)

    def _publish(self, nc, job: JobRecord, delta) -> None:
        job.phase = "publishing"
        previous = nc.model_version
        with NormalPriority(self.holder.lock):
            swap_delta(nc, delta)
            version = nc.model_version
        job.state, job.model_version = "published", version
        published_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.state.set_active(ActiveDelta(job.id, delta.short_id, version, self.settings.delta, published_at))
        self.reload_note = ""
        log.info("training job %s: %s replaces %s", job.id, version, previous)

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        jobs = self.jobs.snapshot()
        try:
            active = self.state.active()
        except TrainStateError as exc:
            active, jobs["state_file_error"] = None, str(exc)
        failed = [job for job in jobs["history"] if job["state"] == "failed"]
        model = self.holder.state() if self.holder else None
        s = self.settings
        return {
            "enabled": True, **jobs,
            "model_version": model.model_version if model else "",
            "active": None if active is None else asdict(active),
            "last_error": self.reload_note or (failed[0]["reason"] if failed else ""),
            "settings": {"stage3_dir": s.stage3_dir, "min_new_records": s.train_min_new_records,
                         "cooldown_s": s.train_cooldown_s, "settle_s": s.train_settle_s,
                         "config": self._config_view()},
        }

    def _config_view(self) -> dict:
        s = self.settings
        return {"loss": s.train_loss, "epochs": s.train_epochs, "max_steps": s.train_max_steps or None,
                "batch_size": s.train_batch_size, "lr": s.train_lr, "val_fraction": s.train_val_fraction}

    def metrics(self) -> dict:
        """Flat /metrics entries."""
        jobs = self.jobs.snapshot()
        running = jobs["running"] or {}
        values = {"train_state": jobs["state"], "train_step": running.get("step", 0),
                  "train_total_steps": running.get("total_steps", 0)}
        for name in ("requests", "coalesced", "started", "published", "kept", "skipped", "failed"):
            values[f"train_{name}"] = jobs["counts"].get(name, 0)
        failed = [job for job in jobs["history"] if job["state"] == "failed"]
        values["train_last_error"] = self.reload_note or (failed[0]["reason"] if failed else "")
        return values


def _brief(split_metrics: dict) -> dict:
    return {key: split_metrics[key] for key in ("ciou", "giou", "loss", "count", "failed") if key in split_metrics}

