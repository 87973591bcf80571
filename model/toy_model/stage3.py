"""Stage 3 of the toy model: the project's fine-tuning trainer (model.stage3) on a toy-world export.

The export holds scenes the earlier stages never saw (another seed), in the format Label Studio
corrections are exported to; the trained delta (seg_prompt_mlp + SAM's mask decoder) is merged into the
checkpoint's weights, so the shipped checkpoint needs no ``--delta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..nextchat import NextChat
from ..random_checkpoint import write_weights
from ..stage3.delta import apply_delta
from ..stage3.run import finetune
from ..stage3.trainer import TrainConfig
from ..toy_world import write_dataset


@dataclass
class Stage3Recipe:
    scenes: int = 100
    steps: int = 60
    batch_size: int = 8
    lr: float = 1e-4
    seed: int = 1


def run_stage3(checkpoint_dir: Path, recipe: Stage3Recipe, work_dir: Path) -> dict:
    """Fine-tune the checkpoint in place; returns stage 3's before/after metrics (train and val splits)."""
    data_dir = work_dir / "data"
    write_dataset(data_dir, seed=recipe.seed, count=recipe.scenes)
    nc = NextChat.from_pretrained(checkpoint_dir)
    config = TrainConfig(loss="clean", batch_size=recipe.batch_size, max_steps=recipe.steps, lr=recipe.lr,
                         val_fraction=0.1, seed=recipe.seed)
    outcome = finetune(nc, data_dir, work_dir / "run", config)
    apply_delta(nc, outcome.delta)
    write_weights(nc.model, Path(checkpoint_dir), torch.float32)
    print(f"stage 3: {recipe.steps} steps on {recipe.scenes} scenes of seed {recipe.seed}", flush=True)
    return {"recipe": vars(recipe), "metrics": outcome.metrics["metrics"], "data": outcome.metrics["data"]}
