"""Parity with the release: every case under fixtures/nextchat-tiny/cases, through the public API.

Tolerances are the fixture README's (model.parity.TOLERANCES). Cases are discovered, so further cases
of the same kind (dropped into the cases folder, or a folder named by NEXTCHAT_EXTRA_CASES) run too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from model.parity import TOLERANCES, Case, case_dirs, expected_step_logits, load_models, location_deviations
from model.processing import clip_pixel_values, sam_pixel_values, to_rgb
from tests.conftest import find_shared_dir

FIXTURE = find_shared_dir() / "fixtures" / "nextchat-tiny"
CASE_DIRS = case_dirs(FIXTURE / "cases")
if os.environ.get("NEXTCHAT_EXTRA_CASES"):
    CASE_DIRS += case_dirs(Path(os.environ["NEXTCHAT_EXTRA_CASES"]))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The base fixture weights, and the "loc"-edited state dict in a checkpoint folder of its own."""
    return load_models(FIXTURE, tmp_path_factory.mktemp("parity"))


@pytest.fixture(scope="module", params=CASE_DIRS, ids=lambda p: p.name)
def case_and_result(request, models):
    case = Case(request.param)
    nc = models[case.input["weights"]]
    return case, nc, case.run(nc)


def test_prompt_ids_exact(case_and_result):
    case, nc, _ = case_and_result
    from model import prompts
    boxes = case.input["boxes_pixels_xyxy"]
    turn = prompts.with_box_references(case.input["user_text"], len(boxes)) if boxes else prompts.plain(
        case.input["user_text"])
    assert nc.prompt_ids(turn) == case.tensors["input_ids"].tolist()


def test_generated_ids_and_text_exact(case_and_result):
    case, _, result = case_and_result
    assert result.token_ids == case.expected_ids
    assert result.text == case.expected["response"]


def test_step_logits(case_and_result):
    case, nc, result = case_and_result
    # forced steps: the recorded hidden states through our lm_head (model.parity.expected_step_logits)
    expected = expected_step_logits(case, nc)
    assert result.logits.shape == expected.shape
    assert torch.allclose(result.logits, expected, atol=TOLERANCES["step_logits"], rtol=0)


def test_boxes_ious_masks(case_and_result):
    case, _, result = case_and_result
    if not case.has_locations:
        assert result.boxes.shape == (0, 4) and result.masks.shape[0] == 0
        return
    found = location_deviations(case, result)
    assert found["boxes_count_match"]
    for key in ("boxes_norm", "boxes_pixels", "ious", "mask_logits_ds16", "mask_logits_sum", "mask_logit_samples"):
        assert found[key] <= TOLERANCES[key], key
    assert found["flipped_mask_pixels"] <= TOLERANCES["flipped_mask_pixels"]
    assert found["flipped_mask_pixels_iou_filtered"] <= TOLERANCES["flipped_mask_pixels"]


def test_clip_and_sam_inputs(case_and_result):
    case, nc, _ = case_and_result
    image = to_rgb(case.image)
    clip = clip_pixel_values(image, nc.components.clip_config)
    assert (clip - case.tensors["clip_pixel_values"]).abs().max() <= 1e-6
    sam = sam_pixel_values(image)
    expected = case.expected["sam_image"]
    assert hashlib.sha256(sam.numpy().astype(np.float32).tobytes()).hexdigest() == expected["sha256_fp32"]
    for key, value in expected["samples"].items():
        c, y, x = (int(v) for v in key.split(","))
        assert float(sam[c, y, x]) == pytest.approx(value, abs=1e-6)


def test_input_boxes_normalised(case_and_result):
    case, _, _ = case_and_result
    if "loc_inputs" not in case.tensors:
        return
    from model.processing import ImageFrame, boxes_pixels_to_norm
    norm = boxes_pixels_to_norm(case.input["boxes_pixels_xyxy"], ImageFrame.of(case.image))
    assert (norm - case.tensors["loc_inputs"]).abs().max() <= 1e-7
