"""Stage-3 export of annotations made in a real Label Studio 1.23 (started by tests/ls_fixture.py).

Annotations are created, updated, deleted and cancelled through the API; the project is exported
through the API; the exporter runs on that export (`--from-project`, and `--from-json` on the same
JSON), and live mode on the webhooks Label Studio really sent. Decoded masks must match the exported
regions rasterised independently (IoU >= 0.99), bboxes and expressions must be right.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from backend.export.check import check_stage3_dir
from backend.export.cli import main_export
from backend.export.live import LiveExporter
from tests.export.helpers import CONFIG_XML, decode_record_mask, iou, read_records
from tests.export.ls_scenario import (
    UPDATED_TEXT,
    build_scenario,
    dog_mask,
    expected_mask,
    polygon_extent,
)

pytestmark = pytest.mark.e2e


def records_by_region(out_dir) -> dict:
    return {(r["annotation_id"], r["region_id"]): r for r in read_records(out_dir)}


def assert_export_right(scenario, out_dir) -> None:
    """What a correct stage-3 folder for the scenario holds."""
    ids = scenario.annotation_ids
    records = records_by_region(out_dir)
    report = json.loads((out_dir / "report.json").read_text())
    street, phone = ids["street"], ids["phone"]
    expected_keys = {(street, "p-body+p-tail"), (street, "b-dog"), (street, "p-cat2"), (phone, "p-phone")}
    assert set(records) == expected_keys, report["skipped_by_reason"]
    assert records[(street, "p-body+p-tail")]["expressions"] == ["the tabby cat under the table"]
    assert records[(street, "b-dog")]["expressions"] == ["the brown dog", "dog lying on the right"]
    assert records[(street, "p-cat2")]["expressions"] == ["a cat"]  # <Label value="cat" prompt="a cat">
    assert records[(phone, "p-phone")]["expressions"] == [UPDATED_TEXT]
    for (annotation_id, region_ids), record in records.items():
        assert (record["width"], record["height"]) == (640, 480)
        decoded = decode_record_mask(record)
        expected = expected_mask(scenario.tasks, annotation_id, region_ids)
        assert iou(decoded > 0, expected) >= 0.99, region_ids
        if record["kind"] == "brush":
            assert np.array_equal(decoded > 0, dog_mask())  # lossless
            rows, cols = np.nonzero(expected)
            assert record["bbox"] == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        else:
            assert record["bbox"] == pytest.approx(polygon_extent(scenario.tasks, annotation_id, region_ids), abs=0.01)
    assert report["skipped_by_reason"] == {
        "rectangle without a mask (use --boxes-as-masks to keep it)": 1,
        "annotation cancelled (skipped by the annotator)": 1,
    }
    result = check_stage3_dir(out_dir)
    assert result.ok, result.problems


def assert_images_as_shown(scenario, out_dir) -> None:
    for record in read_records(out_dir):
        with Image.open(out_dir / "images" / record["img_path"]) as stored:
            shown = np.asarray(stored.convert("RGB"), dtype=np.int16)
        original = Image.open(io.BytesIO(scenario.images[record["task_id"]]))
        upright = np.asarray(ImageOps.exif_transpose(original).convert("RGB"), dtype=np.int16)
        assert shown.shape == upright.shape == (480, 640, 3)
        assert np.abs(shown - upright).mean() < 1.0


@pytest.fixture(scope="module")
def scenario(label_studio, tmp_path_factory):
    return build_scenario(label_studio.client(), tmp_path_factory.mktemp("ls-images"))


def test_export_from_project(scenario, label_studio, tmp_path, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.personal_access_token)  # a PAT: refresh exchange
    out = tmp_path / "stage3"
    assert main_export(["--from-project", str(scenario.project_id), "--out", str(out)]) == 0
    assert_export_right(scenario, out)
    assert_images_as_shown(scenario, out)


def test_export_from_json_export(scenario, label_studio, tmp_path):
    export, config = tmp_path / "export.json", tmp_path / "config.xml"
    export.write_text(json.dumps(scenario.tasks))
    config.write_text(CONFIG_XML)  # a JSON export has no labeling config: the label prompts come from here
    out = tmp_path / "stage3"
    media = label_studio.data_dir / "media"
    argv = ["--from-json", str(export), "--images", str(media), "--label-config", str(config), "--out", str(out)]
    assert main_export(argv) == 0
    assert_export_right(scenario, out)
    assert_images_as_shown(scenario, out)


def test_live_mode_on_the_webhooks_label_studio_sent(scenario, label_studio, tmp_path, monkeypatch):
    actions = [event["action"] for event in scenario.webhooks]
    assert {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"} <= set(actions)
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.api_key)
    out = tmp_path / "live"
    exporter = LiveExporter(out)  # the default loader: backend.images through LABEL_STUDIO_URL + key
    try:
        for event in scenario.webhooks:
            exporter.submit(event)
        assert exporter.flush(120)
    finally:
        exporter.close()
    assert_export_right(scenario, out)
    assert_images_as_shown(scenario, out)
