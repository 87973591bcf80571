"""NExT-Chat stage-3 fine-tuning (seg_prompt_mlp + SAM's mask decoder) on cached features.

``main(argv)`` is the command line (``python -m model.stage3``); :func:`finetune` runs on a loaded
``NextChat``; :func:`apply_delta` puts a trained delta into one (see docs/stage3-training.md).
"""

from .cli import main
from .delta import Delta, DeltaError, apply_delta, read_delta
from .run import finetune
from .trainer import TrainConfig

__all__ = ["main", "finetune", "TrainConfig", "Delta", "DeltaError", "apply_delta", "read_delta"]
