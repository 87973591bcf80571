"""Greedy decoding of many prompts at once over one KV cache (rows = prompts), same rules as
:func:`model.decoding.decode_single`; finished rows are dropped from the batch as they end."""

from __future__ import annotations

import torch

from .decoding import Decoded, GenerationStopped, ends_decoding, never_stop, next_input_embedding, recorded_token
from .session import additive_mask
from .tokenizer import SpecialIds


def decode_greedy_batch(model, cache, logits: torch.Tensor, allowed: torch.Tensor, positions: torch.Tensor,
                        ids: SpecialIds, max_new_tokens: int, should_stop=never_stop) -> list[Decoded]:
    """``logits`` [B,V]: next-token logits after each row's prompt; ``allowed`` [B,L] bool: the cache
    slots each row may attend to; ``positions`` [B]: each row's next position id."""
    rows = list(range(logits.shape[0]))          # batch slot -> original row
    out = [Decoded(token_ids=[]) for _ in rows]
    h_at: list[torch.Tensor | None] = [None] * len(rows)
    for position in range(max_new_tokens + 1):
        keep = []
        for slot, row in enumerate(rows):
            if position == max_new_tokens and h_at[row] is None:
                continue
            token = int(torch.argmax(logits[slot]))
            emitted = recorded_token(token, h_at[row] is not None, ids)
            out[row].token_ids.append(emitted)
            if ends_decoding(token, emitted, position, max_new_tokens, ids):
                continue
            keep.append(slot)
        if not keep:
            break
        if should_stop():
            raise GenerationStopped("stopped by the caller's deadline")
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=logits.device)
            cache.batch_select_indices(index)
            allowed, positions = allowed[index], positions[index]
            rows = [rows[s] for s in keep]
        embeds = torch.stack([next_input_embedding(model, out[row].token_ids[-1], h_at[row], logits.device)
                              for row in rows])
        allowed = torch.cat([allowed, torch.ones_like(allowed[:, :1])], dim=1)
        mask = additive_mask(allowed[:, None, :], embeds.dtype)
        step_logits, hidden = model.forward_embeds(embeds[:, None], cache, attention_mask=mask,
                                                   position_ids=positions[:, None])
        logits, positions = step_logits[:, -1].float(), positions + 1
        for slot, row in enumerate(rows):
            h_at[row] = hidden[slot, -1] if out[row].token_ids[-1] == ids.at else None
            if h_at[row] is not None:
                out[row].at_hidden.append(h_at[row])
    return out
