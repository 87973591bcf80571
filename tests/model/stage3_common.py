"""What the stage-3 tests share: the reference fixture (fixtures/nextchat-tiny/stage3), its batches, and
the tiny model's features computed once per test process."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from model import NextChat
from model.stage3.data import read_records
from model.stage3.features import FeatureStore
from model.stage3.masks import TrainableHeads, model_key, release_name
from model.stage3.samples import Batch, Stage3Data, eval_queries
from tests.conftest import find_shared_dir

TINY = find_shared_dir() / "fixtures" / "nextchat-tiny"
STAGE3 = TINY / "stage3"
DATA_DIR = STAGE3 / "data"
CHECKPOINT = TINY / "weights" / "nextchat"
TOWER = TINY / "weights" / "clip"
BATCHES = [[0, 1], [2, 3], [4, 5], [6]]
SCALED_TENSORS = ("sam.mask_decoder.output_hypernetworks_mlps.0.layers.2.weight",
                  "sam.mask_decoder.output_hypernetworks_mlps.0.layers.2.bias")


@functools.cache
def expected() -> dict:
    return json.loads((STAGE3 / "expected.json").read_text())


@functools.cache
def tensors() -> dict[str, torch.Tensor]:
    return load_file(str(STAGE3 / "tensors.safetensors"))


def final_params(lr: str) -> dict[str, torch.Tensor]:
    return load_file(str(STAGE3 / f"final_params_lr_{lr}.safetensors"))


def load_model(checkpoint: Path = CHECKPOINT) -> NextChat:
    return NextChat.from_pretrained(checkpoint, vision_tower=TOWER)


@functools.cache
def shared_model() -> NextChat:
    """The base tiny model, shared read-only by the tests (tests that apply deltas load their own)."""
    return load_model()


@functools.cache
def shared_data() -> Stage3Data:
    """The fixture's records with features of every record (first expression, backend question)."""
    records = read_records(DATA_DIR)
    data = Stage3Data(DATA_DIR, records, FeatureStore(shared_model()))
    data.prepare(eval_queries(list(range(len(records))), records))
    return data


def fixture_batch(b: int, data: Stage3Data) -> Batch:
    """Batch ``b`` with the reference's own inputs (h_at, predicted boxes, SAM embeddings) and our targets."""
    t = tensors()
    ours = data.batch(eval_queries(BATCHES[b], data.records), "cpu")
    return Batch(h_at=t[f"batch{b}.h_at"], boxes_norm=t[f"batch{b}.pred_locs_norm"],
                 image_embeddings=t[f"batch{b}.image_embeddings"], targets=ours.targets, valid=ours.valid,
                 record_indices=BATCHES[b])


def initial_heads(scaled: bool = False) -> TrainableHeads:
    heads = TrainableHeads(shared_model().model)
    if scaled:
        state = heads.state_dict()
        with torch.no_grad():
            for name in SCALED_TENSORS:
                state[name[len("sam."):]].mul_(64.0)
    return heads


def named_grads(heads: TrainableHeads) -> dict[str, torch.Tensor]:
    return {release_name(model_key(n)): p.grad for n, p in heads.named_parameters()}


def grad_deviation(ours: dict[str, torch.Tensor], prefix: str) -> tuple[float, float]:
    """(worst per-tensor |diff| / (1e-6 + 1e-4 max|ref|), L2(diff) / L2(ref)) against ``prefix.grad.*``."""
    t = tensors()
    worst, diff_sq, ref_sq = 0.0, 0.0, 0.0
    for name, grad in ours.items():
        ref = t[f"{prefix}.grad.{name}"]
        diff = (grad - ref).abs()
        worst = max(worst, float(diff.max()) / (1e-6 + 1e-4 * float(ref.abs().max())))
        diff_sq += float((diff.double() ** 2).sum())
        ref_sq += float((ref.double() ** 2).sum())
    return worst, (diff_sq / ref_sq) ** 0.5


def max_param_deviation(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(max |diff| over all tensors but *.k_proj.bias, max |diff| over the k_proj biases)."""
    other = max(float((ours[k] - ref[k]).abs().max()) for k in ref if not k.endswith("k_proj.bias"))
    k_proj = max(float((ours[k] - ref[k]).abs().max()) for k in ref if k.endswith("k_proj.bias"))
    return other, k_proj


def one_thread():
    """A module fixture body: the tiny decoder's many small ops run faster on one thread of a shared CPU
    than waiting for a second (numbers stay within the fixture's tolerances either way)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
