"""The shipped toy NExT-Chat (weights/nextchat-toy): the release's format, loaded by the release's loader,
and answers that land on toy-world objects it never saw (seed 1000; training used seeds 0 and 1).

The thresholds sit well below what benchmarks/toy_quality measures on 50 scenes (docs/toy-model.md), so
they catch a broken model or a geometry slip, not noise; inference on CPU in fp32 is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.predict.clicks import box_iou
from model.nextchat import NextChat
from model.toy_world import CATEGORIES, make_scene

TOY = Path(__file__).resolve().parents[2] / "weights" / "nextchat-toy"
SCENES = range(6)
# measured on these scenes: REC 16/17, descriptions 17/17, mask cIoU 0.78, absent categories left empty 25/26
MIN_REC, MIN_DESCRIBE, MIN_MASK_CIOU, MIN_ABSENT_EMPTY = 0.7, 0.8, 0.6, 0.7


@pytest.fixture(scope="module")
def toy():
    return NextChat.from_pretrained(TOY)


@pytest.fixture(scope="module")
def scenes():
    return [make_scene(1000, index) for index in SCENES]



def test_release_layout_and_size():
    names = {p.name for p in TOY.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json",
            "added_tokens.json", "vision_tower"} <= names
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {
        p.name for p in (TOY / "vision_tower").iterdir()}
    total = sum(p.stat().st_size for p in TOY.rglob("*") if p.is_file())
    assert total < 12e6, f"{total / 1e6:.1f} MB"
    assert json.loads((TOY / "config.json").read_text())["model_type"] == "nextchat"


def test_sam_input_size_is_read_from_the_weights(toy):
    assert toy.model.sam.image_encoder.img_size == 256


def test_referring_expressions_find_their_objects(toy, scenes):
    hits = count = intersection = union = 0
    for scene in scenes:
        for obj in scene.objects:
            regions = toy.ground(scene.image, obj.expressions[0])
            count += 1
            if regions:
                hits += box_iou(regions[0].box, obj.box) >= 0.5
                intersection += int((regions[0].mask & obj.mask).sum())
                union += int((regions[0].mask | obj.mask).sum())
            else:
                union += int(obj.mask.sum())
    assert hits / count >= MIN_REC, f"REC {hits}/{count}"
    assert intersection / union >= MIN_MASK_CIOU, f"mask cIoU {intersection}/{union}"


def test_descriptions_name_the_category(toy, scenes):
    right = count = 0
    for scene in scenes:
        for obj in scene.objects:
            text = toy.describe(scene.image, obj.box)
            count += 1
            right += f" {obj.category} " in f" {text.lower().rstrip('. ')} "
    assert right / count >= MIN_DESCRIBE, f"descriptions {right}/{count}"


def test_a_category_absent_from_the_scene_gets_no_box(toy, scenes):
    """What pre-annotation asks for every label of a config, most of them absent: the answer is "none"."""
    empty = absent = 0
    for scene in scenes:
        for category in sorted(set(CATEGORIES) - {obj.category for obj in scene.objects}):
            absent += 1
            empty += not toy.ground(scene.image, category)
    assert empty / absent >= MIN_ABSENT_EMPTY, f"left empty {empty}/{absent}"
