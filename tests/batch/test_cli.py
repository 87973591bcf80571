"""`python -m backend batch`: the output is a Label Studio import file; bad files are reported and skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from backend.batch import main
from backend.studio.labeling import parse_label_config

from .conftest import GOOD_IMAGES, LABELS

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_tasks(path: Path) -> list[dict]:
    tasks = json.loads(path.read_text())
    assert isinstance(tasks, list)
    return tasks


def check_rectangle(value: dict) -> None:
    for key in ("x", "y", "width", "height"):
        assert 0.0 <= value[key] <= 100.0, value
    assert value["x"] + value["width"] <= 100.0 + 1e-6 and value["y"] + value["height"] <= 100.0 + 1e-6


def check_polygon(value: dict) -> None:
    assert len(value["points"]) >= 3
    assert all(0.0 <= c <= 100.0 for point in value["points"] for c in point), value


def test_output_is_an_importable_task_list(single_run, image_dir):
    out, code, _ = single_run
    assert code == 0
    tasks = load_tasks(out)
    assert sorted(Path(t["data"]["image"]).relative_to(image_dir).as_posix() for t in tasks) == sorted(GOOD_IMAGES)
    target = parse_label_config(Path(str(out) + ".label_config.xml").read_text()).targets[0]
    kinds = {control.name: control.kind for control in target.region_controls}
    assert kinds == {"box": "rectanglelabels", "polygon": "polygonlabels"}
    for task in tasks:
        assert set(task) == {"data", "predictions"}
        width, height = Image.open(task["data"]["image"]).size
        (prediction,) = task["predictions"]
        assert prediction["model_version"] and 0.0 <= prediction["score"] <= 1.0
        results = prediction["result"]
        assert "rectanglelabels" in {r["type"] for r in results} <= {"rectanglelabels", "polygonlabels"}
        for result in results:
            assert result["to_name"] == target.name and kinds[result["from_name"]] == result["type"]
            assert (result["original_width"], result["original_height"]) == (width, height)
            assert result["value"][result["type"]][0] in LABELS
            assert 0.0 <= result["score"] <= 1.0
            (check_rectangle if result["type"] == "rectanglelabels" else check_polygon)(result["value"])
        boxed = {r["value"]["rectanglelabels"][0] for r in results if r["type"] == "rectanglelabels"}
        assert boxed == set(LABELS)   # the locating checkpoint finds one region per label


def test_bad_and_non_image_files_are_counted_not_fatal(single_run):
    out, _, state = single_run
    records = [json.loads(line) for line in state.read_text().splitlines()[1:]]
    errors = {r["key"]: r["error"] for r in records if "error" in r}
    assert list(errors) == ["broken.jpg"] and errors["broken.jpg"].startswith("bad image:")
    assert sorted(r["key"] for r in records if "task" in r) == sorted(GOOD_IMAGES)
    assert "notes.txt" not in out.read_text() and ".hidden" not in out.read_text()


def test_summary_and_failure_report(tmp_path, image_dir, model_args, capsys):
    out = tmp_path / "tasks.json"
    folder = tmp_path / "few"
    folder.mkdir()
    (folder / "img0.png").write_bytes((image_dir / "img0.png").read_bytes())
    (folder / "truncated.png").write_bytes((image_dir / "img0.png").read_bytes()[:200])
    (folder / "readme.md").write_text("hi")
    code = main(["--images", str(folder), "--labels", "dog", "--out", str(out), "--no-progress",
                 *model_args], env={})
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out.strip().splitlines()[-1])["summary"]
    assert summary == {"labelled": 1, "already_done": 0, "failed": 1, "ignored_files": 1, "tasks_written": 1,
                       "unreadable_dirs": [], "label_config": str(out) + ".label_config.xml"}
    assert "truncated.png" in captured.err and "Traceback" not in captured.err
    assert len(load_tasks(out)) == 1


def test_label_config_file_and_label_subset(tmp_path, image_dir, model_args):
    config = REPO_ROOT / "label_config" / "boxes_polygons.xml"
    out = tmp_path / "tasks.json"
    code = main(["--images", str(image_dir), "--label-config", str(config), "--labels", "dog", "--out", str(out),
                 "--no-progress", "--document-root", str(image_dir.parent), *model_args], env={})
    assert code == 0
    tasks = load_tasks(out)
    assert sorted(t["data"]["image"] for t in tasks) == sorted(
        f"/data/local-files/?d={image_dir.name}/{name}" for name in GOOD_IMAGES)
    labels = {r["value"][r["type"]][0] for t in tasks for r in t["predictions"][0]["result"]}
    assert labels == {"dog"}


def test_bad_input_is_one_line_exit_2(tmp_path, image_dir, model_args, capsys):
    cases = [
        ["--images", str(tmp_path / "missing"), "--labels", "dog", "--out", str(tmp_path / "a.json")],
        ["--images", str(image_dir), "--out", str(tmp_path / "b.json")],
        ["--images", str(image_dir), "--labels", "zebra", "--out", str(tmp_path / "c.json"),
         "--label-config", str(REPO_ROOT / "label_config" / "boxes_polygons.xml")],
        ["--images", str(image_dir), "--labels", "dog", "--out", str(tmp_path / "d.json"),
         "--document-root", str(tmp_path / "elsewhere")],
        ["--images", str(image_dir), "--labels", "dog"],
    ]
    for argv in cases:
        assert main([*argv, "--no-progress", *model_args], env={}) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1, err


def test_missing_checkpoint_is_a_clear_error(tmp_path, image_dir, capsys):
    code = main(["--images", str(image_dir), "--labels", "dog", "--out", str(tmp_path / "x.json"), "--no-progress",
                 "--checkpoint", str(tmp_path / "no-such-checkpoint")], env={})
    err = capsys.readouterr().err.strip()
    assert code == 2 and "cannot load the model" in err and "Traceback" not in err


def test_python_m_backend_dispatches_batch(tmp_path):
    result = subprocess.run([sys.executable, "-m", "backend", "batch", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "python -m backend batch" in result.stdout
    assert "/data/local-files/?d=" in result.stdout and "absolute" in result.stdout
