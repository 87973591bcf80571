"""(b) The random locating model built in memory on the device: load memory, per-component times,
decode bandwidth against a device-to-device copy measured in the same run, and seconds per image for
N labels in the four modes of benchmarks/bench_model. Every timer synchronises the device; medians."""

from __future__ import annotations

import gc
import resource
import time

import torch
from transformers import DynamicCache

from benchmarks.bench_model import GPU_BANDWIDTH_FRACTION, GPU_EIGHT_LABELS_S, gpu_summary
from benchmarks.common import build_in_memory, expressions, noise_image, synchronize, time_call
from benchmarks.components import component_timings
from benchmarks.modes import MODES, mode_timings

GIB = 2**30


def memory_now(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"allocated_GiB": round(torch.cuda.memory_allocated(device) / GIB, 3),
                "reserved_GiB": round(torch.cuda.memory_reserved(device) / GIB, 3),
                "peak_allocated_GiB": round(torch.cuda.max_memory_allocated(device) / GIB, 3)}
    return {"process_max_rss_GiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3)}


def parameter_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def copy_bandwidth(device: torch.device, nbytes: int, repeats: int = 10) -> dict:
    """Bytes/s of a device-to-device copy (bytes read + bytes written), median of ``repeats`` copies of
    ``nbytes`` of random data (not zeros) after a warm-up; CUDA events on a GPU."""
    source = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    target = torch.empty_like(source)
    target.copy_(source)
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            target.copy_(source)
            end.record()
            end.synchronize()
            seconds.append(start.elapsed_time(end) / 1000)
        else:
            began = time.perf_counter()
            target.copy_(source)
            seconds.append(time.perf_counter() - began)
    if not torch.equal(target, source):
        raise RuntimeError("device copy did not reproduce its source")
    median = sorted(seconds)[len(seconds) // 2]
    moved = 2 * source.numel() * source.element_size()
    return {"bytes_per_copy": moved, "median_s": median, "GBps": round(moved / median / 1e9, 1),
            "runs_s": [round(s, 7) for s in seconds]}


@torch.no_grad()
def prefix_prefill_ms(nc, image, repeats: int) -> dict:
    """Prefill of the shared image prefix (``<s> system USER: <im_start> patches <im_end>``) on an empty cache."""
    session = nc.encode_image(image)
    ids = torch.tensor(session.prefix_ids, device=nc.device)
    embeds = nc.image_prompt_embeddings(session, ids)[None]
    config = nc.model.config.llama
    timing = time_call(lambda: nc.model.forward_embeds(embeds, DynamicCache(config=config)), nc.device, repeats)
    return {"prefill_prefix_ms": round(timing["median_s"] * 1000, 3), "prefix_tokens": session.prefix_len}


def bandwidth_summary(nc, components: dict, modes: dict, device_name: str, copy: dict) -> dict:
    """bench_model's decode summary (datasheet peak), with the copy measured in this run as the peak."""
    summary = gpu_summary(nc, components, modes, device_name)
    achieved = summary["achieved_bandwidth_GBps"]
    summary["measured_copy_GBps"] = copy["GBps"]
    summary["fraction_of_measured_copy"] = round(achieved / copy["GBps"], 3) if achieved else None
    batched = modes.get("batched", {}).get("seconds_per_image", {})
    fraction = summary["fraction_of_measured_copy"]
    summary["targets"] = {
        "decode_batch1_bandwidth": {"limit": f">= {GPU_BANDWIDTH_FRACTION:.0%} of the measured copy bandwidth",
                                    "value": fraction, "met": None if fraction is None else
                                    fraction >= GPU_BANDWIDTH_FRACTION},
        "eight_labels_batched_s": {"limit": f"<= {GPU_EIGHT_LABELS_S} s per image (batched, inside the model)",
                                   "value": batched.get("8", {}).get("median_s"),
                                   "met": None if "8" not in batched else
                                   batched["8"]["median_s"] <= GPU_EIGHT_LABELS_S},
    }
    return summary


def run_model_check(size: str, device: str, dtype: torch.dtype, label_counts: list[int], repeats: int,
                    warmup: int, max_new_tokens: int, copy_bytes: int, image_wh=(640, 480)) -> dict:
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    torch.manual_seed(0)
    synchronize(dev)
    began = time.perf_counter()
    nc, source = build_in_memory(size, device, dtype)
    synchronize(dev)
    report: dict = {"model": source, "size": size, "dtype": str(dtype).replace("torch.", ""),
                    "build_s": round(time.perf_counter() - began, 2),
                    "weights_GiB": round((parameter_bytes(nc.model) + parameter_bytes(nc.tower)) / GIB, 3),
                    "memory_after_build": memory_now(dev)}
    image = noise_image(*image_wh)
    components = component_timings(nc, image, label_counts, repeats)
    components.update(prefix_prefill_ms(nc, image, repeats))
    report["components"] = components
    report["modes"] = mode_timings(nc, image, {n: expressions(n) for n in label_counts}, max_new_tokens,
                                   repeats, warmup, list(MODES))
    report["copy_bandwidth"] = copy_bandwidth(dev, copy_bytes)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    report["bandwidth"] = bandwidth_summary(nc, components, report["modes"], name, report["copy_bandwidth"])
    report["memory_at_end"] = memory_now(dev)
    del nc
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return report
