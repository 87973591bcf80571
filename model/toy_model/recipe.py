"""The toy NExT-Chat: its sizes, its tokenizer and its empty (randomly initialised) networks.

The architecture is the release's (Llama + CLIP ViT + 2-layer projector + loc heads + seg_prompt_mlp +
SAM), only smaller: sizes below, SAM's input 256 instead of 1024 (the loader reads it off the weights).
The tokenizer is a sentencepiece BPE trained on toy-world text, with the release's system sentence and
the ``USER:`` / ``ASSISTANT:`` markers kept as single pieces so that prompts stay short.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPVisionModel

from ..modeling import NextChatConfig, NextChatModel
from ..prompts import GC_PROMPT, REC_TEMPLATE, REG_TEMPLATE, SYSTEM, VQA_LOC_SUFFIX
from ..random_checkpoint import (
    clip_preprocessor,
    clip_vision_config,
    nextchat_config,
    sam_dims,
    train_tokenizer,
    write_release_files,
)
from ..sam_builder import build_sam

TOY_SPEC = dict(
    hidden=128, layers=4, heads=4, inter=344, vocab=400,
    clip=dict(hidden=128, layers=4, heads=4, inter=256, image=112, patch=14),
    sam=dict(img_size=256, embed_dim=64, depth=2, heads=2, window=8, global_blocks=[1], prompt_dim=64,
             mlp_ratio=2.0, decoder_mlp=128, decoder_heads=4, iou_hidden=64, mask_in_chans=16),
)
WHOLE_PIECES = ("\u2581" + SYSTEM.replace(" ", "\u2581"), "\u2581USER:", "\u2581ASSISTANT:")
TOWER_DIR = "vision_tower"


def tokenizer_corpus(sentences: list[str]) -> list[str]:
    """What the toy tokenizer learns its pieces from: the task prompts and the world's sentences."""
    templates = [REC_TEMPLATE.format(expr="the red car"), REG_TEMPLATE.format(objs="<at> <boxes>"), GC_PROMPT,
                 "What is in the image?" + VQA_LOC_SUFFIX, "Answer: none ."]
    return [f"{SYSTEM} USER: {t} ASSISTANT:" for t in templates] * 20 + sentences


def write_tokenizer(out_dir: Path, sentences: list[str]) -> int:
    """tokenizer.model + the release's tokenizer files in ``out_dir``; returns the vocabulary size."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return train_tokenizer(TOY_SPEC["vocab"], out_dir, tokenizer_corpus(sentences), WHOLE_PIECES)


def new_networks(vocab: int, seed: int) -> tuple[NextChatModel, CLIPVisionModel, dict]:
    """Randomly initialised networks of the toy size: (NExT-Chat model, CLIP tower, config.json dict)."""
    torch.manual_seed(seed)
    raw = nextchat_config(TOY_SPEC, vocab)
    raw["mm_vision_tower"] = TOWER_DIR
    model = NextChatModel(NextChatConfig.from_dict(raw), build_sam(sam_dims(TOY_SPEC)))
    clip = CLIPVisionModel(clip_vision_config(TOY_SPEC))
    return model, clip, raw


def load_networks(checkpoint_dir: Path) -> tuple[NextChatModel, CLIPVisionModel, dict]:
    """A toy checkpoint's networks as written (fp32, the tower not rounded), to continue training them."""
    from ..checkpoint import load_exact, read_state_dict, rename_release_keys

    raw = json.loads((checkpoint_dir / "config.json").read_text())
    model = NextChatModel(NextChatConfig.from_dict(raw), build_sam(sam_dims(TOY_SPEC)))
    load_exact(model, rename_release_keys(read_state_dict(checkpoint_dir)), f"toy checkpoint {checkpoint_dir}")
    clip = CLIPVisionModel.from_pretrained(str(checkpoint_dir / TOWER_DIR), dtype=torch.float32)
    return model, clip, raw


def save_checkpoint(model: NextChatModel, clip: CLIPVisionModel, raw_config: dict, out_dir: Path) -> Path:
    """The release's layout: config, weights (release key names) and tokenizer in ``out_dir`` (the tokenizer is
    already there), the CLIP tower in ``out_dir/vision_tower``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_release_files(model, raw_config, out_dir, torch.float32)
    tower = out_dir / TOWER_DIR
    clip.save_pretrained(tower)
    (tower / "preprocessor_config.json").write_text(json.dumps(clip_preprocessor(TOY_SPEC), indent=2))
    return out_dir
