"""Training the tiny model really fits: the training-split loss falls and its cIoU rises (both losses)."""

from __future__ import annotations

import json
import shutil

import pytest

from model.stage3 import TrainConfig, finetune
from model.stage3.features import FeatureStore
from tests.model.stage3_common import DATA_DIR, load_model, one_thread, shared_model

single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def one_record(tmp_path_factory):
    """The fixture's first record (the red square on a_96x64.png) as a data folder of its own."""
    folder = tmp_path_factory.mktemp("one_record")
    (folder / "images").mkdir()
    shutil.copy(DATA_DIR / "images" / "a_96x64.png", folder / "images")
    first = (DATA_DIR / "res.jsonl").read_text().splitlines()[0]
    (folder / "res.jsonl").write_text(first + "\n")
    return folder, FeatureStore(shared_model())


@pytest.mark.parametrize("loss", ["reference", "clean"])
def test_loss_falls_and_ciou_rises(one_record, loss, tmp_path):
    folder, store = one_record
    config = TrainConfig(loss=loss, expression="first", order="file", batch_size=1, max_steps=10, lr=1e-2,
                         warmup_ratio=0.0, val_fraction=0.0)
    outcome = finetune(shared_model(), folder, tmp_path, config, store=store)
    before, after = outcome.metrics["metrics"]["before"]["train"], outcome.metrics["metrics"]["after"]["train"]
    assert after["loss"] < 0.5 * before["loss"]
    assert after["ciou"] > before["ciou"] + 0.3 and after["giou"] > before["giou"] + 0.3
    assert after["failed"] == 0
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["metrics"]["after"]["train"] == after and len(written["steps"]) == 10


def test_end_to_end_evaluation_applies_the_new_delta(one_record, tmp_path):
    folder, _ = one_record
    nc = load_model()
    config = TrainConfig(expression="first", order="file", batch_size=1, max_steps=2, lr=1e-3, val_fraction=0.0)
    outcome = finetune(nc, folder, tmp_path, config, eval_e2e=True)
    e2e = outcome.metrics["end_to_end"]
    assert e2e["split"] == "train" and e2e["before"]["count"] == e2e["after"]["count"] == 1
    assert e2e["before"]["union"] == 1120   # the tiny base never locates: U = the ground truth's pixels
    assert nc.model_version.endswith(f"+ft3.{outcome.delta.short_id}")
