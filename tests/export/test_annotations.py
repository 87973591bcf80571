"""Label Studio results -> pixel regions: shapes, expressions, pairing, skips."""

from __future__ import annotations

import numpy as np
import pytest

from backend.export.annotations import ExportOptions, read_regions
from backend.export.stage3 import coco_rle_from_mask
from tests.export.helpers import (
    brush_item,
    decode_record_mask,
    iou,
    percent_to_px,
    polygon_item,
    rasterize_polygon,
    rect_item,
    text_item,
)

SQUARE = [(10, 10), (60, 10), (60, 70), (10, 70)]


def by_id(regions):
    return {region.region_id: region for region in regions}


def reasons(skips):
    return {skip.region_id: skip.reason for skip in skips}


def test_polygon_percent_to_pixels_bbox_and_label_expression():
    regions, skips = read_regions([polygon_item("p1", SQUARE, label="dog")], ExportOptions())
    assert skips == []
    (region,) = regions
    assert (region.kind, region.width, region.height) == ("polygon", 320, 240)
    assert region.polygons == [[32.0, 24.0, 192.0, 24.0, 192.0, 168.0, 32.0, 168.0]]
    assert region.bbox == pytest.approx((32.0, 24.0, 192.0, 168.0))
    assert region.expressions == ["dog"]


def test_region_text_wins_over_label_and_label_prompt_is_used_without_text():
    result = [
        polygon_item("p1", SQUARE, label="cat"),
        text_item("p1", ["the grey cat on the left", "  ", "a sleeping cat"]),
        polygon_item("p2", [(70, 10), (90, 10), (90, 40)], label="cat"),
        polygon_item("p3", [(70, 50), (90, 50), (90, 90)], label="dog"),
    ]
    regions = by_id(read_regions(result, ExportOptions(label_prompts={"cat": "a cat"}))[0])
    assert regions["p1"].expressions == ["the grey cat on the left", "a sleeping cat"]
    assert regions["p2"].expressions == ["a cat"]
    assert regions["p3"].expressions == ["dog"]


def test_brush_mask_is_decoded_losslessly_and_bbox_is_tight():
    mask = np.zeros((240, 320), dtype=bool)
    mask[50:120, 100:180] = True
    mask[60:70, 110:120] = False  # a hole
    mask[200, 5] = True  # a lone pixel far away
    regions, skips = read_regions([brush_item("b1", mask)], ExportOptions())
    assert skips == []
    (region,) = regions
    assert np.array_equal(region.mask, mask)
    assert region.bbox == (5.0, 50.0, 180.0, 201.0)
    record_mask = [coco_rle_from_mask(region.mask)]
    decoded = decode_record_mask({"mask": record_mask, "height": 240, "width": 320})
    assert np.array_equal(decoded > 0, mask)


def test_rectangle_alone_is_skipped_unless_boxes_as_masks():
    result = [rect_item("r1", (10, 20, 30, 40)), text_item("r1", ["a box"], {"x": 10, "y": 20})]
    regions, skips = read_regions(result, ExportOptions())
    assert regions == []
    assert "rectangle without a mask" in reasons(skips)["r1"]
    regions, skips = read_regions(result, ExportOptions(boxes_as_masks=True))
    (region,) = regions
    assert region.bbox == pytest.approx((32.0, 48.0, 128.0, 144.0))
    assert region.expressions == ["a box"]
    decoded = decode_record_mask({"mask": region.polygons, "height": 240, "width": 320})
    expected = np.zeros((240, 320), bool)
    expected[48:144, 32:128] = True
    assert iou(decoded > 0, expected) > 0.99


def test_rotated_rectangle_bbox_is_the_hull():
    result = [rect_item("r1", (25, 25, 25, 25), rotation=90)]
    (region,), _ = read_regions(result, ExportOptions(boxes_as_masks=True))
    # 80x60 px box rotated 90 degrees clockwise around its top-left corner (80, 60)
    assert region.bbox == pytest.approx((20.0, 60.0, 80.0, 140.0))


def test_rectangle_lends_its_text_to_the_overlapping_mask_region():
    result = [
        rect_item("r1", (10, 10, 50, 60), label="cat"),
        text_item("r1", ["cat described on the box"], {"x": 10, "y": 10, "width": 50, "height": 60}),
        polygon_item("p1", [(11, 11), (59, 12), (58, 69), (12, 68)], label="cat"),
        rect_item("r2", (70, 70, 10, 10), label="dog"),
    ]
    regions, skips = read_regions(result, ExportOptions())
    (region,) = regions
    assert region.region_id == "p1"
    assert region.expressions == ["cat described on the box"]
    assert set(reasons(skips)) == {"r2"}  # r1 was used, r2 has no mask


def test_relation_pairs_even_without_overlap_and_labels_must_agree_for_iou_pairing():
    result = [
        rect_item("r1", (0, 0, 10, 10), label="cat"),
        text_item("r1", ["from the related box"]),
        polygon_item("p1", [(50, 50), (90, 50), (90, 90)], label="cat"),
        {"from_id": "r1", "to_id": "p1", "type": "relation", "direction": "right", "labels": []},
        rect_item("r2", (10, 10, 50, 60), label="dog"),
        text_item("r2", ["a dog box"]),
        polygon_item("p2", [(10, 10), (60, 10), (60, 70), (10, 70)], label="cat"),
    ]
    regions = by_id(read_regions(result, ExportOptions())[0])
    assert regions["p1"].expressions == ["from the related box"]
    assert regions["p2"].expressions == ["cat"]  # the dog box does not pair with a cat polygon


def test_skips_with_reasons():
    mask = np.zeros((240, 320), dtype=bool)
    result = [
        polygon_item("p1", [(10, 10), (20, 20)]),
        brush_item("b1", mask),
        polygon_item("p2", SQUARE, origin="prediction"),
        text_item("p2", ["predicted text"], origin="prediction"),
        polygon_item("p3", SQUARE, origin="prediction-changed"),
        {"id": "t", "from_name": "prompt", "to_name": "image", "type": "textarea", "value": {"text": ["x"]}},
        polygon_item("p4", [(110, 110), (120, 110), (120, 120)]),
    ]
    regions, skips = read_regions(result, ExportOptions())
    assert [r.region_id for r in regions] == ["p3"]
    why = reasons(skips)
    assert "fewer" in why["p1"] or "point" in why["p1"]
    assert "empty" in why["b1"]
    assert "prediction accepted unchanged" in why["p2"]
    assert "outside the image" in why["p4"]
    assert "t" not in why  # a global prompt TextArea is not a region
    regions, _ = read_regions(result, ExportOptions(include_accepted_predictions=True))
    assert {r.region_id: r.from_prediction for r in regions} == {"p2": True, "p3": False}


def test_size_override_rescales_percent_geometry_and_brush():
    mask = np.zeros((24, 32), dtype=bool)
    mask[5:15, 10:20] = True
    result = [polygon_item("p1", SQUARE, width=32, height=24), brush_item("b1", mask)]
    regions = by_id(read_regions(result, ExportOptions(), size=(320, 240))[0])
    assert regions["p1"].bbox == pytest.approx((32.0, 24.0, 192.0, 168.0))
    assert regions["b1"].mask.shape == (240, 320)
    assert regions["b1"].bbox == (100.0, 50.0, 200.0, 150.0)


def test_polygon_mask_matches_independent_rasterisation():
    points = [(12.5, 8.25), (70.1, 15.3), (88.8, 60.7), (40.2, 91.9), (8.3, 55.5)]
    (region,), _ = read_regions([polygon_item("p", points, width=640, height=480)], ExportOptions())
    decoded = decode_record_mask({"mask": region.polygons, "height": 480, "width": 640})
    expected = rasterize_polygon(percent_to_px(points, 640, 480), 480, 640)
    assert iou(decoded > 0, expected) >= 0.99


def test_backend_shaped_prediction_multi_part_polygon_and_brush_take_the_box_text():
    """As backend/studio/results/assemble.py writes them: text on the rectangle, one polygon per part, a brush."""
    mask = np.zeros((240, 320), dtype=bool)
    mask[24:168, 32:150] = True
    mask[150:168, 170:192] = True
    result = [
        rect_item("r1", (10, 10, 50, 60), label="cat"),
        polygon_item("p-main", [(10, 10), (46.9, 10), (46.9, 70), (10, 70)], label="cat"),
        polygon_item("p-small", [(53, 62.5), (60, 62.5), (60, 70), (53, 70)], label="cat"),
        brush_item("b1", mask, label="cat"),
        text_item("r1", ["the tabby cat"], {"x": 10, "y": 10, "width": 50, "height": 60}),
        rect_item("r-table", (0, 0, 100, 100), label="table"),
        polygon_item("p-cup", [(80, 80), (85, 80), (85, 85)], label="cup"),
    ]
    regions, skips = read_regions(result, ExportOptions())
    found = by_id(regions)
    assert set(found) == {"p-main+p-small", "b1", "p-cup"}
    merged = found["p-main+p-small"]
    assert len(merged.polygons) == 2 and merged.expressions == ["the tabby cat"]
    assert merged.bbox == pytest.approx((32.0, 24.0, 192.0, 168.0))
    assert found["b1"].expressions == ["the tabby cat"]
    assert found["p-cup"].expressions == ["cup"]  # inside the table box, but not the table
    assert reasons(skips) == {"r-table": "rectangle without a mask (use --boxes-as-masks to keep it)"}
    decoded = decode_record_mask({"mask": merged.polygons, "height": 240, "width": 320})
    assert decoded.max() == 1 and iou(decoded > 0, mask) > 0.99


def test_region_on_an_image_rotated_in_the_editor_is_skipped():
    item = polygon_item("p", SQUARE)
    item["image_rotation"] = 90
    regions, skips = read_regions([item], ExportOptions())
    assert regions == [] and "image_rotation=90" in skips[0].reason


def test_malformed_values_are_skipped_not_raised():
    result = [
        polygon_item("p1", [("a", "b"), (1, 2), (3, 4)]),
        {**rect_item("r1", (1, 2, 3, 4)), "value": {"x": "left", "rectanglelabels": ["cat"]}},
        {**brush_item("b1", np.ones((4, 4), bool)), "value": {"format": "rle", "rle": [1, 2, 3], "brushlabels": []}},
        polygon_item("ok", SQUARE),
    ]
    regions, skips = read_regions(result, ExportOptions(boxes_as_masks=True))
    assert [r.region_id for r in regions] == ["ok"]
    assert set(reasons(skips)) == {"p1", "r1", "b1"}
