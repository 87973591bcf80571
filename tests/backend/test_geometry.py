"""backend/studio/geometry.py: percent <-> pixels, mask <-> polygons, brush RLE, COCO RLE."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.studio import geometry as g

# docs/label-studio.md, result geometry: a 5x4 block at columns 3-7, rows 2-5 of a 10x8 image,
# as produced by label_studio_sdk's mask2rle and rendered by a real Label Studio 1.23.2.
REFERENCE_RLE = [0, 0, 1, 64, 57, 27, 254, 91, 0, 194, 127, 248, 76, 3, 9, 255, 225, 48, 12,
                 39, 255, 132, 192, 48, 159, 254, 87, 0, 0]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


# --------------------------------------------------------------------------- percent <-> pixels


def test_box_percent_matches_reference_example():
    value = g.pixel_box_to_percent((32, 48, 128, 144), 320, 240)
    assert value == pytest.approx({"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 0})


def test_box_round_trip_random_boxes():
    rng = np.random.default_rng(0)
    for _ in range(200):
        width, height = (int(v) for v in rng.integers(1, 4000, size=2))
        x0, x1 = sorted(rng.uniform(0, width, size=2))
        y0, y1 = sorted(rng.uniform(0, height, size=2))
        value = g.pixel_box_to_percent((x0, y0, x1, y1), width, height)
        back = g.rectangle_value_to_pixels(value, width, height)
        assert back == pytest.approx((x0, y0, x1, y1), abs=1e-6)


def test_box_is_clamped_and_sorted():
    value = g.pixel_box_to_percent((700, -20, -10, 100), 640, 480)
    assert value["x"] == 0 and value["y"] == 0
    assert value["x"] + value["width"] == pytest.approx(100)
    assert value["height"] == pytest.approx(100 / 480 * 100)
    for key in ("x", "y", "width", "height"):
        assert 0 <= value[key] <= 100


def test_clamp_percent():
    assert g.clamp_percent(-3) == 0
    assert g.clamp_percent(100.5) == 100
    assert g.clamp_percent(42.5) == 42.5
    assert g.clamp_percent(float("nan")) == 0


def test_rotated_rectangle_corners_turn_around_top_left():
    value = {"x": 10, "y": 10, "width": 20, "height": 10, "rotation": 90}
    corners = g.rectangle_value_to_corners(value, 100, 100)
    # width runs down the screen after a 90 degree clockwise turn around (10, 10)
    assert corners == pytest.approx(np.array([[10, 10], [10, 30], [0, 30], [0, 10]]), abs=1e-9)
    assert g.rectangle_value_to_pixels(value, 100, 100) == pytest.approx((0, 10, 10, 30))


def test_points_round_trip_and_clamp():
    points = [(0, 0), (320, 0), (160.25, 239.75)]
    percent = g.pixel_points_to_percent(points, 320, 240)
    assert percent[1] == [100.0, 0.0]
    assert g.percent_points_to_pixels(percent, 320, 240) == pytest.approx(np.array(points))
    assert g.pixel_points_to_percent([(-5, 300)], 320, 240) == [[0.0, 100.0]]


def test_bad_size_raises():
    with pytest.raises(ValueError, match="positive"):
        g.pixel_box_to_percent((0, 0, 1, 1), 0, 10)


# --------------------------------------------------------------------------- mask <-> polygons


def test_rectangle_mask_exact_round_trip():
    mask = np.zeros((60, 80), bool)
    mask[10:50, 20:70] = True
    polygons = g.mask_to_polygons(mask, tolerance_px=0, min_area_px=0)
    assert len(polygons) == 1 and len(polygons[0]) == 4
    assert np.array_equal(g.polygons_to_mask(polygons, 60, 80), mask)
    assert g.mask_to_box(mask) == (20.0, 10.0, 70.0, 50.0)


def test_box_to_mask_takes_pixels_whose_centre_is_inside():
    expected = np.zeros((8, 10), bool)
    expected[2:6, 3:8] = True
    assert np.array_equal(g.box_to_mask((3, 2, 8, 6), 8, 10), expected)
    assert np.array_equal(g.box_to_mask((2.6, 1.6, 8.4, 6.4), 8, 10), expected)
    # the same box as a polygon, exactly on pixel edges or slightly inset: same pixels
    exact = np.array([[3, 2], [8, 2], [8, 6], [3, 6]])
    inset = np.array([[3.4, 2.4], [7.6, 2.4], [7.6, 5.6], [3.4, 5.6]])
    assert np.array_equal(g.polygons_to_mask([exact], 8, 10), expected)
    assert np.array_equal(g.polygons_to_mask([inset[::-1]], 8, 10), expected)


def test_polygons_to_mask_unites_overlapping_polygons_and_clips():
    first = np.array([[0, 0], [6, 0], [6, 6], [0, 6]])
    second = first + 3
    mask = g.polygons_to_mask([first, second, np.array([[-5, -5], [1, -5], [1, 1]])], 10, 10)
    assert mask[4, 4] and mask[7, 7] and mask[1, 1]
    assert mask.sum() == 36 + 36 - 9
    assert not g.polygons_to_mask([np.array([[0, 0], [5, 5]])], 10, 10).any()


def test_triangle_pixels_by_centre():
    triangle = np.array([[0, 0], [10, 0], [0, 10]])
    mask = g.polygons_to_mask([triangle], 10, 10)
    rows, cols = np.mgrid[0:10, 0:10]
    assert np.array_equal(mask, (rows + 0.5) + (cols + 0.5) < 10)


def disc_with_holes() -> np.ndarray:
    canvas = np.zeros((200, 220), np.uint8)
    cv2.circle(canvas, (110, 100), 85, 1, -1)
    cv2.circle(canvas, (125, 85), 30, 0, -1)
    cv2.rectangle(canvas, (50, 110), (75, 140), 0, -1)
    return canvas.astype(bool)


def test_mask_with_holes_round_trip():
    mask = disc_with_holes()
    polygons = g.mask_to_polygons(mask, tolerance_px=1.0, min_area_px=16)
    assert len(polygons) == 1, "holes are bridged into the outer ring, not separate polygons"
    back = g.polygons_to_mask(polygons, *mask.shape)
    assert iou(back, mask) >= 0.95
    assert not back[85, 125] and not back[125, 62], "the holes stay empty"
    assert back[100, 40]


def test_two_parts_give_two_polygons_largest_first():
    mask = np.zeros((100, 120), bool)
    mask[10:30, 10:40] = True
    cv2.circle(mask.view(np.uint8), (85, 65), 25, 1, -1)
    polygons = g.mask_to_polygons(mask, tolerance_px=1.0)
    assert len(polygons) == 2
    assert all(len(polygon) >= 3 for polygon in polygons)
    assert cv2.contourArea(polygons[0].astype(np.float32)) > cv2.contourArea(
        polygons[1].astype(np.float32))
    assert iou(g.polygons_to_mask(polygons, 100, 120), mask) >= 0.95


def test_specks_and_small_holes_are_dropped():
    mask = np.zeros((50, 50), bool)
    mask[5:45, 5:45] = True
    mask[20, 20] = False  # a one-pixel hole
    mask[2, 48] = True  # a one-pixel speck outside
    polygons = g.mask_to_polygons(mask, tolerance_px=0, min_area_px=4)
    assert len(polygons) == 1 and len(polygons[0]) == 4
    assert g.polygons_to_mask(polygons, 50, 50)[20, 20], "hole below min area is filled"


def test_tolerance_reduces_vertices_and_keeps_shape():
    mask = np.zeros((300, 300), np.uint8)
    cv2.circle(mask, (150, 150), 120, 1, -1)
    fine = g.mask_to_polygons(mask.astype(bool), tolerance_px=0.5)[0]
    coarse = g.mask_to_polygons(mask.astype(bool), tolerance_px=3.0)[0]
    assert len(coarse) < len(fine)
    assert iou(g.polygons_to_mask([coarse], 300, 300), mask.astype(bool)) >= 0.95


def test_empty_mask_and_tiny_mask():
    assert g.mask_to_polygons(np.zeros((10, 10), bool)) == []
    assert g.mask_to_box(np.zeros((10, 10), bool)) is None
    tiny = np.zeros((10, 10), bool)
    tiny[4:6, 4:6] = True  # outline encloses 1.5 * 1.5 pixels: below the default 16
    assert g.mask_to_polygons(tiny) == []
    assert len(g.mask_to_polygons(tiny, min_area_px=0)[0]) >= 3


def test_outline_runs_a_quarter_pixel_inside_the_boundary_pixels():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3:7] = True  # columns 3..6 cover x in [3, 7), rows 2..4 cover y in [2, 5)
    polygon = g.mask_to_polygons(mask, tolerance_px=0, min_area_px=0)[0]
    assert polygon.min(axis=0) == pytest.approx([3.25, 2.25])
    assert polygon.max(axis=0) == pytest.approx([6.75, 4.75])


def test_random_masks_round_trip_exactly_without_simplification():
    rng = np.random.default_rng(3)
    for _ in range(40):
        canvas = np.zeros((90, 110), np.uint8)
        for _ in range(4):  # overlapping filled and cut-out ellipses: parts, holes, islands
            centre = (int(rng.integers(10, 100)), int(rng.integers(10, 80)))
            axes = (int(rng.integers(2, 30)), int(rng.integers(2, 30)))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                        int(rng.integers(0, 2)), -1)
        mask = canvas.astype(bool)
        polygons = g.mask_to_polygons(mask, tolerance_px=0, min_area_px=0)
        assert all(len(polygon) >= 3 for polygon in polygons)
        assert np.array_equal(g.polygons_to_mask(polygons, 90, 110), mask)


# --------------------------------------------------------------------------- brush and COCO RLE


def test_brush_rle_decodes_reference_example():
    mask = g.brush_rle_to_mask(REFERENCE_RLE, width=10, height=8)
    expected = np.zeros((8, 10), bool)
    expected[2:6, 3:8] = True
    assert mask.shape == (8, 10)
    assert np.array_equal(mask, expected)


def test_brush_rle_round_trip_random_mask():
    rng = np.random.default_rng(1)
    mask = rng.random((37, 53)) > 0.6
    rle = g.mask_to_brush_rle(mask)
    assert all(isinstance(v, int) for v in rle)
    decoded = g.brush_rle_to_mask(rle, width=53, height=37)
    assert decoded.shape == (37, 53)
    assert np.array_equal(decoded, mask)


def test_brush_rle_encodes_255_alpha():
    from label_studio_sdk.converter.brush import decode_rle

    mask = np.zeros((4, 5), bool)
    mask[1, 2] = True
    flat = decode_rle(g.mask_to_brush_rle(mask)).reshape(4, 5, 4)
    assert flat[1, 2, 3] == 255 and flat[0, 0, 3] == 0


def test_brush_rle_with_wrong_size_is_rejected():
    rle = g.mask_to_brush_rle(np.ones((8, 10), bool))
    with pytest.raises(ValueError, match="expected"):
        g.brush_rle_to_mask(rle, width=10, height=9)


def test_coco_rle_round_trips():
    from model.overlay import encode_rle  # the one COCO RLE encoder (model CLI, backend alike)

    mask = disc_with_holes()
    rle = encode_rle(mask)
    assert rle["size"] == [200, 220] and isinstance(rle["counts"], str)
    assert np.array_equal(g.coco_rle_to_mask(rle), mask)
    assert np.array_equal(g.coco_rle_to_mask({**rle, "counts": rle["counts"].encode()}), mask)


def test_coco_uncompressed_counts():
    # column-major runs: 2 background, 3 foreground, rest background, in a 3x3 image
    mask = g.coco_rle_to_mask({"size": [3, 3], "counts": [2, 3, 4]})
    expected = np.zeros((3, 3), bool)
    expected.T.flat[2:5] = True
    assert np.array_equal(mask, expected)


def winding_number(polygon: np.ndarray, x: float, y: float) -> int:
    """How many times ``polygon`` winds around (x, y): what the canvas non-zero rule uses."""
    angles = np.arctan2(polygon[:, 1] - y, polygon[:, 0] - x)
    turns = np.diff(np.append(angles, angles[0]))
    turns = (turns + np.pi) % (2 * np.pi) - np.pi
    return round(turns.sum() / (2 * np.pi))


def test_bridged_hole_is_empty_under_the_non_zero_rule_too():
    """Label Studio draws polygons on a canvas (non-zero fill): the hole must wind 0 times."""
    mask = disc_with_holes()
    (polygon,) = g.mask_to_polygons(mask, tolerance_px=1.0)
    assert abs(winding_number(polygon, 40.5, 100.5)) == 1  # in the disc
    assert winding_number(polygon, 125.5, 85.5) == 0  # in the round hole
    assert winding_number(polygon, 62.5, 125.5) == 0  # in the square hole
    assert winding_number(polygon, 5.5, 5.5) == 0  # outside


def test_speckled_mask_keeps_its_largest_parts():
    from backend.studio.geometry import mask_to_polygons

    rng = np.random.default_rng(0)
    mask = rng.random((200, 200)) > 0.7          # thousands of specks
    mask[20:120, 30:150] = True                  # one big part
    everything = mask_to_polygons(mask, min_area_px=0.2)
    capped = mask_to_polygons(mask, min_area_px=0.2, max_parts=10, min_part_fraction=0.02)
    assert len(everything) > 100 and 1 <= len(capped) <= 10
    largest, largest_capped = (mask_to_polygons_back(p[0]) for p in (everything, capped))
    assert (largest_capped | ~largest).all()  # the same part: only its small holes are filled in
    assert (largest_capped & ~largest).sum() <= 10 * 0.02 * largest_capped.sum()


def mask_to_polygons_back(polygon):
    return g.polygons_to_mask([polygon], 200, 200)


def test_speckled_mask_keeps_its_largest_holes_only():
    """A speckled mask (what an untrained model gives) has thousands of holes; bridging them all took a
    minute per mask. Holes under min_part_fraction of their part are dropped, at most max_parts kept."""
    import cv2

    rng = np.random.default_rng(0)
    speckled = cv2.GaussianBlur((rng.random((240, 320)) > 0.45).astype(np.float32), (5, 5), 0) > 0.5
    polygons = g.mask_to_polygons(speckled, 1.0, max_parts=10, min_part_fraction=0.02)
    assert 1 <= len(polygons) <= 10 and sum(len(p) for p in polygons) < 5000
    ring = np.zeros((100, 100), bool)
    ring[10:90, 10:90] = True
    ring[40:60, 40:60] = False  # a hole of 400 px in a part of 6000: kept at 2%
    ring[20:22, 20:22] = False  # 4 px: dropped
    (outline,) = g.mask_to_polygons(ring, 0.0, min_area_px=1.0, max_parts=10, min_part_fraction=0.02)
    back = g.polygons_to_mask([outline], 100, 100)
    assert not back[50, 50] and back[21, 21] and back[30, 30]
