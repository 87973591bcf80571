"""The GPU check's CPU-checkable parts, so the script cannot rot between loans of a GPU: its argument
handling, the parity phase end to end on the tiny fixture (CLI -> JSON -> table), the verdicts, and the
shell wrapper's own options. The full dry run (`bash benchmarks/gpu_check.sh DIR --dry-run`) takes
minutes; its output is committed as benchmarks/results/gpu_check_dry_run.json."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from benchmarks.gpu import cli
from benchmarks.gpu.report import finite, render, table
from benchmarks.gpu.serve_check import percentiles
from model.parity import TOLERANCES, within_tolerances
from tests.conftest import REPO_ROOT, find_shared_dir

FIXTURE = find_shared_dir() / "fixtures" / "nextchat-tiny"


def test_dry_run_defaults_and_gpu_defaults(tmp_path):
    dry = cli.parse_args([str(tmp_path / "dry"), "--dry-run", "--fixtures", str(FIXTURE)])
    assert (dry.size, dry.device, dry.torch_dtype, dry.repeats, dry.calls) == ("small", "cpu", torch.float32, 1, 3)
    assert dry.phase_list == ["parity", "model", "serve"] and dry.fixture == FIXTURE
    gpu = cli.parse_args([str(tmp_path / "gpu"), "--device", "cpu", "--fixtures", str(FIXTURE)])
    assert (gpu.size, gpu.torch_dtype, gpu.label_counts, gpu.calls) == ("7b", torch.bfloat16, [1, 8, 16], 20)


@pytest.mark.parametrize("extra, reason", [
    (["--phases", "parity,nonsense"], "--phases"),
    (["--labels", "0,8"], "positive"),
    (["--dtype", "int3"], "unknown dtype"),
    (["--fixtures", "/nonexistent/fixture"], "no nextchat-tiny fixture"),
])
def test_unusable_arguments_exit_2_with_one_line(tmp_path, capsys, extra, reason):
    with pytest.raises(SystemExit) as stopped:
        cli.parse_args([str(tmp_path), "--dry-run", "--fixtures", str(FIXTURE), *extra])
    assert stopped.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert reason in message and "Traceback" not in message


def test_cuda_asked_without_cuda_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stopped:
        cli.parse_args([str(tmp_path), "--fixtures", str(FIXTURE)])
    assert stopped.value.code == 2
    assert "use --dry-run" in capsys.readouterr().err


def test_parity_phase_end_to_end_writes_json_and_prints_the_table_last(tmp_path, capsys):
    results = tmp_path / "results"
    code = cli.main([str(results), "--dry-run", "--phases", "parity", "--parity-dtypes", "fp32",
                     "--fixtures", str(FIXTURE), "--workdir", str(tmp_path / "work")])
    report = json.loads((results / "gpu_check.json").read_text())
    parity = report["phases"]["parity"]
    assert code == 0 and report["check"]["exit_code"] == 0
    assert parity["fp32_passed"] is True and set(parity["runs"]) == {"fp32"}
    cases = parity["runs"]["fp32"]["cases"]
    assert set(cases) == {p.name for p in (FIXTURE / "cases").iterdir() if (p / "input.json").is_file()}
    for found in cases.values():
        assert found["ids_match"] and found["step_logits"] <= TOLERANCES["step_logits"]
    located = [f for f in cases.values() if f["locates"]]
    assert located and all(f["max_box_deviation"] <= TOLERANCES["boxes_pixels"] for f in located)
    assert not (tmp_path / "work").exists()  # the scratch folder is removed
    printed = capsys.readouterr().out.rstrip()
    table_text = (results / "gpu_check.txt").read_text().rstrip()
    assert printed.endswith(table_text)
    assert "c5_free_loc_96x64" in table_text and table_text.splitlines()[-1].startswith("exit code 0")


def test_a_deviation_past_tolerance_is_named_and_fails_the_check():
    found = {"ids_match": True, "text_match": True, "boxes_count_match": True, "step_logits": 5e-5,
             "boxes_norm": 3e-5, "flipped_mask_pixels": 9, "flipped_mask_pixels_iou_filtered": 0}
    verdict = within_tolerances(found)
    assert [k for k, ok in verdict.items() if not ok] == ["boxes_norm", "flipped_mask_pixels"]
    report = {"phases": {"parity": {"fp32_passed": False, "runs": {"fp32": {"cases": {
        "c1": {"passed": True}, "c5": {"passed": False}}}}},
        "serve": {"oom": {"passed": False}, "predict_8_labels": {"statuses": {"200": 19, "503": 1}},
                  "interactive_box": {"error": "ReadTimeout: ..."}}}}
    assert cli.problems(report) == ["fp32 parity outside tolerances: c5", "serve interactive_box failed",
                                    "CUDA OOM not answered 503-then-200",
                                    "serve predict_8_labels: statuses {'200': 19, '503': 1}"]


def test_report_helpers():
    assert finite({"a": [float("inf"), 1.5], "b": float("nan")}) == {"a": ["inf", 1.5], "b": "nan"}
    assert percentiles([0.5, 0.1, 0.3, 0.2]) == {"calls": 4, "p50_s": 0.25, "p95_s": 0.5, "min_s": 0.1,
                                                 "max_s": 0.5}
    assert table(["a", "b"], [["x", 1]]).splitlines() == ["a  b", "-  -", "x  1"]
    skipped = {"check": {"dry_run": True, "device": "cpu", "size": "small", "dtype": "fp32", "exit_code": 1,
                         "summary": "model failed"},
               "environment": {"versions": {}, "device": {"name": "x86_64"}, "date_utc": "2026-01-01 00:00:00"},
               "phases": {"model": {"error": "RuntimeError: boom"}, "serve": {"skipped": "missing modules: flask"}}}
    text = render(skipped)
    assert "model: ERROR: RuntimeError: boom" in text and "serve: skipped: missing modules: flask" in text


@pytest.mark.parametrize("args, reason", [(["--wheels"], "--wheels needs a folder"),
                                          (["--wheels", "{empty}"], "no .whl files")])
def test_wrapper_wheel_option_errors(tmp_path, args, reason):
    args = [a.replace("{empty}", str(tmp_path)) for a in args]
    done = subprocess.run(["bash", str(Path(REPO_ROOT) / "benchmarks" / "gpu_check.sh"), str(tmp_path), *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and reason in done.stderr
