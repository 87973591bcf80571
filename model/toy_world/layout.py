"""Sampling a scene's layout (relative coordinates, see world.py) from a `random.Random`; no drawing.

Sizes are in units of the image height first (so a ball stays round at any aspect), then turned into
fractions of the width. Nearer objects (lower bottom) are drawn bigger: a simple perspective.
"""

from __future__ import annotations

import random

from .world import ASPECTS, CATEGORIES, CATEGORY_COLOURS, GROUND_CLASHES, GROUNDS, Cloud, Layout, ObjectLayout

OBJECT_COUNT_WEIGHTS = {1: 1, 2: 3, 3: 4, 4: 3, 5: 1}
CATEGORY_WEIGHTS = {"car": 3, "person": 3, "dog": 2, "tree": 2, "traffic light": 1.5, "puddle": 1, "ball": 2}
# (width, height) of an object at scale 1, in units of the image height
BASE_SIZE = {
    "car": (0.34, 0.17),
    "person": (0.10, 0.30),
    "dog": (0.20, 0.13),
    "tree": (0.24, 0.42),
    "traffic light": (0.09, 0.40),
    "puddle": (0.30, 0.06),
    "ball": (0.11, 0.11),
}
MIN_BOX_AREA = 0.01  # smallest object box, as a fraction of the image
MARGIN = 0.01  # objects keep this far (relative) from the image's edges
PLACEMENT_TRIES = 30
# colour attributes that are not the object's body colour (a lamp): ground clashes do not apply
LAMP_COLOURED = frozenset({"traffic light"})
FLAT = frozenset({"puddle"})  # lying on the ground: drawn before everything that stands


def sample_layout(rng: random.Random, seed: int, index: int) -> Layout:
    """One random layout: aspect, ground, horizon, background clutter and 1-5 objects in drawing order."""
    aspect = rng.choice(ASPECTS)
    ground = rng.choice(GROUNDS)
    horizon = rng.uniform(0.35, 0.60)
    count = rng.choices(list(OBJECT_COUNT_WEIGHTS), weights=list(OBJECT_COUNT_WEIGHTS.values()))[0]
    objects = []
    for _ in range(count):
        category = rng.choices(CATEGORIES, weights=[CATEGORY_WEIGHTS[c] for c in CATEGORIES])[0]
        placed = sample_object(rng, category, ground, horizon, aspect[0] / aspect[1])
        if placed is not None:
            objects.append(placed)
    objects.sort(key=drawing_order)
    sun = sample_sun(rng, horizon) if rng.random() < 0.5 else None
    clouds = tuple(sample_cloud(rng, horizon) for _ in range(rng.randint(0, 2)))
    return Layout(seed, index, aspect, ground, horizon, tuple(objects), sun, clouds)


def drawing_order(obj: ObjectLayout) -> tuple[bool, float]:
    """Flat puddles first (lying on the ground, they hide nothing that stands), then by bottom."""
    return obj.category not in FLAT, obj.box[3]


def sample_colour(rng: random.Random, category: str, ground: str) -> str | None:
    palette = CATEGORY_COLOURS[category]
    if palette is None:
        return None
    clashes = frozenset() if category in LAMP_COLOURED else GROUND_CLASHES[ground]
    return rng.choice([c for c in palette if c not in clashes])


def sample_object(rng, category, ground, horizon, aspect_ratio) -> ObjectLayout | None:
    box = sample_box(rng, category, horizon, aspect_ratio)
    if box is None:
        return None
    colour = sample_colour(rng, category, ground)
    variant = sample_canopy(rng) if category == "tree" else ()
    return ObjectLayout(category, colour, box, facing=rng.choice((1, -1)), variant=variant)


def sample_box(rng, category, horizon, aspect_ratio) -> tuple[float, float, float, float] | None:
    """A box standing on the ground (None when no try fits the image)."""
    base_w, base_h = BASE_SIZE[category]
    for _ in range(PLACEMENT_TRIES):
        bottom = rng.uniform(horizon + 0.12 * (1 - horizon), 1 - MARGIN)
        depth = (bottom - horizon) / (1 - horizon)
        scale = rng.uniform(0.75, 1.5) * (0.8 + 0.5 * depth)
        stretch_w, stretch_h = (1.0, 1.0) if category == "ball" else (rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15))
        height = base_h * scale * stretch_h
        width = base_w * scale * stretch_w / aspect_ratio
        top = bottom - height
        lowest_top = horizon + 0.01 if category == "puddle" else MARGIN
        if top < lowest_top or width > 1 - 2 * MARGIN - 0.02 or width * height < MIN_BOX_AREA:
            continue
        centre = rng.uniform(MARGIN + width / 2, 1 - MARGIN - width / 2)
        return (centre - width / 2, top, centre + width / 2, bottom)
    return None


def sample_canopy(rng: random.Random) -> tuple[tuple[float, float, float], ...]:
    """1-3 canopy circles (cx, cy, r): cx, cy fractions of the canopy square, r a fraction of its side."""
    count = rng.choice((1, 2, 2, 3))
    if count == 1:
        return ((0.5, 0.5, 0.5),)
    circles = []
    for _ in range(count):
        r = rng.uniform(0.28, 0.38)
        circles.append((rng.uniform(r, 1 - r), rng.uniform(r, 1 - r), r))
    return tuple(circles)


def sample_sun(rng: random.Random, horizon: float) -> tuple[float, float, float]:
    radius = rng.uniform(0.04, 0.07)
    return (rng.uniform(0.1, 0.9), rng.uniform(radius + 0.02, max(radius + 0.03, horizon * 0.45)), radius)


def sample_cloud(rng: random.Random, horizon: float) -> Cloud:
    x, y, size = rng.uniform(0.1, 0.9), rng.uniform(0.06, max(0.08, horizon * 0.4)), rng.uniform(0.03, 0.05)
    offsets = ((-1, 0.2), (0, -0.2), (1, 0.2))
    puffs = [(x + dx * size * 1.2, y + dy * size, size * rng.uniform(0.7, 1.1)) for dx, dy in offsets]
    return Cloud(tuple(puffs))
