"""The toy world's vocabulary and the layout of a scene before it is drawn.

A layout is in relative coordinates: x as a fraction of the image width, y as a fraction of its
height, (0, 0) the top-left corner. An object's box is `(x0, y0, x1, y1)` in those fractions; its
bottom `y1` lies below the horizon (it stands on the ground band). Objects are listed in drawing order:
puddles first (flat on the ground, they cover no standing object), then by increasing bottom, so a
nearer (lower) object is drawn later and hides what lies behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = ("car", "person", "dog", "tree", "traffic light", "puddle", "ball")
GROUNDS = ("road", "grass", "sand")
STYLES = ("plain", "striped", "checkered")

# the colour attribute each category can take (None: the category has no colour attribute)
CATEGORY_COLOURS: dict[str, tuple[str, ...] | None] = {
    "car": ("red", "blue", "yellow", "green", "white", "black"),
    "person": ("red", "blue", "yellow", "green", "white", "black"),
    "dog": ("brown", "black", "white"),
    "tree": None,
    "traffic light": ("red", "yellow", "green"),
    "puddle": None,
    "ball": ("red", "blue", "yellow", "green", "white"),
}

# colours that would blend into a ground band: never sampled on it
GROUND_CLASHES = {"road": frozenset(), "grass": frozenset({"green"}), "sand": frozenset({"yellow"})}

RGB = {
    "red": (214, 40, 40),
    "blue": (38, 84, 200),
    "yellow": (246, 204, 24),
    "green": (46, 160, 60),
    "white": (246, 246, 246),
    "black": (28, 28, 32),
    "brown": (128, 78, 38),
}
GROUND_RGB = {"road": (96, 96, 102), "grass": (124, 186, 84), "sand": (226, 206, 158)}
SKY_RGB = (152, 204, 242)

# (width, height) ratios a scene is drawn at
ASPECTS = ((4, 3), (3, 4), (16, 9), (1, 1), (3, 2), (2, 3))


@dataclass(frozen=True)
class ObjectLayout:
    """One object before drawing: box in relative coordinates, `colour` an attribute name or None.

    `facing` (+1 right, -1 left) mirrors cars and dogs; `variant` holds the category's extra draws
    (tree canopy circles, as (dx, dy, r) fractions of the box).
    """

    category: str
    colour: str | None
    box: tuple[float, float, float, float]
    facing: int = 1
    variant: tuple[tuple[float, float, float], ...] = ()

    @property
    def area(self) -> float:
        """Box area as a fraction of the image: the size the "small"/"big" attribute compares."""
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)


@dataclass(frozen=True)
class Cloud:
    """A background cloud: puffs as (x, y, r) with x, y relative and r a fraction of the height."""

    puffs: tuple[tuple[float, float, float], ...]


@dataclass(frozen=True)
class Layout:
    """A scene before drawing. `sun` is (x, y, r) like a cloud puff, or None."""

    seed: int
    index: int
    aspect: tuple[int, int]
    ground: str
    horizon: float
    objects: tuple[ObjectLayout, ...]
    sun: tuple[float, float, float] | None = None
    clouds: tuple[Cloud, ...] = ()

    def size(self, long_side: int) -> tuple[int, int]:
        """(width, height) in pixels for a long side of `long_side`, the short one from the aspect."""
        a, b = self.aspect
        if a >= b:
            return long_side, max(1, round(long_side * b / a))
        return max(1, round(long_side * a / b)), long_side
