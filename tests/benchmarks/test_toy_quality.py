"""benchmarks/toy_quality.py: its scoring rules on hand-made predictions, and the CLI end to end on a random
tiny checkpoint (one scene; the numbers are meaningless there, only the report's shape is checked)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from backend.studio.geometry import mask_to_polygons, pixel_box_to_percent, pixel_points_to_percent
from benchmarks import toy_quality as tq
from benchmarks.toy_metrics import Tally, categories_named, greedy_matches, names_category
from model.toy_world import make_scene


def region(box, mask, phrase=""):
    return SimpleNamespace(box=tuple(float(v) for v in box), mask=mask, score=1.0, phrase=phrase)


class Oracle:
    """Answers from a scene's ground truth; ``shift`` moves every grounded box right by that fraction of its width."""

    def __init__(self, scene, shift=0.0):
        self.scene, self.shift = scene, shift

    def ground(self, image, expression):
        found = [o for o in self.scene.objects if expression in (*o.expressions, o.category)]
        return [region((o.box[0] + dx, o.box[1], o.box[2] + dx, o.box[3]), o.mask, expression)
                for o in found for dx in [self.shift * (o.box[2] - o.box[0])]]

    def describe(self, image, box):
        return next(o.description for o in self.scene.objects if tuple(o.box) == tuple(box))

    def caption(self, image):
        return SimpleNamespace(text="", regions=[region(o.box, o.mask, o.description) for o in self.scene.objects])


@pytest.fixture(scope="module")
def scene():
    return make_scene(1000, 0)


def scored(measure, model, scene) -> dict:
    tally = Tally()
    measure(model, scene, tally)
    return {name: m["value"] for name, m in tally.report().items()}


def test_naming_a_category():
    assert categories_named("a red car next to a traffic light") == ["car", "traffic light"]
    assert names_category("the traffic light showing red", "traffic light")
    assert not names_category("a person with a ball", "ball")        # another category is named first
    assert not names_category("two cars", "car") and not names_category("a carpet", "car")  # whole words


def test_a_perfect_model_scores_one(scene):
    oracle = Oracle(scene)
    assert set(scored(tq.rec_and_masks, oracle, scene).values()) == {1.0}
    assert scored(tq.descriptions, oracle, scene) == {"describe_accuracy": 1.0}
    assert scored(tq.caption_recall, oracle, scene) == {"caption_recall": 1.0}
    grounding = scored(tq.category_grounding, oracle, scene)
    assert grounding == {"category_precision": 1.0, "category_recall": 1.0, "category_absent_empty": 1.0}


def test_a_box_shifted_below_iou_half_is_wrong(scene):
    metrics = scored(tq.rec_and_masks, Oracle(scene, shift=0.7), scene)  # box IoU 0.3 / 1.7
    assert metrics["rec_accuracy"] == 0.0 and 0.0 < metrics["rec_mean_iou"] < 0.5
    assert metrics["mask_miou"] == 1.0  # the masks were not shifted


def test_ciou_and_miou_differ():
    big, small = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    big[:10, :10], small[15:17, 15:17] = True, True
    objects = [SimpleNamespace(box=(0, 0, 10, 10), mask=big, category="ball", colour=None, size="big",
                               expressions=("the big ball",)),
               SimpleNamespace(box=(15, 15, 17, 17), mask=small, category="ball", colour=None, size="small",
                               expressions=("the small ball",))]
    model = SimpleNamespace(ground=lambda image, e: [region((0, 0, 10, 10), big)] if "big" in e else [])
    metrics = scored(tq.rec_and_masks, model, SimpleNamespace(image=None, objects=objects))
    assert metrics["mask_miou"] == 0.5 and metrics["rec_accuracy"] == 0.5
    assert metrics["rec_accuracy/size"] == 0.5 and "rec_accuracy/colour" not in metrics
    assert metrics["mask_ciou"] == round(100 / 104, 4)


def test_greedy_matching_is_one_to_one():
    truth = [(0, 0, 10, 10), (20, 0, 30, 10)]
    assert greedy_matches([(0, 0, 10, 10), (1, 0, 11, 10)], truth) == [(0, 0)]   # a duplicate is a false box
    assert greedy_matches([(0, 0, 10, 10)], truth, allowed=lambda i, j: j == 1) == []


class ReplayClient:
    """Answers /predict with the given Label Studio results."""

    def __init__(self, results):
        self.results = results

    def post(self, path, json):
        return SimpleNamespace(status_code=200, get_json=lambda: {"results": [{"result": self.results}]})


def ls_results(scene, labels) -> list[dict]:
    results = []
    for o in scene.objects:
        if o.category not in labels:
            continue
        results.append({"type": "rectanglelabels", "value": {**pixel_box_to_percent(o.box, scene.width, scene.height),
                                                             "rectanglelabels": [o.category]}})
        for ring in mask_to_polygons(o.mask):
            points = pixel_points_to_percent(ring, scene.width, scene.height)
            results.append({"type": "polygonlabels", "value": {"points": points, "polygonlabels": [o.category]}})
    return results


def test_backend_results_of_the_truth_score_one(scene):
    xml = tq.LABEL_CONFIG.read_text()
    labels = tq.config_labels(xml)
    assert {"person", "car", "dog", "traffic light"} <= set(labels)
    tally = Tally()
    tq.backend_scene(ReplayClient(ls_results(scene, labels)), xml, labels, scene, tally)
    metrics = tally.report()
    for name in ("backend_box_precision", "backend_box_recall", "backend_absent_empty"):
        assert metrics[name]["value"] == 1.0, name
    assert metrics["backend_polygon_ciou"]["value"] > 0.98


def test_bad_arguments_exit_two(tmp_path, capsys):
    for argv in (["--checkpoint", str(tmp_path / "missing")], ["--checkpoint", str(tmp_path), "--count", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            tq.main(argv)
        assert exit_info.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_end_to_end_on_a_random_checkpoint(tmp_path, capsys):
    from model.random_checkpoint import write_random_checkpoint

    checkpoint = write_random_checkpoint("tiny", tmp_path / "ckpt")
    capsys.readouterr()
    out = tmp_path / "report.json"
    assert tq.main(["--checkpoint", str(checkpoint), "--count", "1", "--threads", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    header, columns = printed.splitlines()[:2]
    assert "seed 1000" in header and "scenes 0..0" in header and columns.split() == ["metric", "value", "count"]
    report = json.loads(out.read_text())
    assert report["seed"] == 1000 and report["scenes"] == 1
    assert list(report["metrics"]) == tq.metric_names(report["labels"])
    for name, metric in report["metrics"].items():
        assert metric["value"] is None or 0.0 <= metric["value"] <= 1.0, name
        assert name in printed
    assert report["metrics"]["rec_accuracy"]["count"] == report["objects"] > 0
