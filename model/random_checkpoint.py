"""Random NExT-Chat checkpoints in the release's format, at named sizes (for tests, the demo, timing).

    python -m model.random_checkpoint --size tiny|small|7b --out DIR [--seed 0] [--dtype fp32|bf16]

writes the NExT-Chat checkpoint into DIR and its CLIP tower into DIR/vision_tower. The weights are
random: outputs are shaped right and meaningless.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm
import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModel

from .devices import parse_dtype
from .modeling import NextChatConfig, NextChatModel
from .prompts import GC_PROMPT, REC_TEMPLATE, REG_TEMPLATE, SYSTEM
from .sam_builder import build_sam
from .tokenizer import ADDED_TOKENS

SIZES = {
    "tiny": dict(hidden=64, layers=2, heads=4, inter=128, vocab=400,
                 clip=dict(hidden=64, layers=2, heads=4, inter=128, image=56, patch=14),
                 sam=dict(embed_dim=32, depth=2, heads=2, window=14, global_blocks=[1], prompt_dim=32,
                          decoder_mlp=64, decoder_heads=2, iou_hidden=32, mask_in_chans=16)),
    "small": dict(hidden=512, layers=4, heads=8, inter=1376, vocab=2000,
                  clip=dict(hidden=256, layers=4, heads=4, inter=1024, image=224, patch=14),
                  sam=dict(embed_dim=128, depth=4, heads=4, window=14, global_blocks=[1, 3], prompt_dim=64,
                           decoder_mlp=256, decoder_heads=4, iou_hidden=64, mask_in_chans=16)),
    "7b": dict(hidden=4096, layers=32, heads=32, inter=11008, vocab=32000,
               clip=dict(hidden=1024, layers=24, heads=16, inter=4096, image=336, patch=14),
               sam=dict(embed_dim=1280, depth=32, heads=16, window=14, global_blocks=[7, 15, 23, 31],
                        prompt_dim=256, decoder_mlp=2048, decoder_heads=8, iou_hidden=256, mask_in_chans=16)),
}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
_CORPUS = " ".join([SYSTEM, REC_TEMPLATE.format(expr="the red car"), REG_TEMPLATE.format(objs="this region"),
                    GC_PROMPT, "Answer: a man is riding a horse next to a dog on the grass.",
                    "What is in the picture? A cat sitting on a blue chair near the window, 0 1 2 3 4 5 6 7 8 9."])


def train_tokenizer(vocab: int, out_dir: Path, corpus: list[str] | None = None, symbols: tuple[str, ...] = ()) -> int:
    """A byte-fallback BPE sentencepiece model trained on ``corpus`` (default: a few prompt sentences),
    padded with placeholder pieces up to ``vocab``; ``symbols`` are pieces kept whole (spaces as "▁")."""
    model = io.BytesIO()
    base = min(vocab, 400)
    padding = [f"<extra_{i}>" for i in range(vocab - base)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus or [_CORPUS] * 20), model_writer=model, vocab_size=vocab, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, hard_vocab_limit=False,
        user_defined_symbols=[*symbols, *padding], minloglevel=2,
    )
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    size = sp.GetPieceSize()
    added = {token: size + i for i, token in enumerate(ADDED_TOKENS)}
    (out_dir / "added_tokens.json").write_text(json.dumps(added, indent=2))
    special = {name: {"content": text, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
               for name, text in (("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>"))}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True, "add_eos_token": False,
              "clean_up_tokenization_spaces": False, "pad_token": None, "sp_model_kwargs": {},
              **{k: dict(v, __type="AddedToken") for k, v in special.items()}}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return size + len(ADDED_TOKENS)


def nextchat_config(spec: dict, vocab: int) -> dict:
    return {
        "architectures": ["NextChatForSegLM"], "model_type": "nextchat", "bos_token_id": 1, "eos_token_id": 2,
        "pad_token_id": 0, "hidden_act": "silu", "hidden_size": spec["hidden"], "initializer_range": 0.02,
        "intermediate_size": spec["inter"], "max_position_embeddings": 4096, "num_attention_heads": spec["heads"],
        "num_hidden_layers": spec["layers"], "num_key_value_heads": spec["heads"], "rms_norm_eps": 1e-5,
        "rope_scaling": None, "tie_word_embeddings": False, "use_cache": True, "vocab_size": vocab,
        "use_mm_proj": True, "mm_hidden_size": spec["clip"]["hidden"], "mm_depth": 2, "mm_vision_select_layer": -2,
        "mm_vision_tower": "vision_tower", "mm_use_im_start_end": True, "sam_path": None,
        "sam_decoder_num_heads": spec["sam"]["decoder_heads"],
    }


def sam_dims(spec: dict) -> dict:
    sam = spec["sam"]
    return dict(img_size=sam.get("img_size", 1024), patch=16, embed_dim=sam["embed_dim"], depth=sam["depth"],
                heads=sam["heads"], mlp_ratio=sam.get("mlp_ratio", 4.0), window=sam["window"],
                global_blocks=sam["global_blocks"], prompt_dim=sam["prompt_dim"],
                mask_in_chans=sam["mask_in_chans"], decoder_depth=2, decoder_mlp=sam["decoder_mlp"],
                decoder_heads=sam["decoder_heads"], multimask=3, iou_depth=3, iou_hidden=sam["iou_hidden"])


def release_state_dict(model: NextChatModel, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Our module names back to the release's (``model.mm_projector.*``, ``sam.model.*``)."""
    state = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("mm_projector."):
            key = "model." + key
        elif key.startswith("sam."):
            key = "sam.model." + key[len("sam."):]
        state[key] = tensor.detach().to(dtype).contiguous()
    return state


def clip_vision_config(spec: dict) -> CLIPVisionConfig:
    clip = spec["clip"]
    return CLIPVisionConfig(hidden_size=clip["hidden"], num_hidden_layers=clip["layers"],
                            num_attention_heads=clip["heads"], intermediate_size=clip["inter"],
                            image_size=clip["image"], patch_size=clip["patch"], projection_dim=clip["hidden"],
                            hidden_act="quick_gelu")


def clip_preprocessor(spec: dict) -> dict:
    side = spec["clip"]["image"]
    return {"crop_size": {"height": side, "width": side}, "do_center_crop": True, "do_convert_rgb": True,
            "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD, "image_processor_type": "CLIPImageProcessor", "resample": 3,
            "rescale_factor": 1 / 255, "size": {"shortest_edge": side}}


def write_vision_tower(spec: dict, out_dir: Path, dtype: torch.dtype) -> None:
    config = clip_vision_config(spec)
    CLIPVisionModel(config).to(dtype).save_pretrained(out_dir)
    preprocessor = clip_preprocessor(spec)
    (out_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))


@torch.no_grad()
def add_locating_bias(model: NextChatModel, sp: spm.SentencePieceProcessor, added: dict[str, int], seed: int) -> None:
    """Nudge a random model so that greedy answers read ``<at> <boxes> .`` (as the fixtures' "loc" edits do):
    demos and tests then see boxes and masks. The boxes remain meaningless."""
    hidden = model.lm_head.weight.shape[1]
    generator = torch.Generator().manual_seed(seed + 123)
    scale = (hidden / 64) ** 0.5

    def unit() -> torch.Tensor:
        vector = torch.randn(hidden, generator=generator)
        return (vector / vector.norm()).to(model.lm_head.weight)

    colon, period, eos = sp.PieceToId(":"), sp.PieceToId("."), sp.eos_id()
    embed, head = model.model.embed_tokens.weight, model.lm_head.weight
    for source, target in ((colon, added["<at>"]), (added["<at>"], added["<boxes>"]), (period, eos)):
        direction = unit()
        embed[source] += 4 * scale * direction
        head[target] += 3 * scale * direction
    direction = unit()
    model.loc_encoder[2].bias += 4 * scale * direction
    head[period] += 3 * scale * direction
    model.loc_decoder[2].bias += torch.tensor([0.25, 0.30, 0.70, 0.80]).to(head)
    model.sam.mask_decoder.iou_prediction_head.layers[-1].bias += 0.9


def write_weights(model: NextChatModel, out: Path, dtype: torch.dtype) -> None:
    """out/model.safetensors: the model's weights in ``dtype`` under the release's key names."""
    save_file(release_state_dict(model, dtype), str(out / "model.safetensors"), metadata={"format": "pt"})


def write_release_files(model: NextChatModel, raw_config: dict, out: Path, dtype: torch.dtype) -> None:
    """out/model.safetensors (see ``write_weights``), out/config.json and out/generation_config.json (the config's
    bos/eos/pad ids)."""
    write_weights(model, out, dtype)
    (out / "config.json").write_text(json.dumps(raw_config, indent=2))
    special_ids = {key: raw_config[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
    (out / "generation_config.json").write_text(json.dumps(special_ids))


def write_random_checkpoint(size: str, out: str | Path, seed: int = 0, dtype="fp32", device="cpu",
                            locating: bool = True) -> Path:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {sorted(SIZES)}")
    spec, out, dtype = SIZES[size], Path(out), parse_dtype(dtype)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocab = train_tokenizer(spec["vocab"], out)
    raw = nextchat_config(spec, vocab)
    with torch.device(device):
        model = NextChatModel(NextChatConfig.from_dict(raw), build_sam(sam_dims(spec)))
    if locating:
        sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
        add_locating_bias(model, sp, json.loads((out / "added_tokens.json").read_text()), seed)
    write_release_files(model, raw, out, dtype)
    del model
    write_vision_tower(spec, out / "vision_tower", dtype)
    return out


@contextlib.contextmanager
def building_on(device, dtype: torch.dtype):
    """Modules created inside are made on ``device`` in ``dtype`` (no fp32 copy of a 7b model first)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_random_components(size: str, device="cpu", dtype="fp32", seed: int = 0, locating: bool = True):
    """The random model of ``size`` built straight on ``device`` (nothing written but a tokenizer in a temp
    dir): the same configs and nudges as :func:`write_random_checkpoint`, assembled as the loader does."""
    from .builder import assemble
    from .processing import ClipPreprocessConfig
    from .tokenizer import NextChatTokenizer

    spec, dtype = SIZES[size], parse_dtype(dtype)
    with tempfile.TemporaryDirectory(prefix="nextchat_tok_") as tmp:
        vocab = train_tokenizer(spec["vocab"], Path(tmp))
        tokenizer = NextChatTokenizer.from_dir(tmp)
        added = json.loads((Path(tmp) / "added_tokens.json").read_text())
    config = NextChatConfig.from_dict(nextchat_config(spec, vocab))
    torch.manual_seed(seed)
    with building_on(device, dtype):
        model = NextChatModel(config, build_sam(sam_dims(spec)))
    if locating:
        add_locating_bias(model, tokenizer.sp, added, seed)
    with building_on(device, dtype):
        clip = CLIPVisionModel(clip_vision_config(spec))
    name = Path(f"random-{size}-in-memory")
    return assemble(model, clip, tokenizer, ClipPreprocessConfig.from_dict(clip_preprocessor(spec)), config,
                    device, dtype, name, name / "vision_tower")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="fp32", help="fp32 (default), bf16 or fp16 for the saved weights")
    parser.add_argument("--device", default="cpu", help="where to initialise (cuda is much faster for 7b)")
    parser.add_argument("--no-locating", action="store_true",
                        help="plain random weights (by default a few weights are nudged so answers contain boxes)")
    args = parser.parse_args(argv)
    out = write_random_checkpoint(args.size, args.out, args.seed, args.dtype, args.device, not args.no_locating)
    print(f"wrote a random {args.size} NExT-Chat checkpoint to {out} (vision tower: {out / 'vision_tower'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
