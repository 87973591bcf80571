"""The toy world's scenes: determinism, masks and boxes, unambiguous language, exports (fast, CPU only)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from model.toy_world import (
    CATEGORIES,
    caption_text,
    make_scene,
    make_scenes,
    mask_rle,
    render,
    scene_layout,
    uncompressed_rle,
)
from model.toy_world.__main__ import main as toy_main

SAMPLE = [(seed, index) for seed in (0, 1) for index in range(15)]
COLOURS = {"car": {"red", "blue", "yellow", "green", "white", "black"},
           "person": {"red", "blue", "yellow", "green", "white", "black"},
           "dog": {"brown", "black", "white"}, "traffic light": {"red", "yellow", "green"},
           "ball": {"red", "blue", "yellow", "green", "white"}, "tree": {None}, "puddle": {None}}
CATEGORY = "|".join(re.escape(c) for c in CATEGORIES)
EXPRESSION = re.compile(
    rf"the (?:(?P<size>big|small) )?(?:(?P<colour>\w+) )?(?P<category>{CATEGORY})"
    r"(?: in the (?P<shirt>\w+) shirt| showing (?P<lamp>\w+))?(?: on the (?P<side>left|right))?"
)
ORDINAL = re.compile(rf"the (?P<rank>first|second|third|fourth|fifth) (?P<category>{CATEGORY}) from the left")


@pytest.fixture(scope="module")
def scenes():
    return {key: make_scene(*key) for key in SAMPLE}


def pixels(scene) -> np.ndarray:
    return np.asarray(scene.image)


def centre(obj) -> float:
    return (obj.box[0] + obj.box[2]) / 2


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def satisfies(expression: str, obj, scene) -> bool:
    """An independent reading of an expression against the objects' attributes and boxes."""
    ordinal = ORDINAL.fullmatch(expression)
    if ordinal:
        same = sorted((o for o in scene.objects if o.category == ordinal["category"]), key=centre)
        rank = ("first", "second", "third", "fourth", "fifth").index(ordinal["rank"])
        return rank < len(same) and same[rank] is obj
    parsed = EXPRESSION.fullmatch(expression)
    assert parsed, f"unparsed expression {expression!r}"
    colour = parsed["colour"] or parsed["shirt"] or parsed["lamp"]
    if obj.category != parsed["category"] or (colour and obj.colour != colour):
        return False
    if parsed["size"] and obj.size != parsed["size"]:
        return False
    if not parsed["side"]:
        return True
    rivals = [o for o in scene.objects
              if o is not obj and o.category == obj.category and (not colour or o.colour == colour)]
    gap = 0.1 * scene.width
    if parsed["side"] == "left":
        return bool(rivals) and all(centre(obj) + gap <= centre(o) for o in rivals)
    return bool(rivals) and all(centre(obj) - gap >= centre(o) for o in rivals)


def test_scene_depends_only_on_seed_and_index():
    again = list(make_scenes(3, 8))
    scene = make_scene(3, 7)
    assert again[7] == scene and np.array_equal(pixels(again[7]), pixels(scene))
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(again[7].objects, scene.objects))
    assert [s.caption for s in make_scenes(3, 3)] == [s.caption for s in again[:3]]
    for index in range(5):
        assert not np.array_equal(pixels(make_scene(3, index)), pixels(make_scene(4, index)))


def test_world_rules(scenes):
    for (seed, index), scene in scenes.items():
        layout = scene_layout(seed, index)
        assert scene.image.mode == "RGB" and scene.image.size == (scene.width, scene.height)
        assert max(scene.width, scene.height) == 256 and 1 <= len(scene.objects) <= 5
        assert scene.ground in ("road", "grass", "sand") and 0.35 <= layout.horizon <= 0.60
        for obj in scene.objects:
            assert obj.colour in COLOURS[obj.category]
            assert not (scene.ground == "grass" and obj.colour == "green" and obj.category != "traffic light")
            assert obj.box[3] > layout.horizon * scene.height, "objects stand on the ground"


def test_masks_are_the_visible_pixels_and_boxes_their_tight_boxes(scenes):
    for (seed, index), scene in scenes.items():
        layout = scene_layout(seed, index)
        _, full = render(layout, scene.width, scene.height)
        covered = np.zeros((scene.height, scene.width), dtype=bool)
        for obj in scene.objects:
            assert obj.mask.dtype == bool and obj.mask.shape == (scene.height, scene.width)
            assert obj.box == tight_box(obj.mask) and all(isinstance(v, int) for v in obj.box)
            assert not (obj.mask & covered).any(), "masks of one scene overlap"
            covered |= obj.mask
            owner = max(range(len(full)), key=lambda j: (full[j] & obj.mask).sum())
            later = np.logical_or.reduce(full[owner + 1 :]) if owner + 1 < len(full) else np.zeros_like(covered)
            assert np.array_equal(obj.mask, full[owner] & ~later)
            assert obj.mask.sum() >= 0.5 * full[owner].sum() and obj.mask.sum() >= 0.003 * obj.mask.size


def test_every_expression_picks_out_only_its_object(scenes):
    for scene in scenes.values():
        for obj in scene.objects:
            assert 1 <= len(obj.expressions) <= 3 and len(set(obj.expressions)) == len(obj.expressions)
            for expression in obj.expressions:
                assert expression == " ".join(expression.lower().split())
                matching = [o for o in scene.objects if satisfies(expression, o, scene)]
                assert matching == [obj], f"{expression!r} in scene {scene.seed}/{scene.index}"
            assert obj.description.startswith("a ") and obj.category in obj.description
            assert obj.description == " ".join(obj.description.lower().split())


def test_every_expression_has_a_kind_that_says_what_it_uses():
    from model.toy_world.language import EXPRESSION_KINDS, expression_kind

    seen = set()
    for scene in make_scenes(0, 300):
        for obj in scene.objects:
            for expression in obj.expressions:
                kind = expression_kind(obj.category, obj.colour, obj.size, expression)
                seen.add(kind)
                assert ("colour" in kind) == (obj.colour is not None and f" {obj.colour}" in expression), expression
                assert ("size" in kind) == (obj.size is not None and f" {obj.size} " in expression), expression
                assert (kind == "category") == (expression == f"the {obj.category}")
                shared = sum(o.category == obj.category for o in scene.objects) > 1
                assert not (shared and kind == "category"), expression
    assert seen == set(EXPRESSION_KINDS) - {"ordinal"}     # the last resort: a drawn scene never needs it
    assert expression_kind("car", None, None, "the second car from the left") == "ordinal"
    with pytest.raises(ValueError, match="'the blue car' is not an expression of a car"):
        expression_kind("car", "red", None, "the blue car")


def test_caption_mentions_each_object_once_left_to_right(scenes):
    for scene in scenes.values():
        markers = [int(m) for m in re.findall(r"\{(\d+)\}", scene.caption)]
        assert sorted(markers) == list(range(len(scene.objects)))
        for i, obj in enumerate(scene.objects):
            assert f"{obj.description} {{{i}}}" in scene.caption
        centres = [centre(scene.objects[i]) for i in markers]
        assert all(b >= a - 0.1 * scene.width for a, b in zip(centres, centres[1:]))
        assert scene.caption.endswith(f" on the {scene.ground} .")
        plain = caption_text(scene)
        assert "{" not in plain and plain == " ".join(plain.split()) and plain.endswith(f"on the {scene.ground} .")
        assert caption_text(scene, marker="<at> <boxes>").count("<at> <boxes>") == len(scene.objects)


def test_rle_round_trips(scenes):
    for obj in [o for s in list(scenes.values())[:10] for o in s.objects]:
        rle = mask_rle(obj.mask)
        assert isinstance(rle["counts"], str)
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), obj.mask)
        stage3 = [uncompressed_rle(obj.mask)]
        height, width = obj.mask.shape
        summed = mask_utils.decode(mask_utils.frPyObjects(stage3, height, width)).sum(axis=2)
        assert np.array_equal(summed.astype(bool), obj.mask) and summed.max() == 1


def test_two_sizes_give_the_same_objects_with_scaled_boxes():
    for index in range(12):
        big, small = make_scene(2, index, long_side=256), make_scene(2, index, long_side=128)
        assert big.caption == small.caption
        sx, sy = big.width / small.width, big.height / small.height
        for a, b in zip(big.objects, small.objects, strict=True):
            assert (a.category, a.colour, a.size, a.expressions) == (b.category, b.colour, b.size, b.expressions)
            scaled = (b.box[0] * sx, b.box[1] * sy, b.box[2] * sx, b.box[3] * sy)
            assert max(abs(u - v) for u, v in zip(a.box, scaled)) <= 4, (a.box, b.box)


@pytest.mark.parametrize("style", ["striped", "checkered"])
def test_styles_keep_the_truth(style):
    for index in range(4):
        plain, styled = make_scene(0, index), make_scene(0, index, style=style)
        assert plain.objects == styled.objects
        assert all(np.array_equal(a.mask, b.mask) for a, b in zip(plain.objects, styled.objects))
        changed = np.any(pixels(plain) != pixels(styled), axis=-1)
        bodies = np.logical_or.reduce([o.mask for o in plain.objects]) if plain.objects else changed
        assert changed.any() and not (changed & ~bodies).any()   # only the objects are painted differently
    with pytest.raises(ValueError):
        make_scene(0, 0, style="dotted")


def test_cli_writes_a_folder_the_stage3_check_accepts(tmp_path, capsys):
    from backend.export.check import check_stage3_dir

    assert toy_main(["--seed", "5", "--count", "4", "--out", str(tmp_path), "--long-side", "96",
                     "--format", "mixed"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "4 scenes" in summary[0]
    result = check_stage3_dir(tmp_path)
    assert result.ok, result.problems
    scenes = [make_scene(5, index, long_side=96) for index in range(4)]
    assert result.counts["records"] == sum(len(s.objects) for s in scenes)
    lines = [json.loads(line) for line in (tmp_path / "scenes.jsonl").read_text().splitlines()]
    assert [line["file_name"] for line in lines] == ["toy-5-0.png", "toy-5-1.jpg", "toy-5-2.png", "toy-5-3.jpg"]
    assert lines[1]["caption_text"] == caption_text(scenes[1]) and lines[1]["caption"] == scenes[1].caption
    for name in (line["file_name"] for line in lines):
        with Image.open(tmp_path / "images" / name) as image:
            assert not image.getexif()
    records = [json.loads(line) for line in (tmp_path / "res.jsonl").read_text().splitlines()]
    truth = [(s, o) for s in scenes for o in s.objects]
    for record, (scene, obj) in zip(records, truth, strict=True):
        assert record["img_path"] == f"toy-5-{scene.index}.{'png' if scene.index % 2 == 0 else 'jpg'}"
        assert record["bbox"] == list(obj.box) and record["expressions"] == list(obj.expressions)
        decoded = mask_utils.decode(mask_utils.frPyObjects(record["mask"], record["height"], record["width"]))
        assert np.array_equal(decoded.sum(axis=2).astype(bool), obj.mask)


@pytest.mark.parametrize("argv", [["--seed", "x", "--count", "1", "--out", "o"], ["--seed", "1", "--count", "0",
                                  "--out", "o"], ["--seed", "1", "--count", "1", "--out", "o", "--style", "dotted"]])
def test_cli_bad_arguments_one_line_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        toy_main(argv)
    assert exited.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
