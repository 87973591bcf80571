"""The stage-3 training loop on cached features.

Only ``seg_prompt_mlp`` and SAM's mask decoder train, as fp32 copies (master weights) in
:class:`TrainableHeads`; the served model is never written to (a finished run is applied as a delta).
On CUDA with ``dtype="bf16"`` the heads' forward runs under bf16 autocast; the 1024 upsampling and the
loss run in fp32. A step: forward of the batch, loss, backward, global-norm clipping, 4.31 AdamW at the
scheduled lr. With validation records, the validation split is evaluated after every epoch and the
epoch with the best cIoU is kept (without them, the last step's weights are).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from ..processing import upscale_mask_logits
from .data import split_by_image
from .loss import LOSS_MODES, LossTerms, mask_loss
from .masks import TrainableHeads
from .metrics import iou_counts, masks_at_image_size, summarize
from .optim import CosineWithWarmup, ReferenceAdamW, clip_gradients
from .samples import Batch, Query, Stage3Data, batches_of, epoch_queries, eval_queries


@dataclass
class TrainConfig:
    loss: str = "reference"          # reference | clean
    expression: str = "random"       # first | random
    order: str = "shuffle"           # file | shuffle
    template: str = "backend"        # backend | reference-pool
    batch_size: int = 8
    epochs: int = 3
    max_steps: int | None = None     # overrides epochs
    lr: float = 2e-5
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    val_fraction: float = 0.1
    seed: int = 0
    dtype: str = "fp32"              # bf16: autocast on CUDA

    def validate(self) -> None:
        if self.loss not in LOSS_MODES:
            raise ValueError(f"unknown loss {self.loss!r}; use one of {list(LOSS_MODES)}")
        if self.batch_size < 1 or self.epochs < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise ValueError("batch size, epochs and max steps must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0 or not 0.0 <= self.warmup_ratio <= 1.0 or self.lr < 0:
            raise ValueError("val fraction must be in [0, 1), warm-up ratio in [0, 1], lr >= 0")


@dataclass
class StepRecord:
    step: int
    epoch: int
    records: list[int]
    lr: float
    loss: float
    focal_x20: float
    dice: float
    iou_mse: float
    grad_norm: float
    clip_coef: float


@dataclass
class TrainResult:
    tensors: dict[str, torch.Tensor]   # the kept trainable tensors, release names
    steps: list[StepRecord]
    metrics: dict
    best_epoch: int | None
    counts: dict
    timing: dict = field(default_factory=dict)


class Stage3Trainer:
    def __init__(self, nc, data: Stage3Data, config: TrainConfig, progress: bool = False, on_step=None):
        """``on_step(record, total_steps)`` is called after every optimizer step (a job's status)."""
        config.validate()
        self.nc, self.data, self.config, self.progress, self.on_step = nc, data, config, progress, on_step
        self.device = nc.device
        self.heads = TrainableHeads(nc.model).to(self.device)
        self.train_indices, self.val_indices = split_by_image(data.records, config.val_fraction)
        if not self.train_indices:
            raise ValueError(f"no training records: all {len(data.records)} fell in the validation split")
        self.batches_per_epoch = math.ceil(len(self.train_indices) / config.batch_size)
        self.total_steps = config.max_steps or config.epochs * self.batches_per_epoch
        self.use_autocast = self.device.type == "cuda" and config.dtype in ("bf16", "bfloat16")
        self.features_s = self.steps_s = 0.0

    # ------------------------------------------------------------------ one batch
    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [k,1,1024,1024] fp32, iou predictions [k,1] fp32)."""
        autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if self.use_autocast
                    else contextlib.nullcontext())
        with autocast:
            low_res, iou = self.heads(batch.h_at, batch.boxes_norm, batch.image_embeddings)
        return upscale_mask_logits(low_res.float()), iou.float()

    def loss(self, batch: Batch) -> tuple[LossTerms, torch.Tensor]:
        logits, iou = self.forward(batch)
        return mask_loss(self.config.loss, logits, batch.targets, iou, batch.valid), logits

    def train_step(self, optimizer: ReferenceAdamW, batch: Batch, lr: float) -> tuple[LossTerms, float, float]:
        optimizer.zero_grad()
        terms, _ = self.loss(batch)
        terms.total.backward()
        grad_norm, coef = clip_gradients(self.heads.parameters(), self.config.max_grad_norm)
        optimizer.step(lr)
        optimizer.zero_grad()
        return terms, grad_norm, coef

    @torch.no_grad()
    def evaluate(self, queries: list[Query]) -> dict:
        """Loss (mean over batches of the training batch size) and cIoU / gIoU at the original size."""
        counts, losses = [], []
        for chunk in batches_of(queries, self.config.batch_size):
            batch = self.data.batch(chunk, self.device)
            terms, logits = self.loss(batch)
            losses.append(float(terms.total))
            frames = [self.data.records[i].frame for i in batch.record_indices]
            preds = masks_at_image_size(logits, frames)
            counts += [iou_counts(p, self.data.gt_mask(i)) for p, i in zip(preds, batch.record_indices)]
        result = summarize(counts).as_dict()
        result["loss"] = sum(losses) / len(losses) if losses else 0.0
        return result

    # ------------------------------------------------------------------ the run
    def plans(self) -> list[list[Query]]:
        """The training queries of every epoch the run touches."""
        config = self.config
        epochs = math.ceil(self.total_steps / self.batches_per_epoch)
        return [epoch_queries(self.train_indices, self.data.records, e, order=config.order,
                              expression=config.expression, template=config.template, seed=config.seed)
                for e in range(epochs)]

    def prepare(self) -> float:
        """Compute the features the run needs (the only part that runs the frozen model); returns seconds.
        Callers that share the model call this under their model lock; :meth:`run` needs no lock."""
        started = time.perf_counter()
        queries = [q for plan in self.plans() for q in plan]
        queries += eval_queries(self.train_indices, self.data.records) + eval_queries(self.val_indices,
                                                                                      self.data.records)
        self.data.prepare(queries, progress=self.progress)
        self.features_s += time.perf_counter() - started
        return self.features_s

    def run(self) -> TrainResult:
        plans = self.plans()
        train_eval = eval_queries(self.train_indices, self.data.records)
        val_eval = eval_queries(self.val_indices, self.data.records)
        self.prepare()
        started = time.perf_counter()
        before = self._split_metrics(train_eval, val_eval)
        steps, epoch_metrics, best = self._train(plans, val_eval)
        train_s = time.perf_counter() - started
        if best is not None:
            self.heads.load_release_state(best[1])
        after = self._split_metrics(train_eval, val_eval)
        metrics = {"before": before, "after": after, "epochs": epoch_metrics}
        counts = self._counts(steps)
        timing = {"features_s": self.features_s, "run_s": train_s, "steps_s": self.steps_s,
                  "s_per_step": self.steps_s / max(1, len(steps)), "store": dict(self.data.store.counts)}
        return TrainResult(self.heads.release_state(), steps, metrics, best[0] if best else None, counts, timing)

    def _train(self, plans: list[list[Query]], val_eval: list[Query]):
        config = self.config
        optimizer = ReferenceAdamW(self.heads.parameters(), weight_decay=config.weight_decay)
        schedule = CosineWithWarmup(self.total_steps, config.warmup_ratio)
        steps, epoch_metrics, best = [], [], None
        bar = tqdm(range(self.total_steps), desc="train", unit="step", disable=not self.progress)
        for step in bar:
            epoch, index = divmod(step, self.batches_per_epoch)
            queries = batches_of(plans[epoch], config.batch_size)[index]
            lr = schedule.lr(step, config.lr)
            started = time.perf_counter()
            terms, grad_norm, coef = self.train_step(optimizer, self.data.batch(queries, self.device), lr)
            self.steps_s += time.perf_counter() - started
            values = terms.as_floats()
            steps.append(StepRecord(step + 1, epoch + 1, [q.record_index for q in queries], lr, values["loss"],
                                    values["focal_x20"], values["dice"], values["iou_mse"], grad_norm, coef))
            bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.2e}")
            if self.on_step is not None:
                self.on_step(steps[-1], self.total_steps)
            if val_eval and (index == self.batches_per_epoch - 1 or step == self.total_steps - 1):
                val = self.evaluate(val_eval)
                epoch_metrics.append({"epoch": epoch + 1, "step": step + 1, "val": val})
                if best is None or val["ciou"] > best[2]:
                    best = (epoch + 1, self.heads.release_state(), val["ciou"])
        return steps, epoch_metrics, best

    def _split_metrics(self, train_eval: list[Query], val_eval: list[Query]) -> dict:
        return {"train": self.evaluate(train_eval), "val": self.evaluate(val_eval) if val_eval else None}

    def _counts(self, steps: list[StepRecord]) -> dict:
        records = self.data.records
        return {"records": len(records), "train_records": len(self.train_indices),
                "val_records": len(self.val_indices),
                "train_images": len({records[i].img_path for i in self.train_indices}),
                "val_images": len({records[i].img_path for i in self.val_indices}),
                "steps": len(steps), "batches_per_epoch": self.batches_per_epoch}

    def config_dict(self) -> dict:
        return asdict(self.config)
