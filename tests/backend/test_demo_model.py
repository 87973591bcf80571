"""The demo runs the shipped toy model on toy-world scenes it never saw, unless asked for random weights."""

from __future__ import annotations

import numpy as np
from PIL import Image

from backend.dev.demo import DEMO_SEED, TOY_CHECKPOINT, draw_sample_image, ensure_checkpoint, parse_args, sample_scene


def test_the_default_checkpoint_is_the_shipped_toy_model(tmp_path):
    checkpoint, tower = ensure_checkpoint(parse_args(["--workdir", str(tmp_path)]))
    assert (checkpoint, tower) == (TOY_CHECKPOINT, TOY_CHECKPOINT / "vision_tower")
    assert (checkpoint / "config.json").is_file() and (tower / "config.json").is_file()


def test_random_weights_only_when_asked(tmp_path):
    checkpoint, tower = ensure_checkpoint(parse_args(["--workdir", str(tmp_path), "--random"]))
    assert checkpoint == tmp_path / "random-tiny-checkpoint" and (tower / "config.json").is_file()


def test_sample_images_are_toy_scenes_of_an_unseen_seed(tmp_path):
    assert DEMO_SEED not in (0, 1, 1000)   # training, stage 3, the quality benchmark
    path = draw_sample_image(tmp_path / "a.png", (480, 360), seed=4)
    scene = sample_scene((480, 360), 4)
    with Image.open(path) as saved:
        assert saved.size == (480, 360)
        assert np.array_equal(np.asarray(saved), np.asarray(scene.image))
    assert scene.objects and all(o.mask.shape == (360, 480) for o in scene.objects)
