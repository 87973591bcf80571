"""Scenes with ground truth: a layout drawn at a size, its visible objects and their language.

Scene `index` of seed `seed` comes from `random.Random(f"toy-{seed}-{index}")` alone (the caption's
connecting words from `random.Random(f"toy-{seed}-{index}-caption")`), so it is the same whatever
other scenes are made. A caption mentions the objects left to right by their layout boxes' centres
(whole objects, render-independent). A layout is accepted only when, drawn at `REFERENCE_LONG_SIDE`, every object is
clearly visible (a margin above the drop rule of truth.py) and its language clear-cut; so rendering
the same scene at another size gives the same objects, attributes and expressions.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from .draw import render
from .language import Facts, caption_template, description, expressions_for, fill_markers, is_clear_cut
from .layout import sample_layout
from .truth import is_visible_enough, kept_indices, size_labels, tight_box, visible_masks
from .world import STYLES, Layout

REFERENCE_LONG_SIDE = 256
CLEAR_VISIBLE_FRACTION = 0.65
CLEAR_AREA_FRACTION = 0.005
CLEAR_SIDE_MARGIN = 0.03
MAX_LAYOUT_TRIES = 200


@dataclass(frozen=True)
class ToyObject:
    """One visible object: `box` pixel xyxy ints (x2, y2 exclusive) of `mask` (bool [H, W], visible pixels)."""

    category: str
    colour: str | None
    size: str | None
    box: tuple[int, int, int, int]
    mask: np.ndarray = field(compare=False, repr=False)
    expressions: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Scene:
    """A drawn scene: `objects` in drawing order (puddles, then far to near), `caption` a template
    with `{i}` markers (i indexes `objects`)."""

    seed: int
    index: int
    width: int
    height: int
    ground: str
    objects: tuple[ToyObject, ...]
    caption: str
    image: Image.Image = field(compare=False, repr=False)
    style: str = "plain"


def scene_layout(seed: int, index: int) -> Layout:
    """The layout of scene `index` of `seed`: the first sampled one that is clear-cut (see the module doc)."""
    rng = random.Random(f"toy-{seed}-{index}")
    for _ in range(MAX_LAYOUT_TRIES):
        layout = clear_layout(sample_layout(rng, seed, index))
        if layout is not None:
            return layout
    raise RuntimeError(f"no clear-cut layout for scene {index} of seed {seed}")


def clear_layout(layout: Layout) -> Layout | None:
    """The layout without the objects not clearly visible at the reference size; None if unusable."""
    width, height = layout.size(REFERENCE_LONG_SIDE)
    _, full = render(layout, width, height)
    kept, covered = [], np.zeros((height, width), dtype=bool)
    for i in reversed(range(len(full))):  # an object is hidden only by those after it
        if is_visible_enough(full[i], full[i] & ~covered, CLEAR_VISIBLE_FRACTION, CLEAR_AREA_FRACTION):
            kept.insert(0, i)
            covered |= full[i]
    if not kept:
        return None
    layout = replace(layout, objects=tuple(layout.objects[i] for i in kept))
    visible = visible_masks([full[i] for i in kept])
    facts = object_facts(layout, [tight_box(m) for m in visible], width, list(range(len(kept))))
    return layout if is_clear_cut(facts, CLEAR_SIDE_MARGIN) else None


def object_facts(layout: Layout, boxes, width: int, kept: list[int]) -> list[Facts]:
    """The language facts of the kept objects (`boxes` one per kept object)."""
    objects = [layout.objects[i] for i in kept]
    sizes = size_labels(objects)
    return [Facts(obj.category, obj.colour, size, (box[0] + box[2]) / 2 / width)
            for obj, size, box in zip(objects, sizes, boxes)]


def draw_scene(layout: Layout, width: int, height: int, style: str = "plain") -> Scene:
    """The layout drawn at width x height, with the truth of that render."""
    image, full = render(layout, width, height, style)
    visible = visible_masks(full)
    kept = kept_indices(full, visible)
    boxes = [tight_box(visible[i]) for i in kept]
    facts = object_facts(layout, boxes, width, kept)
    objects = tuple(
        ToyObject(f.category, f.colour, f.size, box, visible[i], expressions_for(facts, k), description(f))
        for k, (i, f, box) in enumerate(zip(kept, facts, boxes))
    )
    rng = random.Random(f"toy-{layout.seed}-{layout.index}-caption")
    order = sorted(range(len(kept)), key=lambda k: sum(layout.objects[kept[k]].box[::2]))  # layout centres
    caption = caption_template(facts, layout.ground, rng, order)
    return Scene(layout.seed, layout.index, width, height, layout.ground, objects, caption, image, style)


def make_scene(seed: int, index: int, long_side: int = 256, style: str = "plain") -> Scene:
    """Scene `index` of `seed`, its long side `long_side` pixels, the short side from its aspect ratio."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    if long_side < 16:
        raise ValueError(f"long_side must be at least 16 pixels, got {long_side}")
    layout = scene_layout(seed, index)
    return draw_scene(layout, *layout.size(long_side), style=style)


def make_scenes(seed: int, count: int, long_side: int = 256, style: str = "plain") -> Iterator[Scene]:
    """Scenes 0 .. count-1 of `seed`."""
    for index in range(count):
        yield make_scene(seed, index, long_side, style)


def caption_text(scene: Scene | str, marker: str = "") -> str:
    """The scene's caption (or a template) with each `{i}` replaced by `marker`, or removed when empty."""
    return fill_markers(scene if isinstance(scene, str) else scene.caption, marker)
