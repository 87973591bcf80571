"""Benchmark interactive latency: ms per click, per drawn box and per typed prompt on a warm image session.

    python -m benchmarks.bench_interactive --size small [--device cpu] [--dtype fp32] [--threads 1]
        [--repeats 10] [--out benchmarks/results/cpu_small_interactive.json]

Uses a random *locating* checkpoint (written to a temporary folder, or read from --checkpoint; built in
memory for --size 7b). The image session (CLIP tokens, prefix KV cache, SAM's image embedding) is made
once, then each interaction is timed on it, as an annotator working on one image meets it. The first
interaction on a new image (which pays for the session) is timed separately. Prints a table, then the
JSON. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from model.builder import parse_dtype
from model.processing import points_pixels_to_norm

from .common import build_in_memory, emit_report, load_from_disk, noise_image, time_call
from .report import _table

EXPRESSION = "the red car on the left"


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_interactive",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small", "7b"], default="small")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--dtype", default=None, help="fp32, bf16 or fp16 (default fp32 on cpu, bf16 on cuda)")
    parser.add_argument("--checkpoint", help="use this checkpoint folder (its tower in ./vision_tower)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measure; the median is reported")
    parser.add_argument("--cold-repeats", type=int, default=3, help="new images timed for the first click")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--image-size", default="640x480", help="WxH of the noise test image")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    args.dtype = parse_dtype(args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32"))
    width, _, height = args.image_size.partition("x")
    args.image_wh = (int(width), int(height))
    return args


def interactions(nc, image) -> dict:
    """What an annotator does on one image, each as a call (pixel coordinates on a W x H image)."""
    w, h = image.size
    box = (0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h)
    one_click = [(0.45 * w, 0.5 * h)]
    clicks = [(0.45 * w, 0.5 * h), (0.3 * w, 0.4 * h), (0.6 * w, 0.7 * h)]
    labels = [1, 1, 0]
    return {
        "click_points_only_1": lambda: nc.segment(image, points=one_click),
        "click_points_only_3": lambda: nc.segment(image, points=clicks, point_labels=labels),
        "click_box_and_points_3": lambda: nc.segment(image, box=box, points=clicks, point_labels=labels),
        "click_refine_located_region_3": lambda: nc.refine(image, EXPRESSION, clicks, labels),
        "drawn_box": lambda: nc.segment(image, box=box),
        "mask_decoder_call_only_3_points": mask_decoder_only(nc, image, clicks, labels),
        "typed_prompt_ground": lambda: nc.ground(image, EXPRESSION),
    }


def mask_decoder_only(nc, image, clicks, labels):
    """The SAM part of a click, to call: prompt encoder + mask decoder on the cached embedding (no image
    lookup, no mask post-processing)."""
    session = nc.encode_image(image)
    points = points_pixels_to_norm(clicks, session.frame)[None].to(nc.device)
    point_labels = torch.tensor([labels], device=nc.device)
    return lambda: nc.model.sam_masks(None, session.sam_embedding, None, points, point_labels)


def first_click_on_new_images(nc, size: tuple[int, int], repeats: int, device) -> dict:
    """A click on an image not in the session cache: the session (CLIP, prefix, SAM encoder) plus the click."""
    images = iter([noise_image(*size, seed=100 + i) for i in range(repeats + 1)])
    timing = time_call(lambda: nc.segment(next(images), points=[(size[0] / 2, size[1] / 2)]), device, repeats)
    return {"median_ms": round(timing["median_s"] * 1000, 3), "min_ms": round(timing["min_s"] * 1000, 3)}


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="bench_ckpt_") as workdir:
        if args.checkpoint is None and args.size == "7b":
            nc, source = build_in_memory(args.size, args.device, args.dtype)
        else:
            nc, source = load_from_disk(args.size, args.checkpoint, args.device, args.dtype, Path(workdir))
        image = noise_image(*args.image_wh)
        nc.sam_embedding(nc.encode_image(image))          # the warm session every interaction below reuses
        located = len(nc.ground(image, EXPRESSION))
        report = {"environment": {"torch": torch.__version__, "python": platform.python_version(),
                                  "threads": torch.get_num_threads(), "device": str(device),
                                  "dtype": str(args.dtype).replace("torch.", ""), "size": args.size,
                                  "image_size": list(args.image_wh), "repeats": args.repeats,
                                  "model_version": nc.model_version, "cpu_count": os.cpu_count(),
                                  "load_average_1m_at_start": round(os.getloadavg()[0], 2),
                                  "gpu" if device.type == "cuda" else "cpu":
                                      torch.cuda.get_device_name(device) if device.type == "cuda"
                                      else platform.processor() or platform.machine()},
                  "model": source, "expression": EXPRESSION, "regions_located": located, "warm_ms": {}}
        for name, call in interactions(nc, image).items():
            if name.startswith("click_refine") and not located:
                continue  # nothing located to refine (a non-locating checkpoint)
            timing = time_call(call, device, args.repeats)
            report["warm_ms"][name] = {"median_ms": round(timing["median_s"] * 1000, 3),
                                       "min_ms": round(timing["min_s"] * 1000, 3)}
        report["first_click_on_a_new_image_ms"] = first_click_on_new_images(nc, args.image_wh, args.cold_repeats,
                                                                           device)
    return report


def render(report: dict) -> str:
    rows = [[name, f"{t['median_ms']:.1f}", f"{t['min_ms']:.1f}"] for name, t in report["warm_ms"].items()]
    cold = report["first_click_on_a_new_image_ms"]
    rows.append(["first click on a new image (session + click)", f"{cold['median_ms']:.1f}", f"{cold['min_ms']:.1f}"])
    env = report["environment"]
    title = f"{env['size']} on {env['device']} ({env['dtype']}, {env['threads']} threads), {env['image_size']}"
    return title + "\n" + _table(["interaction (warm session)", "median ms", "min ms"], rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args)
    emit_report(report, args.out, render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
