"""The NExT-Chat networks: Llama + projector + location heads + SAM, sized from the config.

Pure networks only: image preprocessing, prompts and decoding live elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import CLIPVisionModel, LlamaConfig, LlamaModel

from .checkpoint import CheckpointError

LLAMA_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "hidden_act",
                "rope_theta", "rope_scaling", "attention_bias", "bos_token_id", "eos_token_id", "pad_token_id")


@dataclass(frozen=True)
class NextChatConfig:
    """The release's config.json: a Llama config plus the mm_* fields (docs/model.md)."""

    llama: LlamaConfig
    mm_hidden_size: int
    mm_depth: int
    mm_vision_select_layer: int
    mm_use_im_start_end: bool
    raw: dict

    @classmethod
    def from_dict(cls, cfg: dict) -> NextChatConfig:
        if cfg.get("model_type") not in ("nextchat", "llama"):
            raise CheckpointError(f"config.json model_type is {cfg.get('model_type')!r}, expected 'nextchat'")
        missing = [k for k in ("hidden_size", "num_hidden_layers", "vocab_size", "mm_hidden_size") if k not in cfg]
        if missing:
            raise CheckpointError(f"config.json lacks {missing}")
        fields = {k: cfg[k] for k in LLAMA_FIELDS if cfg.get(k) is not None}
        fields.setdefault("num_key_value_heads", cfg["num_attention_heads"])
        llama = LlamaConfig(**fields, tie_word_embeddings=False)
        llama._attn_implementation = "sdpa"
        return cls(llama=llama, mm_hidden_size=int(cfg["mm_hidden_size"]), mm_depth=int(cfg.get("mm_depth", 2)),
                   mm_vision_select_layer=int(cfg.get("mm_vision_select_layer", -2)),
                   mm_use_im_start_end=bool(cfg.get("mm_use_im_start_end", True)), raw=cfg)


def build_projector(in_dim: int, out_dim: int, depth: int) -> nn.Module:
    """``mm_projector``: Linear, then (GELU, Linear) x (depth - 1); depth 1 is a single Linear."""
    if depth == 1:
        return nn.Linear(in_dim, out_dim)
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class NextChatModel(nn.Module):
    """Everything from the NExT-Chat checkpoint (the CLIP tower is separate)."""

    def __init__(self, config: NextChatConfig, sam: nn.Module, seg_prompt_tokens: int = 4):
        super().__init__()
        hidden = config.llama.hidden_size
        prompt_dim = sam.prompt_encoder.embed_dim
        self.config = config
        self.seg_prompt_tokens = seg_prompt_tokens
        self.model = LlamaModel(config.llama)
        self.lm_head = nn.Linear(hidden, config.llama.vocab_size, bias=False)
        self.mm_projector = build_projector(config.mm_hidden_size, hidden, config.mm_depth)
        self.loc_encoder = mlp(4, hidden // 2, hidden)
        self.loc_decoder = mlp(hidden, hidden // 2, 4)
        self.seg_prompt_mlp = mlp(hidden, hidden, seg_prompt_tokens * prompt_dim)
        self.sam = sam

    # -------------------------------------------------------------- embeddings
    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(ids)

    def box_embeddings(self, boxes_norm: torch.Tensor) -> torch.Tensor:
        """``loc_encoder`` of normalised xyxy boxes [n,4] -> [n,hidden]."""
        return self.loc_encoder(boxes_norm.to(self.lm_head.weight.dtype))

    def feedback_embedding(self, hidden_at: torch.Tensor) -> torch.Tensor:
        """The input embedding after ``<at>``: loc_encoder(loc_decoder(h_at))."""
        return self.loc_encoder(self.loc_decoder(hidden_at))

    # -------------------------------------------------------------- language model
    def forward_embeds(self, embeds: torch.Tensor, cache, attention_mask=None, position_ids=None):
        """One forward over [B,T,H] embeddings; returns (logits [B,T,V], last-layer hidden [B,T,H])."""
        out = self.model(inputs_embeds=embeds, cache=cache, use_cache=True,
                         attention_mask=attention_mask, position_ids=position_ids)
        hidden = out.last_hidden_state
        return self.lm_head(hidden), hidden

    # -------------------------------------------------------------- masks
    @torch.no_grad()
    def locate(self, hidden_at: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What k ``<at>`` hidden states [k,H] tell SAM: (boxes_norm [k,4], seg prompt tokens [k,T,D])."""
        boxes_norm = self.loc_decoder(hidden_at)
        prompts = self.seg_prompt_mlp(hidden_at).view(-1, self.seg_prompt_tokens, self.sam.prompt_encoder.embed_dim)
        return boxes_norm, prompts

    @torch.no_grad()
    def decode_masks(self, hidden_at: torch.Tensor, image_embedding: torch.Tensor):
        """SAM masks for k locations: (boxes_norm [k,4], low-res logits [k,1,S/4,S/4], iou [k])."""
        boxes_norm, prompts = self.locate(hidden_at)
        low_res, iou = self.sam_masks(boxes_norm, image_embedding, prompts)
        return boxes_norm, low_res, iou

    @torch.no_grad()
    def sam_masks(self, boxes_norm: torch.Tensor | None, image_embedding: torch.Tensor,
                  prompts: torch.Tensor | None = None, points_norm: torch.Tensor | None = None,
                  point_labels: torch.Tensor | None = None):
        """SAM's mask decoder, a single mask for each of k prompts: boxes_norm [k,4] normalised xyxy and/or
        points_norm [k,n,2] normalised xy with point_labels [k,n] (1 positive, 0 negative), both in the
        padded square; NExT-Chat's prompt tokens [k,T,D] when given go before what the prompt encoder gives
        (points, then the box corners; points without a box get segment-anything's padding point)."""
        if boxes_norm is None and points_norm is None:
            raise ValueError("sam_masks needs boxes or points")
        size = self.sam.image_encoder.img_size
        sam_dtype = self.sam.mask_decoder.iou_token.weight.dtype  # fp32: see keep_sam_heads_fp32
        boxes = None if boxes_norm is None else (boxes_norm * size).to(sam_dtype)
        points = None
        if points_norm is not None:
            if point_labels is None or point_labels.shape != points_norm.shape[:2]:
                raise ValueError("sam_masks needs one label per point")
            points = ((points_norm * size).to(sam_dtype), point_labels.to(points_norm.device, torch.int))
        encoded, dense = self.sam.prompt_encoder(points=points, boxes=boxes, masks=None)
        sparse = encoded if prompts is None else torch.cat([prompts.to(sam_dtype), encoded], dim=1)
        low_res, iou = self.sam.mask_decoder(
            image_embeddings=image_embedding.to(sam_dtype), image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
        )
        return low_res, iou[:, 0]


class VisionTower(nn.Module):
    """CLIP ViT features as the release reads them: a chosen hidden layer, without CLS."""

    def __init__(self, clip: CLIPVisionModel, select_layer: int):
        super().__init__()
        self.clip = clip
        self.select_layer = select_layer

    @property
    def num_patches(self) -> int:
        cfg = self.clip.config
        return (cfg.image_size // cfg.patch_size) ** 2

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.clip(pixel_values=pixel_values, output_hidden_states=True)
        return out.hidden_states[self.select_layer][:, 1:]


def keep_sam_heads_fp32(model: NextChatModel) -> None:
    """SAM's prompt encoder computes its positional encoding in fp32 whatever the weights; keep the
    prompt encoder and the (small) mask decoder in fp32 so half-precision runs work. The image encoder,
    where the compute is, stays in the run dtype."""
    model.sam.prompt_encoder.float()
    model.sam.mask_decoder.float()


def round_through_fp16(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The release casts the tower to fp16 and back (docs/model.md): reproduce the rounding."""
    return module.to(torch.float16).to(dtype)
