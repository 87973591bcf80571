"""Benchmark stage-3 fine-tuning on cached features, next to the reference trainer's cost model.

    python -m benchmarks.bench_finetune --size small [--device cpu] [--dtype fp32] [--images 3]
        [--expressions 2] [--batch-size 4] [--steps 4] [--threads N] [--out benchmarks/results/finetune_cpu_small.json]
    python -m benchmarks.bench_finetune --size 7b --device cuda --dtype bf16

Ours: per image once (CLIP + the image prefix + SAM's image encoder), per (image, expression) once (the
teacher-forced suffix up to <at>), then per step only seg_prompt_mlp + SAM's mask decoder, forward and
backward, with the loss at 1024 x 1024. The reference runs the whole model for every sample at every step:
CLIP, the full prompt through the LLM, SAM's image encoder, then the same heads. Synthetic data: noise
images with rectangle masks. Prints a table and the JSON. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from model import prompts
from model.builder import parse_dtype
from model.processing import clip_pixel_values, sam_pixel_values
from model.stage3.data import load_image, read_records
from model.stage3.features import FeatureStore, image_content_key, suffix_with_answer
from model.stage3.optim import ReferenceAdamW
from model.stage3.samples import Stage3Data, batches_of, eval_queries
from model.stage3.trainer import Stage3Trainer, TrainConfig

from .common import build_in_memory, load_from_disk, noise_image, synchronize, time_call

PROJECTION = {"images": 500, "samples": 1000, "epochs": 3}


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small", "7b"], default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="fp32 or bf16 (default fp32 on cpu, bf16 on cuda)")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--expressions", type=int, default=2, help="records per image")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="timed training steps (after one warm-up step)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each reference component")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--image-size", default="640x480")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    args.dtype = parse_dtype(args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32"))
    width, _, height = args.image_size.partition("x")
    args.image_wh = (int(width), int(height))
    return args


def write_data(folder: Path, images: int, per_image: int, size: tuple[int, int]) -> Path:
    """Noise images, each with ``per_image`` records whose masks are rectangles."""
    (folder / "images").mkdir(parents=True)
    width, height = size
    lines = []
    for i in range(images):
        noise_image(width, height, seed=i).save(folder / "images" / f"img_{i}.png")
        for j in range(per_image):
            x1, y1 = width * (0.1 + 0.1 * j), height * 0.2
            x2, y2 = min(width - 1, x1 + width * 0.3), height * 0.7
            lines.append(json.dumps({"img_path": f"img_{i}.png", "expressions": [f"object {j} in image {i}"],
                                     "height": height, "width": width, "bbox": [x1, y1, x2, y2],
                                     "mask": [[x1, y1, x2, y1, x2, y2, x1, y2]]}))
    (folder / "res.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def feature_timings(nc, data: Stage3Data) -> dict:
    """Seconds per image (CLIP + prefix + SAM encoder) and per sample (suffix to <at>), cold, computed once."""
    records, store, device = data.records, data.store, nc.device
    per_image, per_sample = [], []
    by_image: dict[str, list] = {}
    for query in eval_queries(list(range(len(records))), records):
        by_image.setdefault(records[query.record_index].img_path, []).append(query)
    for group in by_image.values():
        image = load_image(data.data_dir, records[group[0].record_index])
        synchronize(device)
        start = time.perf_counter()
        store.image_embedding(image_content_key(image), image)
        synchronize(device)
        middle = time.perf_counter()
        data.prepare(group)
        synchronize(device)
        per_image.append(middle - start)
        per_sample.append((time.perf_counter() - middle) / len(group))
    return {"s_per_image": statistics.median(per_image), "s_per_sample": statistics.median(per_sample),
            "images": len(per_image), "samples": len(records)}


def step_timings(nc, data: Stage3Data, batch_size: int, steps: int) -> dict:
    """Seconds per optimizer step on cached features (median), reference loss, fp32 master weights."""
    trainer = Stage3Trainer(nc, data, TrainConfig(batch_size=batch_size, max_steps=steps + 1, lr=1e-4,
                                                  val_fraction=0.0, dtype=str(nc.dtype).replace("torch.", "")))
    queries = eval_queries(trainer.train_indices, data.records)
    cycled = [queries[i % len(queries)] for i in range(batch_size * (steps + 1))]
    batches = batches_of(cycled, batch_size)
    optimizer = ReferenceAdamW(trainer.heads.parameters())
    seconds = []
    for batch_queries in batches:
        synchronize(nc.device)
        start = time.perf_counter()
        trainer.train_step(optimizer, data.batch(batch_queries, nc.device), 1e-4)
        synchronize(nc.device)
        seconds.append(time.perf_counter() - start)
    step = statistics.median(seconds[1:])
    return {"batch_size": batch_size, "s_per_step": step, "s_per_cached_sample": step / batch_size,
            "runs_s": [round(s, 4) for s in seconds[1:]]}


@torch.no_grad()
def reference_sample_timings(nc, data: Stage3Data, repeats: int) -> dict:
    """What the reference recomputes for every sample at every step: CLIP (+ projector), the whole
    training sequence through the LLM on an empty cache, SAM's image encoder."""
    model, device, dtype = nc.model, nc.device, nc.dtype
    record = data.records[0]
    image = load_image(data.data_dir, record)
    clip_pixels = clip_pixel_values(image, nc.components.clip_config)[None].to(device, dtype)
    sam_pixels = sam_pixel_values(image)[None].to(device, dtype)
    session = nc.encode_image(image)
    turn = prompts.referring(record.expressions[0])
    ids = torch.tensor(nc.prompt_ids(turn)[:session.prefix_len], device=device)
    sequence = torch.cat([nc.image_prompt_embeddings(session, ids), suffix_with_answer(nc, session, turn)])[None]
    config = model.config.llama
    parts = {
        "clip_s": time_call(lambda: model.mm_projector(nc.tower(clip_pixels)), device, repeats)["median_s"],
        "llm_full_sequence_s": time_call(lambda: model.forward_embeds(sequence, DynamicCache(config=config)),
                                         device, repeats)["median_s"],
        "sam_encoder_s": time_call(lambda: model.sam.image_encoder(sam_pixels), device, repeats)["median_s"],
    }
    parts["sequence_tokens"] = int(sequence.shape[1])
    return parts


def cost_model(features: dict, steps: dict, reference: dict, images: int, samples: int, epochs: int) -> dict:
    batches = epochs * math.ceil(samples / steps["batch_size"])
    ours = images * features["s_per_image"] + samples * features["s_per_sample"] + batches * steps["s_per_step"]
    per_sample = (reference["clip_s"] + reference["llm_full_sequence_s"] + reference["sam_encoder_s"]
                  + steps["s_per_cached_sample"])
    theirs = epochs * samples * per_sample
    return {"images": images, "samples": samples, "epochs": epochs, "ours_s": ours,
            "reference_s": theirs, "reference_s_per_sample_per_step": per_sample, "speedup": theirs / ours}


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_finetune_") as workdir:
        work = Path(workdir)
        if args.size == "7b":
            nc, source = build_in_memory(args.size, args.device, args.dtype)
        else:
            nc, source = load_from_disk(args.size, None, args.device, args.dtype, work)
        folder = write_data(work / "data", args.images, args.expressions, args.image_wh)
        data = Stage3Data(folder, read_records(folder), FeatureStore(nc))
        features = feature_timings(nc, data)
        steps = step_timings(nc, data, args.batch_size, args.steps)
        reference = reference_sample_timings(nc, data, args.repeats)
    report = {"environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
                              "dtype": str(args.dtype).replace("torch.", ""), "size": args.size,
                              "image_size": list(args.image_wh)},
              "model": source, "features": features, "steps": steps, "reference_per_sample": reference,
              "cost_model": {"this_data": cost_model(features, steps, reference, features["images"],
                                                     features["samples"], 3),
                             "projection": cost_model(features, steps, reference, **PROJECTION)}}
    if torch.device(args.device).type == "cuda":
        report["environment"]["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    return report


def render(report: dict) -> str:
    f, s, r = report["features"], report["steps"], report["reference_per_sample"]
    per_sample_ref = report["cost_model"]["projection"]["reference_s_per_sample_per_step"]
    lines = [
        f"stage-3 fine-tuning, {report['model']}, {report['environment']['device']} "
        f"{report['environment']['dtype']}, {report['environment']['threads']} thread(s)",
        f"  once per image  (CLIP + prefix + SAM encoder)      {f['s_per_image']:.3f} s",
        f"  once per sample (suffix to <at>, h_at + box)         {f['s_per_sample']:.4f} s",
        f"  per training step (batch {s['batch_size']}, heads fwd+bwd, 1024 loss) {s['s_per_step']:.3f} s",
        f"  per cached sample per step                          {s['s_per_cached_sample']:.3f} s",
        f"  reference, per sample per step: CLIP {r['clip_s']:.3f} + LLM {r['llm_full_sequence_s']:.3f} "
        f"({r['sequence_tokens']} tokens) + SAM encoder {r['sam_encoder_s']:.3f} + heads "
        f"{s['s_per_cached_sample']:.3f} = {per_sample_ref:.3f} s ({per_sample_ref / s['s_per_cached_sample']:.1f}x)",
    ]
    for name, m in report["cost_model"].items():
        lines.append(f"  {name}: {m['samples']} samples on {m['images']} images, {m['epochs']} epochs: ours "
                     f"{m['ours_s']:.1f} s vs reference {m['reference_s']:.1f} s ({m['speedup']:.1f}x)")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(render(report))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
