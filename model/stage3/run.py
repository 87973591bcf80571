"""One fine-tuning run on a loaded model: features, training, metrics, ``RUN/delta.safetensors``."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .data import read_records
from .delta import DELTA_FILE, Delta, apply_delta, frozen_base_hash, save_delta
from .features import FeatureStore
from .metrics import evaluate_end_to_end
from .samples import Stage3Data, eval_queries
from .trainer import Stage3Trainer, TrainConfig, TrainResult

METRICS_FILE = "metrics.json"


@dataclass
class FinetuneOutcome:
    delta: Delta
    result: TrainResult
    metrics: dict
    out_dir: Path


def finetune(nc, data_dir, out_dir, config: TrainConfig, *, cache_dir=None, progress: bool = False,
             eval_e2e: bool = False, model_lock=None, store: FeatureStore | None = None,
             on_step=None) -> FinetuneOutcome:
    """Train on ``data_dir`` (what the export writes) starting from ``nc``'s current trainable tensors and
    write ``out_dir/delta.safetensors`` and ``out_dir/metrics.json``. ``nc`` itself is not changed, except
    with ``eval_e2e``: then the new delta is applied to it to measure ``ground()`` after training. Feature
    computation (per image) and the end-to-end evaluation run inside ``model_lock`` (a context manager, entered
    many times) when given.
    ``store``: a FeatureStore of ``nc`` to reuse (a long-lived process keeps one across runs).
    ``on_step(record, total_steps)``: called after every optimizer step."""
    lock = model_lock if model_lock is not None else contextlib.nullcontext()
    out_dir = Path(out_dir)
    records = read_records(data_dir)
    if store is None:
        with lock:
            store = FeatureStore(nc, cache_dir)
    data = Stage3Data(data_dir, records, store, model_lock=model_lock)
    with lock:  # the trainer copies the served model's trainable tensors
        trainer = Stage3Trainer(nc, data, config, progress=progress, on_step=on_step)
    trainer.prepare()  # features: the lock is taken per image, so other callers get the model in between
    e2e_queries = eval_queries(trainer.val_indices or trainer.train_indices, records)
    e2e = {}
    if eval_e2e:
        with lock:
            e2e["before"] = evaluate_end_to_end(nc, data, e2e_queries)[0].as_dict()
    init_delta = getattr(nc.components, "delta", None)
    result = trainer.run()
    info = {"data": result.counts, "hyper_parameters": asdict(config), "best_epoch": result.best_epoch,
            "metrics": {"before": result.metrics["before"], "after": result.metrics["after"]},
            "init_delta": init_delta.short_id if init_delta else None,
            "features_fingerprint": store.fingerprint}
    delta = save_delta(out_dir / DELTA_FILE, result.tensors, frozen_base_hash(nc.model),
                       nc.components.checkpoint_dir.name, info)
    if eval_e2e:
        with lock:
            apply_delta(nc, delta)
            e2e["after"] = evaluate_end_to_end(nc, data, e2e_queries)[0].as_dict()
        e2e["split"] = "val" if trainer.val_indices else "train"
    metrics = {"delta": str(out_dir / DELTA_FILE), "delta_id": delta.short_id, **info,
               "epochs": result.metrics["epochs"], "end_to_end": e2e or None, "timing": result.timing,
               "steps": [asdict(s) for s in result.steps]}
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return FinetuneOutcome(delta, result, metrics, out_dir)


def metrics_table(metrics: dict) -> str:
    """Before/after per split (and end to end when measured), one line each."""
    rows = [("split", "when", "loss", "cIoU", "gIoU", "I / U", "failed")]
    for when in ("before", "after"):
        for split in ("train", "val"):
            m = metrics["metrics"][when].get(split)
            if m:
                rows.append((split, when, f"{m['loss']:.5f}", f"{m['ciou']:.5f}", f"{m['giou']:.5f}",
                             f"{m['intersection']} / {m['union']}", f"{m['failed']}/{m['count']}"))
    for when, m in (metrics.get("end_to_end") or {}).items():
        if isinstance(m, dict):
            rows.append((f"{metrics['end_to_end']['split']} ground()", when, "-", f"{m['ciou']:.5f}",
                         f"{m['giou']:.5f}", f"{m['intersection']} / {m['union']}", f"{m['failed']}/{m['count']}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
