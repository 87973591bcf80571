"""Assemble NExT-Chat from a release checkpoint and a CLIP tower (local folders or hub ids)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import CLIPVisionModel
from transformers.utils import logging as hf_logging

from .checkpoint import CheckpointError, load_exact, read_json, read_state_dict, rename_release_keys, resolve_dir
from .devices import parse_dtype
from .modeling import NextChatConfig, NextChatModel, VisionTower, keep_sam_heads_fp32, round_through_fp16
from .processing import ClipPreprocessConfig
from .reasons import one_line
from .sam_builder import build_sam, infer_sam_dims, sam_state
from .tokenizer import NextChatTokenizer, TokenizerError


@dataclass
class Components:
    model: NextChatModel
    tower: VisionTower
    tokenizer: NextChatTokenizer
    clip_config: ClipPreprocessConfig
    config: NextChatConfig
    checkpoint_dir: Path
    tower_dir: Path
    delta: object | None = None   # the applied stage-3 delta (model.stage3.delta.Delta), if any


def load_components(checkpoint, vision_tower=None, device="cpu", dtype=torch.float32, delta=None) -> Components:
    """``delta``: a stage-3 delta file (or a loaded Delta) applied after loading, checked against the base."""
    dtype = parse_dtype(dtype)
    ckpt_dir = resolve_dir(checkpoint)
    raw_config = read_json(ckpt_dir / "config.json")
    config = NextChatConfig.from_dict(raw_config)
    try:
        tokenizer = NextChatTokenizer.from_dir(ckpt_dir)
    except TokenizerError as err:
        raise CheckpointError(str(err)) from None
    if len(tokenizer) != config.llama.vocab_size:
        raise CheckpointError(f"tokenizer has {len(tokenizer)} tokens but config.json vocab_size is "
                              f"{config.llama.vocab_size}")
    state = rename_release_keys(read_state_dict(ckpt_dir))
    sam_weights = sam_state(state)
    if not sam_weights:
        raise CheckpointError("checkpoint has no sam.model.* weights")
    sam = build_sam(infer_sam_dims(sam_weights, raw_config.get("sam_decoder_num_heads")))
    model = NextChatModel(config, sam)
    load_exact(model, state, f"NExT-Chat checkpoint {ckpt_dir}")
    del state, sam_weights

    tower_dir = resolve_dir(vision_tower or _tower_named_in(ckpt_dir, raw_config), "vision tower")
    clip = load_clip(tower_dir, config)
    clip_config = ClipPreprocessConfig.from_dict(read_json(tower_dir / "preprocessor_config.json"))
    components = assemble(model, clip, tokenizer, clip_config, config, device, dtype, ckpt_dir, tower_dir)
    if delta is not None:
        from .stage3.delta import apply_delta  # here: stage 3 imports this module

        apply_delta(components, delta)
    return components


def _tower_named_in(ckpt_dir: Path, raw_config: dict) -> str:
    """config.json's mm_vision_tower: a folder inside the checkpoint (our random checkpoints), or a hub id."""
    named = raw_config.get("mm_vision_tower") or "openai/clip-vit-large-patch14-336"
    inside = ckpt_dir / named
    return str(inside) if inside.is_dir() else named


def assemble(model: NextChatModel, clip: CLIPVisionModel, tokenizer: NextChatTokenizer,
             clip_config: ClipPreprocessConfig, config: NextChatConfig, device, dtype,
             checkpoint_dir: Path, tower_dir: Path) -> Components:
    """Place everything on ``device`` in ``dtype`` the way the release runs it: the CLIP tower rounded
    through fp16 (docs/model.md), SAM's prompt encoder and mask decoder kept in fp32."""
    model.to(device=device, dtype=dtype).eval()
    keep_sam_heads_fp32(model)
    tower = VisionTower(round_through_fp16(clip, dtype).to(device).eval(), config.mm_vision_select_layer)
    return Components(model, tower, tokenizer, clip_config, config, checkpoint_dir, tower_dir)


def load_clip(tower_dir: Path, config: NextChatConfig) -> CLIPVisionModel:
    hf_logging.disable_progress_bar()
    try:
        clip = CLIPVisionModel.from_pretrained(str(tower_dir), dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot load the CLIP vision tower from {tower_dir}: {one_line(err)}") from None
    width = clip.config.hidden_size
    if width != config.mm_hidden_size:
        raise CheckpointError(f"vision tower width {width} does not match mm_hidden_size {config.mm_hidden_size}")
    return clip
