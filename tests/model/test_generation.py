"""Decoding behaviour on a random tiny checkpoint that answers with boxes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from model import NextChat
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def nc(random_tiny_checkpoint) -> NextChat:
    return NextChat.from_pretrained(random_tiny_checkpoint, vision_tower=random_tiny_checkpoint / "vision_tower")


def noise(w, h, seed=0):
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


def test_ground_returns_regions_on_the_image(nc):
    regions = nc.ground(noise(120, 80), "the dog")
    assert regions, "the random tiny checkpoint is nudged to answer with a box"
    for region in regions:
        x1, y1, x2, y2 = region.box
        assert 0 <= x1 <= x2 <= 120 and 0 <= y1 <= y2 <= 80
        assert region.mask.shape == (80, 120) and region.mask.dtype == bool
        assert region.phrase == "the dog"


@pytest.mark.parametrize("w, h", [(1, 1), (2000, 3), (3, 900)])
def test_tiny_and_elongated_images(nc, w, h):
    result = nc.generate(noise(w, h), "Where is it?", max_new_tokens=8)
    assert result.masks.shape[1:] == (h, w)
    for region in nc.ground(noise(w, h), "it"):
        assert region.mask.shape == (h, w)


def test_generation_never_ends_right_after_at(nc):
    result = nc.generate(noise(64, 64), "Where is the cat in the image?", max_new_tokens=1)
    assert result.token_ids == [nc.ids.at, nc.ids.boxes]
    assert result.boxes.shape == (1, 4) and result.masks.shape[0] == 1


def test_forced_answer_is_boxed(nc):
    forced = nc.tokenizer.encode("Answer: <at> <boxes> and <at> <boxes> .", add_bos=False) + [nc.ids.eos]
    result = nc.generate(noise(50, 70), "anything", forced_token_ids=forced)
    assert result.token_ids == forced
    assert result.boxes.shape == (2, 4) and result.ious.shape == (2,) and result.masks.shape == (2, 70, 50)


def test_beam_search_locations(nc):
    result = nc.generate(noise(64, 48), "Where is the cat in the image?", max_new_tokens=6, num_beams=3)
    ats = [i for i, t in enumerate(result.token_ids) if t == nc.ids.at]
    assert all(result.token_ids[i + 1] == nc.ids.boxes for i in ats)
    assert result.boxes.shape[0] == len(ats)


def test_sampling_is_seeded(nc):
    kwargs = dict(max_new_tokens=10, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, seed=7)
    a = nc.generate(noise(40, 40), "Tell me a story", **kwargs)
    b = nc.generate(noise(40, 40), "Tell me a story", **kwargs)
    assert a.token_ids == b.token_ids


def test_image_cache_is_keyed_by_content(nc):
    first = nc.encode_image(noise(30, 30, seed=1))
    same = nc.encode_image(noise(30, 30, seed=1))
    other = nc.encode_image(noise(30, 30, seed=2))
    assert first is same and other is not first


def test_describe_and_caption_run(nc):
    assert isinstance(nc.describe(noise(80, 60), (10, 10, 40, 50)), str)
    caption = nc.caption(noise(80, 60))
    assert isinstance(caption.text, str) and "<at>" not in caption.text


def test_cli_prints_json_and_one_line_errors(random_tiny_checkpoint, tmp_path):
    image = tmp_path / "img.png"
    noise(64, 40).save(image)
    overlay = tmp_path / "overlay.png"
    cmd = [sys.executable, "-m", "model", str(image), "the cat", "--task", "ground",
           "--checkpoint", str(random_tiny_checkpoint), "--vision-tower", str(random_tiny_checkpoint / "vision_tower"),
           "--overlay", str(overlay)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["image_size"] == [64, 40] and data["regions"]
    from pycocotools import mask as mask_utils
    rle = data["regions"][0]["mask_rle"]
    assert mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).shape == (40, 64)
    assert Image.open(overlay).size == (64, 40)
    bad = subprocess.run(cmd[:5] + ["--checkpoint", str(tmp_path / "missing")], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


def test_input_boxes_out_of_range_are_clamped(nc):
    inside = nc.generate(noise(60, 40), "What is region [0]?", boxes=[[0, 0, 60, 40]], max_new_tokens=4)
    outside = nc.generate(noise(60, 40), "What is region [0]?", boxes=[[-500, -80, 900, 4000]], max_new_tokens=4)
    assert inside.token_ids == outside.token_ids  # both clamp to the whole image


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_runs_on_cpu(random_tiny_checkpoint, dtype):
    import torch
    half = NextChat.from_pretrained(random_tiny_checkpoint, vision_tower=random_tiny_checkpoint / "vision_tower",
                                    dtype=dtype)
    assert half.dtype in (torch.bfloat16, torch.float16)
    regions = half.ground(noise(48, 32), "the cat")
    assert all(r.mask.shape == (32, 48) for r in regions)


def test_segment_a_drawn_box(nc):
    region = nc.segment(noise(90, 60), (10, 5, 50, 40))
    assert region.mask.shape == (60, 90) and region.mask.dtype == bool
    assert region.box == (10.0, 5.0, 50.0, 40.0) and isinstance(region.score, float)


def test_forced_caption_gives_a_region_per_located_phrase(nc):
    caption = nc.caption(noise(80, 60), forced_answer="A brown dog <at> <boxes> sits on a red sofa <at> <boxes> .")
    assert caption.text == "A brown dog sits on a red sofa."
    assert [r.phrase for r in caption.regions] == ["A brown dog", "a red sofa"]
    answer = nc.ask(noise(80, 60), "What is [0] holding?", boxes=[[5, 5, 40, 40]],
                    forced_answer="A cup <at> <boxes> .")
    assert answer.text == "A cup." and [r.phrase for r in answer.regions] == ["A cup"]


def test_stop_when_stops_at_the_next_decode_step(nc):
    from model import GenerationStopped

    checks = []

    def stop_after_two() -> bool:
        checks.append(1)
        return len(checks) > 2

    image = noise(50, 40, seed=9)
    with pytest.raises(GenerationStopped), nc.stop_when(stop_after_two):
        nc.generate(image, "Tell me everything", max_new_tokens=40, forced_token_ids=[5] * 40)
    assert len(checks) == 3  # stopped at the third step, not after 40
    checks.clear()
    with pytest.raises(GenerationStopped), nc.stop_when(stop_after_two):
        nc.ground_many(image, ["a", "b", "c"], max_new_tokens=40)
    assert nc.ground(image, "a")  # the check is gone after the block
