"""``python -m model.toy_model --out DIR``: train the toy NExT-Chat from scratch, all three stages, on CPU.

1. toy-world scenes of ``--seed`` (model.toy_world), prepared once (toy_model.data);
2. the toy tokenizer, trained on the scenes' sentences; the networks at the toy size, random;
3. stages 1-2 with SAM alongside (toy_model.train): LM + box + cycle losses, SAM's mask loss;
4. stage 3 with the project's fine-tuning trainer (model.stage3) on a toy-world export of other scenes,
   the resulting delta merged into the weights;
5. DIR holds a checkpoint in the release's layout (DIR/vision_tower the CLIP tower) and DIR/training.json
   (the recipe, the loss curve, stage 3's before/after).
Defaults are the recipe of the shipped checkpoint (docs/toy-model.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..processing import ClipPreprocessConfig
from ..random_checkpoint import clip_preprocessor
from ..tokenizer import NextChatTokenizer
from .data import build_cache
from .recipe import TOY_SPEC, load_networks, new_networks, save_checkpoint, write_tokenizer
from .stage3 import Stage3Recipe, run_stage3
from .train import JointRecipe, JointTrainer


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.toy_model", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    parser.add_argument("--seed", type=int, default=0, help="toy-world seed of the training scenes")
    parser.add_argument("--scenes", type=int, default=24000, help="training scenes")
    joint = JointRecipe()
    parser.add_argument("--steps", type=int, default=joint.steps, help="stage 1-2 optimizer steps")
    parser.add_argument("--batch-size", type=int, default=joint.batch_size, help="scenes per step")
    parser.add_argument("--lr", type=float, default=joint.lr, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=joint.warmup, help="warm-up steps")
    parser.add_argument("--easy-steps", type=int, default=joint.easy_steps,
                        help="first steps on scenes of at most 2 objects (a curriculum)")
    stage3 = Stage3Recipe()
    parser.add_argument("--stage3-scenes", type=int, default=stage3.scenes, help="scenes of the stage-3 export")
    parser.add_argument("--stage3-steps", type=int, default=stage3.steps, help="stage-3 optimizer steps (0: skip)")
    parser.add_argument("--resume", type=Path, default=None,
                        help="continue from this toy checkpoint (its networks and tokenizer) instead of random weights")
    parser.add_argument("--save-every", type=int, default=0, help="also write the checkpoint every N steps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes preparing the scenes (default: the CPU count, at most 8)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    recipe = JointRecipe(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                         easy_steps=args.easy_steps, seed=args.seed)
    clip_config = ClipPreprocessConfig.from_dict(clip_preprocessor(TOY_SPEC))
    print(f"preparing {args.scenes} scenes of seed {args.seed} ...", flush=True)
    cache = build_cache(args.seed, args.scenes, clip_config, TOY_SPEC["sam"]["img_size"],
                        log=lambda line: print(line, flush=True), workers=args.workers)
    work = Path(tempfile.mkdtemp(prefix="toy_model_"))
    try:
        if args.resume:
            copy_tokenizer(args.resume, work)
            model, clip, raw_config = load_networks(args.resume)
        else:
            sentences = [s for scene in cache.scenes for s in scene_sentences(scene)]
            model, clip, raw_config = new_networks(write_tokenizer(work, sentences), args.seed)
        tokenizer = NextChatTokenizer.from_dir(work)
        print(f"stage 1-2: {recipe.steps} steps of {recipe.batch_size} scenes", flush=True)
        def save():
            copy_tokenizer(work, args.out)
            save_checkpoint(model, clip, raw_config, args.out)

        history = JointTrainer(model, clip, tokenizer, cache, recipe).train(save=save, save_every=args.save_every)
        del cache
        save()
        stage3 = Stage3Recipe(scenes=args.stage3_scenes, steps=args.stage3_steps, seed=args.seed + 1)
        stage3_metrics = run_stage3(args.out, stage3, work / "stage3") if stage3.steps else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {"spec": TOY_SPEC, "scenes": {"seed": args.seed, "count": args.scenes},
              "resumed_from": read_training(args.resume) if args.resume else None,
              "stage1_2": {"recipe": dataclasses.asdict(recipe), "history": history},
              "stage3": stage3_metrics, "seconds": round(time.monotonic() - started, 1),
              "threads": torch.get_num_threads()}
    (args.out / "training.json").write_text(json.dumps(report, indent=2))
    print(f"wrote the toy checkpoint to {args.out} in {report['seconds'] / 60:.1f} min", flush=True)
    return 0


def scene_sentences(scene) -> list[str]:
    from ..toy_world import caption_text

    return [caption_text(scene), *(e for o in scene.objects for e in o.expressions),
            *(o.description for o in scene.objects)]


def read_training(checkpoint: Path) -> dict | None:
    """The training report of the checkpoint a run continues from (what made it)."""
    path = checkpoint / "training.json"
    return json.loads(path.read_text()) if path.is_file() else None


def copy_tokenizer(source: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
        shutil.copy2(source / name, out / name)


if __name__ == "__main__":
    sys.exit(main())
