"""Per-image work done once: CLIP tokens, SAM's embedding, and the KV cache of the shared prompt prefix.

Every prompt about an image starts with the same ids: ``<s> system USER: <im_start> patches <im_end>``
(the tokenizer splits on ``<im_end>``, so nothing after it changes them). That prefix is run once per
image; each prompt copies its cache and runs only its own suffix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from PIL import Image
from transformers import DynamicCache

from .processing import ImageFrame


@dataclass
class ImageSession:
    """Everything computed once per image (cached by the image's content)."""

    image: Image.Image
    frame: ImageFrame
    image_tokens: torch.Tensor                   # [N, hidden] projected CLIP features
    sam_embedding: torch.Tensor | None = None    # [1, C, S/16, S/16], computed on first use
    prefix_ids: list[int] = field(default_factory=list)
    prefix_cache: DynamicCache | None = None     # KV of prefix_ids, batch 1
    # (expression, max_new_tokens) -> Location of each region ``ground`` found, for clicks that refine them
    grounded: dict = field(default_factory=dict)

    @property
    def prefix_len(self) -> int:
        return len(self.prefix_ids)


def copy_cache(cache: DynamicCache, config, repeats: int = 1) -> DynamicCache:
    """A new cache holding ``cache``'s keys and values, repeated ``repeats`` times along the batch."""
    copy = DynamicCache(config=config)
    for layer_index, layer in enumerate(cache.layers):
        keys, values = layer.keys, layer.values
        if repeats > 1:
            keys, values = keys.repeat(repeats, 1, 1, 1), values.repeat(repeats, 1, 1, 1)
        copy.update(keys.clone(), values.clone(), layer_index)
    return copy


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, q, kv] bool (True = may attend) -> [B, 1, q, kv] additive mask for the attention kernels."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def suffix_prefill_mask(prefix_len: int, suffix_lens: list[int], device) -> torch.Tensor:
    """Left-padded suffixes after a shared prefix: [B, S, P + S] bool; pads are never attended."""
    width = max(suffix_lens)
    query = torch.arange(width, device=device)[:, None]
    key = torch.arange(width, device=device)[None, :]
    pads = torch.tensor([width - n for n in suffix_lens], device=device)[:, None, None]
    suffix_part = (key <= query)[None] & (key[None] >= pads)
    prefix_part = torch.ones((len(suffix_lens), width, prefix_len), dtype=torch.bool, device=device)
    return torch.cat([prefix_part, suffix_part], dim=-1)


class SuffixPrefill(NamedTuple):
    logits: torch.Tensor     # [B, S, V] after each left-padded suffix
    hidden: torch.Tensor     # [B, S, H] last-layer hidden states
    cache: DynamicCache      # the prefix's KV repeated B times, then the suffixes
    allowed: torch.Tensor    # [B, S, P + S] bool: what each position may attend to (pads never)
    positions: torch.Tensor  # [B, S] position ids (pads clamped to the first suffix position)


def prefill_suffixes(model, session: ImageSession, suffixes: list[torch.Tensor]) -> SuffixPrefill:
    """One forward of several prompt suffixes ([n_i, H] embeddings each) after the image's cached prefix,
    left-padded into one batch: what batched decoding and the stage-3 feature cache both start from."""
    device = suffixes[0].device
    lengths = [len(e) for e in suffixes]
    width = max(lengths)
    padded = torch.stack([torch.cat([e.new_zeros((width - len(e), e.shape[1])), e]) for e in suffixes])
    allowed = suffix_prefill_mask(session.prefix_len, lengths, device)
    positions = torch.stack([torch.arange(width, device=device) - (width - n) for n in lengths])
    positions = positions.clamp(min=0) + session.prefix_len
    cache = copy_cache(session.prefix_cache, model.config.llama, repeats=len(suffixes))
    logits, hidden = model.forward_embeds(padded, cache, attention_mask=additive_mask(allowed, padded.dtype),
                                          position_ids=positions)
    return SuffixPrefill(logits, hidden, cache, allowed, positions)
