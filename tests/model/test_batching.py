"""The image session and batched decoding give what the one-prompt path gives (issue: speed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model import NextChat, prompts
from model.decoding import DecodeOptions

EXPRESSIONS = ["the blue circle", "a red square on the left", "x", "the largest object near the top edge of it",
               "dog", "Where <at> is {this}?", "two cats and a dog sitting on a very long sofa", "sky"]


@pytest.fixture(scope="module")
def fixture_model(tiny_checkpoint, tiny_vision_tower):
    return NextChat.from_pretrained(tiny_checkpoint, vision_tower=tiny_vision_tower, max_batch=5)


@pytest.fixture(scope="module")
def locating_model(random_tiny_checkpoint):
    return NextChat.from_pretrained(random_tiny_checkpoint, vision_tower=random_tiny_checkpoint / "vision_tower")


def noise(w, h, seed):
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


@pytest.mark.parametrize("size", [(96, 64), (50, 80)])
def test_batched_ids_identical_to_single(fixture_model, size):
    image = noise(*size, seed=3)
    turns = [prompts.referring(e) for e in EXPRESSIONS]
    batch = fixture_model.run_batch(image, turns, max_new_tokens=20)
    lengths = set()
    for turn, batched in zip(turns, batch):
        single = fixture_model.run(image, turn, [], DecodeOptions(max_new_tokens=20))
        assert batched.token_ids == single.token_ids
        lengths.add(len(single.token_ids))
    assert len(lengths) > 1 or all(len(r.token_ids) == 20 for r in batch)


def test_ground_many_matches_ground(locating_model):
    image = noise(120, 70, seed=5)
    many = locating_model.ground_many(image, EXPRESSIONS)
    assert len(many) == len(EXPRESSIONS)
    for expression, regions in zip(EXPRESSIONS, many):
        single = locating_model.ground(image, expression)
        assert len(single) == len(regions) >= 1
        for a, b in zip(single, regions):
            assert np.allclose(a.box, b.box, atol=1e-3) and abs(a.score - b.score) < 1e-4
            assert (a.mask != b.mask).sum() <= 8 and b.phrase == expression


def test_boxes_of_batched_path_within_1e5(locating_model):
    image = noise(64, 90, seed=8)
    turns = [prompts.referring(e) for e in EXPRESSIONS]
    for turn, batched in zip(turns, locating_model.run_batch(image, turns, max_new_tokens=12)):
        single = locating_model.run(image, turn, [], DecodeOptions(max_new_tokens=12))
        assert batched.token_ids == single.token_ids
        assert torch.allclose(batched.boxes_norm, single.boxes_norm, atol=1e-5)


def test_session_is_reused_and_bounded(locating_model):
    first = locating_model.encode_image(noise(40, 40, seed=11))
    assert locating_model.encode_image(noise(40, 40, seed=11)) is first
    for seed in range(20, 20 + locating_model._image_cache_size + 1):
        locating_model.encode_image(noise(40, 40, seed=seed))
    assert len(locating_model._image_cache) == locating_model._image_cache_size
    assert locating_model.encode_image(noise(40, 40, seed=11)) is not first


def test_empty_expression_list(locating_model):
    assert locating_model.ground_many(noise(10, 10, 0), []) == []
