"""The trainable part of NExT-Chat's mask path, with gradients: ``seg_prompt_mlp`` and SAM's mask decoder.

Inference (``NextChatModel.decode_masks``) runs under ``no_grad`` and calls segment-anything's decoder,
which repeats the image embeddings for every prompt (one image, many prompts). Training pairs image i
with prompt i, so :func:`paired_decoder` runs the same decoder modules in the same order without that
repeat. With one sample it is bit-identical to ``MaskDecoder.forward``.

:class:`TrainableHeads` holds fp32 copies of the two modules (the master weights): training never
writes into the served model; a finished run becomes a delta (``delta.py``) that is applied to it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..modeling import NextChatModel

SEG_PROMPT_PREFIX = "seg_prompt_mlp."
OUR_DECODER_PREFIX = "sam.mask_decoder."
RELEASE_DECODER_PREFIX = "sam.model.mask_decoder."


def is_trainable_key(name: str) -> bool:
    """A NextChatModel state-dict key that stage 3 trains."""
    return name.startswith((SEG_PROMPT_PREFIX, OUR_DECODER_PREFIX))


def release_name(our_name: str) -> str:
    if our_name.startswith(OUR_DECODER_PREFIX):
        return RELEASE_DECODER_PREFIX + our_name[len(OUR_DECODER_PREFIX):]
    return our_name


def our_name(release: str) -> str:
    if release.startswith(RELEASE_DECODER_PREFIX):
        return OUR_DECODER_PREFIX + release[len(RELEASE_DECODER_PREFIX):]
    return release


def paired_decoder(decoder: nn.Module, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                   sparse: torch.Tensor, dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """segment-anything's ``MaskDecoder`` with image i paired with prompt i, single-mask output.

    image_embeddings [k,C,h,w], image_pe [1,C,h,w], sparse [k,n,C], dense [k,C,h,w]
    -> (low-res logits [k,1,4h,4w], iou predictions [k,1]). Every mask token's hypernetwork runs, so the
    unused ones get exact zero gradients, as in the reference.
    """
    count = sparse.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(count, -1, -1), sparse), dim=1)
    src = image_embeddings + dense
    pos_src = image_pe.expand(count, -1, -1, -1)
    batch, channels, height, width = src.shape
    hs, src = decoder.transformer(src, pos_src, tokens)
    iou_token_out = hs[:, 0, :]                                    # [k, C]
    mask_tokens_out = hs[:, 1:1 + decoder.num_mask_tokens, :]      # [k, M, C]
    src = src.transpose(1, 2).view(batch, channels, height, width)
    upscaled = decoder.output_upscaling(src)                       # [k, C/8, 4h, 4w]
    hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in
                            enumerate(decoder.output_hypernetworks_mlps)], dim=1)   # [k, M, C/8]
    batch, channels, height, width = upscaled.shape
    masks = (hyper_in @ upscaled.view(batch, channels, height * width)).view(batch, -1, height, width)
    iou_pred = decoder.iou_prediction_head(iou_token_out)         # [k, M]
    return masks[:, 0:1], iou_pred[:, 0:1]


class TrainableHeads(nn.Module):
    """fp32 copies of ``sam.mask_decoder`` and ``seg_prompt_mlp`` (in the reference's parameter order),
    driven by cached ``<at>`` hidden states, predicted boxes and SAM image embeddings."""

    def __init__(self, model: NextChatModel):
        super().__init__()
        self.mask_decoder = copy.deepcopy(model.sam.mask_decoder).float().requires_grad_(True)
        self.seg_prompt_mlp = copy.deepcopy(model.seg_prompt_mlp).float().requires_grad_(True)
        # The frozen prompt encoder is shared, not copied, and kept out of this module's parameters.
        self._frozen = {"prompt_encoder": model.sam.prompt_encoder}
        self.prompt_tokens = model.seg_prompt_tokens
        self.image_size = model.sam.image_encoder.img_size

    @property
    def prompt_encoder(self) -> nn.Module:
        return self._frozen["prompt_encoder"]

    def forward(self, h_at: torch.Tensor, boxes_norm: torch.Tensor,
                image_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_at [k,H], boxes_norm [k,4] (the predicted boxes), image_embeddings [k,C,64,64]
        -> (low-res logits [k,1,256,256], iou predictions [k,1])."""
        encoder = self.prompt_encoder
        prompt_dim = encoder.embed_dim
        prompts = self.seg_prompt_mlp(h_at).view(h_at.shape[0], self.prompt_tokens, prompt_dim)
        with torch.no_grad():  # frozen, and its inputs are constants
            dtype = encoder.point_embeddings[0].weight.dtype
            box_sparse, dense = encoder(points=None, boxes=(boxes_norm * self.image_size).to(dtype), masks=None)
            image_pe = encoder.get_dense_pe()
        sparse = torch.cat([prompts, box_sparse.to(prompts.dtype)], dim=1)
        return paired_decoder(self.mask_decoder, image_embeddings, image_pe, sparse, dense)

    def release_state(self) -> dict[str, torch.Tensor]:
        """The trained tensors under the release's key names, fp32 on the CPU."""
        return {release_name(model_key(name)): tensor.detach().float().cpu().clone()
                for name, tensor in self.state_dict().items()}

    def load_release_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, tensor in self.state_dict().items():
                tensor.copy_(state[release_name(model_key(name))].to(tensor.device, tensor.dtype))


def model_key(head_key: str) -> str:
    """A TrainableHeads key -> the NextChatModel key of the same tensor."""
    return "sam." + head_key if head_key.startswith("mask_decoder.") else head_key
