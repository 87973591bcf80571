"""backend/studio/results: result dicts shaped as Label Studio 1.23 accepts them (docs/label-studio.md)."""

from __future__ import annotations

from itertools import count
from pathlib import Path

import cv2
import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface

from backend.studio.geometry import brush_rle_to_mask, polygons_to_mask
from backend.studio.labeling import parse_label_config
from backend.studio.results import (
    BrushLabelsResult,
    PolygonLabelsResult,
    PolygonOptions,
    RectangleLabelsResult,
    RegionTextAreaResult,
    TextAreaResult,
    anchor_shape,
    new_region_id,
    prediction_entry,
    region_results,
    result_box,
    result_labels,
    result_mask,
    result_polygon,
    result_text,
)

ALL_IN_ONE = (Path(__file__).resolve().parents[2] / "label_config" / "all_in_one.xml").read_text()
COMMON_KEYS = {"id", "from_name", "to_name", "type", "original_width", "original_height",
               "image_rotation", "value", "readonly"}


def blob_mask(height=240, width=320) -> np.ndarray:
    canvas = np.zeros((height, width), np.uint8)
    cv2.ellipse(canvas, (100, 120), (60, 40), 0, 0, 360, 1, -1)
    cv2.circle(canvas, (100, 120), 12, 0, -1)  # a hole
    cv2.rectangle(canvas, (220, 30), (290, 90), 1, -1)  # a second part
    return canvas.astype(bool)


def test_rectangle_matches_reference_shape():
    result = RectangleLabelsResult("label", "image", 320, 240).build(
        (32, 48, 128, 144), "cat", score=0.87, region_id="a5db44a1e8")
    assert result == {
        "id": "a5db44a1e8", "from_name": "label", "to_name": "image",
        "type": "rectanglelabels", "score": 0.87, "original_width": 320,
        "original_height": 240, "image_rotation": 0, "readonly": False,
        "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0, "rotation": 0,
                  "rectanglelabels": ["cat"]}}
    assert result_box(result) == pytest.approx((32, 48, 128, 144))
    assert result_labels(result) == ["cat"]


def test_rectangle_clips_to_image_and_clamps_score():
    result = RectangleLabelsResult("b", "image", 100, 50).build((-10, 10, 150, 60), "x",
                                                                score=1.02)
    value = result["value"]
    assert (value["x"], value["y"], value["width"]) == (0, 20, 100)
    assert value["y"] + value["height"] == pytest.approx(100)
    assert result["score"] == 1.0
    no_score = RectangleLabelsResult("b", "image", 100, 50).build((0, 0, 1, 1), "x")
    assert "score" not in no_score and len(no_score["id"]) == 10


def test_polygon_matches_reference_shape():
    result = PolygonLabelsResult("poly", "image", 320, 240).build(
        [(160, 120), (256, 120), (256, 192), (160, 192)], "cat", score=0.8, region_id="1b33f29711")
    assert set(result) == COMMON_KEYS | {"score"}
    assert result["type"] == "polygonlabels"
    assert result["value"] == {"points": [[50.0, 50.0], [80.0, 50.0], [80.0, 80.0], [50.0, 80.0]],
                               "closed": True, "polygonlabels": ["cat"]}
    assert result_polygon(result) == pytest.approx(
        np.array([[160, 120], [256, 120], [256, 192], [160, 192]]))
    with pytest.raises(ValueError, match="3 points"):
        PolygonLabelsResult("poly", "image", 320, 240).build([(0, 0), (1, 1)], "cat")


def test_polygons_from_mask_one_per_part_and_rasterise_back():
    mask = blob_mask()
    builder = PolygonLabelsResult("poly", "image", 320, 240, tolerance_px=1.0, min_area_px=16)
    results = builder.build_from_mask(mask, "cat", score=0.5)
    assert len(results) == 2
    assert len({r["id"] for r in results}) == 2
    for result in results:
        assert len(result["value"]["points"]) >= 3
        assert all(0 <= c <= 100 for point in result["value"]["points"] for c in point)
    back = polygons_to_mask([result_polygon(r) for r in results], 240, 320)
    assert (back & mask).sum() / (back | mask).sum() >= 0.95
    assert not back[120, 100], "the hole stays a hole"
    assert builder.build_from_mask(np.zeros((240, 320), bool), "cat") == []
    with pytest.raises(ValueError, match="image size"):
        builder.build_from_mask(np.zeros((10, 10), bool), "cat")


def test_brush_decodes_to_the_image_sized_mask():
    mask = blob_mask()
    result = BrushLabelsResult("brush", "image", 320, 240).build(mask, "cat", score=0.7)
    assert set(result) == COMMON_KEYS | {"score"}
    assert result["type"] == "brushlabels"
    assert result["value"]["format"] == "rle" and result["value"]["brushlabels"] == ["cat"]
    decoded = brush_rle_to_mask(result["value"]["rle"], result["original_width"],
                                result["original_height"])
    assert decoded.shape == (240, 320) and np.array_equal(decoded, mask)
    assert np.array_equal(result_mask(result), mask)
    assert BrushLabelsResult("brush", "image", 320, 240).build(
        np.zeros((240, 320), bool), "cat") is None


def test_region_textarea_shares_the_shape_id_and_geometry():
    box = RectangleLabelsResult("label", "image", 320, 240).build((32, 48, 128, 144), "cat")
    text = RegionTextAreaResult("desc", "image", 320, 240).attach("a grey cat", box)
    assert text["id"] == box["id"] and text["type"] == "textarea"
    assert text["value"] == {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0,
                             "rotation": 0, "text": ["a grey cat"]}
    assert set(text) == COMMON_KEYS
    assert result_text(text) == "a grey cat"
    assert result_box(text) == pytest.approx((32, 48, 128, 144))


def test_whole_image_textarea():
    result = TextAreaResult("caption", "image").build("Two dogs play.")
    assert result["from_name"] == "caption" and result["to_name"] == "image"
    assert result["type"] == "textarea" and result["value"] == {"text": ["Two dogs play."]}


def test_region_results_for_every_control_with_linked_text():
    target = parse_label_config(ALL_IN_ONE).target("image")
    ids = (f"id{i:08d}" for i in count())
    labels = {"box": "dog", "polygon": "dog", "brush": "dog"}
    results = region_results(target, 320, 240, labels=labels, box=(20, 30, 300, 200),
                             mask=blob_mask(), score=0.9, text="a dog",
                             polygon=PolygonOptions(tolerance_px=1.0, min_area_px=16),
                             new_id=lambda: next(ids))
    types = [r["type"] for r in results]
    assert types == ["rectanglelabels", "polygonlabels", "polygonlabels", "brushlabels",
                     "textarea"]
    assert len({r["id"] for r in results[:4]}) == 4
    rect, text = results[0], results[-1]
    assert text["from_name"] == "description" and text["id"] == rect["id"]
    assert text["value"]["text"] == ["a dog"] and text["value"]["x"] == rect["value"]["x"]
    assert all(r.get("score") == 0.9 for r in results[:4])


def test_region_results_without_mask_or_box():
    target = parse_label_config(ALL_IN_ONE).target("image")
    only_box = region_results(target, 320, 240, labels={"box": "car", "polygon": "car"},
                              box=(0, 0, 10, 10), mask=np.zeros((240, 320), bool))
    assert [r["type"] for r in only_box] == ["rectanglelabels"]
    from_mask = region_results(target, 320, 240, labels={"box": "car"}, mask=blob_mask())
    assert result_box(from_mask[0]) == pytest.approx((40, 30, 291, 161))
    assert region_results(target, 320, 240, labels={}, box=(0, 0, 5, 5), text="x") == []
    polygon_only = region_results(target, 320, 240, labels={"polygon": "car"},
                                  mask=blob_mask(), text="a car")
    assert polygon_only[-1]["id"] == polygon_only[0]["id"]
    assert "points" in polygon_only[-1]["value"]


def test_anchor_prefers_rectangle_then_polygon_then_brush():
    shapes = [{"id": "b", "type": "brushlabels"}, {"id": "p", "type": "polygonlabels"}]
    assert anchor_shape(shapes)["id"] == "p"
    assert anchor_shape([*shapes, {"id": "r", "type": "rectanglelabels"}])["id"] == "r"
    assert anchor_shape([]) is None


def test_prediction_entry_and_sdk_validation():
    target = parse_label_config(ALL_IN_ONE).target("image")
    results = region_results(target, 320, 240, labels={"box": "dog", "polygon": "dog",
                                                        "brush": "object"},
                             box=(20, 30, 300, 200), mask=blob_mask(), score=0.6, text="a dog")
    results += region_results(target, 320, 240, labels={"box": "person"},
                              box=(1, 1, 50, 50), score=0.8)
    results.append(TextAreaResult("caption", "image").build("A dog."))
    entry = prediction_entry(results, "nextchat-test-1")
    assert set(entry) == {"model_version", "score", "result"}
    assert entry["model_version"] == "nextchat-test-1"
    region_scores = [r["score"] for r in results if "score" in r]
    assert entry["score"] == pytest.approx(sum(region_scores) / len(region_scores))
    errors = LabelInterface(ALL_IN_ONE).validate_prediction(entry, return_errors=True)
    assert errors == []


def test_sdk_rejects_a_label_outside_the_config():
    """The SDK check used above is not vacuous."""
    bad = RectangleLabelsResult("box", "image", 320, 240).build((0, 0, 10, 10), "unicorn")
    errors = LabelInterface(ALL_IN_ONE).validate_prediction(prediction_entry([bad], "v"),
                                                            return_errors=True)
    assert errors


def test_prediction_entry_scores():
    assert prediction_entry([], "v") == {"model_version": "v", "score": 0.0, "result": []}
    assert prediction_entry([], "v", score=3)["score"] == 1.0


def test_new_region_ids_are_unique():
    ids = {new_region_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 10 for i in ids)


def test_result_mask_of_rectangle_and_rotated_rectangle():
    rect = RectangleLabelsResult("b", "image", 10, 8).build((3, 2, 8, 6), "x")
    expected = np.zeros((8, 10), bool)
    expected[2:6, 3:8] = True
    assert np.array_equal(result_mask(rect), expected)
    box = RectangleLabelsResult("b", "image", 10, 8).build((3.2, 2.2, 7.8, 5.8), "x")
    rotated = {**box, "value": {**box["value"], "rotation": 90}}
    # turned clockwise around (3.2, 2.2): x in [-0.4, 3.2], y in [2.2, 6.8]
    expected_rotated = np.zeros((8, 10), bool)
    expected_rotated[2:7, 0:3] = True
    assert np.array_equal(result_mask(rotated), expected_rotated)
    with pytest.raises(ValueError, match="no geometry"):
        result_mask({"id": "t", "original_width": 10, "original_height": 8,
                     "value": {"text": ["x"]}})
