"""Point prompts (clicks) on the tiny fixture checkpoint: what SAM's prompt encoder receives, masks equal to a
direct segment-anything call, the refine path, session reuse, bad input, the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything.utils.transforms import ResizeLongestSide

from model import NextChat
from tests.conftest import REPO_ROOT, find_shared_dir

FIXTURE = find_shared_dir() / "fixtures" / "nextchat-tiny"
C5 = FIXTURE / "cases" / "c5_free_loc_96x64"   # "loc" weights: the REC prompt answers with one location


@pytest.fixture(scope="module")
def nc() -> NextChat:
    return NextChat.from_pretrained(FIXTURE / "weights" / "nextchat", vision_tower=FIXTURE / "weights" / "clip")


@pytest.fixture(scope="module")
def nc_loc(tmp_path_factory) -> NextChat:
    folder = tmp_path_factory.mktemp("loc_checkpoint")
    for file in (FIXTURE / "weights" / "nextchat").iterdir():
        if file.name != "model.safetensors":
            (folder / file.name).symlink_to(file)
    (folder / "model.safetensors").symlink_to(FIXTURE / "weights" / "nextchat_loc_edited.safetensors")
    return NextChat.from_pretrained(folder, vision_tower=FIXTURE / "weights" / "clip")


def noise(w, h, seed=0):
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


def to_sam_frame(points, w, h):
    """By hand: centre pad to the long side, then scale to 1024 (the frame boxes use)."""
    long_side = max(w, h)
    pad_x, pad_y = ((long_side - w) // 2, 0) if h >= w else (0, (long_side - h) // 2)
    return torch.tensor([[(x + pad_x) * 1024 / long_side, (y + pad_y) * 1024 / long_side] for x, y in points])


class Spy:
    """Records the prompt encoder's keyword inputs and output and the mask decoder's inputs and output."""

    def __init__(self, nc: NextChat):
        self.encoder_inputs, self.encoder_outputs, self.decoder_inputs, self.decoder_outputs = [], [], [], []
        sam = nc.model.sam
        self.handles = [
            sam.prompt_encoder.register_forward_hook(self._encoder, with_kwargs=True),
            sam.mask_decoder.register_forward_hook(self._decoder, with_kwargs=True),
        ]

    def _encoder(self, module, args, kwargs, output):
        self.encoder_inputs.append(kwargs)
        self.encoder_outputs.append(output)

    def _decoder(self, module, args, kwargs, output):
        self.decoder_inputs.append(kwargs)
        self.decoder_outputs.append(output)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def direct_sam(nc, session, coords, labels, box=None, seg_tokens=None):
    """segment-anything's prompt encoder and mask decoder called directly on the session's embedding."""
    sam = nc.model.sam
    points = (coords[None], torch.tensor([labels], dtype=torch.int)) if coords is not None else None
    sparse, dense = sam.prompt_encoder(points=points, boxes=None if box is None else box[None], masks=None)
    if seg_tokens is not None:
        sparse = torch.cat([seg_tokens[None], sparse], dim=1)
    low_res, iou = sam.mask_decoder(image_embeddings=session.sam_embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                    multimask_output=False)
    return low_res, iou[:, 0]


CASES = {
    "points only": dict(box=None, points=[(20.0, 10.0), (70.5, 40.25)], labels=[1, 1]),
    "box and points": dict(box=(8.0, 4.0, 80.0, 60.0), points=[(30.0, 30.0)], labels=[1]),
    "negative points": dict(box=None, points=[(40.0, 30.0), (10.0, 50.0), (90.0, 2.0)], labels=[1, 0, 0]),
}


@pytest.mark.parametrize("size", [(96, 64), (50, 80)], ids=["wide", "tall"])
@pytest.mark.parametrize("name", list(CASES))
def test_prompt_encoder_gets_the_clicks_in_the_centre_padded_frame(nc, name, size):
    case, (w, h) = CASES[name], size
    points = [(min(x, w), min(y, h)) for x, y in case["points"]]
    box = None if case["box"] is None else [min(v, w if i % 2 == 0 else h) for i, v in enumerate(case["box"])]
    image = noise(w, h, seed=3)
    with Spy(nc) as spy:
        region = nc.segment(image, box=box, points=points, point_labels=case["labels"])
    assert len(spy.encoder_inputs) == 1 and len(spy.decoder_outputs) == 1
    coords, labels = spy.encoder_inputs[0]["points"]
    expected = to_sam_frame(points, w, h)
    assert coords.shape == (1, len(points), 2)
    assert torch.allclose(coords[0], expected, atol=1e-4, rtol=0)
    assert labels.tolist() == [case["labels"]]
    # Not SamPredictor's frame (bottom-right padding): that frame is off by the pad along the short side.
    predictor = torch.as_tensor(ResizeLongestSide(1024).apply_coords(np.array(points), (h, w)), dtype=torch.float32)
    assert (coords[0] - predictor).abs().max() > 100
    sparse, _ = spy.encoder_outputs[0]
    if box is None:
        assert spy.encoder_inputs[0]["boxes"] is None
        assert sparse.shape[1] == len(points) + 1            # segment-anything's padding point, as SAM adds it
    else:
        corners = to_sam_frame([box[:2], box[2:]], w, h).reshape(1, 4)
        assert torch.allclose(spy.encoder_inputs[0]["boxes"], corners, atol=1e-4, rtol=0)
        assert sparse.shape[1] == len(points) + 2            # the clicks, then the box's two corners
    assert spy.decoder_inputs[0]["sparse_prompt_embeddings"].shape[1] == sparse.shape[1]   # no seg tokens
    assert region.mask.shape == (h, w) and region.mask.dtype == bool


@pytest.mark.parametrize("name", list(CASES))
def test_masks_equal_a_direct_segment_anything_call(nc, name):
    case = CASES[name]
    image = noise(96, 64, seed=4)
    with Spy(nc) as spy:
        region = nc.segment(image, box=case["box"], points=case["points"], point_labels=case["labels"])
    session = nc.encode_image(image)
    box = None if case["box"] is None else to_sam_frame([case["box"][:2], case["box"][2:]], 96, 64).reshape(4)
    low_res, iou = direct_sam(nc, session, to_sam_frame(case["points"], 96, 64), case["labels"], box)
    ours = spy.decoder_outputs[0][0]
    assert ours.shape == low_res.shape == (1, 1, 256, 256)
    assert (ours - low_res).abs().max() <= 1e-5
    assert abs(region.score - float(iou[0])) <= 1e-5
    # The mask is those logits upscaled to 1024, brought back to the image (crop the centre pad), > 0.
    square = torch.nn.functional.interpolate(low_res, size=(1024, 1024), mode="bilinear", align_corners=False)
    square = torch.nn.functional.interpolate(square, size=(96, 96), mode="bilinear", align_corners=False)
    assert np.array_equal(region.mask, (square[0, 0, 16:80, :] > 0).numpy())


def test_negative_labels_change_the_mask_logits(nc):
    image = noise(96, 64, seed=5)
    points = [(40.0, 30.0), (60.0, 20.0)]
    with Spy(nc) as spy:
        nc.segment(image, points=points, point_labels=[1, 1])
        nc.segment(image, points=points, point_labels=[1, 0])
        nc.segment(image, points=points)                    # labels default to positive
    positive, negative, default = (out[0] for out in spy.decoder_outputs)
    assert (positive - negative).abs().max() > 1e-3
    assert torch.equal(positive, default)


def test_a_click_on_a_cached_image_is_one_mask_decoder_call(nc):
    sam = nc.model.sam
    calls = {"image_encoder": 0, "mask_decoder": 0, "clip": 0}
    hooks = [module.register_forward_hook(lambda *_, key=key: calls.__setitem__(key, calls[key] + 1))
             for key, module in (("image_encoder", sam.image_encoder), ("mask_decoder", sam.mask_decoder),
                                 ("clip", nc.tower))]
    try:
        image = noise(70, 90, seed=6)
        nc.segment(image, points=[(10, 10)])
        assert calls == {"image_encoder": 1, "mask_decoder": 1, "clip": 1}
        nc.segment(image, points=[(10, 10), (30, 40)], point_labels=[1, 0])
        nc.segment(image, box=(5, 5, 60, 80), points=[(30, 40)])
        nc.segment(image.copy(), points=[(20, 20)])          # same content, another object: same session
        assert calls == {"image_encoder": 1, "mask_decoder": 4, "clip": 1}
    finally:
        for hook in hooks:
            hook.remove()


def test_region_locations_hold_the_seg_tokens_sam_got(nc_loc):
    image = Image.open(C5 / "image.png")
    with Spy(nc_loc) as spy:
        regions = nc_loc.ground(image, "the red square")
    assert len(regions) == 1 and regions[0].location is not None
    sent = spy.decoder_inputs[0]["sparse_prompt_embeddings"]
    assert sent.shape[1] == nc_loc.model.seg_prompt_tokens + 2
    assert torch.equal(sent[0, :4], regions[0].location.prompt_tokens)
    assert torch.allclose(spy.encoder_inputs[0]["boxes"][0], regions[0].location.box_norm * 1024, atol=1e-4)


def test_refine_sends_seg_tokens_box_and_points(nc_loc):
    image = Image.open(C5 / "image.png")
    (region,) = nc_loc.ground(image, "the red square")
    clicks, labels = [(30.0, 30.0), (50.0, 20.0)], [1, 0]
    with Spy(nc_loc) as spy:
        refined = nc_loc.refine(image, "the red square", clicks, labels)
    assert len(spy.decoder_inputs) == 1                       # no text decoded again: the location is remembered
    coords, sent_labels = spy.encoder_inputs[0]["points"]
    assert torch.allclose(coords[0], to_sam_frame(clicks, 96, 64), atol=1e-4) and sent_labels.tolist() == [labels]
    assert torch.allclose(spy.encoder_inputs[0]["boxes"][0], region.location.box_norm * 1024, atol=1e-4)
    sparse = spy.decoder_inputs[0]["sparse_prompt_embeddings"]
    assert sparse.shape[1] == 4 + len(clicks) + 2             # seg tokens, clicks, box corners
    assert torch.equal(sparse[0, :4], region.location.prompt_tokens)
    session = nc_loc.encode_image(image)
    low_res, iou = direct_sam(nc_loc, session, to_sam_frame(clicks, 96, 64), labels,
                              region.location.box_norm * 1024, region.location.prompt_tokens)
    assert (spy.decoder_outputs[0][0] - low_res).abs().max() <= 1e-5
    assert refined.box == region.box and refined.phrase == "the red square"
    assert not np.array_equal(refined.mask, region.mask)


def test_refine_without_clicks_gives_back_the_grounded_region(nc_loc):
    image = Image.open(C5 / "image.png")
    (region,) = nc_loc.ground(image, "the red square")
    same = nc_loc.refine(image, "the red square", [])
    assert np.array_equal(same.mask, region.mask) and same.score == region.score and same.box == region.box
    kept = nc_loc.segment(image, points=[(30, 30)], location=region.location)
    assert kept.box == region.box


def test_refine_on_a_new_image_decodes_the_expression_once(nc_loc):
    image = noise(96, 64, seed=7)
    llm_calls = []
    hook = nc_loc.model.model.register_forward_hook(lambda *_: llm_calls.append(1))
    try:
        first = nc_loc.refine(image, "the red square", [(20, 20)])
        decoded = len(llm_calls)
        nc_loc.refine(image, "the red square", [(20, 20), (40, 40)], [1, 0])
    finally:
        hook.remove()
    assert decoded > 0 and len(llm_calls) == decoded
    assert first.location is nc_loc.encode_image(image).grounded[("the red square", 32)][0]


def test_refine_after_ground_many_decodes_no_text(nc_loc):
    image = noise(96, 64, seed=9)
    (regions,) = nc_loc.ground_many(image, ["the red square"])
    llm_calls = []
    hook = nc_loc.model.model.register_forward_hook(lambda *_: llm_calls.append(1))
    try:
        refined = nc_loc.refine(image, "the red square", [(10, 10)])
    finally:
        hook.remove()
    assert llm_calls == [] and refined.location is regions[0].location


def test_refine_of_a_missing_region_says_how_many_there_are(nc_loc):
    with pytest.raises(ValueError, match=r"located 1 region\(s\).*region_index 3"):
        nc_loc.refine(Image.open(C5 / "image.png"), "the red square", [(1, 1)], region_index=3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(), r"needs a box, a location or at least one point"),
    (dict(points=[(97, 3)]), r"point 0 \(97, 3\) lies outside the 96x64 image"),
    (dict(points=[(3, -1)]), r"outside the 96x64 image"),
    (dict(points=[(3, float("nan"))]), r"outside"),
    (dict(points=[(3, 3)], point_labels=[2]), r"point label 0 is 2; use 1 \(positive\) or 0 \(negative\)"),
    (dict(points=[(3, 3)], point_labels=["1"]), r"point label 0 is '1'"),
    (dict(points=[(3, 3), (4, 4)], point_labels=[1]), r"1 point label\(s\) for 2 point\(s\)"),
    (dict(points=["ab"]), r"point 0 is 'ab'; a point is two numbers"),
    (dict(points=[(1, 2, 3)]), r"point 0 is \(1, 2, 3\)"),
    (dict(box=(1, 2, 3)), r"a box is 4 numbers"),
])
def test_bad_prompts_get_one_clear_reason(nc, kwargs, message):
    with pytest.raises(ValueError, match=message):
        nc.segment(noise(96, 64), **kwargs)


def test_points_are_on_the_image_after_its_exif_orientation(nc):
    raw = noise(96, 64, seed=8)
    exif = raw.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees: 64 wide, 96 high
    buffer = io.BytesIO()
    raw.save(buffer, format="PNG", exif=exif)
    image = Image.open(io.BytesIO(buffer.getvalue()))
    with Spy(nc) as spy:
        region = nc.segment(image, points=[(60, 90)])
    assert region.mask.shape == (96, 64)
    assert torch.allclose(spy.encoder_inputs[0]["points"][0][0], to_sam_frame([(60, 90)], 64, 96), atol=1e-4)
    with pytest.raises(ValueError, match="outside the 64x96 image"):
        nc.segment(image, points=[(90, 60)])


def test_cli_segment_task_with_points(tmp_path):
    image = tmp_path / "img.png"
    noise(96, 64).save(image)
    cmd = [sys.executable, "-m", "model", str(image), "--task", "segment", "--checkpoint",
           str(FIXTURE / "weights" / "nextchat"), "--vision-tower", str(FIXTURE / "weights" / "clip")]
    out = subprocess.run(cmd + ["--point", "30,30", "--point", "50,20,0", "--box", "5,5,90,60"],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["regions"]) == 1 and data["regions"][0]["box_xyxy"] == [5.0, 5.0, 90.0, 60.0]
    assert data["regions"][0]["mask_rle"]["size"] == [64, 96]
    bad = subprocess.run(cmd + ["--point", "30,30,2"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "error: --point needs X,Y or X,Y,LABEL with LABEL 0 or 1, got '30,30,2'"
