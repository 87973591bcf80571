"""`python -m backend finetune`: the stage-3 trainer under the backend's CLI, replaying the reference exactly."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from backend.__main__ import main as backend_main
from tests.model.stage3_common import CHECKPOINT, DATA_DIR, TOWER, final_params, max_param_deviation, one_thread

single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)
REPLAY = ["--loss", "reference", "--expression", "first", "--order", "file", "--batch-size", "2", "--max-steps", "4",
          "--lr", "1e-3", "--warmup-ratio", "0.03", "--val-fraction", "0", "--device", "cpu", "--dtype", "fp32"]


def test_the_replay_command_gives_the_reference_trainers_tensors(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["finetune", str(DATA_DIR), "--checkpoint", str(CHECKPOINT), "--vision-tower", str(TOWER),
            "--out", str(run), *REPLAY, "--no-progress"]
    assert backend_main(argv) == 0
    ours, reference = load_file(str(run / "delta.safetensors")), final_params("1e-03")
    assert set(ours) == set(reference)
    other, k_proj = max_param_deviation(ours, reference)
    assert other <= 5e-6 and k_proj <= 5e-5  # the fixture README's tolerances at lr 1e-3
    assert "cIoU" in capsys.readouterr().out and (run / "metrics.json").is_file()


def test_help_names_the_backend_command_and_the_replay_flags(capsys):
    with pytest.raises(SystemExit):
        backend_main(["finetune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: python -m backend finetune [-h] --checkpoint") and " ".join(REPLAY) in text


def test_bad_data_is_one_line_and_exit_2(tmp_path, capsys):
    assert backend_main(["finetune", str(tmp_path), "--checkpoint", str(CHECKPOINT), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: no res.jsonl in {tmp_path}"
