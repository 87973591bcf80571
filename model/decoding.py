"""Explicit prefill / decode loops over a KV cache, with NExT-Chat's ``<at>`` feedback (docs/model.md).

``<at>`` rules: the box of an ``<at>`` comes from the last-layer hidden state *at the ``<at>``
position* (the forward that consumed it); the next input embedding is
``loc_encoder(loc_decoder(h_at))``; the token after ``<at>`` reads ``<boxes>``; decoding never ends
right after ``<at>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .tokenizer import SpecialIds


class GenerationStopped(RuntimeError):
    """The caller's stop check fired (a deadline): decoding stopped before its next step."""


def never_stop() -> bool:
    return False


@dataclass(frozen=True)
class DecodeOptions:
    max_new_tokens: int = 64
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    forced_token_ids: tuple[int, ...] | None = None
    output_logits: bool = False

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.num_beams > 1 and (self.do_sample or self.forced_token_ids):
            raise ValueError("num_beams > 1 works with neither sampling nor forced_token_ids")
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")


@dataclass
class Decoded:
    token_ids: list[int]
    at_hidden: list[torch.Tensor] = field(default_factory=list)   # [H] each, one per <at>
    logits: list[torch.Tensor] | None = None                       # [V] each, one per step


class Stepper:
    """One sequence batch over a KV cache: feeds embeddings, returns logits and hidden states."""

    def __init__(self, model, cache, should_stop=never_stop):
        self.model = model
        self.cache = cache
        self.should_stop = should_stop

    def __call__(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.should_stop():
            raise GenerationStopped("stopped by the caller's deadline")
        logits, hidden = self.model.forward_embeds(embeds, self.cache)
        return logits[:, -1].float(), hidden[:, -1]


# ---------------------------------------------------------------------------- the <at> rule, one home
def recorded_token(chosen: int, after_at: bool, ids: SpecialIds) -> int:
    """The token a step records: ``<boxes>`` right after ``<at>`` (its input is the box feedback), else
    the chosen token."""
    return ids.boxes if after_at else chosen


def ends_decoding(chosen: int, recorded: int, position: int, max_new_tokens: int, ids: SpecialIds) -> bool:
    """Decoding ends on eos (chosen, even right after ``<at>``) or at the length limit, but never right
    after an ``<at>``: one extra step puts its ``<boxes>`` after it."""
    return chosen == ids.eos or (position + 1 >= max_new_tokens and recorded != ids.at)


def next_input_embedding(model, recorded: int, h_at: torch.Tensor | None, device) -> torch.Tensor:
    """[H]: ``loc_encoder(loc_decoder(h_at))`` after an ``<at>``, else the recorded token's embedding."""
    if h_at is not None:
        return model.feedback_embedding(h_at)
    return model.embed_tokens(torch.tensor([recorded], device=device))[0]


def _choose(logits: torch.Tensor, opts: DecodeOptions, generator: torch.Generator | None) -> int:
    if not opts.do_sample:
        return int(torch.argmax(logits))
    scores = logits.float() / opts.temperature
    if opts.top_k > 0:
        kth = torch.topk(scores, min(opts.top_k, scores.numel())).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if opts.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        cumulative = torch.softmax(sorted_scores, -1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_scores, -1) > opts.top_p
        scores[order[drop]] = float("-inf")
    probs = torch.softmax(scores, -1)
    return int(torch.multinomial(probs, 1, generator=generator))


def decode_single(step: Stepper, logits: torch.Tensor, ids: SpecialIds, opts: DecodeOptions) -> Decoded:
    """Greedy, sampled or teacher-forced decoding of one sequence.

    ``logits`` [V] are the prefill's next-token logits. As in the release, whatever token is emitted
    after ``<at>`` is recorded as ``<boxes>`` (its input embedding is the box feedback); an eos
    emitted there still ends decoding.
    """
    generator = None
    if opts.do_sample and opts.seed is not None:
        generator = torch.Generator(device=logits.device).manual_seed(opts.seed)
    forced = opts.forced_token_ids
    out = Decoded(token_ids=[], logits=[] if opts.output_logits else None)
    h_at = None  # hidden state at the <at> just consumed, when the previous token was <at>
    for position in range(opts.max_new_tokens + 1):
        if position == opts.max_new_tokens and h_at is None:
            break  # the one extra step exists only to put <boxes> after a final <at>
        if forced is not None and position >= len(forced) and h_at is None:
            break
        if out.logits is not None:
            out.logits.append(logits)
        token = forced[position] if forced is not None and position < len(forced) else _choose(logits, opts, generator)
        emitted = recorded_token(token, h_at is not None, ids)
        out.token_ids.append(emitted)
        if ends_decoding(token, emitted, position, opts.max_new_tokens, ids):
            break
        if forced is not None and position + 1 >= len(forced) and emitted != ids.at:
            break
        embed = next_input_embedding(step.model, emitted, h_at, logits.device)
        logits, hidden = step(embed.view(1, 1, -1))
        logits, hidden = logits[0], hidden[0]
        h_at = hidden if emitted == ids.at else None
        if h_at is not None:
            out.at_hidden.append(hidden)
    return out
