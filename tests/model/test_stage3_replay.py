"""The replay command on the fixture's data and weights gives the reference trainer's final tensors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from model.stage3 import main
from model.stage3.cli import build_parser
from model.stage3.data import read_records
from model.stage3.delta import frozen_base_hash, read_delta
from model.stage3.features import FeatureStore
from model.stage3.samples import Stage3Data, eval_queries
from tests.model.stage3_common import (
    CHECKPOINT,
    DATA_DIR,
    TOWER,
    expected,
    final_params,
    max_param_deviation,
    one_thread,
    shared_model,
)

single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)
LRS = ("1e-03", "2e-05")


def replay_args(lr: str) -> list[str]:
    return ["--loss", "reference", "--expression", "first", "--order", "file", "--batch-size", "2",
            "--max-steps", "4", "--lr", lr, "--warmup-ratio", "0.03", "--val-fraction", "0", "--device", "cpu",
            "--dtype", "fp32"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both recorded learning rates through the CLI's main(), sharing one feature cache (1e-3 first)."""
    cache = tmp_path_factory.mktemp("features")
    results = {}
    for lr in LRS:
        out = tmp_path_factory.mktemp(f"run_{lr}")
        code = main([str(DATA_DIR), "--checkpoint", str(CHECKPOINT), "--vision-tower", str(TOWER), "--out",
                     str(out), *replay_args(lr), "--cache", str(cache), "--no-progress"])
        results[lr] = (code, out, json.loads((out / "metrics.json").read_text()) if code == 0 else None)
    return cache, results


@pytest.mark.parametrize("lr", LRS)
def test_replay_delta_equals_the_reference_final_tensors(runs, lr):
    code, out, _ = runs[1][lr]
    assert code == 0
    ours, reference = load_file(str(out / "delta.safetensors")), final_params(lr)
    assert set(ours) == set(reference) and len(ours) == 124
    assert all(ours[k].shape == reference[k].shape and ours[k].dtype == torch.float32 for k in ours)
    other, k_proj = max_param_deviation(ours, reference)
    assert other <= (1e-6 if lr == "2e-05" else 5e-6)
    assert k_proj <= (1e-6 if lr == "2e-05" else 5e-5)


@pytest.mark.parametrize("lr", LRS)
def test_replay_steps_follow_the_recorded_run(runs, lr):
    metrics = runs[1][lr][2]
    recorded = expected()["train"][f"lr_{lr}"]["steps"]
    assert [s["records"] for s in metrics["steps"]] == [r["records"] for r in recorded]
    for ours, ref in zip(metrics["steps"], recorded):
        assert ours["lr"] == ref["lr"] or abs(ours["lr"] - ref["lr"]) <= 1e-12 * ref["lr"]
        assert abs(ours["loss"] - ref["loss"]) <= 2e-6 * ref["loss"]
        for term in ("focal_x20", "dice", "iou_mse"):
            assert abs(ours[term] - ref[f"loss_{term}"]) <= 5e-6
        assert abs(ours["grad_norm"] - ref["grad_total_norm_preclip"]) <= 1e-5 * ref["grad_total_norm_preclip"]
        assert abs(ours["clip_coef"] - ref["clip_coef"]) <= 1e-5 * ref["clip_coef"]


def test_delta_metadata_names_base_data_and_recipe(runs):
    _, out, metrics = runs[1]["1e-03"]
    delta = read_delta(out / "delta.safetensors")
    assert delta.base_hash == frozen_base_hash(shared_model().model)
    assert delta.base_checkpoint == CHECKPOINT.name
    assert delta.info["data"]["records"] == 7 and delta.info["data"]["train_records"] == 7
    assert delta.info["data"]["val_records"] == 0 and delta.info["data"]["steps"] == 4
    assert delta.info["hyper_parameters"]["lr"] == 1e-3 and delta.info["hyper_parameters"]["loss"] == "reference"
    assert metrics["delta_id"] == delta.short_id and len(delta.short_id) == 8
    assert metrics["metrics"]["before"]["train"]["count"] == 7 and metrics["metrics"]["after"]["val"] is None


def test_second_run_reads_every_feature_from_the_cache(runs):
    first, second = (runs[1][lr][2]["timing"]["store"] for lr in LRS)
    assert first.get("images_encoded") == 3 and first.get("at_computed") == 7
    assert second.get("images_encoded", 0) == 0 and second.get("at_computed", 0) == 0
    assert second.get("at_read") == 7 and second.get("images_read") == 3


def test_a_new_record_computes_only_its_own_features(runs, tmp_path):
    cache = runs[0]
    data_dir = tmp_path / "data"
    shutil.copytree(DATA_DIR, data_dir)
    with open(data_dir / "res.jsonl", "a") as handle:
        handle.write(json.dumps({"img_path": "a_96x64.png", "expressions": ["a new expression"], "height": 64,
                                 "width": 96, "bbox": [1, 1, 20, 20], "mask": [[1, 1, 20, 1, 20, 20, 1, 20]]}) + "\n")
    records = read_records(data_dir)
    store = FeatureStore(shared_model(), cache)
    Stage3Data(data_dir, records, store).prepare(eval_queries(list(range(len(records))), records))
    assert store.counts["at_computed"] == 1 and store.counts["at_read"] == 7
    assert store.counts.get("images_encoded", 0) == 0


def test_help_documents_the_replay_recipe():
    text = " ".join(build_parser().format_help().split())
    assert " ".join(replay_args("1e-3")) in text


def test_bad_data_dir_is_one_line_exit_2(tmp_path, capsys):
    code = main([str(tmp_path / "missing"), "--checkpoint", str(CHECKPOINT), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: no res.jsonl") and "\n" not in err
