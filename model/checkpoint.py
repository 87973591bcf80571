"""Finding and reading a NExT-Chat checkpoint: a local folder or a hub id, in the release's layout.

Weights come from ``model.safetensors``, a sharded ``model.safetensors.index.json``, or ``.bin``
shards read only with ``torch.load(weights_only=True)``. Safetensors are preferred when both exist.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from .reasons import one_line

# Keys the release saves that inference does not use.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
IGNORED_PREFIXES = ("model.vision_tower.",)
# Release key prefix -> our module prefix.
KEY_RENAMES = (("model.mm_projector.", "mm_projector."), ("sam.model.", "sam."))
CHECKPOINT_FILES = ("config.json", "*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json",
                    "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                    "added_tokens.json", "generation_config.json", "preprocessor_config.json")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded, with the reason in one line."""


def resolve_dir(path_or_id: str | os.PathLike, what: str = "checkpoint") -> Path:
    """A local folder as is; anything else is a hub id fetched through huggingface_hub (its cache,
    HF_HUB_OFFLINE honoured). ``what`` names the folder in errors ("checkpoint", "vision tower")."""
    local = Path(path_or_id).expanduser()
    if local.is_dir():
        return local
    if local.exists():
        raise CheckpointError(f"{what} {local} is a file; give the {what} folder")
    text = str(path_or_id)
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise CheckpointError(f"{what} folder {text} does not exist (and it is not a hub id 'owner/name')")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(text, allow_patterns=list(CHECKPOINT_FILES)))
    except (LocalEntryNotFoundError, HFValidationError, OSError) as err:
        raise CheckpointError(f"cannot fetch the {what} {text} from the hub or find it in the hub cache: "
                              f"{type(err).__name__}: {one_line(err)}") from None


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"missing {path.name} in {path.parent}")
    return json.loads(path.read_text())


def weight_files(directory: Path) -> list[Path]:
    """The weight files of a checkpoint, safetensors preferred."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(read_json(index)["weight_map"].values()))
            missing = [s for s in shards if not (directory / s).is_file()]
            if missing:
                raise CheckpointError(f"{index_name} names shards that are missing: {missing}")
            return [directory / s for s in shards]
    for pattern in ("*.safetensors", "*.bin"):
        files = sorted(directory.glob(pattern))
        if files:
            return files
    raise CheckpointError(f"no weights (*.safetensors or *.bin) in {directory}")


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(directory):
        if file.suffix == ".safetensors":
            state.update(load_file(str(file)))
            continue
        try:
            state.update(torch.load(file, map_location="cpu", weights_only=True))
        except Exception as err:  # noqa: BLE001 - the unpickler raises many types
            raise CheckpointError(f"{file.name} refused by torch.load(weights_only=True) (only plain tensors "
                                  f"are accepted; convert it to safetensors): "
                                  f"{one_line(err, 200)}") from None
    return state


def rename_release_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ignored keys and map release names onto our module names."""
    renamed = {}
    for key, tensor in state.items():
        if key.endswith(IGNORED_SUFFIXES) or key.startswith(IGNORED_PREFIXES):
            continue
        for old, new in KEY_RENAMES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = tensor
    return renamed


def load_exact(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict that names every missing or unexpected key, and mismatched shapes."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys {_abbrev(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_abbrev(unexpected)}")
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if shapes:
        problems.append("shape mismatch " + "; ".join(shapes[:5]))
    if problems:
        raise CheckpointError(f"{what}: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def _abbrev(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... {len(keys) - limit} more' if len(keys) > limit else ''}]"
