"""Drawing a layout at a pixel size, and each object's full mask (all the pixels it painted).

An object is a list of flat-coloured shapes (`Shape`), rasterised without anti-aliasing by PIL, so a
mask is exactly the pixels the object painted. Pixel coordinates: x right, y down, a shape's box
`(x0, y0, x1, y1)` in float pixels with x1, y1 exclusive. Body shapes get a darker one-pixel-ish
outline (inside the shape, so the mask is unchanged) and, with style "striped", two-colour diagonal
stripes (the colour and a darker shade); with style "checkered", a coarse checkerboard of the colour and
near-white (half of a body looks like a bright background).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .world import GROUND_RGB, RGB, SKY_RGB, STYLES, Layout, ObjectLayout

SKIN = (234, 192, 150)
CHECKER_RGB = (236, 236, 232)   # style "checkered": every other square of a body is near-white
CHECKER_CELLS = 24              # squares across the image's long side
DARK = (32, 32, 36)
TROUSERS = (48, 48, 72)
WINDOW = (190, 226, 246)
TRUNK = (112, 72, 40)
CANOPY = (36, 118, 46)
POLE = (136, 136, 142)
LAMP_OFF = (74, 74, 76)
LAMP_ON = {"red": (244, 40, 30), "yellow": (252, 212, 30), "green": (40, 222, 84)}
PUDDLE = (112, 144, 184)
PUDDLE_SHINE = (164, 192, 222)
SUN = (255, 232, 140)
CLOUD = (240, 244, 250)
LANE = (224, 222, 200)


@dataclass(frozen=True)
class Shape:
    kind: str  # "rect" | "ellipse" | "polygon"
    points: tuple[float, ...]  # rect/ellipse: x0, y0, x1, y1 (exclusive); polygon: x, y pairs
    colour: tuple[int, int, int]
    body: bool = False  # outlined, and striped in style "striped"


def shade(colour: tuple[int, int, int], factor: float = 0.6) -> tuple[int, int, int]:
    """A darker shade; black gets a lighter grey so that its stripes and outline still show."""
    if max(colour) < 60:
        return (88, 88, 94)
    return tuple(int(c * factor) for c in colour)


def rasterise(shape: Shape, width: int, height: int) -> np.ndarray:
    layer = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(layer)
    if shape.kind == "polygon":
        draw.polygon([(round(x), round(y)) for x, y in zip(shape.points[::2], shape.points[1::2])], fill=1)
    else:
        x0, y0, x1, y1 = (round(v) for v in shape.points)
        box = (x0, y0, max(x0, x1 - 1), max(y0, y1 - 1))
        (draw.rectangle if shape.kind == "rect" else draw.ellipse)(box, fill=1)
    return np.array(layer, dtype=bool)


def inner_edge(mask: np.ndarray, thickness: int) -> np.ndarray:
    """Pixels of `mask` within `thickness` (4-neighbour steps) of its outside."""
    eroded = mask.copy()
    for _ in range(thickness):
        step = eroded.copy()
        step[1:] &= eroded[:-1]
        step[:-1] &= eroded[1:]
        step[:, 1:] &= eroded[:, :-1]
        step[:, :-1] &= eroded[:, 1:]
        eroded = step
    return mask & ~eroded


def paint(canvas: np.ndarray, footprint: np.ndarray, shape: Shape, style: str) -> None:
    height, width = footprint.shape
    canvas[footprint] = shape.colour
    if not shape.body:
        return
    if style == "striped":
        period = max(2, round(max(width, height) / 40))
        rows, cols = np.indices(footprint.shape)
        stripes = footprint & (((rows + cols) // period) % 2 == 1)
        canvas[stripes] = shade(shape.colour, 0.7)
    elif style == "checkered":
        period = max(3, round(max(width, height) / CHECKER_CELLS))
        rows, cols = np.indices(footprint.shape)
        squares = footprint & ((rows // period + cols // period) % 2 == 1)
        canvas[squares] = CHECKER_RGB
    canvas[inner_edge(footprint, max(1, round(max(width, height) / 256)))] = shade(shape.colour, 0.45)


def render(layout: Layout, width: int, height: int, style: str = "plain") -> tuple[Image.Image, list[np.ndarray]]:
    """The RGB image and each object's full mask (bool [height, width]), in the layout's order."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    paint_background(canvas, layout)
    masks = []
    for obj in layout.objects:
        mask = np.zeros((height, width), dtype=bool)
        for shape in object_shapes(obj, width, height):
            footprint = rasterise(shape, width, height)
            paint(canvas, footprint, shape, style)
            mask |= footprint
        masks.append(mask)
    return Image.fromarray(canvas, "RGB"), masks


def paint_background(canvas: np.ndarray, layout: Layout) -> None:
    height, width = canvas.shape[:2]
    horizon = round(layout.horizon * height)
    canvas[:horizon] = SKY_RGB
    canvas[horizon:] = GROUND_RGB[layout.ground]
    puffs = ([layout.sun] if layout.sun else []) + [p for cloud in layout.clouds for p in cloud.puffs]
    for number, (x, y, r) in enumerate(puffs):
        colour = SUN if layout.sun and number == 0 else CLOUD
        cx, cy, radius = x * width, y * height, r * height
        shape = Shape("ellipse", (cx - radius, cy - radius, cx + radius, cy + radius), colour)
        footprint = rasterise(shape, width, height)
        footprint[horizon:] = False
        canvas[footprint] = colour
    if layout.ground == "road":
        paint_lane(canvas, horizon)


def paint_lane(canvas: np.ndarray, horizon: int) -> None:
    """A dashed centre line across the road band."""
    height, width = canvas.shape[:2]
    y = (horizon + height) // 2
    thickness = max(1, round(height * 0.012))
    dash = max(2, round(width * 0.06))
    for x in range(0, width, 2 * dash):
        canvas[y : y + thickness, x : x + dash] = LANE


def object_shapes(obj: ObjectLayout, width: int, height: int) -> list[Shape]:
    x0, y0, x1, y1 = obj.box
    box = (x0 * width, y0 * height, x1 * width, y1 * height)
    shapes = SHAPERS[obj.category](obj, *box)
    return [mirrored(s, box) for s in shapes] if obj.facing < 0 else shapes


def mirrored(shape: Shape, box) -> Shape:
    """The shape flipped left-right inside the object's box."""
    left, right = box[0], box[2]
    xs = [left + right - x for x in shape.points[::2]]
    ys = list(shape.points[1::2])
    if shape.kind != "polygon":
        xs = xs[::-1]
    return Shape(shape.kind, tuple(v for pair in zip(xs, ys) for v in pair), shape.colour, shape.body)


def circle(cx: float, cy: float, r: float, colour, body: bool = False) -> Shape:
    return Shape("ellipse", (cx - r, cy - r, cx + r, cy + r), colour, body)


def rect(x0: float, y0: float, x1: float, y1: float, colour, body: bool = False) -> Shape:
    return Shape("rect", (x0, y0, x1, y1), colour, body)


def car_shapes(obj: ObjectLayout, x0, y0, x1, y1) -> list[Shape]:
    w, h = x1 - x0, y1 - y0
    colour = RGB[obj.colour]
    wheel = min(0.22 * h, 0.14 * w)
    cabin = (x0 + 0.14 * w, y0 + 0.45 * h, x0 + 0.28 * w, y0, x0 + 0.60 * w, y0, x0 + 0.74 * w, y0 + 0.45 * h)
    window = (x0 + 0.22 * w, y0 + 0.40 * h, x0 + 0.31 * w, y0 + 0.12 * h, x0 + 0.57 * w, y0 + 0.12 * h,
              x0 + 0.66 * w, y0 + 0.40 * h)
    shapes = [Shape("polygon", cabin, colour, body=True), Shape("polygon", window, WINDOW),
              rect(x0, y0 + 0.40 * h, x1, y1 - wheel, colour, body=True)]
    for cx in (x0 + 0.24 * w, x1 - 0.24 * w):
        shapes += [circle(cx, y1 - wheel, wheel, DARK), circle(cx, y1 - wheel, wheel * 0.45, POLE)]
    return shapes


def person_shapes(obj: ObjectLayout, x0, y0, x1, y1) -> list[Shape]:
    w, h = x1 - x0, y1 - y0
    shirt = RGB[obj.colour]
    head = min(0.11 * h, 0.34 * w)
    return [
        rect(x0 + 0.28 * w, y0 + 0.58 * h, x0 + 0.47 * w, y1, TROUSERS),
        rect(x0 + 0.53 * w, y0 + 0.58 * h, x0 + 0.72 * w, y1, TROUSERS),
        rect(x0, y0 + 0.24 * h, x0 + 0.2 * w, y0 + 0.54 * h, shirt, body=True),
        rect(x1 - 0.2 * w, y0 + 0.24 * h, x1, y0 + 0.54 * h, shirt, body=True),
        rect(x0 + 0.2 * w, y0 + 0.22 * h, x1 - 0.2 * w, y0 + 0.62 * h, shirt, body=True),
        circle((x0 + x1) / 2, y0 + head, head, SKIN),
    ]


def dog_shapes(obj: ObjectLayout, x0, y0, x1, y1) -> list[Shape]:
    w, h = x1 - x0, y1 - y0
    coat = RGB[obj.colour]
    head = min(0.26 * h, 0.16 * w)
    tail = (x0 + 0.16 * w, y0 + 0.45 * h, x0, y0 + 0.12 * h, x0 + 0.07 * w, y0 + 0.08 * h, x0 + 0.24 * w, y0 + 0.40 * h)
    legs = [rect(x0 + f * w, y0 + 0.6 * h, x0 + (f + 0.08) * w, y1, coat) for f in (0.18, 0.30, 0.58, 0.70)]
    return legs + [
        Shape("polygon", tail, coat),
        Shape("ellipse", (x0 + 0.12 * w, y0 + 0.30 * h, x0 + 0.82 * w, y0 + 0.72 * h), coat, body=True),
        circle(x1 - head, y0 + head, head, coat, body=True),
        Shape("polygon", (x1 - 1.6 * head, y0 + 0.5 * head, x1 - 1.2 * head, y0 + 1.9 * head,
                          x1 - 0.8 * head, y0 + 0.6 * head), shade(coat, 0.5)),
        circle(x1 - 0.35 * head, y0 + 1.1 * head, max(0.18 * head, 0.5), DARK),
    ]


def tree_shapes(obj: ObjectLayout, x0, y0, x1, y1) -> list[Shape]:
    w, h = x1 - x0, y1 - y0
    side = min(w, 0.7 * h)
    cx = (x0 + x1) / 2
    left = cx - side / 2
    shapes = [rect(cx - 0.09 * w, y0 + 0.5 * side, cx + 0.09 * w, y1, TRUNK)]
    for fx, fy, fr in obj.variant:
        shapes.append(circle(left + fx * side, y0 + fy * side, fr * side, CANOPY, body=True))
    return shapes


def traffic_light_shapes(obj: ObjectLayout, x0, y0, x1, y1) -> list[Shape]:
    w, h = x1 - x0, y1 - y0
    housing = 0.42 * h
    cx = (x0 + x1) / 2
    lamp = min(0.36 * w, housing / 7)
    shapes = [rect(cx - 0.14 * w, y0 + housing, cx + 0.14 * w, y1, POLE), rect(x0, y0, x1, y0 + housing, DARK)]
    for number, name in enumerate(("red", "yellow", "green")):
        colour = LAMP_ON[name] if name == obj.colour else LAMP_OFF
        shapes.append(circle(cx, y0 + housing * (2 * number + 1) / 6, lamp, colour))
    return shapes


def puddle_shapes(obj: ObjectLayout, x0, y0, x1, y1) -> list[Shape]:
    w, h = x1 - x0, y1 - y0
    return [Shape("ellipse", (x0, y0, x1, y1), PUDDLE, body=True),
            Shape("ellipse", (x0 + 0.2 * w, y0 + 0.25 * h, x0 + 0.5 * w, y0 + 0.55 * h), PUDDLE_SHINE)]


def ball_shapes(obj: ObjectLayout, x0, y0, x1, y1) -> list[Shape]:
    w, h = x1 - x0, y1 - y0
    colour = RGB[obj.colour]
    shine = tuple((c + 255) // 2 for c in colour)
    return [Shape("ellipse", (x0, y0, x1, y1), colour, body=True),
            Shape("ellipse", (x0 + 0.22 * w, y0 + 0.2 * h, x0 + 0.45 * w, y0 + 0.43 * h), shine)]


SHAPERS = {
    "car": car_shapes,
    "person": person_shapes,
    "dog": dog_shapes,
    "tree": tree_shapes,
    "traffic light": traffic_light_shapes,
    "puddle": puddle_shapes,
    "ball": ball_shapes,
}
