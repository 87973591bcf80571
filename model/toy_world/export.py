"""Writing toy scenes to a folder: images, scenes.jsonl (all the truth) and res.jsonl (stage-3 records).

Layout of DIR: `images/toy-SEED-INDEX.png|.jpg` (no EXIF; JPEG quality 92), `scenes.jsonl` (one scene a
line, masks as compressed COCO RLE with `counts` a str) and `res.jsonl` (one object a line in the
stage-3 format: `mask` a list holding one uncompressed RLE, `{"size": [H, W], "counts": [ints]}`,
column-major runs starting with a 0-run, which pycocotools' frPyObjects reads).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .scenes import Scene, caption_text, make_scene

FORMATS = ("png", "jpg", "mixed")
JPEG_QUALITY = 92


def mask_rle(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of a 2-D mask via pycocotools, `counts` as a str (JSON-safe)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def uncompressed_rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE: run lengths over the column-major pixels, the first run of zeros."""
    height, width = mask.shape
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(height), int(width)], "counts": [int(c) for c in counts]}


def image_name(scene: Scene, image_format: str) -> str:
    """toy-SEED-INDEX.png or .jpg; "mixed" alternates, PNG for even indices."""
    suffix = image_format if image_format != "mixed" else ("png" if scene.index % 2 == 0 else "jpg")
    return f"toy-{scene.seed}-{scene.index}.{suffix}"


def save_image(scene: Scene, path: Path) -> None:
    if path.suffix == ".jpg":
        scene.image.save(path, format="JPEG", quality=JPEG_QUALITY)
    else:
        scene.image.save(path, format="PNG")


def scene_record(scene: Scene, file_name: str) -> dict:
    objects = [
        {"category": o.category, "colour": o.colour, "size": o.size, "box": list(o.box), "mask": mask_rle(o.mask),
         "expressions": list(o.expressions), "description": o.description}
        for o in scene.objects
    ]
    return {"file_name": file_name, "seed": scene.seed, "index": scene.index, "width": scene.width,
            "height": scene.height, "ground": scene.ground, "style": scene.style, "caption": scene.caption,
            "caption_text": caption_text(scene), "objects": objects}


def res_records(scene: Scene, file_name: str) -> list[dict]:
    """One stage-3 record per object."""
    return [
        {"img_path": file_name, "expressions": list(o.expressions), "height": scene.height, "width": scene.width,
         "bbox": list(o.box), "mask": [uncompressed_rle(o.mask)], "kind": "brush", "source": "toy_world",
         "task_id": scene.index, "region_id": f"toy-{scene.seed}-{scene.index}-{number}"}
        for number, o in enumerate(scene.objects)
    ]


def write_dataset(out_dir, seed: int, count: int, long_side: int = 256, style: str = "plain",
                  image_format: str = "png") -> tuple[int, int]:
    """Scenes 0 .. count-1 of `seed` written to `out_dir`; returns (scenes, objects) written."""
    if image_format not in FORMATS:
        raise ValueError(f"image format must be one of {', '.join(FORMATS)}, got {image_format!r}")
    root = Path(out_dir)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    objects = 0
    with open(root / "scenes.jsonl", "w", encoding="utf-8") as scenes_file, \
            open(root / "res.jsonl", "w", encoding="utf-8") as res_file:
        for index in range(count):
            scene = make_scene(seed, index, long_side, style)
            name = image_name(scene, image_format)
            save_image(scene, images / name)
            scenes_file.write(json.dumps(scene_record(scene, name)) + "\n")
            for record in res_records(scene, name):
                res_file.write(json.dumps(record) + "\n")
            objects += len(scene.objects)
    return count, objects
