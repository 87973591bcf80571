"""Pure image and box processing for NExT-Chat (docs/model.md). No networks here.

Frames:
- *square*: the image centre-padded to its long side (CLIP's expand-to-square, SAM's pad).
- *normalised*: square coordinates divided by the long side, xyxy in [0, 1] for in-image boxes.
- *sam*: the S x S padded SAM input frame (= normalised x S); S is SAM's input size, read from its
  weights (1024 in the release). Mask logits are compared and upscaled in the 1024 frame whatever S.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

SAM_SIZE = 1024
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
CLIP_PAD_COLOR = (255, 255, 255)
TRANSPARENT_BACKGROUND = (255, 255, 255)
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}


# ---------------------------------------------------------------------------- image modes
def to_rgb(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, then convert any PIL mode to 8-bit RGB (the rules in docs/model.md):
    transparency is composited on white; 16-bit and 32-bit integer pixels are scaled by 255/65535 (the
    full 16-bit range); float pixels in [0, 1] are scaled by 255, others clipped to 0..255."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        eight_bit = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(eight_bit, mode="L").convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, TRANSPARENT_BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


# ---------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class ImageFrame:
    """Sizes of one image and of its padded square."""

    width: int
    height: int

    @property
    def long_side(self) -> int:
        return max(self.width, self.height)

    @property
    def pad(self) -> int:
        """Offset of the image inside the square along its short axis."""
        return (self.long_side - min(self.width, self.height)) // 2

    @property
    def pad_xy(self) -> tuple[int, int]:
        return (0, self.pad) if self.width >= self.height else (self.pad, 0)

    @classmethod
    def of(cls, image: Image.Image) -> ImageFrame:
        return cls(width=image.width, height=image.height)


def boxes_pixels_to_norm(boxes_xyxy, frame: ImageFrame) -> torch.Tensor:
    """Pixel xyxy on the image -> normalised xyxy in the square, clamped to [0, 1]."""
    boxes = torch.as_tensor(boxes_xyxy, dtype=torch.float64).reshape(-1, 4)
    pad_x, pad_y = frame.pad_xy
    shift = torch.tensor([pad_x, pad_y, pad_x, pad_y], dtype=torch.float64)
    return ((boxes + shift) / frame.long_side).clamp(0.0, 1.0).float()


def boxes_norm_to_pixels(boxes_norm, frame: ImageFrame) -> torch.Tensor:
    """Normalised xyxy in the square -> pixel xyxy on the image (not clamped)."""
    boxes = torch.as_tensor(boxes_norm, dtype=torch.float32).reshape(-1, 4)
    pad_x, pad_y = frame.pad_xy
    shift = torch.tensor([pad_x, pad_y, pad_x, pad_y], dtype=torch.float32)
    return boxes * frame.long_side - shift


def points_pixels_to_norm(points_xy, frame: ImageFrame) -> torch.Tensor:
    """Pixel (x, y) on the image -> normalised (x, y) in the square [n,2]: the frame of
    :func:`boxes_pixels_to_norm`; times 1024 it is SAM's centre-padded input frame."""
    points = torch.as_tensor(points_xy, dtype=torch.float64).reshape(-1, 2)
    shift = torch.tensor(frame.pad_xy, dtype=torch.float64)
    return ((points + shift) / frame.long_side).float()


def check_point_prompts(points, point_labels, frame: ImageFrame) -> tuple[list[tuple[float, float]], list[int]]:
    """Clicks as ``(x, y)`` pixels on the image (edges included) and their labels, 1 (positive: part of the
    object) or 0 (negative: not part of it); no labels means all positive. ValueError names the bad one."""
    points = [] if points is None else list(points)
    labels = [1] * len(points) if point_labels is None else list(point_labels)
    if len(labels) != len(points):
        raise ValueError(f"{len(labels)} point label(s) for {len(points)} point(s); give one label per point")
    clicks = []
    for index, point in enumerate(points):
        try:
            if isinstance(point, (str, bytes)):
                raise TypeError
            x, y = (float(v) for v in point)
        except (TypeError, ValueError):
            raise ValueError(f"point {index} is {point!r}; a point is two numbers (x, y) in pixels") from None
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= frame.width and 0 <= y <= frame.height):
            raise ValueError(f"point {index} ({x:g}, {y:g}) lies outside the {frame.width}x{frame.height} image")
        clicks.append((x, y))
    for index, label in enumerate(labels):
        if isinstance(label, (str, bytes)) or label not in (0, 1):
            raise ValueError(f"point label {index} is {label!r}; use 1 (positive) or 0 (negative)")
    return clicks, [int(label) for label in labels]


def clamp_box(box_xyxy, frame: ImageFrame) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    x1, x2 = sorted((min(max(x1, 0.0), frame.width), min(max(x2, 0.0), frame.width)))
    y1, y2 = sorted((min(max(y1, 0.0), frame.height), min(max(y2, 0.0), frame.height)))
    return (x1, y1, x2, y2)


# ---------------------------------------------------------------------------- CLIP branch
@dataclass(frozen=True)
class ClipPreprocessConfig:
    """The fields of the tower's preprocessor_config.json that the release uses."""

    shortest_edge: int
    crop_height: int
    crop_width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale_factor: float = 1.0 / 255.0
    resample: int = Image.BICUBIC

    @classmethod
    def from_dict(cls, cfg: dict) -> ClipPreprocessConfig:
        size = cfg.get("size", 336)
        shortest = size.get("shortest_edge", size.get("height")) if isinstance(size, dict) else int(size)
        crop = cfg.get("crop_size", shortest)
        crop_h, crop_w = (crop["height"], crop["width"]) if isinstance(crop, dict) else (int(crop), int(crop))
        return cls(
            shortest_edge=int(shortest), crop_height=int(crop_h), crop_width=int(crop_w),
            mean=tuple(cfg["image_mean"]), std=tuple(cfg["image_std"]),
            rescale_factor=float(cfg.get("rescale_factor", 1.0 / 255.0)),
            resample=int(cfg.get("resample", Image.BICUBIC)),
        )


def expand_to_square(image: Image.Image, color=CLIP_PAD_COLOR) -> Image.Image:
    frame = ImageFrame.of(image)
    canvas = Image.new(image.mode, (frame.long_side, frame.long_side), color)
    canvas.paste(image, frame.pad_xy)
    return canvas


def clip_pixel_values(image: Image.Image, cfg: ClipPreprocessConfig) -> torch.Tensor:
    """RGB image -> [3, crop_h, crop_w] fp32 CLIP input, as the release computes it."""
    square = expand_to_square(image)
    short, long = min(square.size), max(square.size)
    new_short, new_long = cfg.shortest_edge, int(cfg.shortest_edge * long / short)
    new_w, new_h = (new_short, new_long) if square.width <= square.height else (new_long, new_short)
    resized = np.asarray(square.resize((new_w, new_h), resample=cfg.resample))
    top, left = (new_h - cfg.crop_height) // 2, (new_w - cfg.crop_width) // 2
    cropped = resized[top:top + cfg.crop_height, left:left + cfg.crop_width]
    scaled = (cropped * cfg.rescale_factor).astype(np.float32)
    mean, std = np.array(cfg.mean, dtype=np.float32), np.array(cfg.std, dtype=np.float32)
    normalised = (scaled - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))


# ---------------------------------------------------------------------------- SAM branch
def sam_resized_size(frame: ImageFrame, target: int = SAM_SIZE) -> tuple[int, int]:
    """(new_w, new_h) with the long side at ``target``; each side rounded half up."""
    scale = target / frame.long_side
    return int(frame.width * scale + 0.5), int(frame.height * scale + 0.5)


def sam_pixel_values(image: Image.Image, target: int = SAM_SIZE) -> torch.Tensor:
    """RGB image -> [3, target, target] fp32: bilinear resize, normalise, centre pad with zeros."""
    new_w, new_h = sam_resized_size(ImageFrame.of(image), target)
    resized = torch.from_numpy(np.array(image.resize((new_w, new_h), resample=Image.BILINEAR)))
    pixels = resized.permute(2, 0, 1).float()
    mean = torch.tensor(SAM_PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(3, 1, 1)
    pixels = (pixels - mean) / std
    left, top = (target - new_w) // 2, (target - new_h) // 2
    return F.pad(pixels, (left, target - new_w - left, top, target - new_h - top), value=0.0)


def upscale_mask_logits(low_res_logits: torch.Tensor, size: int = SAM_SIZE) -> torch.Tensor:
    """SAM's low-res [k,1,S/4,S/4] logits -> [k,1,size,size], bilinear, align_corners=False."""
    return F.interpolate(low_res_logits.float(), size=(size, size), mode="bilinear", align_corners=False)


def mask_logits_to_masks(mask_logits: torch.Tensor, frame: ImageFrame) -> torch.Tensor:
    """[k,1,1024,1024] logits in the padded frame -> [k,H,W] bool masks on the image (> 0)."""
    masks = []
    for logits in mask_logits.float():
        square = F.interpolate(logits[None], size=(frame.long_side, frame.long_side),
                               mode="bilinear", align_corners=False)[0, 0] > 0
        pad_x, pad_y = frame.pad_xy
        masks.append(square[pad_y:pad_y + frame.height, pad_x:pad_x + frame.width])
    if not masks:
        return torch.zeros((0, frame.height, frame.width), dtype=torch.bool)
    return torch.stack(masks)
