"""Toy-world scenes prepared once for training: the model's own inputs, computed as inference computes them.

For each scene: CLIP's pixels (model.processing.clip_pixel_values, fp16 to halve the memory), the image
itself (8-bit; SAM's pixels, model.processing.sam_pixel_values, are computed from it for the few images a
step segments), every object's box (normalised xyxy in the padded square) and mask in SAM's padded frame
(model.stage3.data.target_1024 at that size, kept as packed bits: 1/8 of a byte a pixel, so that tens of
thousands of scenes fit in memory), and where the image lies in that frame. The scenes keep their
language (expressions, descriptions, caption); full-size masks are dropped.

Patch targets (the CLIP tower's stand-in for pretraining, toy_model.train): the padded square cut into
the tower's g x g patch grid (SAM's frame and CLIP's crop are both that square), each cell labelled with
the object covering most of it when it covers at least a quarter of the cell (category index + 1, and
its colour index + 1; 0 for none), else 0; and the box of that object (a detector's dense target: where a
patch's object begins and ends is then readable in the patch itself).
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..processing import ClipPreprocessConfig, ImageFrame, boxes_pixels_to_norm, clip_pixel_values, sam_pixel_values
from ..stage3.data import target_1024, valid_region_1024
from ..toy_world import CATEGORIES, Scene, make_scene
from ..toy_world.world import RGB

LONG_SIDES = (256,)   # the layout is checked at 256: other sizes draw a scene twice
COLOURS = tuple(RGB)
MIN_CELL_COVER = 0.25


@dataclass
class SceneCache:
    scenes: list[Scene]             # language and boxes only (image=None, masks dropped)
    images: list[np.ndarray]        # per scene [H, W, 3] uint8, the image as rendered
    clip_pixels: torch.Tensor       # [N, 3, c, c] fp16
    boxes: list[torch.Tensor]       # per scene [k, 4] normalised xyxy
    packed_masks: list[np.ndarray]  # per scene the [k, S, S] masks in SAM's padded frame, np.packbits
    sam_size: int                   # S
    patch_categories: torch.Tensor  # [N, g*g] long: category index + 1 of each CLIP patch, 0 none
    patch_colours: torch.Tensor     # [N, g*g] long: colour index + 1, 0 none
    patch_boxes: torch.Tensor       # [N, g*g, 4] the box of the cell's object (normalised xyxy), 0 none

    def __len__(self) -> int:
        return len(self.scenes)

    def sam_pixels(self, scenes: list[int]) -> torch.Tensor:
        """[n, 3, S, S] fp32 SAM input of these scenes, as inference computes it."""
        return torch.stack([sam_pixel_values(Image.fromarray(self.images[i]), self.sam_size) for i in scenes])

    def masks(self, scene: int) -> torch.Tensor:
        """[k, S, S] uint8 0/1: the scene's object masks in SAM's padded frame."""
        count, size = len(self.boxes[scene]), self.sam_size
        bits = np.unpackbits(self.packed_masks[scene], count=count * size * size)
        return torch.from_numpy(bits.reshape(count, size, size))

    def valid(self, scene: int) -> torch.Tensor:
        """[S, S] bool: where the scene's image lies inside SAM's padded frame."""
        frame = ImageFrame(self.scenes[scene].width, self.scenes[scene].height)
        return torch.from_numpy(valid_region_1024(frame, self.sam_size))


def scene_long_side(seed: int, index: int) -> int:
    return random.Random(f"toy-size-{seed}-{index}").choice(LONG_SIDES)


def build_cache(seed: int, count: int, clip_config: ClipPreprocessConfig, sam_size: int,
                style: str = "plain", log=None, patch_size: int = 14, workers: int = 1) -> SceneCache:
    """Scenes 0..count-1 of ``seed`` prepared; ``workers`` > 1 prepares them in that many processes (the same
    cache: a scene depends only on its seed and index)."""
    prepare = functools.partial(prepare_scene, seed, clip_config=clip_config, sam_size=sam_size, style=style,
                                grid=clip_config.crop_height // patch_size)
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers, initializer=torch.set_num_threads,
                                                       initargs=(1,)) as pool:
            return collect(pool.imap(prepare, range(count), chunksize=32), count, sam_size, log)
    return collect(map(prepare, range(count)), count, sam_size, log)


@dataclass(frozen=True)
class PreparedScene:
    """One scene's part of the cache (numpy, so that it crosses processes by pickling, not shared memory)."""

    scene: Scene               # light: no pixels, no masks
    image: np.ndarray          # [H, W, 3] uint8
    clip_pixels: np.ndarray    # [3, c, c] fp16
    boxes: np.ndarray          # [k, 4] normalised xyxy
    packed_masks: np.ndarray   # np.packbits of [k, S, S]
    patch_categories: np.ndarray
    patch_colours: np.ndarray
    patch_boxes: np.ndarray


def prepare_scene(seed: int, index: int, clip_config: ClipPreprocessConfig, sam_size: int, style: str,
                  grid: int) -> PreparedScene:
    scene = make_scene(seed, index, long_side=scene_long_side(seed, index), style=style)
    boxes = boxes_pixels_to_norm([o.box for o in scene.objects], ImageFrame(scene.width, scene.height))
    stacked = [target_1024(o.mask.astype(np.uint8) * 255, sam_size) > 127 for o in scene.objects]
    masks = np.stack(stacked) if stacked else np.zeros((0, sam_size, sam_size), bool)
    category, colour, owner = patch_targets(scene, torch.from_numpy(masks), grid)
    return PreparedScene(light(scene), np.asarray(scene.image.convert("RGB")),
                         clip_pixel_values(scene.image, clip_config).half().numpy(), boxes.numpy(),
                         np.packbits(masks), category.numpy(), colour.numpy(), patch_boxes(boxes, owner).numpy())


def collect(prepared, count: int, sam_size: int, log=None) -> SceneCache:
    """The cache of ``count`` prepared scenes, in order."""
    parts = []
    for part in prepared:
        parts.append(part)
        if log and len(parts) % 1000 == 0:
            log(f"  {len(parts)} scenes")
    if len(parts) != count:
        raise RuntimeError(f"prepared {len(parts)} scenes, expected {count}")
    def stack(name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(p, name) for p in parts]))

    return SceneCache([p.scene for p in parts], [p.image for p in parts], stack("clip_pixels"),
                      [torch.from_numpy(p.boxes) for p in parts], [p.packed_masks for p in parts], sam_size,
                      stack("patch_categories"), stack("patch_colours"), stack("patch_boxes"))


def patch_targets(scene: Scene, masks: torch.Tensor, grid: int) -> tuple[torch.Tensor, ...]:
    """[k, S, S] masks in the padded square -> per cell of a grid x grid cut: (category + 1, colour + 1, the
    index of the object it belongs to, -1 for none)."""
    if not len(masks):
        none = torch.zeros(grid * grid, dtype=torch.long)
        return none, none, none - 1
    cover = torch.nn.functional.adaptive_avg_pool2d(masks.float()[None], grid)[0].flatten(1)   # [k, g*g]
    best, owner = cover.max(dim=0)
    category = torch.tensor([CATEGORIES.index(o.category) + 1 for o in scene.objects])[owner]
    colour = torch.tensor([COLOURS.index(o.colour) + 1 if o.colour else 0 for o in scene.objects])[owner]
    covered = best >= MIN_CELL_COVER
    return category * covered, colour * covered, torch.where(covered, owner, -1)


def patch_boxes(boxes: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """[k, 4] object boxes, [g*g] owner index (-1 none) -> [g*g, 4] each cell's object box, zeros for none."""
    if not len(boxes):
        return torch.zeros((len(owner), 4))
    return torch.where((owner >= 0)[:, None], boxes[owner.clamp(min=0)], 0.0)


def light(scene: Scene) -> Scene:
    """The scene without its pixels (its language and boxes are what training reads)."""
    objects = tuple(dataclasses.replace(o, mask=None) for o in scene.objects)
    return dataclasses.replace(scene, image=None, objects=objects)
