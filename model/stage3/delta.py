"""Stage-3 delta checkpoints: exactly the trained tensors, under the release's key names.

``RUN/delta.safetensors`` holds every ``seg_prompt_mlp.*`` and ``sam.model.mask_decoder.*`` tensor (fp32)
and, as safetensors metadata, the base checkpoint's name, a hash of the *frozen* base tensors the delta
applies to, and a JSON ``info`` (data counts, hyper-parameters, metrics). A delta holds absolute values,
not differences: applying one replaces the trainable tensors whatever was applied before.

The base hash covers every tensor of the NExT-Chat checkpoint except the trained ones, each rounded to
bfloat16 first, so the same checkpoint loaded in fp32 or bf16 gives the same hash. The short id of a delta
(8 hex digits of a sha256 over its tensors and metadata) names the model version: ``nextchat-NAME+ft3.<id>``.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..modeling import NextChatModel
from ..reasons import one_line
from .masks import is_trainable_key, our_name, release_name

DELTA_FORMAT = "nextchat-stage3-delta/1"
DELTA_FILE = "delta.safetensors"
_BASE_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class DeltaError(ValueError):
    """A delta that cannot be applied, with the reason in one line."""


@dataclass
class Delta:
    tensors: dict[str, torch.Tensor]   # release key -> fp32 tensor
    base_hash: str
    base_checkpoint: str
    info: dict = field(default_factory=dict)
    short_id: str = ""
    path: Path | None = None


# ---------------------------------------------------------------------------- what a delta covers
def trainable_shapes(model: NextChatModel) -> dict[str, tuple[int, ...]]:
    """Release key -> shape of every tensor stage 3 trains."""
    return {release_name(k): tuple(v.shape) for k, v in model.state_dict().items() if is_trainable_key(k)}


def frozen_base_hash(model: NextChatModel) -> str:
    """sha256 over the names, shapes and bf16-rounded values of every frozen tensor (cached per model)."""
    cached = _BASE_HASHES.get(model)
    if cached is not None:
        return cached
    digest = hashlib.sha256(b"nextchat-frozen-base/1")
    for name, tensor in sorted(model.state_dict().items()):
        if is_trainable_key(name):
            continue
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        rounded = tensor.detach().to(torch.bfloat16).contiguous().view(torch.int16).cpu()
        digest.update(rounded.numpy().tobytes())
    value = digest.hexdigest()
    _BASE_HASHES[model] = value
    return value


# ---------------------------------------------------------------------------- files
def save_delta(path: str | Path, tensors: dict[str, torch.Tensor], base_hash: str, base_checkpoint: str,
               info: dict) -> Delta:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", "nextchat_delta": DELTA_FORMAT, "base_hash": base_hash,
                "base_checkpoint": base_checkpoint, "info": json.dumps(info, sort_keys=True)}
    contiguous = {k: v.detach().float().cpu().contiguous() for k, v in sorted(tensors.items())}
    tmp = path.with_name(path.name + ".tmp")
    save_file(contiguous, str(tmp), metadata=metadata)
    tmp.replace(path)
    return Delta(contiguous, base_hash, base_checkpoint, info, short_id=content_id(contiguous, metadata), path=path)


def content_id(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """8 hex digits of a sha256 over the metadata and tensors in a canonical order (the file's own bytes
    are not canonical: safetensors writes its metadata in no fixed order)."""
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().float().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:8]


def read_delta(path: str | Path) -> Delta:
    path = Path(path)
    if path.is_dir():
        path = path / DELTA_FILE
    if not path.is_file():
        raise DeltaError(f"delta {path} does not exist")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise DeltaError(f"delta {path} is not a safetensors file ({one_line(err, 120)})") from None
    if metadata.get("nextchat_delta") != DELTA_FORMAT:
        raise DeltaError(f"delta {path} is not a stage-3 delta (metadata nextchat_delta is "
                         f"{metadata.get('nextchat_delta')!r}, expected {DELTA_FORMAT!r})")
    try:
        info = json.loads(metadata.get("info") or "{}")
    except ValueError:
        raise DeltaError(f"delta {path}: its info metadata is not JSON") from None
    return Delta(tensors, metadata.get("base_hash", ""), metadata.get("base_checkpoint", ""), info,
                 short_id=content_id(tensors, metadata), path=path)


# ---------------------------------------------------------------------------- checks and applying
def check_delta(delta: Delta, model: NextChatModel) -> None:
    """Raise DeltaError naming what differs: the key set, shapes, then the base hash."""
    name = delta.path or "delta"
    expected = trainable_shapes(model)
    missing = sorted(set(expected) - set(delta.tensors))
    unexpected = sorted(set(delta.tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys {_abbrev(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_abbrev(unexpected)}")
    shapes = [f"{k}: delta {tuple(delta.tensors[k].shape)} vs model {expected[k]}"
              for k in sorted(set(expected) & set(delta.tensors)) if tuple(delta.tensors[k].shape) != expected[k]]
    if shapes:
        problems.append("shape mismatch " + "; ".join(shapes[:4]) + (f"; ... {len(shapes) - 4} more"
                                                                   if len(shapes) > 4 else ""))
    if problems:
        raise DeltaError(f"{name}: " + "; ".join(problems))
    actual = frozen_base_hash(model)
    if delta.base_hash != actual:
        raise DeltaError(f"{name}: trained on another base (base hash {delta.base_hash[:12] or 'missing'}, "
                         f"checkpoint {delta.base_checkpoint or '?'}); this model's base hash is {actual[:12]}")


def apply_delta(target, delta: Delta | str | Path) -> Delta:
    """Check ``delta`` against ``target`` (a NextChat or its Components) and write its tensors into the
    model, in the model's dtypes and device; the model version then names the delta. The image cache
    stays valid (nothing it holds depends on these tensors). Callers that share the model serialise this
    with their calls."""
    if not isinstance(delta, Delta):
        delta = read_delta(delta)
    components = getattr(target, "components", target)
    model = components.model
    check_delta(delta, model)
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    with torch.no_grad():
        for key, tensor in delta.tensors.items():
            target = params[our_name(key)]
            target.copy_(tensor.to(device=target.device, dtype=target.dtype))
    components.delta = delta
    return delta


def current_state(model: NextChatModel) -> dict[str, torch.Tensor]:
    """The trainable tensors now in ``model`` under release names (fp32 CPU copies)."""
    return {release_name(k): v.detach().float().cpu().clone()
            for k, v in model.state_dict().items() if is_trainable_key(k)}


def _abbrev(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... {len(keys) - limit} more' if len(keys) > limit else ''}]"
