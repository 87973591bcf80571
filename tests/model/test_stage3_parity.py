"""Parity with the reference stage-3 trainer on fixtures/nextchat-tiny/stage3, within its README's tolerances.

Features (token ids, <at> hidden states, boxes, SAM embeddings) come from our inference path; the
trainer-only checks (logits, loss terms, gradients, 4 optimizer steps) are fed the reference's own
h_at, boxes and embeddings, as the README suggests, so they test the trainer alone.
"""

from __future__ import annotations

import pytest
import torch

from model import prompts
from model.processing import upscale_mask_logits
from model.stage3.loss import reference_loss
from model.stage3.metrics import iou_counts, masks_at_image_size
from model.stage3.optim import CosineWithWarmup, ReferenceAdamW, clip_gradients
from model.stage3.templates import ANSWER_MARKUP
from tests.model.stage3_common import (
    BATCHES,
    expected,
    final_params,
    fixture_batch,
    grad_deviation,
    initial_heads,
    max_param_deviation,
    named_grads,
    one_thread,
    shared_data,
    shared_model,
    tensors,
)

single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


def test_token_ids_and_at_positions():
    nc, t = shared_model(), tensors()
    for b, records in enumerate(BATCHES):
        ids, mask = t[f"batch{b}.input_ids"], t[f"batch{b}.attention_mask"]
        width = ids.shape[1]
        for j, r in enumerate(records):
            turn = prompts.referring(shared_data().records[r].expressions[0])
            ours = nc.tokenizer.encode(prompts.render(turn, nc.tower.num_patches) + [(ANSWER_MARKUP, True)])
            ours.append(nc.ids.eos)
            assert ours == ids[j][mask[j].bool()].tolist()
            at = [p for p, (i, label) in enumerate(zip(ours, t[f"batch{b}.labels"][j].tolist()))
                  if i == nc.ids.at and label > 0]
            assert at == [int(t[f"batch{b}.at_flat_positions"][j]) - j * width]
            assert at[0] == expected()["first_step"][b]["per_sample"][j]["at_position"]


def test_h_at_boxes_and_image_embeddings_from_our_inference_path():
    data, t = shared_data(), tensors()
    for b, records in enumerate(BATCHES):
        samples = [data.sample(q) for q in _queries(records)]
        h_at = torch.stack([s.features.h_at for s in samples])
        assert (h_at - t[f"batch{b}.h_at"]).abs().max() <= 1e-4
        boxes = torch.stack([s.features.box_norm for s in samples])
        assert (boxes - t[f"batch{b}.pred_locs_norm"]).abs().max() <= 1e-6
        embeddings = torch.stack([data.store.image_embedding(s.image_key) for s in samples])
        assert (embeddings - t[f"batch{b}.image_embeddings"]).abs().max() <= 1e-5
        # and the loc_decoder of the reference's own h_at (the box fed to SAM)
        with torch.no_grad():
            boxes_of_ref = shared_model().model.loc_decoder(t[f"batch{b}.h_at"])
        assert (boxes_of_ref - t[f"batch{b}.pred_locs_norm"]).abs().max() <= 1e-6
        assert (boxes_of_ref * 1024 - t[f"batch{b}.box_prompt_1024"]).abs().max() <= 1024 * 1e-6


def _queries(records):
    from model.stage3.samples import eval_queries

    return eval_queries(records, shared_data().records)


def _first_step(b: int, scaled: bool):
    heads = initial_heads(scaled)
    batch = fixture_batch(b, shared_data())
    low_res, iou = heads(batch.h_at, batch.boxes_norm, batch.image_embeddings)
    logits = upscale_mask_logits(low_res)
    terms = reference_loss(logits, batch.targets, iou)
    terms.total.backward()
    return heads, low_res, logits, iou, terms, batch


@pytest.mark.parametrize("scaled", [False, True], ids=["plain", "scaled_x64"])
@pytest.mark.parametrize("b", range(len(BATCHES)))
def test_first_step_logits_loss_and_gradients(b, scaled):
    t = tensors()
    heads, low_res, logits, iou, terms, batch = _first_step(b, scaled)
    ref = (expected()["first_step_scaled"]["batches"] if scaled else expected()["first_step"])[b]
    prefix = f"scaled.batch{b}" if scaled else f"batch{b}"
    logit_tol = 3e-5 if scaled else 1e-6
    assert (logits[:, :, ::16, ::16] - t[f"{prefix}.mask_logits_ds16"]).abs().max() <= logit_tol
    scale = 64.0 if scaled else 1.0
    assert (low_res - scale * t[f"batch{b}.low_res_logits"]).abs().max() <= logit_tol
    assert (iou - t[f"batch{b}.iou_predictions"]).abs().max() <= 1e-6
    assert torch.equal((batch.targets[:, :, ::16, ::16]).to(torch.uint8), t[f"batch{b}.targets_1024_ds16"][:, None])

    values = terms.as_floats()
    assert abs(values["loss"] - ref["loss_total"]) <= 2e-6 * abs(ref["loss_total"])
    for term in ("focal_x20", "dice", "iou_mse"):
        assert abs(values[term] - ref[f"loss_{term}"]) <= 5e-6
    for j, sample in enumerate(ref["per_sample"]):
        assert abs(terms.per_mask["dice"][j] - sample["dice_loss"]) <= 5e-7  # smooth = k, not 1
        assert abs(terms.per_mask["iou_target"][j] - sample["calc_iou_target"]) <= 1e-5
        assert abs(int((logits[j] >= 0.5).sum()) - sample["pred_pixels_logit_ge_0p5"]) <= 2

    grads = named_grads(heads)
    worst, rel_l2 = grad_deviation(grads, prefix)
    assert worst <= 1.0 and rel_l2 <= 5e-5
    zeros = set(ref["grads_exactly_zero"])
    assert zeros == {name for name, g in grads.items() if g is not None and not g.any()}
    norm, coef = clip_gradients(heads.parameters(), 1.0)
    assert abs(norm - ref["grad_total_norm_preclip"]) <= 1e-5 * ref["grad_total_norm_preclip"]
    assert abs(coef - ref["clip_coef"]) <= 1e-5 * ref["clip_coef"]


def test_masks_from_the_training_forward_give_the_reference_i_and_u():
    """Teacher-forced evaluation of the initial weights: I and U per record at the original size."""
    heads, data = initial_heads(), shared_data()
    reference = expected()["eval_before"]["teacher_forced"]["per_record"]
    with torch.no_grad():
        for b, records in enumerate(BATCHES):
            batch = fixture_batch(b, data)
            low_res, _ = heads(batch.h_at, batch.boxes_norm, batch.image_embeddings)
            masks = masks_at_image_size(upscale_mask_logits(low_res), [data.records[r].frame for r in records])
            for mask, r in zip(masks, records):
                ours = iou_counts(mask, data.gt_mask(r), count_overlaps=True)
                assert abs(ours[0] - reference[r]["I"]) <= 2 and abs(ours[1] - reference[r]["U"]) <= 2


@pytest.mark.parametrize("lr", ["2e-05", "1e-03"])
def test_four_steps_reference_inputs(lr):
    """The recorded run: batches in file order, lr x [0, 1, 0.75, 0.25], clipping 1.0, 4.31 AdamW."""
    record = expected()["train"][f"lr_{lr}"]
    heads, data = initial_heads(), shared_data()
    optimizer = ReferenceAdamW(heads.parameters())
    schedule = CosineWithWarmup(4, warmup_ratio=0.03)
    assert schedule.warmup_steps == 1
    for step, ref in enumerate(record["steps"]):
        rate = schedule.lr(step, float(lr))
        assert rate == ref["lr"] or abs(rate - ref["lr"]) <= 1e-12 * abs(ref["lr"])
        batch = fixture_batch(step % len(BATCHES), data)
        low_res, iou = heads(batch.h_at, batch.boxes_norm, batch.image_embeddings)
        terms = reference_loss(upscale_mask_logits(low_res), batch.targets, iou)
        terms.total.backward()
        assert abs(float(terms.total.detach()) - ref["loss"]) <= 2e-6 * ref["loss"]
        norm, coef = clip_gradients(heads.parameters(), 1.0)
        assert abs(norm - ref["grad_total_norm_preclip"]) <= 1e-5 * ref["grad_total_norm_preclip"]
        optimizer.step(rate)
        optimizer.zero_grad()
    other, k_proj = max_param_deviation(heads.release_state(), final_params(lr))
    assert other <= (1e-6 if lr == "2e-05" else 5e-6)
    assert k_proj <= (1e-6 if lr == "2e-05" else 5e-5)
    start = initial_heads().release_state()
    unchanged = {k for k, v in heads.release_state().items() if torch.equal(v, start[k])}
    assert set(record["tensors_unchanged"]) <= unchanged
