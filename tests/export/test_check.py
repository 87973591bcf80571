"""check-stage3 reads like the release's RESDataset and names what would break or mislead training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend.export.check import check_stage3_dir
from backend.export.cli import main_check
from backend.export.stage3 import coco_rle_from_mask
from tests.export.helpers import image_bytes


def good_record():
    return {"img_path": "a.png", "expressions": ["a cat"], "height": 40, "width": 60,
            "bbox": [10.0, 5.0, 30.0, 25.0], "mask": [[10, 5, 30, 5, 30, 25, 10, 25]]}


def write_dir(tmp_path, records, image=None):
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "images" / "a.png").write_bytes(image or image_bytes(60, 40))
    (tmp_path / "res.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path


def test_good_dir_passes_with_counts(tmp_path, capsys):
    mask = np.zeros((40, 60), bool)
    mask[5:25, 10:30] = True
    rle_record = {**good_record(), "mask": [coco_rle_from_mask(mask)]}
    write_dir(tmp_path, [good_record(), rle_record])
    assert main_check([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 records, 1 images, 2 expressions, masks: 1 polygon, 1 RLE, 800 mask pixels" in out


def bad(**changes):
    record = good_record()
    record.update(changes)
    return record


@pytest.mark.parametrize("record, message", [
    (bad(mask={"size": [40, 60], "counts": [0, 2400]}), "non-empty list"),
    (bad(mask=[{"size": [40, 61], "counts": [2440]}]), "size"),
    (bad(mask=[{"size": [40, 60], "counts": [0, 100]}]), "sum to"),
    (bad(mask=[[10, 5, 30, 25]]), "coordinates"),
    (bad(mask=[[0, 0, 1, 0, 0, 1]]), "no pixels"),
    (bad(bbox=[30, 5, 10, 25]), "x1 < x2"),
    (bad(bbox=[10, 5, 300, 25]), "outside"),
    (bad(expressions=[]), "expressions"),
    (bad(expressions=[" "]), "non-blank"),
    (bad(height=41), "record says 60x41"),
    (bad(img_path="b.png"), "not found"),
    (bad(img_path="../a.png"), "relative"),
    ({"img_path": "a.png"}, "missing field"),
    (bad(mask=[[40, 30, 50, 30, 50, 35]]), "does not fit"),
])
def test_problems_are_reported(tmp_path, record, message):
    write_dir(tmp_path, [good_record(), record])
    result = check_stage3_dir(tmp_path)
    assert len(result.problems) == 1, result.problems
    assert result.problems[0].startswith("line 2:") and message in result.problems[0]
    assert main_check([str(tmp_path)]) == 1


def test_exif_orientation_in_a_stored_image_is_a_problem(tmp_path):
    write_dir(tmp_path, [good_record()], image=image_bytes(60, 40, fmt="JPEG", orientation=3))
    (tmp_path / "images" / "a.png").rename(tmp_path / "images" / "a.jpg")
    (tmp_path / "res.jsonl").write_text(json.dumps({**good_record(), "img_path": "a.jpg"}) + "\n")
    (problem,) = check_stage3_dir(tmp_path).problems
    assert "EXIF orientation 3" in problem


def test_missing_res_jsonl_and_bad_lines(tmp_path, capsys):
    assert main_check([str(tmp_path)]) == 1
    (tmp_path / "res.jsonl").write_text("{not json\n\n")
    result = check_stage3_dir(tmp_path)
    assert len(result.problems) == 2
    assert main_check([str(tmp_path / "nope")]) == 2


def test_an_empty_dataset_is_reported_and_fails(tmp_path, capsys):
    write_dir(tmp_path, [])
    assert main_check([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "holds no records: the dataset is empty" in out and "OK" not in out.splitlines()[-1]
