"""Small helpers for showing results: COCO RLE of a mask, and boxes + masks drawn on the image."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def encode_rle(mask: np.ndarray) -> dict:
    """A bool HxW mask as compressed COCO RLE (``counts`` as text)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def draw_overlay(image: Image.Image, regions, input_boxes=()) -> Image.Image:
    """Masks tinted at 45%, boxes outlined with their phrase and score; input boxes dashed white."""
    canvas = image.convert("RGB").copy()
    pixels = np.asarray(canvas).astype(np.float32)
    for i, region in enumerate(regions):
        color = np.array(PALETTE[i % len(PALETTE)], dtype=np.float32)
        pixels[region.mask] = 0.55 * pixels[region.mask] + 0.45 * color
    canvas = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for i, region in enumerate(regions):
        color = PALETTE[i % len(PALETTE)]
        draw.rectangle(region.box, outline=color, width=2)
        draw.text((region.box[0] + 3, region.box[1] + 2), f"{region.phrase} {region.score:.2f}".strip(), fill=color)
    for box in input_boxes:
        draw.rectangle(box, outline=(255, 255, 255), width=1)
    return canvas
