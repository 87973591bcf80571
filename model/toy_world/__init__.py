"""A deterministic toy world: flat-coloured street scenes with exact ground truth, to train a tiny
NExT-Chat from scratch (referring expressions -> boxes and masks, region descriptions, grounded
captions) and to give the no-GPU demo its images.

Public API:

    CATEGORIES                        the object categories (exact strings)
    make_scene(seed, index, long_side=256, style="plain") -> Scene
        scene `index` of `seed`, depending on (seed, index) only; long side `long_side` px, the short
        side from the scene's aspect ratio (4:3, 3:4, 16:9, 1:1, 3:2 or 2:3); style "plain", "striped" or
        "checkered" (objects' fills: flat, two-colour stripes, a checkerboard with near-white)
    make_scenes(seed, count, long_side=256, style="plain") -> Iterator[Scene]    scenes 0 .. count-1
    caption_text(scene, marker="") -> str
        the caption with each `{i}` marker replaced by `marker` ("<at> <boxes>"), or removed
    mask_rle(mask) -> dict            compressed COCO RLE (pycocotools), `counts` a str
    uncompressed_rle(mask) -> dict    the stage-3 form, `counts` a list of ints
    write_dataset(out_dir, seed, count, long_side=256, style="plain", image_format="png") -> (scenes, objects)
    scene_layout(seed, index) -> Layout, draw_scene(layout, width, height, style="plain") -> Scene
        the same scene drawn at any pixel size (make_scene is these two with the aspect's size);
    render(layout, width, height, style="plain") -> (image, full masks)    the drawing alone

Conventions: boxes are pixel xyxy ints with x2, y2 exclusive (x2 = max x + 1), the tight box of the
object's visible mask; masks are bool [H, W] arrays of the visible pixels (the object's own drawn
pixels minus those of objects drawn after it), so the masks of a scene do not overlap; `objects` are
in drawing order (puddles, then far to near), and a caption's `{i}` is the index into it. An object
less than half visible, or under 0.3 % of the image, is dropped and mentioned nowhere. All phrases are
lower case, words separated by single spaces.
Command line: ``python -m model.toy_world --seed S --count N --out DIR`` (see __main__.py).
"""

from .draw import render
from .export import mask_rle, uncompressed_rle, write_dataset
from .scenes import Scene, ToyObject, caption_text, draw_scene, make_scene, make_scenes, scene_layout
from .world import CATEGORIES, GROUNDS, STYLES, Layout

__all__ = [
    "CATEGORIES",
    "GROUNDS",
    "STYLES",
    "Layout",
    "Scene",
    "ToyObject",
    "caption_text",
    "draw_scene",
    "make_scene",
    "make_scenes",
    "mask_rle",
    "render",
    "scene_layout",
    "uncompressed_rle",
    "write_dataset",
]
