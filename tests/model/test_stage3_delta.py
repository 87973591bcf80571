"""Deltas: training touches only seg_prompt_mlp and the mask decoder, a delta round-trips, and deltas that do
not fit the model are refused with one line naming what differs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from model import NextChat
from model.__main__ import main as model_main
from model.stage3 import TrainConfig, apply_delta, finetune, read_delta
from model.stage3.delta import Delta, DeltaError, current_state, frozen_base_hash, save_delta
from model.stage3.masks import is_trainable_key
from model.stage3.metrics import evaluate_end_to_end
from model.stage3.samples import eval_queries
from model.versioning import checkpoint_version
from tests.model.stage3_common import (
    CHECKPOINT,
    DATA_DIR,
    TINY,
    TOWER,
    expected,
    final_params,
    load_model,
    one_thread,
    shared_data,
    shared_model,
)

single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


def full_state(nc: NextChat) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v.clone() for k, v in nc.model.state_dict().items()}
    state.update({f"tower.{k}": v.clone() for k, v in nc.tower.state_dict().items()})
    return state


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two steps at lr 1e-3 on the fixture, on the shared model (its features already computed)."""
    nc = shared_model()
    before = full_state(nc)
    config = TrainConfig(loss="reference", expression="first", order="file", batch_size=4, max_steps=2, lr=1e-3,
                         warmup_ratio=0.0, val_fraction=0.0)
    out = tmp_path_factory.mktemp("run")
    outcome = finetune(nc, DATA_DIR, out, config, store=shared_data().store)
    return nc, before, outcome


@pytest.fixture(scope="module")
def loc_checkpoint(tmp_path_factory):
    """The loc-edited weights (a different frozen base) in a checkpoint folder of their own."""
    folder = tmp_path_factory.mktemp("loc_checkpoint")
    for file in CHECKPOINT.iterdir():
        if file.name != "model.safetensors":
            (folder / file.name).symlink_to(file)
    (folder / "model.safetensors").symlink_to(TINY / "weights" / "nextchat_loc_edited.safetensors")
    return folder


def test_training_writes_nothing_into_the_served_model(trained):
    nc, before, _ = trained
    after = full_state(nc)
    assert after.keys() == before.keys()
    assert [k for k in before if not torch.equal(before[k], after[k])] == []
    assert nc.components.delta is None and nc.model_version == checkpoint_version(nc.components.checkpoint_dir)


def test_applying_the_delta_changes_only_the_two_modules(trained):
    _, before, outcome = trained
    fresh = load_model()
    apply_delta(fresh, outcome.delta.path)
    after = full_state(fresh)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(is_trainable_key(k[len("model."):]) for k in changed)
    zero_grad = set(expected()["first_step"][0]["grads_exactly_zero"])
    assert len(changed) == 124 - len(zero_grad)   # everything that gets a gradient moved
    assert fresh.model_version == f"{checkpoint_version(fresh.components.checkpoint_dir)}+ft3.{outcome.delta.short_id}"


def test_delta_round_trips(trained, tmp_path):
    _, _, outcome = trained
    loaded = read_delta(outcome.delta.path)
    assert loaded.short_id == outcome.delta.short_id and loaded.info == outcome.delta.info
    assert all(torch.equal(loaded.tensors[k], v) for k, v in outcome.result.tensors.items())
    fresh = NextChat.from_pretrained(CHECKPOINT, vision_tower=TOWER, delta=outcome.delta.path)
    state = current_state(fresh.model)
    assert state.keys() == loaded.tensors.keys()
    assert all(torch.equal(state[k], loaded.tensors[k]) for k in state)
    resaved = save_delta(tmp_path / "again.safetensors", state, loaded.base_hash, loaded.base_checkpoint, loaded.info)
    assert resaved.short_id == loaded.short_id   # same tensors and metadata, same id


def _refusal(nc: NextChat, delta) -> str:
    before = current_state(nc.model)
    with pytest.raises(DeltaError) as caught:
        apply_delta(nc, delta)
    after = current_state(nc.model)
    assert all(torch.equal(before[k], after[k]) for k in before)   # nothing written
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_refused_deltas_name_what_differs(trained, loc_checkpoint, tmp_path):
    _, _, outcome = trained
    good = read_delta(outcome.delta.path)
    fresh = load_model()
    assert "trained on another base" in _refusal(NextChat.from_pretrained(loc_checkpoint, vision_tower=TOWER), good)

    wrong_shape = dict(good.tensors)
    wrong_shape["sam.model.mask_decoder.iou_token.weight"] = wrong_shape["sam.model.mask_decoder.iou_token.weight"].t()
    message = _refusal(fresh, Delta(wrong_shape, good.base_hash, good.base_checkpoint))
    assert "shape mismatch sam.model.mask_decoder.iou_token.weight: delta (32, 1) vs model (1, 32)" in message

    missing = {k: v for k, v in good.tensors.items() if k != "seg_prompt_mlp.0.bias"}
    assert "missing keys [seg_prompt_mlp.0.bias]" in _refusal(fresh, Delta(missing, good.base_hash, ""))
    extra = {**good.tensors, "lm_head.weight": torch.zeros(1)}
    assert "unexpected keys [lm_head.weight]" in _refusal(fresh, Delta(extra, good.base_hash, ""))

    plain = tmp_path / "plain.safetensors"
    save_file({"seg_prompt_mlp.0.bias": torch.zeros(64)}, str(plain))
    assert "is not a stage-3 delta" in _refusal(fresh, plain)
    assert "does not exist" in _refusal(fresh, tmp_path / "nothing.safetensors")


def test_model_cli_applies_a_delta_and_refuses_a_bad_one(trained, tmp_path, capsys):
    _, _, outcome = trained
    image = DATA_DIR / "images" / "a_96x64.png"
    common = [str(image), "the red square", "--checkpoint", str(CHECKPOINT), "--vision-tower", str(TOWER),
              "--task", "ground", "--max-new-tokens", "4"]
    assert model_main([*common, "--delta", str(outcome.delta.path)]) == 0
    assert "regions" in json.loads(capsys.readouterr().out)
    assert model_main([*common, "--delta", str(tmp_path / "none.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: delta") and "\n" not in err


def test_end_to_end_ground_matches_the_reference_evaluation(loc_checkpoint):
    """Loc-edited frozen weights emit <at> right away: greedy ground() + cIoU, before and after the
    reference's lr-1e-3 tensors are applied (as a delta on this base), record by record."""
    nc = NextChat.from_pretrained(loc_checkpoint, vision_tower=TOWER)
    data = shared_data()
    queries = eval_queries(list(range(len(data.records))), data.records)
    recorded = expected()["eval_loc_edited_weights"]
    for name in ("before", "lr_1e-03"):
        if name != "before":
            apply_delta(nc, Delta(final_params(name[3:]), frozen_base_hash(nc.model), "loc-edited"))
        metrics, counts = evaluate_end_to_end(nc, data, queries, count_overlaps=True)
        reference = recorded[name]["free_running_greedy"]
        for (i, u), ref in zip(counts, reference["per_record"]):
            assert abs(i - ref["I"]) <= 2 and abs(u - ref["U"]) <= 2
        assert metrics.failed == reference["failed"]
        assert abs(metrics.ciou - reference["ciou"]) <= 2 * len(counts) / reference["sum_U"]
