"""SAM's mask decoder over prompts of *different* images in one call (training only).

segment-anything's ``MaskDecoder`` takes one image embedding and repeats it for every prompt, so a
training step over 8 images calls it 8 times: on the toy model's small networks those calls are mostly
per-operation overhead. ``decode_single_masks`` runs the same computation once, with the image embedding
of each prompt given per prompt, and only the single-mask output (``multimask_output=False``: mask token
0 and its IoU), which is all training prompts ask for. Same weights, same arithmetic; checked against
the package's decoder (tests/model/test_toy_model.py).
"""

from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder


def decode_single_masks(decoder: MaskDecoder, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                        sparse_prompts: torch.Tensor, dense_prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """image_embeddings [P, C, h, w] (prompt p's image), image_pe [1, C, h, w], sparse_prompts [P, k, C],
    dense_prompts [P, C, h, w] -> (low-res mask logits [P, 1, 4h, 4w], predicted IoU [P, 1])."""
    prompts = sparse_prompts.size(0)
    if image_embeddings.size(0) != prompts:
        raise ValueError(f"{image_embeddings.size(0)} image embeddings for {prompts} prompts: give one per prompt")
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens.expand(prompts, -1, -1), sparse_prompts], dim=1)    # [P, 1 + m + k, C]
    src = image_embeddings + dense_prompts                                                # [P, C, h, w]
    b, c, h, w = src.shape
    hs, src = decoder.transformer(src, image_pe.expand(prompts, -1, -1, -1), tokens)     # hs [P, T, C]
    upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))          # [P, c', 4h, 4w]
    hyper = decoder.output_hypernetworks_mlps[0](hs[:, 1])[:, None]                      # [P, 1, c']
    masks = (hyper @ upscaled.flatten(2)).view(b, 1, *upscaled.shape[2:])
    return masks, decoder.iou_prediction_head(hs[:, 0])[:, :1]
