"""Fixtures for the batch pre-labelling tests: an image folder with bad files, the tiny locating model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.batch.job import JobSpec
from backend.settings import load_settings

LABELS = ["dog", "a cat"]
GOOD_IMAGES = {"img0.png": (64, 48), "img1.png": (50, 80), "sub/img2.jpg": (90, 60)}


def write_images(root: Path, names: dict[str, tuple[int, int]]) -> Path:
    for index, (name, (width, height)) in enumerate(sorted(names.items())):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(index).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    return root


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """3 good images (one in a subfolder), a corrupt .jpg, a text file and a hidden image."""
    root = write_images(tmp_path_factory.mktemp("batch_images") / "images", GOOD_IMAGES)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    write_images(root, {".hidden.png": (20, 20)})
    return root


@pytest.fixture(scope="session")
def tiny_model(random_tiny_checkpoint):
    from model import NextChat

    return NextChat.from_pretrained(random_tiny_checkpoint, vision_tower=random_tiny_checkpoint / "vision_tower")


@pytest.fixture(scope="session")
def model_args(random_tiny_checkpoint) -> list[str]:
    return ["--checkpoint", str(random_tiny_checkpoint), "--vision-tower", str(random_tiny_checkpoint / "vision_tower"),
            "--device", "cpu", "--dtype", "fp32"]


@pytest.fixture(scope="session")
def single_run(image_dir, model_args, tmp_path_factory):
    """The CLI (in process) on image_dir with LABELS: (out path, exit code, summary dict)."""
    from backend.batch import main

    out = tmp_path_factory.mktemp("batch_single") / "tasks.json"
    argv = ["--images", str(image_dir), "--labels", ",".join(LABELS), "--out", str(out), "--no-progress",
            "--absolute-paths", *model_args]
    code = main(argv, env={})
    state = Path(str(out) + ".state.jsonl")
    return out, code, state


def spec_for(image_dir: Path, checkpoint: Path, labels=LABELS, label_config=None, document_root=None) -> JobSpec:
    settings = load_settings({}, checkpoint=str(checkpoint), vision_tower=str(checkpoint / "vision_tower"),
                             device="cpu", dtype="fp32")
    return JobSpec.create(image_dir, label_config, list(labels), settings, document_root)


def comparable(tasks: list[dict]) -> list[dict]:
    """Tasks sorted by image, region ids removed (they are random per run)."""
    tasks = json.loads(json.dumps(tasks))
    for task in tasks:
        for prediction in task["predictions"]:
            for result in prediction["result"]:
                result.pop("id", None)
                result.pop("parentID", None)
    return sorted(tasks, key=lambda task: task["data"]["image"])


class CountingModel:
    """Delegates to a NextChat and counts ground_many calls (one per labelled image)."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.calls, self.fail_after = inner, 0, fail_after

    def ground_many(self, *args, **kwargs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        return self.inner.ground_many(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)
