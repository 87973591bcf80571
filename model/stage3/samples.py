"""Stage-3 samples: which (record, expression, template) each step trains on, and their tensors.

A sample is one record asked with one expression and one question template. Per epoch the records of
the training split are taken in file order or shuffled, each with its first or a random expression and
the backend's template or one drawn from the reference's pool; every draw comes from a generator seeded
with (seed, epoch), so a run is reproducible. Steps cycle over the epoch's batches (step s uses batch
s mod n_batches of epoch s div n_batches), the last batch short when the count does not divide.
"""

from __future__ import annotations

import contextlib
import random
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import prompts
from .data import Record, decode_mask, load_image, target_1024, valid_region_1024
from .features import AtFeatures, FeatureStore, image_content_key
from .templates import templates_for


@dataclass(frozen=True)
class Query:
    record_index: int
    template: str
    expression: str


@dataclass(frozen=True)
class Sample:
    query: Query
    image_key: str
    features: AtFeatures


@dataclass
class Batch:
    h_at: torch.Tensor              # [k, H] fp32
    boxes_norm: torch.Tensor        # [k, 4] fp32
    image_embeddings: torch.Tensor  # [k, C, 64, 64] fp32
    targets: torch.Tensor           # [k, 1, 1024, 1024] fp32 (0/1/2)
    valid: torch.Tensor             # [k, 1, 1024, 1024] bool: the image inside the padding
    record_indices: list[int]


def epoch_queries(indices: list[int], records: list[Record], epoch: int, *, order: str, expression: str,
                  template: str, seed: int) -> list[Query]:
    """The training queries of one epoch, in the order they are batched."""
    rng = random.Random(f"stage3:{seed}:{epoch}")
    chosen = list(indices)
    if order == "shuffle":
        rng.shuffle(chosen)
    elif order != "file":
        raise ValueError(f"unknown order {order!r}; use file or shuffle")
    pool = templates_for(template)
    queries = []
    for index in chosen:
        expressions = records[index].expressions
        if expression == "first":
            text = expressions[0]
        elif expression == "random":
            text = rng.choice(expressions)
        else:
            raise ValueError(f"unknown expression choice {expression!r}; use first or random")
        queries.append(Query(index, pool[0] if len(pool) == 1 else rng.choice(pool), text))
    return queries


def eval_queries(indices: list[int], records: list[Record]) -> list[Query]:
    """What evaluation asks: each record's first expression with the backend's question."""
    return [Query(i, prompts.REC_TEMPLATE, records[i].expressions[0]) for i in indices]


def batches_of(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


class Stage3Data:
    """Records, their images, targets and cached features."""

    def __init__(self, data_dir: str | Path, records: list[Record], store: FeatureStore, target_cache: int = 256,
                 model_lock=None):
        """``model_lock``: a context manager held while one image's features are computed (a server shares
        the model: other callers get it between images)."""
        self.model_lock = model_lock if model_lock is not None else contextlib.nullcontext()
        self.data_dir = Path(data_dir)
        self.records = records
        self.store = store
        self._image_keys: dict[str, str] = {}
        self._targets: OrderedDict[int, np.ndarray] = OrderedDict()
        self._target_cache = target_cache
        self._samples: dict[Query, Sample] = {}

    def prepare(self, queries: list[Query], progress: bool = False) -> None:
        """Compute (or read) the features of every query, one image at a time (each inside the model lock)."""
        by_image: dict[str, list[Query]] = OrderedDict()
        for query in dict.fromkeys(queries):
            if query not in self._samples:
                by_image.setdefault(self.records[query.record_index].img_path, []).append(query)
        if not by_image:
            return
        for img_path, group in tqdm(by_image.items(), desc="features", unit="image", disable=not progress):
            image = load_image(self.data_dir, self.records[group[0].record_index])
            key = self._image_keys.setdefault(img_path, image_content_key(image))
            with self.model_lock:
                self.store.image_embedding(key, image)
                feats = self.store.at_features(image, key, [(q.template, q.expression) for q in group])
            for query, feat in zip(group, feats):
                self._samples[query] = Sample(query, key, feat)

    def sample(self, query: Query) -> Sample:
        if query not in self._samples:
            self.prepare([query])
        return self._samples[query]

    def gt_mask(self, record_index: int) -> np.ndarray:
        """[H, W] uint8 at the original size."""
        return decode_mask(self.records[record_index])

    def target(self, record_index: int) -> np.ndarray:
        """[1024, 1024] uint8 in SAM's padded frame (kept in a small LRU)."""
        if record_index in self._targets:
            self._targets.move_to_end(record_index)
            return self._targets[record_index]
        target = target_1024(self.gt_mask(record_index))
        self._targets[record_index] = target
        while len(self._targets) > self._target_cache:
            self._targets.popitem(last=False)
        return target

    def batch(self, queries: list[Query], device) -> Batch:
        samples = [self.sample(q) for q in queries]
        indices = [q.record_index for q in queries]
        embeddings = [self.store.image_embedding(s.image_key) for s in samples]
        targets = np.stack([self.target(i) for i in indices])[:, None]
        valid = np.stack([valid_region_1024(self.records[i].frame) for i in indices])[:, None]
        return Batch(
            h_at=torch.stack([s.features.h_at for s in samples]).to(device, torch.float32),
            boxes_norm=torch.stack([s.features.box_norm for s in samples]).to(device, torch.float32),
            image_embeddings=torch.stack(embeddings).to(device, torch.float32),
            targets=torch.from_numpy(targets).to(device, torch.float32),
            valid=torch.from_numpy(valid).to(device),
            record_indices=indices,
        )
