"""Build segment-anything modules sized from a SAM state dict (vit_h in the release, tiny in tests)."""

from __future__ import annotations

import re
from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from .checkpoint import CheckpointError
from .sam_attention import use_sdpa_attention

SAM_IMAGE_SIZE = 1024
# SAM's released decoders are 256 wide with 8 heads (head dim 32); smaller random test decoders
# (ours and the fixture's) use 16-dim heads. A checkpoint config may say `sam_decoder_num_heads`.
RELEASED_DECODER_DIM, RELEASED_DECODER_HEADS, SMALL_DECODER_HEAD_DIM = 256, 8, 16


def _count(state: dict, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.match(k))})


def infer_sam_dims(state: dict[str, torch.Tensor], decoder_heads: int | None = None) -> dict:
    """Every size of SAM read off its weights (keys without the ``sam.`` prefix)."""
    try:
        patch = state["image_encoder.patch_embed.proj.weight"].shape[-1]
        grid = state["image_encoder.pos_embed"].shape[1]
        embed_dim = state["image_encoder.patch_embed.proj.weight"].shape[0]
        depth = _count(state, r"image_encoder\.blocks\.(\d+)\.")
        head_dim = state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
        rel_sizes = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] for i in range(depth)]
        global_blocks = [i for i, n in enumerate(rel_sizes) if n == 2 * grid - 1]
        window = next(((n + 1) // 2 for n in rel_sizes if n != 2 * grid - 1), 0)
        prompt_dim = state["image_encoder.neck.0.weight"].shape[0]
        decoder_dim = state["mask_decoder.iou_token.weight"].shape[1]
    except KeyError as err:
        raise CheckpointError(f"SAM weights incomplete: no {err.args[0]!r}") from None
    if decoder_heads is None:
        decoder_heads = (RELEASED_DECODER_HEADS if decoder_dim == RELEASED_DECODER_DIM
                         else max(1, decoder_dim // SMALL_DECODER_HEAD_DIM))
    return dict(
        img_size=grid * patch, patch=patch, embed_dim=embed_dim, depth=depth, heads=embed_dim // head_dim,
        mlp_ratio=state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
        window=window, global_blocks=global_blocks, prompt_dim=prompt_dim,
        mask_in_chans=state["prompt_encoder.mask_downscaling.0.weight"].shape[0] * 4,
        decoder_depth=_count(state, r"mask_decoder\.transformer\.layers\.(\d+)\."),
        decoder_mlp=state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
        decoder_heads=decoder_heads,
        multimask=state["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        iou_depth=_count(state, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        iou_hidden=state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
    )


def build_sam(dims: dict) -> Sam:
    grid = dims["img_size"] // dims["patch"]
    encoder = ImageEncoderViT(
        depth=dims["depth"], embed_dim=dims["embed_dim"], img_size=dims["img_size"],
        mlp_ratio=dims["mlp_ratio"], norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=dims["heads"], patch_size=dims["patch"], qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=tuple(dims["global_blocks"]), window_size=dims["window"],
        out_chans=dims["prompt_dim"],
    )
    prompt_encoder = PromptEncoder(
        embed_dim=dims["prompt_dim"], image_embedding_size=(grid, grid),
        input_image_size=(dims["img_size"], dims["img_size"]), mask_in_chans=dims["mask_in_chans"],
    )
    decoder = MaskDecoder(
        num_multimask_outputs=dims["multimask"],
        transformer=TwoWayTransformer(depth=dims["decoder_depth"], embedding_dim=dims["prompt_dim"],
                                      mlp_dim=dims["decoder_mlp"], num_heads=dims["decoder_heads"]),
        transformer_dim=dims["prompt_dim"], iou_head_depth=dims["iou_depth"],
        iou_head_hidden_dim=dims["iou_hidden"],
    )
    use_sdpa_attention(encoder)
    return Sam(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=decoder)


def sam_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("sam."):]: v for k, v in state.items() if k.startswith("sam.")}
