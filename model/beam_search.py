"""Beam search with the bookkeeping of transformers 4.31 (what the release ran), over our KV cache.

Reproduces the release on text: 2 x beams candidates per step, an eos candidate finishes a
hypothesis only when ranked below ``num_beams``, hypothesis score = sum of log-probs / length
(length counting 4.31's bos placeholder, eos excluded), no early stopping. Locations: each beam
feeds back its *own* ``<at>`` box (the release's Q3 mixes beams; we do not), ``<boxes>`` is forced
after ``<at>``, and ``<at>`` is not allowed as the very last token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .decoding import Decoded, DecodeOptions, Stepper
from .tokenizer import SpecialIds


@dataclass
class _Hypothesis:
    score: float
    tokens: list[int]
    at_hidden: list[torch.Tensor]


class _Finished:
    """4.31's BeamHypotheses with length_penalty 1 and early_stopping False."""

    def __init__(self, num_beams: int):
        self.num_beams = num_beams
        self.items: list[_Hypothesis] = []
        self.worst = 1e9

    def add(self, tokens: list[int], at_hidden: list[torch.Tensor], sum_logprobs: float) -> None:
        score = sum_logprobs / (len(tokens) + 1)  # +1: the bos placeholder 4.31 keeps in front
        if len(self.items) < self.num_beams or score > self.worst:
            self.items.append(_Hypothesis(score, list(tokens), list(at_hidden)))
            if len(self.items) > self.num_beams:
                ranked = sorted(range(len(self.items)), key=lambda i: self.items[i].score)
                self.worst = self.items[ranked[1]].score
                del self.items[ranked[0]]
            else:
                self.worst = min(score, self.worst)

    def is_done(self, best_sum_logprobs: float, cur_len: int) -> bool:
        if len(self.items) < self.num_beams:
            return False
        return self.worst >= best_sum_logprobs / cur_len


def beam_search(step: Stepper, logits: torch.Tensor, hidden: torch.Tensor, ids: SpecialIds,
                opts: DecodeOptions) -> Decoded:
    """``logits`` [V] and ``hidden`` [H] come from a batch-1 prefill whose cache ``step`` holds."""
    beams = opts.num_beams
    device = logits.device
    step.cache.batch_repeat_interleave(beams)
    logits = logits.expand(beams, -1)
    last_hidden = hidden.expand(beams, -1)
    scores = torch.full((beams,), -1e9, device=device, dtype=torch.float32)
    scores[0] = 0.0
    tokens: list[list[int]] = [[] for _ in range(beams)]
    at_hidden: list[list[torch.Tensor]] = [[] for _ in range(beams)]
    finished = _Finished(beams)
    rows: list[torch.Tensor] | None = [] if opts.output_logits else None
    done = False
    for position in range(opts.max_new_tokens):
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        if rows is not None:
            rows.append(logprobs[0].clone())
        logprobs = _constrain(logprobs, tokens, ids, last_step=position == opts.max_new_tokens - 1)
        candidates = (logprobs + scores[:, None]).view(-1)
        top_scores, top_index = torch.topk(candidates, 2 * beams)
        vocab = logprobs.shape[-1]
        chosen: list[tuple[float, int, int]] = []
        for rank, (score, index) in enumerate(zip(top_scores.tolist(), top_index.tolist())):
            beam, token = divmod(index, vocab)
            if token == ids.eos:
                if rank < beams:
                    finished.add(tokens[beam], at_hidden[beam], score)
            else:
                chosen.append((score, beam, token))
            if len(chosen) == beams:
                break
        done = finished.is_done(float(top_scores.max()), len(tokens[0]) + 1)
        order = torch.tensor([b for _, b, _ in chosen], device=device)
        tokens = [tokens[b] + [t] for _, b, t in chosen]
        at_hidden = [list(at_hidden[b]) for _, b, _ in chosen]
        scores = torch.tensor([s for s, _, _ in chosen], device=device, dtype=torch.float32)
        step.cache.reorder_cache(order)
        last_hidden = last_hidden[order]
        if done or position + 1 >= opts.max_new_tokens:
            break
        embeds = _next_embeddings(step.model, tokens, last_hidden, ids)
        logits, last_hidden = step(embeds[:, None])
        for beam in range(beams):
            if tokens[beam][-1] == ids.at:
                at_hidden[beam].append(last_hidden[beam])
    if not done:
        for beam in range(beams):
            finished.add(tokens[beam], at_hidden[beam], float(scores[beam]))
    best = max(finished.items, key=lambda h: h.score)
    token_ids = best.tokens + ([ids.eos] if len(best.tokens) < opts.max_new_tokens else [])
    return Decoded(token_ids=token_ids, at_hidden=best.at_hidden, logits=rows)


def _constrain(logprobs: torch.Tensor, tokens: list[list[int]], ids: SpecialIds, last_step: bool) -> torch.Tensor:
    """Only ``<boxes>`` may follow ``<at>``; ``<at>`` may not be the last token."""
    after_at = [b for b, seq in enumerate(tokens) if seq and seq[-1] == ids.at]
    if not after_at and not last_step:
        return logprobs
    logprobs = logprobs.clone()
    for beam in after_at:
        keep = logprobs[beam, ids.boxes].clone()
        logprobs[beam] = float("-inf")
        logprobs[beam, ids.boxes] = keep
    if last_step:
        logprobs[:, ids.at] = float("-inf")
    return logprobs


def _next_embeddings(model, tokens: list[list[int]], last_hidden: torch.Tensor, ids: SpecialIds) -> torch.Tensor:
    """Token embeddings, except after ``<at>``, where the beam's own box feedback goes in."""
    device = last_hidden.device
    embeds = model.embed_tokens(torch.tensor([seq[-1] for seq in tokens], device=device))
    for beam, seq in enumerate(tokens):
        if len(seq) >= 2 and seq[-2] == ids.at:
            embeds[beam] = model.feedback_embedding(last_hidden[beam])
    return embeds
