"""`export --from-json` end to end on a Label Studio-shaped JSON export, read back like the trainer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from backend.export.cli import main_check, main_export
from tests.export.helpers import (
    CONFIG_XML,
    annotation,
    brush_item,
    decode_record_mask,
    image_bytes,
    iou,
    percent_to_px,
    polygon_item,
    rasterize_polygon,
    read_records,
    rect_item,
    task,
    text_item,
)

POLY = [(10.5, 12.25), (55.1, 9.8), (62.4, 71.3), (20.2, 80.9)]


def brush_mask(height=480, width=640):
    yy, xx = np.mgrid[0:height, 0:width]
    return (xx - 450) ** 2 + (yy - 300) ** 2 < 90**2


@pytest.fixture()
def export_setup(tmp_path):
    media = tmp_path / "media"
    (media / "upload" / "1").mkdir(parents=True)
    (media / "upload" / "1" / "ab12-street.png").write_bytes(image_bytes(640, 480, seed=1))
    (media / "photos").mkdir()
    # stored 480 wide x 640 high, EXIF 6: shown rotated, 640 x 480 (as the annotator saw it)
    (media / "photos" / "phone.jpg").write_bytes(image_bytes(480, 640, fmt="JPEG", orientation=6, seed=2))
    mask = brush_mask()
    result_1 = [
        polygon_item("poly1", POLY, label="cat", width=640, height=480),
        text_item("poly1", ["the cat under the table"], width=640, height=480),
        brush_item("brush1", mask, label="dog"),
        rect_item("rect1", (80, 80, 10, 10), label="dog", width=640, height=480),
        {"id": "prm", "from_name": "prompt", "to_name": "image", "type": "textarea", "value": {"text": ["hi"]}},
    ]
    result_2 = [polygon_item("poly2", POLY, label="cat", width=640, height=480)]
    tasks = [
        task(1, "/data/upload/1/ab12-street.png", [
            annotation(11, 1, result_1),
            annotation(12, 1, [], cancelled=True),
        ], predictions=[5]),
        task(2, "/data/local-files/?d=photos/phone.jpg", [annotation(21, 2, result_2)]),
        task(3, "/data/upload/1/none.png", []),
    ]
    export_json = tmp_path / "export.json"
    export_json.write_text(json.dumps(tasks))
    config = tmp_path / "config.xml"
    config.write_text(CONFIG_XML)
    return {"json": export_json, "media": media, "config": config, "mask": mask, "out": tmp_path / "out"}


def run_export(setup, *extra):
    argv = ["--from-json", str(setup["json"]), "--images", str(setup["media"]), "--out", str(setup["out"])]
    return main_export(argv + ["--label-config", str(setup["config"]), *extra])


def test_export_writes_records_the_trainer_can_read(export_setup, capsys):
    assert run_export(export_setup) == 0
    out = export_setup["out"]
    records = {(r["annotation_id"], r["region_id"]): r for r in read_records(out)}
    assert set(records) == {(11, "poly1"), (11, "brush1"), (21, "poly2")}
    poly = records[(11, "poly1")]
    assert poly["expressions"] == ["the cat under the table"]
    assert (poly["width"], poly["height"], poly["img_path"]) == (640, 480, "task-1.png")
    expected = rasterize_polygon(percent_to_px(POLY, 640, 480), 480, 640)
    assert iou(decode_record_mask(poly) > 0, expected) >= 0.99
    xs, ys = zip(*percent_to_px(POLY, 640, 480))
    assert poly["bbox"] == pytest.approx([min(xs), min(ys), max(xs), max(ys)], abs=0.01)
    brush = records[(11, "brush1")]
    assert isinstance(brush["mask"], list) and isinstance(brush["mask"][0], dict)
    assert np.array_equal(decode_record_mask(brush) > 0, export_setup["mask"])
    assert brush["expressions"] == ["dog"] and brush["bbox"] == [361.0, 211.0, 540.0, 390.0]
    assert records[(21, "poly2")]["expressions"] == ["a cat"]  # the label's prompt attribute
    printed = capsys.readouterr().out
    assert "3 records" in printed and "rectangle without a mask" in printed and "cancelled" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["skipped_by_reason"] == {
        "rectangle without a mask (use --boxes-as-masks to keep it)": 1,
        "annotation cancelled (skipped by the annotator)": 1,
    }
    assert main_check([str(out)]) == 0


def test_exif_rotated_image_is_stored_as_shown(export_setup):
    assert run_export(export_setup) == 0
    record = [r for r in read_records(export_setup["out"]) if r["annotation_id"] == 21][0]
    with Image.open(export_setup["out"] / "images" / record["img_path"]) as stored:
        assert stored.size == (640, 480)
        assert stored.getexif().get(0x0112, 1) == 1
    with Image.open(export_setup["media"] / "photos" / "phone.jpg") as original:
        from PIL import ImageOps

        upright = np.asarray(ImageOps.exif_transpose(original).convert("RGB"), dtype=np.int16)
    with Image.open(export_setup["out"] / "images" / record["img_path"]) as stored:
        assert np.abs(np.asarray(stored.convert("RGB"), dtype=np.int16) - upright).mean() < 1.0


def test_stored_image_of_another_size_is_rescaled_to_the_shown_size(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "big.png").write_bytes(image_bytes(1280, 960, seed=3))
    result = [polygon_item("p", POLY, width=640, height=480)]
    tasks = [task(7, "/data/local-files/?d=big.png", [annotation(70, 7, result)])]
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    out = tmp_path / "out"
    argv = ["--from-json", str(tmp_path / "e.json"), "--images", str(tmp_path / "img"), "--out", str(out)]
    assert main_export(argv) == 0
    (record,) = read_records(out)
    assert (record["width"], record["height"]) == (640, 480)
    with Image.open(out / "images" / record["img_path"]) as stored:
        assert stored.size == (640, 480)
    assert main_check([str(out)]) == 0


def test_boxes_as_masks_and_accepted_predictions_options(export_setup):
    assert run_export(export_setup, "--boxes-as-masks") == 0
    kinds = {r["region_id"]: r["kind"] for r in read_records(export_setup["out"])}
    assert kinds["rect1"] == "rectangle"
    assert main_check([str(export_setup["out"])]) == 0


def test_reexport_drops_annotations_deleted_since(export_setup):
    assert run_export(export_setup) == 0
    tasks = json.loads(export_setup["json"].read_text())
    tasks[1]["annotations"] = []
    export_setup["json"].write_text(json.dumps(tasks))
    assert run_export(export_setup) == 0
    records = read_records(export_setup["out"])
    assert {r["annotation_id"] for r in records} == {11}
    assert sorted(p.name for p in (export_setup["out"] / "images").iterdir()) == ["task-1.png"]


def test_missing_image_is_a_reported_skip(export_setup):
    (export_setup["media"] / "photos" / "phone.jpg").unlink()
    assert run_export(export_setup) == 0
    report = json.loads((export_setup["out"] / "report.json").read_text())
    assert any(reason.startswith("image unavailable") for reason in report["skipped_by_reason"])
    assert main_check([str(export_setup["out"])]) == 0


@pytest.mark.parametrize("content, message", [
    ("not json", "not a JSON file"),
    ('{"a": 1}', "expected Label Studio's JSON export"),
    ('[{"image": "x.png", "label": []}]', "JSON_MIN"),
])
def test_bad_export_file_is_one_line_error(tmp_path, capsys, content, message):
    (tmp_path / "e.json").write_text(content)
    argv = ["--from-json", str(tmp_path / "e.json"), "--images", str(tmp_path), "--out", str(tmp_path / "o")]
    code = main_export(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1


def test_from_json_without_images_is_an_error(tmp_path, capsys):
    (tmp_path / "e.json").write_text("[]")
    assert main_export(["--from-json", str(tmp_path / "e.json"), "--out", str(tmp_path / "o")]) == 2
    assert "--images" in capsys.readouterr().err


def test_commands_through_python_m_backend(export_setup):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    argv = ["--from-json", str(export_setup["json"]), "--images", str(export_setup["media"]),
            "--out", str(export_setup["out"])]
    done = subprocess.run([sys.executable, "-m", "backend", "export", *argv], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "3 records" in done.stdout
    done = subprocess.run([sys.executable, "-m", "backend", "check-stage3", str(export_setup["out"])],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stdout + done.stderr


def test_malformed_tasks_are_reported_not_fatal(tmp_path, capsys):
    garbage = {"id": "x", "type": "polygonlabels", "original_width": 10, "original_height": 10,
               "value": {"points": "zz", "polygonlabels": ["cat"]}}
    tasks = [
        {"id": 1, "data": None, "annotations": [annotation(1, 1, [polygon_item("p", POLY)])]},
        {"id": 2, "data": {"image": "a.png"}, "annotations": [annotation(2, 2, [garbage]), {"id": None}, "junk"]},
    ]
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    argv = ["--from-json", str(tmp_path / "e.json"), "--images", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main_export(argv) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["records"] == 0 and report["skipped"] == 2
    assert main_check([str(tmp_path / "o")]) == 1  # an empty dataset is a problem, not OK
    assert "the dataset is empty" in capsys.readouterr().out
