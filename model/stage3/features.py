"""The stage-3 feature cache: everything upstream of the trained heads, computed once.

Stage 3 trains only ``seg_prompt_mlp`` and SAM's mask decoder; their inputs come from frozen parts:

- per image (by content hash): SAM's image embedding [C,64,64];
- per (image, expression, question template): the last-layer hidden state at the teacher-forced ``<at>``
  of ``USER: <image> question ASSISTANT: Answer: <at>`` and the predicted box loc_decoder(h_at) (the box
  SAM is prompted with, as in the reference).

They are computed under no_grad through the inference code (``NextChat.encode_image``, its prefix KV
cache and suffix embeddings, ``forward_embeds``, ``sam_embedding``), so they are what ``ground()`` sees.
Entries are keyed by a fingerprint of the frozen weights (the base hash of ``delta.py``, the CLIP tower,
the dtype and the device type): a fine-tuned delta changes none of them, so the cache stays valid across
every fine-tuned version and a retrain encodes only the records it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from .. import prompts
from ..session import prefill_suffixes
from .delta import frozen_base_hash
from .templates import ANSWER_MARKUP, question_turn

FEATURES_VERSION = "stage3-features/1"


@dataclass(frozen=True)
class AtFeatures:
    h_at: torch.Tensor       # [H] fp32, CPU
    box_norm: torch.Tensor   # [4] fp32, CPU: loc_decoder(h_at), normalised xyxy in the padded square


def image_content_key(image: Image.Image) -> str:
    digest = hashlib.sha256(image.tobytes())
    digest.update(f"{image.mode}:{image.width}x{image.height}".encode())
    return digest.hexdigest()


def features_fingerprint(nc) -> str:
    digest = hashlib.sha256(FEATURES_VERSION.encode())
    digest.update(frozen_base_hash(nc.model).encode())
    for name, tensor in sorted(nc.tower.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.detach().contiguous().view(torch.uint8).cpu().numpy().tobytes())
    digest.update(f"{nc.dtype}:{nc.device.type}".encode())
    return digest.hexdigest()


class FeatureStore:
    """In memory, and on disk under ``cache_dir/<fingerprint>/`` when a cache folder is given."""

    def __init__(self, nc, cache_dir: str | Path | None = None, memory_images: int = 512):
        self.nc = nc
        self.fingerprint = features_fingerprint(nc)
        self.root = Path(cache_dir) / self.fingerprint[:16] if cache_dir else None
        self.memory_images = memory_images
        self._embeddings: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._at: dict[str, AtFeatures] = {}
        self.counts: Counter = Counter()   # images_encoded, images_read, at_computed, at_read
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            meta = {"version": FEATURES_VERSION, "fingerprint": self.fingerprint,
                    "checkpoint": nc.components.checkpoint_dir.name, "dtype": str(nc.dtype),
                    "device": nc.device.type}
            (self.root / "fingerprint.json").write_text(json.dumps(meta, indent=2))

    # ------------------------------------------------------------------ per image
    def image_embedding(self, image_key: str, image: Image.Image | None = None) -> torch.Tensor:
        """[C,64,64] SAM embedding (the run dtype, CPU)."""
        if image_key in self._embeddings:
            self._embeddings.move_to_end(image_key)
            return self._embeddings[image_key]
        path = self._path("images", image_key)
        if path is not None and path.is_file():
            embedding = load_file(str(path))["embedding"]
            self.counts["images_read"] += 1
        else:
            if image is None:
                raise KeyError(f"no SAM embedding cached for image {image_key[:12]}")
            session = self.nc.encode_image(image)
            embedding = self.nc.sam_embedding(session)[0].detach().cpu()
            self.counts["images_encoded"] += 1
            if path is not None:
                _atomic_save({"embedding": embedding.contiguous()}, path)
        self._remember(image_key, embedding)
        return embedding

    def _remember(self, image_key: str, embedding: torch.Tensor) -> None:
        self._embeddings[image_key] = embedding
        limit = self.memory_images if self.root is not None else None
        while limit is not None and len(self._embeddings) > limit:
            self._embeddings.popitem(last=False)

    # ------------------------------------------------------------------ per (image, expression, template)
    def at_features(self, image: Image.Image, image_key: str,
                    queries: list[tuple[str, str]]) -> list[AtFeatures]:
        """Features of ``(template, expression)`` queries on one image; computed ones are batched."""
        results: dict[int, AtFeatures] = {}
        todo = []
        for index, (template, expression) in enumerate(queries):
            key = at_key(image_key, template, expression)
            found = self._at.get(key) or self._read_at(key)
            if found is not None:
                results[index] = found
            else:
                todo.append((index, key, template, expression))
        if todo:
            hidden = teacher_forced_at_hidden(self.nc, image, [question_turn(t, e) for _, _, t, e in todo])
            with torch.no_grad():
                boxes = self.nc.model.loc_decoder(hidden)
            for (index, key, _, _), h, box in zip(todo, hidden, boxes):
                feats = AtFeatures(h_at=h.float().cpu().clone(), box_norm=box.float().cpu().clone())
                self._at[key] = results[index] = feats
                self.counts["at_computed"] += 1
                path = self._path("at", key)
                if path is not None:
                    _atomic_save({"h_at": feats.h_at, "box_norm": feats.box_norm}, path)
        return [results[i] for i in range(len(queries))]

    def _read_at(self, key: str) -> AtFeatures | None:
        path = self._path("at", key)
        if path is None or not path.is_file():
            return None
        tensors = load_file(str(path))
        feats = AtFeatures(h_at=tensors["h_at"], box_norm=tensors["box_norm"])
        self._at[key] = feats
        self.counts["at_read"] += 1
        return feats

    def _path(self, kind: str, key: str) -> Path | None:
        return None if self.root is None else self.root / kind / key[:2] / f"{key}.safetensors"


def at_key(image_key: str, template: str, expression: str) -> str:
    return hashlib.sha256(f"{image_key}\n{template}\n{expression}".encode()).hexdigest()


@torch.no_grad()
def teacher_forced_at_hidden(nc, image: Image.Image, turns: list[prompts.UserTurn]) -> torch.Tensor:
    """[n,H] last-layer hidden states at ``<at>`` of ``question ASSISTANT: Answer: <at>`` for each turn,
    after the image's cached prefix; the suffixes are left-padded into batches of ``nc.max_batch``."""
    session = nc.encode_image(image)
    out = []
    for start in range(0, len(turns), nc.max_batch):
        chunk = [suffix_with_answer(nc, session, turn) for turn in turns[start:start + nc.max_batch]]
        out.append(prefill_suffixes(nc.model, session, chunk).hidden[:, -1])
    return torch.cat(out)


def suffix_with_answer(nc, session, turn: prompts.UserTurn) -> torch.Tensor:
    """[S,H] embeddings after the image prefix: the question, ``ASSISTANT:`` and ``Answer: <at>``."""
    prompt_ids = nc.prompt_ids(turn)
    full_ids = nc.tokenizer.encode(prompts.render(turn, nc.tower.num_patches) + [(ANSWER_MARKUP, True)])
    if full_ids[:len(prompt_ids)] != prompt_ids or nc.ids.at not in full_ids[len(prompt_ids):]:
        raise ValueError("the training answer does not continue the prompt's tokens")
    answer = full_ids[len(prompt_ids):]
    answer = answer[:answer.index(nc.ids.at) + 1]
    question = nc.suffix_embeddings(session, turn, [])
    return torch.cat([question, nc.model.embed_tokens(torch.tensor(answer, device=nc.device))])


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)
