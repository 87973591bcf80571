"""Seconds per image for N labels, four ways of spending the work (each starts from a cold image cache).

* naive: everything per label, like the release: CLIP + full-prompt prefill + SAM encoder per prompt.
* image_cache: CLIP and SAM's encoder once per image; the full prompt prefilled again for each label.
* shared_prefix: the prefix KV cache reused too; one prompt at a time (``NextChat.ground`` per label).
* batched: ``NextChat.ground_many`` (prompts decoded together, one SAM decoder call).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from model import NextChat, prompts
from model.decoding import DecodeOptions, Stepper, decode_single
from model.processing import ImageFrame, clip_pixel_values, to_rgb
from model.session import ImageSession

from .common import time_call

MODES = ("naive", "image_cache", "shared_prefix", "batched")


def run_naive(nc: NextChat, image, labels: list[str], max_new_tokens: int) -> list[int]:
    cold = NextChat(nc.components, image_cache_size=0)   # nothing survives between calls
    return [len(cold.ground(image, label, max_new_tokens=max_new_tokens)) for label in labels]


@torch.no_grad()
def run_image_cache(nc: NextChat, image, labels: list[str], max_new_tokens: int) -> list[int]:
    image = to_rgb(image)
    model, frame = nc.model, ImageFrame.of(image)
    pixels = clip_pixel_values(image, nc.components.clip_config)[None].to(nc.device, nc.dtype)
    session = ImageSession(image=image, frame=frame, image_tokens=model.mm_projector(nc.tower(pixels))[0])
    nc.sam_embedding(session)
    counts = []
    for label in labels:
        ids = torch.tensor(nc.prompt_ids(prompts.referring(label)), device=nc.device)
        cache = DynamicCache(config=model.config.llama)
        step = Stepper(model, cache)
        logits, _ = step(nc.image_prompt_embeddings(session, ids)[None])
        decoded = decode_single(step, logits[0], nc.ids, DecodeOptions(max_new_tokens=max_new_tokens))
        result = nc.finish(session, decoded)
        counts.append(len(nc.regions(result, [label] * len(result.boxes))))
    return counts


def run_shared_prefix(nc: NextChat, image, labels: list[str], max_new_tokens: int) -> list[int]:
    fresh = NextChat(nc.components)
    return [len(fresh.ground(image, label, max_new_tokens=max_new_tokens)) for label in labels]


def run_batched(nc: NextChat, image, labels: list[str], max_new_tokens: int) -> list[int]:
    fresh = NextChat(nc.components, max_batch=max(16, len(labels)))
    return [len(regions) for regions in fresh.ground_many(image, labels, max_new_tokens=max_new_tokens)]


RUNNERS = {"naive": run_naive, "image_cache": run_image_cache, "shared_prefix": run_shared_prefix,
           "batched": run_batched}


def mode_timings(nc: NextChat, image, label_lists: dict[int, list[str]], max_new_tokens: int, repeats: int,
                 warmup: int = 1, modes=MODES) -> dict:
    """{mode: {N: {median_s, runs_s, regions}}} and each mode's N/1 ratios."""
    out: dict = {}
    for mode in modes:
        runner = RUNNERS[mode]
        per_n: dict = {}
        for n, labels in label_lists.items():
            last: list = []
            timing = time_call(lambda r=runner, lb=labels, keep=last: keep.append(r(nc, image, lb, max_new_tokens)),
                               nc.device, repeats, warmup)
            timing["regions"] = last[-1]
            per_n[str(n)] = timing
        out[mode] = {"seconds_per_image": per_n, "ratios": ratios(per_n), "ratios_of_min": ratios(per_n, "min_s")}
    return out


def ratios(per_n: dict, statistic: str = "median_s") -> dict:
    """Seconds for N labels over seconds for 1 label, for every N measured."""
    if "1" not in per_n:
        return {}
    one = per_n["1"][statistic]
    return {f"{n}/1": round(t[statistic] / one, 3) for n, t in per_n.items() if n != "1"}
