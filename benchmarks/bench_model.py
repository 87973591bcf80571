"""Benchmark NExT-Chat inference: per component, and seconds per image for N labels in four modes.

    python -m benchmarks.bench_model --size small [--device cpu] [--dtype fp32] [--labels 1,2,4,8,16]
        [--out benchmarks/results/cpu_small.json]
    python -m benchmarks.bench_model --size 7b --device cuda --dtype bf16

Uses a random *locating* checkpoint (every answer has a box, so SAM's mask decoder is part of the cost):
written to a temporary folder (or read from --checkpoint), or for --size 7b built in memory. Prints a
table, then the JSON (also written to --out). Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import torch

from model.devices import parse_dtype

from .common import (
    build_in_memory,
    decode_weight_bytes,
    emit_report,
    expressions,
    gpu_peak_bandwidth,
    kv_bytes,
    load_from_disk,
    noise_image,
)
from .components import component_timings
from .modes import MODES, mode_timings
from .report import render_table

# Issue 5 targets.
CPU_TARGETS = {"8/1": 2.5, "16/1": 4.0}
GPU_BANDWIDTH_FRACTION = 0.60
GPU_EIGHT_LABELS_S = 0.3


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_model",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small", "7b"], default="small")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--dtype", default=None, help="fp32, bf16 or fp16 (default fp32 on cpu, bf16 on cuda)")
    parser.add_argument("--labels", default="1,2,4,8,16", help="label counts per image (default 1,2,4,8,16)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    parser.add_argument("--checkpoint", help="use this checkpoint folder (its tower in ./vision_tower)")
    parser.add_argument("--in-memory", action="store_true",
                        help="build the random model in memory (the default for --size 7b)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measure; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before each measure")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--image-size", default="640x480", help="WxH of the noise test image")
    parser.add_argument("--skip-components", action="store_true")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--json-only", action="store_true", help="print only the JSON")
    args = parser.parse_args(argv)
    args.label_counts = sorted({int(n) for n in args.labels.split(",") if n.strip()})
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.mode_list if m not in MODES]
    if unknown or not args.label_counts or min(args.label_counts) < 1:
        parser.error(f"bad --modes {unknown} or --labels {args.labels!r}")
    args.dtype = parse_dtype(args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32"))
    width, _, height = args.image_size.partition("x")
    args.image_wh = (int(width), int(height))
    return args


def environment(args, nc) -> dict:
    device = torch.device(args.device)
    env = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "threads": torch.get_num_threads(), "device": str(device), "dtype": str(args.dtype).replace("torch.", ""),
           "size": args.size, "image_size": list(args.image_wh), "max_new_tokens": args.max_new_tokens,
           "repeats": args.repeats, "warmup": args.warmup, "model_version": nc.model_version}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def gpu_summary(nc, components: dict, modes: dict, device_name: str) -> dict:
    """tokens/s and achieved bandwidth of decode at batch 1 against the card's peak; the 8-label time."""
    step = components["decode"]["1"]
    weight_bytes = decode_weight_bytes(nc.model)
    cache_bytes = kv_bytes(nc.model, step["cache_positions"])
    seconds = step["step_ms"] / 1000
    peak = gpu_peak_bandwidth(device_name)
    achieved = weight_bytes / seconds if seconds else None
    summary = {"gpu": device_name, "decode_tokens_per_s_batch1": step["tokens_per_s"],
               "weight_bytes_per_step": weight_bytes, "kv_bytes_per_step": cache_bytes,
               "achieved_bandwidth_GBps": round(achieved / 1e9, 1) if achieved else None,
               "achieved_bandwidth_with_kv_GBps": round((weight_bytes + cache_bytes) / seconds / 1e9, 1)
               if seconds else None,
               "peak_bandwidth_GBps": round(peak / 1e9, 1) if peak else None,
               "fraction_of_peak": round(achieved / peak, 3) if (peak and achieved) else None}
    batched = modes.get("batched", {}).get("seconds_per_image", {})
    summary["targets"] = {
        f"decode_batch1_bandwidth>={GPU_BANDWIDTH_FRACTION:.0%}_of_peak":
            None if summary["fraction_of_peak"] is None else summary["fraction_of_peak"] >= GPU_BANDWIDTH_FRACTION,
        f"8_labels_batched<={GPU_EIGHT_LABELS_S}s":
            None if "8" not in batched else batched["8"]["median_s"] <= GPU_EIGHT_LABELS_S,
    }
    return summary


def cpu_targets(modes: dict) -> dict:
    ratios = modes.get("batched", {}).get("ratios", {})
    return {f"batched_{key}<={limit}x": (None if key not in ratios else ratios[key] <= limit)
            for key, limit in CPU_TARGETS.items()}


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_ckpt_") as workdir:
        if args.checkpoint is None and (args.in_memory or args.size == "7b"):
            nc, source = build_in_memory(args.size, args.device, args.dtype)
        else:
            nc, source = load_from_disk(args.size, args.checkpoint, args.device, args.dtype, Path(workdir))
        image = noise_image(*args.image_wh)
        report = {"environment": environment(args, nc), "model": source}
        label_lists = {n: expressions(n) for n in args.label_counts}
        report["labels"] = label_lists[max(args.label_counts)]
        if not args.skip_components:
            report["components"] = component_timings(nc, image, args.label_counts, args.repeats)
        report["modes"] = mode_timings(nc, image, label_lists, args.max_new_tokens, args.repeats, args.warmup,
                                       args.mode_list)
        if torch.device(args.device).type == "cuda" and "components" in report:
            report["gpu"] = gpu_summary(nc, report["components"], report["modes"], report["environment"]["gpu"])
        else:
            report["targets"] = cpu_targets(report["modes"])
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args)
    emit_report(report, args.out, None if args.json_only else render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
