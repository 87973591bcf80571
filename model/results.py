"""What the model returns: raw generation results and the regions users work with."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch

from .processing import upscale_mask_logits

_PLACEHOLDER_RE = re.compile(r"\s*<at>\s*<boxes>\s*|\s*<at>\s*|\s*<boxes>\s*")


@dataclass
class GenerationResult:
    token_ids: list[int]            # generated ids, no bos; the id after each <at> is <boxes>
    text: str                       # decoded like the release (<at> <boxes> kept)
    boxes_norm: torch.Tensor        # [k,4] raw loc_decoder output, normalised xyxy in the padded square
    boxes: torch.Tensor             # [k,4] pixel xyxy on the original image, not clamped
    ious: torch.Tensor              # [k] SAM iou predictions
    masks: torch.Tensor             # [k,H,W] bool at the original size, not filtered by iou
    logits: torch.Tensor | None = None              # [steps,V] with output_logits=True
    low_res_mask_logits: torch.Tensor | None = None  # [k,1,S/4,S/4] SAM decoder output (S: SAM input size)
    seg_prompts: torch.Tensor | None = None          # [k,T,D] seg_prompt_mlp tokens SAM got per location

    def mask_logits_1024(self) -> torch.Tensor:
        """[k,1,1024,1024] mask logits in the padded SAM frame (as the release returns them)."""
        if self.low_res_mask_logits is None:
            return torch.zeros((0, 1, 1024, 1024))
        return upscale_mask_logits(self.low_res_mask_logits)

    @property
    def clean_text(self) -> str:
        """The answer without location placeholders."""
        return clean_answer(self.text)


@dataclass(frozen=True, eq=False)
class Location:
    """What SAM got from the language model for one ``<at>``: kept so that clicks can refine its mask."""

    box_norm: torch.Tensor                   # [4] loc_decoder output, normalised xyxy in the square, not clamped
    prompt_tokens: torch.Tensor              # [T,D] seg_prompt_mlp tokens (T=4, D = SAM's prompt width)


@dataclass
class Region:
    box: tuple[float, float, float, float]   # pixel xyxy, clamped to the image
    mask: np.ndarray                         # bool [H,W]
    score: float                             # SAM iou prediction
    phrase: str                              # what the region stands for
    location: Location | None = field(default=None, repr=False, compare=False)  # for regions the model located


@dataclass
class Caption:
    text: str                                # without location placeholders
    regions: list[Region] = field(default_factory=list)
    raw_text: str = ""                       # with <at> <boxes> as generated


Answer = Caption


def clean_answer(text: str) -> str:
    cleaned = _PLACEHOLDER_RE.sub(" ", text)
    cleaned = re.sub(r"\s+([.,;:!?])", r"\1", cleaned)
    return re.sub(r"\s+", " ", cleaned).strip()


_CONNECTORS = {"and", "with", "is", "are", "was", "were", "on", "in", "at", "of", "to", "near", "next",
               "by", "behind", "under", "over", "while", "holding", "wearing", "has", "have", "there"}


def phrases_for_locations(text: str) -> list[str]:
    """The phrase each ``<at>`` of an answer locates: the words just before it, back to the previous
    location, punctuation or connecting word. Consecutive ``<at>``s share one phrase."""
    phrases: list[str] = []
    segments = re.split(r"<at>\s*<boxes>|<at>", text)
    for segment in segments[:-1]:
        clause = re.split(r"[.,;:!?]", segment)[-1]
        words = clause.split()
        start = max((i + 1 for i, w in enumerate(words) if w.lower() in _CONNECTORS), default=0)
        phrase = " ".join(words[start:]).strip()
        if not phrase and phrases:
            phrase = phrases[-1]
        phrases.append(phrase)
    return phrases
