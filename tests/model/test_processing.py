"""Pure pre/post-processing: modes, EXIF, frames, boxes both ways."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model.processing import (
    ImageFrame,
    boxes_norm_to_pixels,
    boxes_pixels_to_norm,
    clamp_box,
    mask_logits_to_masks,
    sam_pixel_values,
    sam_resized_size,
    to_rgb,
)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1", "RGB"])
def test_every_mode_becomes_rgb(mode):
    base = Image.fromarray((np.arange(12 * 7 * 3) % 251).reshape(12, 7, 3).astype(np.uint8))
    image = base.convert(mode) if mode not in ("I;16", "I", "F") else Image.fromarray(
        (np.arange(84).reshape(12, 7) * 700).astype(np.uint16 if mode == "I;16" else np.int32 if mode == "I"
                                                    else np.float32), mode=mode if mode != "I;16" else None)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (7, 12)


def test_sixteen_bit_keeps_its_range():
    image = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    assert np.asarray(to_rgb(image))[0, :, 0].tolist() == [0, 255]


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (30, 10), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    import io
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert to_rgb(Image.open(io.BytesIO(buffer.getvalue()))).size == (10, 30)


@pytest.mark.parametrize("w, h", [(96, 64), (50, 80), (1, 1), (1, 400), (3000, 7), (64, 64)])
def test_boxes_round_trip(w, h):
    frame = ImageFrame(w, h)
    boxes = torch.tensor([[0.0, 0.0, w, h], [w * 0.25, h * 0.5, w * 0.75, h * 0.9]])
    back = boxes_norm_to_pixels(boxes_pixels_to_norm(boxes, frame), frame)
    assert torch.allclose(back, boxes, atol=1e-3 * max(w, h))


def test_boxes_out_of_range_are_clamped_in_norm_frame_and_clamp_box():
    frame = ImageFrame(100, 50)
    norm = boxes_pixels_to_norm([[-20, -20, 500, 500]], frame)
    assert norm.min() >= 0 and norm.max() <= 1
    assert clamp_box((120, -5, -3, 40), frame) == (0.0, 0.0, 100.0, 40.0)


def test_sam_frame_centre_padded():
    frame = ImageFrame(100, 50)
    assert sam_resized_size(frame) == (1024, 512)
    pixels = sam_pixel_values(Image.new("RGB", (100, 50), (255, 255, 255)))
    assert pixels.shape == (3, 1024, 1024)
    assert pixels[:, :256].abs().max() == 0 and pixels[:, 256 + 512:].abs().max() == 0
    assert pixels[:, 256:768].min() > 1.5  # white, normalised


def test_mask_logits_cropped_to_the_image():
    frame = ImageFrame(40, 20)
    logits = -torch.ones(1, 1, 1024, 1024)
    logits[..., 256:512, :] = 1.0  # the top half of the image area (image rows span 256..768)
    masks = mask_logits_to_masks(logits, frame)
    assert masks.shape == (1, 20, 40)
    assert masks[0, :10].all() and not masks[0, 10:].any()


def test_sdpa_attention_matches_segment_anything():
    """SAM's encoder with the fused attention gives what segment-anything's own attention gives."""
    from segment_anything.modeling.image_encoder import Attention

    from model.random_checkpoint import SIZES, sam_dims
    from model.sam_attention import SdpaAttention
    from model.sam_builder import build_sam

    torch.manual_seed(0)
    sam = build_sam(sam_dims(SIZES["tiny"])).eval()
    for block in sam.image_encoder.blocks:
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.5)
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.5)
    pixels = torch.randn(1, 3, 1024, 1024)
    assert all(type(b.attn) is SdpaAttention for b in sam.image_encoder.blocks)
    with torch.no_grad():
        fused = sam.image_encoder(pixels)
        for block in sam.image_encoder.blocks:
            block.attn.__class__ = Attention
        reference = sam.image_encoder(pixels)
    assert (fused - reference).abs().max() < 1e-4
