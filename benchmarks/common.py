"""What a benchmark run needs: the model (from disk or built in memory), a test image, labels, timers,
and the peak memory bandwidth of known GPUs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model import NextChat
from model.modeling import NextChatModel
from model.random_checkpoint import build_random_components, write_random_checkpoint

# Referring expressions, one per label; N labels use the first N.
EXPRESSIONS = ("person", "car", "dog", "traffic light", "the red car on the left", "a cat", "tree", "sky",
               "the tallest building", "road", "bicycle", "bus", "stop sign", "window", "door", "chair",
               "table", "cup", "a man in a blue shirt", "laptop", "bird", "boat", "horse", "clock")

# Peak memory bandwidth (bytes/s) by a substring of torch.cuda.get_device_name(); first match wins.
GPU_PEAK_BANDWIDTH = (
    ("GH200", 4.0e12),           # before "H200", which it contains
    ("H200", 4.8e12),
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),           # SXM
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100-PCIE-40GB", 1.555e12),
    ("A100-SXM4-40GB", 1.555e12),
    ("A100", 2.0e12),
    ("L40S", 0.864e12),
    ("L40", 0.864e12),
    ("L4", 0.3e12),
    ("A10G", 0.6e12),
    ("A10", 0.6e12),
    ("RTX 4090", 1.008e12),
    ("RTX 3090", 0.936e12),
    ("V100", 0.9e12),
    ("T4", 0.32e12),
)


def gpu_peak_bandwidth(device_name: str) -> float | None:
    """Bytes/s for a known card name, else None."""
    for needle, peak in GPU_PEAK_BANDWIDTH:
        if needle.lower() in device_name.lower():
            return peak
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> dict:
    """Median, minimum and all wall seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs;
    the device is synchronised around each run so queued GPU work is counted."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "runs_s": [round(s, 6) for s in seconds]}


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def expressions(count: int) -> list[str]:
    if count <= len(EXPRESSIONS):
        return list(EXPRESSIONS[:count])
    return [f"{EXPRESSIONS[i % len(EXPRESSIONS)]} number {i}" for i in range(count)]


# ------------------------------------------------------------------------------------ the model
def load_from_disk(size: str, checkpoint: str | None, device: str, dtype: torch.dtype,
                   workdir: Path) -> tuple[NextChat, str]:
    """The model through the real loading path; a random locating checkpoint is written when none is given."""
    if checkpoint is None:
        checkpoint = str(write_random_checkpoint(size, workdir / f"random_{size}", seed=0))
        source = f"random {size} checkpoint (locating, seed 0) written to a temporary folder"
    else:
        source = f"checkpoint {checkpoint}"
    tower = Path(checkpoint) / "vision_tower"
    model = NextChat.from_pretrained(checkpoint, vision_tower=str(tower) if tower.is_dir() else None,
                                     device=device, dtype=dtype)
    return model, source


def build_in_memory(size: str, device: str, dtype, seed: int = 0) -> tuple[NextChat, str]:
    """A random locating NExT-Chat of ``size`` built straight on ``device`` (no checkpoint on disk)."""
    components = build_random_components(size, device=device, dtype=dtype, seed=seed)
    return NextChat(components), f"random {size} model built in memory (locating, seed {seed})"


def decode_weight_bytes(model: NextChatModel) -> int:
    """Bytes of weights one decode step reads: every decoder layer, the final norm and lm_head
    (the embedding table is a one-row lookup)."""
    modules = [model.model.layers, model.model.norm, model.lm_head]
    return sum(p.numel() * p.element_size() for module in modules for p in module.parameters())


def kv_bytes(model: NextChatModel, sequence_length: int, batch: int = 1) -> int:
    """Bytes of keys and values one decode step reads at ``sequence_length`` cached positions."""
    cfg = model.config.llama
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    element = model.lm_head.weight.element_size()
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * sequence_length * batch * element


def emit_report(report: dict, out: str | None, table: str | None) -> None:
    """The report's JSON written to ``out`` (when given); the table printed (when given), then the JSON."""
    import json
    from pathlib import Path

    text = json.dumps(report, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    if table is not None:
        print(table)
        print()
    print(text)
