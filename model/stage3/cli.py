"""``python -m model.stage3 DATA_DIR --checkpoint CK --out RUN``: stage-3 fine-tuning from an export.

Exit status 0 on success, 2 with one line on stderr for bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..reasons import one_line

DESCRIPTION = """Fine-tune NExT-Chat's mask path (seg_prompt_mlp + SAM's mask decoder) on stage-3 data
(DATA_DIR/res.jsonl + DATA_DIR/images, what `export` writes). Everything upstream (CLIP, the LLM up to
the <at> hidden state, SAM's image encoder) is computed once per sample and cached; training runs on the
cache. Writes RUN/delta.safetensors (the trained tensors, applied with --delta) and RUN/metrics.json."""

EPILOG = """replaying the reference trainer exactly (the release's stage-3 code, as its fixture records it):
  --loss reference --expression first --order file --batch-size 2 --max-steps 4 --lr 1e-3
  --warmup-ratio 0.03 --val-fraction 0 --device cpu --dtype fp32
trains on every record in file order (first expression, the backend's question), with the release's
loss (its quirks included), transformers 4.31's AdamW, cosine schedule with warm-up (ceil(steps x
ratio) steps, so the first step has lr 0), weight decay 0 and gradient clipping at 1.0. Steps cycle over
the batches of the file; --epochs E means E passes (--max-steps overrides it).

--loss clean: binarised targets, padding ignored, per-pixel focal (alpha 0.8) + dice (smooth 1) +
iou-mse, each averaged over the masks.  --template reference-pool: one of the release's 60 questions per
sample and epoch (default: the one the backend asks, "Where is <expr> in the image?")."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description and epilog as written, every option's default shown."""


def build_parser(prog: str = "python -m model.stage3") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG, formatter_class=_HelpFormatter)
    parser.add_argument("data_dir", metavar="DATA_DIR", help="stage-3 data: res.jsonl + images/")
    parser.add_argument("--checkpoint", required=True, help="NExT-Chat checkpoint folder or hub id")
    parser.add_argument("--vision-tower", default=None, help="CLIP tower folder or hub id")
    parser.add_argument("--out", required=True, metavar="RUN", help="output folder (delta + metrics)")
    parser.add_argument("--init-delta", default=None, metavar="PATH",
                        help="start from this delta's tensors instead of the checkpoint's")
    parser.add_argument("--loss", choices=["reference", "clean"], default="reference",
                        help="the release's SamLoss with its quirks, or the intended one (see below)")
    parser.add_argument("--expression", choices=["first", "random"], default="random",
                        help="which of a record's expressions a sample uses (random: drawn per epoch)")
    parser.add_argument("--order", choices=["file", "shuffle"], default="shuffle",
                        help="records per epoch in file order, or shuffled (seeded per epoch)")
    parser.add_argument("--template", choices=["backend", "reference-pool"], default="backend",
                        help="the question a sample asks")
    parser.add_argument("--batch-size", type=int, default=8, help="masks per optimizer step")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the training split")
    parser.add_argument("--max-steps", type=int, default=None, help="total optimizer steps (overrides --epochs)")
    parser.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (cosine schedule)")
    parser.add_argument("--warmup-ratio", type=float, default=0.03, help="warm-up steps = ceil(steps x ratio)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="fraction of images held out (split by image, stable as records are added)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the order, expression and template draws")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="fp32", help="frozen model dtype; bf16 also autocasts the heads on CUDA")
    parser.add_argument("--cache", default=None, metavar="DIR", help="feature cache folder (default: memory only)")
    parser.add_argument("--eval-e2e", action="store_true",
                        help="also measure cIoU through ground() (free-running) before and after")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def config_from_args(args):
    from .trainer import TrainConfig

    return TrainConfig(loss=args.loss, expression=args.expression, order=args.order, template=args.template,
                       batch_size=args.batch_size, epochs=args.epochs, max_steps=args.max_steps, lr=args.lr,
                       warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
                       val_fraction=args.val_fraction, seed=args.seed, dtype=args.dtype)


def run(args) -> int:
    from .. import NextChat
    from .data import read_records
    from .run import finetune, metrics_table

    config = config_from_args(args)
    config.validate()
    read_records(args.data_dir)  # bad data fails before the model loads
    nc = NextChat.from_pretrained(args.checkpoint, vision_tower=args.vision_tower, device=args.device,
                                  dtype=args.dtype, delta=args.init_delta)
    outcome = finetune(nc, args.data_dir, args.out, config, cache_dir=args.cache, progress=not args.no_progress,
                       eval_e2e=args.eval_e2e)
    print(metrics_table(outcome.metrics))
    timing = outcome.metrics["timing"]
    print(f"delta {outcome.delta.path} (id {outcome.delta.short_id}); {timing['s_per_step']:.3f} s/step, "
          f"features {timing['features_s']:.1f} s")
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m model.stage3") -> int:
    """The command line; ``prog`` names it in --help (e.g. when another CLI exposes it as a subcommand)."""
    args = build_parser(prog).parse_args(argv)
    logging.disable(logging.WARNING)
    try:
        return run(args)
    except Exception as err:  # noqa: BLE001 - the CLI's contract is one line, no traceback
        reason = one_line(err)
        print(f"error: {reason}", file=sys.stderr)
        return 2
    finally:
        logging.disable(logging.NOTSET)
