"""Per-component timings: CLIP tower, SAM image encoder, prefill, decode steps, SAM mask decoder."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from model import NextChat, prompts
from model.processing import (
    ImageFrame,
    clip_pixel_values,
    mask_logits_to_masks,
    sam_pixel_values,
    upscale_mask_logits,
)
from model.session import additive_mask, copy_cache

from .common import time_call

DECODE_STEPS = 16


@torch.no_grad()
def component_timings(nc: NextChat, image, batch_sizes: list[int], repeats: int) -> dict:
    """Milliseconds per component on ``image`` (median of ``repeats`` after a warm-up)."""
    model, device, dtype = nc.model, nc.device, nc.dtype
    out: dict = {}

    def ms(fn) -> float:
        return round(time_call(fn, device, repeats)["median_s"] * 1000, 3)

    clip_pixels = clip_pixel_values(image, nc.components.clip_config)[None].to(device, dtype)
    out["clip_preprocess_ms"] = ms(lambda: clip_pixel_values(image, nc.components.clip_config))
    out["clip_tower_ms"] = ms(lambda: model.mm_projector(nc.tower(clip_pixels)))
    sam_pixels = sam_pixel_values(image)[None].to(device, dtype)
    out["sam_preprocess_ms"] = ms(lambda: sam_pixel_values(image))
    out["sam_encoder_ms"] = ms(lambda: model.sam.image_encoder(sam_pixels))

    session = nc.encode_image(image)
    turn = prompts.referring("the red car on the left")
    full_ids = torch.tensor(nc.prompt_ids(turn), device=device)
    full_embeds = nc.image_prompt_embeddings(session, full_ids)[None]
    suffix_embeds = nc.suffix_embeddings(session, turn, [])[None]
    llama_config = model.config.llama
    out["prompt_tokens"] = int(full_ids.numel())
    out["prefix_tokens"] = session.prefix_len
    out["prefill_full_prompt_ms"] = ms(lambda: model.forward_embeds(full_embeds, DynamicCache(config=llama_config)))
    out["prefill_suffix_ms"] = ms(
        lambda: model.forward_embeds(suffix_embeds, copy_cache(session.prefix_cache, llama_config)))
    out["decode"] = {str(b): decode_step_timing(nc, full_embeds, b, repeats) for b in sorted({1, *batch_sizes})}
    out.update(mask_decoder_timings(nc, session, max(batch_sizes), repeats))
    return out


def decode_step_timing(nc: NextChat, prompt_embeds: torch.Tensor, batch: int, repeats: int) -> dict:
    """One greedy step at ``batch`` rows after the full prompt (batch 1 without a mask, like NextChat.run;
    batch > 1 with the additive mask, like the batched decoder)."""
    model, device = nc.model, nc.device
    llama_config = model.config.llama
    prompt_cache = DynamicCache(config=llama_config)
    model.forward_embeds(prompt_embeds, prompt_cache)
    length = prompt_embeds.shape[1]
    step_input = model.embed_tokens(torch.full((batch, 1), nc.ids.at, device=device))

    def run_steps():
        cache = copy_cache(prompt_cache, llama_config, repeats=batch)
        for step in range(DECODE_STEPS):
            mask, positions = None, None
            if batch > 1:
                allowed = torch.ones((batch, 1, length + step + 1), dtype=torch.bool, device=device)
                mask = additive_mask(allowed, step_input.dtype)
                positions = torch.full((batch, 1), length + step, device=device)
            logits, _ = model.forward_embeds(step_input, cache, attention_mask=mask, position_ids=positions)
            torch.argmax(logits[:, -1].float(), dim=-1)

    def copy_only():
        copy_cache(prompt_cache, llama_config, repeats=batch)

    total = time_call(run_steps, device, repeats)["median_s"]
    copying = time_call(copy_only, device, repeats)["median_s"]
    step_ms = max(total - copying, 0.0) * 1000 / DECODE_STEPS
    return {"step_ms": round(step_ms, 3), "ms_per_token": round(step_ms / batch, 3),
            "tokens_per_s": round(batch * 1000 / step_ms, 1) if step_ms else None,
            "cache_positions": length + DECODE_STEPS // 2}


def mask_decoder_timings(nc: NextChat, session, boxes: int, repeats: int) -> dict:
    """SAM's mask decoder (with the box/prompt heads) per box, alone and for ``boxes`` boxes in one call,
    and the per-box upscaling of mask logits to the image."""
    model, device = nc.model, nc.device
    embedding = nc.sam_embedding(session)
    hidden = torch.randn((boxes, model.config.llama.hidden_size), generator=torch.Generator().manual_seed(0))
    hidden = hidden.to(device, nc.dtype)
    frame = ImageFrame.of(session.image)
    one = time_call(lambda: model.decode_masks(hidden[:1], embedding), device, repeats)["median_s"]
    many = time_call(lambda: model.decode_masks(hidden, embedding), device, repeats)["median_s"]
    _, low_res, _ = model.decode_masks(hidden[:1], embedding)
    post = time_call(lambda: mask_logits_to_masks(upscale_mask_logits(low_res), frame).cpu(), device,
                     repeats)["median_s"]
    return {"sam_decoder_ms_per_box_batch1": round(one * 1000, 3),
            f"sam_decoder_ms_per_box_batch{boxes}": round(many * 1000 / boxes, 3),
            "mask_postprocess_ms_per_box": round(post * 1000, 3)}
