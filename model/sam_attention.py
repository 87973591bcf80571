"""SAM's ViT attention computed with ``scaled_dot_product_attention``, the decomposed relative-position
terms passed as its additive bias. Same weights and maths as segment-anything's ``Attention`` (the
fixtures' SAM outputs stay within 1e-6); the fused kernel avoids materialising the scaled score matrix,
the bias sum and the softmax as separate 4096 x 4096 tensors per head in the global blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos


class SdpaAttention(Attention):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(batch, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, batch * heads, height * width, -1).unbind(0)
        bias = self._rel_pos_bias(q, height, width) if self.use_rel_pos else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
        return self.proj(out)

    def _rel_pos_bias(self, q: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """[B*heads, H*W, H*W]: the terms segment-anything's ``add_decomposed_rel_pos`` adds."""
        rel_h_table = get_rel_pos(height, height, self.rel_pos_h)
        rel_w_table = get_rel_pos(width, width, self.rel_pos_w)
        grid_q = q.reshape(q.shape[0], height, width, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", grid_q, rel_h_table)
        rel_w = torch.einsum("bhwc,wkc->bhwk", grid_q, rel_w_table)
        bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
        return bias.reshape(q.shape[0], height * width, height * width)


def use_sdpa_attention(image_encoder: torch.nn.Module) -> None:
    """Swap every block's attention to :class:`SdpaAttention` (same parameters, same state dict)."""
    for block in image_encoder.blocks:
        block.attn.__class__ = SdpaAttention
