"""Quality of a toy NExT-Chat on toy-world scenes of an unseen seed, through the model and through the backend.

    python -m benchmarks.toy_quality [--checkpoint DIR] [--seed 1000] [--count 50] [--json OUT.json]
        [--threads N] [--device cpu]

Scenes are ``model.toy_world.make_scene(seed, i)`` for i < count (training used seed 0, stage 3 seed 1);
the checkpoint's CLIP tower is DIR/vision_tower. Not a test: nothing asserts a value. Rules, IoU >= 0.5
everywhere, box IoU on pixel xyxy boxes, "matching" one-to-one and greedy by box IoU, highest first:

* A text **names** a category when the category's words appear in it as whole words (case-insensitive,
  singular: "traffic light", not "cars"); it names category C when C is the first category it names.
* ``rec_accuracy`` / ``rec_mean_iou``: per object, ``ground(image, first expression)``; correct when the
  first region's box has IoU >= 0.5 with the object's box; mean box IoU (0 when no region). Per object.
  ``rec_accuracy/<kind>``: the same, per what the expression tells the object apart by
  (model.toy_world.language.EXPRESSION_KINDS: "the car" is "category", "the red car" "colour", ...).
* ``mask_miou`` / ``mask_ciou``: the same first region's mask against the object's mask (an empty mask
  when no region): mean of the per-object IoUs; sum of intersections / sum of unions.
* ``describe_accuracy``: ``describe(image, object box)`` names the object's category. Per object.
* ``caption_recall``: objects matched by a located region of ``caption(image)`` whose phrase names the
  object's category, over all objects.
* ``category_precision`` / ``category_recall``: per category present, ``ground(image, category)`` (the
  bare word, as pre-annotation asks), its boxes matched to that category's objects: matches over
  returned boxes / over objects. ``category_absent_empty``: per category absent from the scene, the
  fraction of calls that return no region.
* ``backend_box_precision`` / ``backend_box_recall`` (overall, and ``/label`` per label): POST ``/predict``
  (label_config/boxes_polygons.xml, the image as a PNG data URI) to the app built in process on the same
  model; per label of the config whose category is in the scene, its rectanglelabels boxes (percent back to
  pixels) matched to the category's objects. ``backend_absent_empty``: per config label absent from the
  scene, the fraction with no box. ``backend_polygon_ciou``: per present label, the union of its
  polygonlabels polygons (rasterised) against the union of its objects' masks; sum of intersections /
  sum of unions over (scene, label).
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
from pathlib import Path

import numpy as np
import torch

from backend.http.app import create_app
from backend.settings import load_settings
from backend.studio.labeling import parse_label_config
from model import NextChat
from model.stage3.metrics import iou_counts
from model.toy_world import CATEGORIES, make_scene
from model.toy_world.language import EXPRESSION_KINDS, expression_kind

from .common import emit_report
from .report import _table
from .toy_metrics import (
    IOU_THRESHOLD,
    Tally,
    box_iou,
    greedy_matches,
    label_box_matches,
    label_polygon_counts,
    names_category,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOY_CHECKPOINT = ROOT / "weights" / "nextchat-toy"  # where the shipped toy checkpoint lives
LABEL_CONFIG = ROOT / "label_config" / "boxes_polygons.xml"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"error: {message}\n")


def parse_args(argv) -> argparse.Namespace:
    parser = _Parser(prog="python -m benchmarks.toy_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_TOY_CHECKPOINT),
                        help=f"toy checkpoint folder, tower in ./vision_tower (default {DEFAULT_TOY_CHECKPOINT})")
    parser.add_argument("--seed", type=int, default=1000, help="toy-world seed of the scenes (default 1000)")
    parser.add_argument("--count", type=int, default=50, help="scenes (default 50)")
    parser.add_argument("--json", help="also write the report as JSON here (and print it)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.count < 1 or args.seed < 0 or (args.threads is not None and args.threads < 1):
        parser.error("--count and --threads must be >= 1, --seed >= 0")
    if not (Path(args.checkpoint) / "config.json").is_file():
        parser.error(f"no checkpoint folder (with config.json) at {args.checkpoint}")
    return args


def first_region(regions):
    return regions[0] if regions else None


# ------------------------------------------------------------------------------ through the model
def rec_and_masks(nc, scene, tally: Tally) -> None:
    for obj in scene.objects:
        region = first_region(nc.ground(scene.image, obj.expressions[0]))
        iou = box_iou(region.box, obj.box) if region else 0.0
        tally.add("rec_accuracy", float(iou >= IOU_THRESHOLD))
        kind = expression_kind(obj.category, obj.colour, obj.size, obj.expressions[0])
        tally.add(f"rec_accuracy/{kind}", float(iou >= IOU_THRESHOLD))
        tally.add("rec_mean_iou", iou)
        pred = region.mask if region else np.zeros_like(obj.mask)
        inter, union = iou_counts(pred, obj.mask)
        tally.add("mask_miou", inter / union if union else 0.0)
        tally.add("mask_ciou", inter, union)


def descriptions(nc, scene, tally: Tally) -> None:
    for obj in scene.objects:
        tally.add("describe_accuracy", float(names_category(nc.describe(scene.image, obj.box), obj.category)))


def caption_recall(nc, scene, tally: Tally) -> None:
    regions, objects = nc.caption(scene.image).regions, scene.objects
    matches = greedy_matches([r.box for r in regions], [o.box for o in objects],
                             allowed=lambda i, j: names_category(regions[i].phrase, objects[j].category))
    tally.add("caption_recall", len(matches), len(objects), len(objects))


def category_grounding(nc, scene, tally: Tally) -> None:
    present = {o.category for o in scene.objects}
    for category in CATEGORIES:
        boxes = [r.box for r in nc.ground(scene.image, category)]
        if category not in present:
            tally.add("category_absent_empty", float(not boxes))
            continue
        truth = [o.box for o in scene.objects if o.category == category]
        matched = len(greedy_matches(boxes, truth))
        tally.add("category_precision", matched, len(boxes), len(boxes))
        tally.add("category_recall", matched, len(truth), len(truth))


# ------------------------------------------------------------------------------ through the backend
def png_data_uri(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def config_labels(xml: str) -> list[str]:
    controls = [c for t in parse_label_config(xml).targets for c in t.region_controls]
    return [label.value for c in controls if c.kind == "rectanglelabels" for label in c.prompt_labels]


def predict(client, xml: str, scene) -> list[dict]:
    body = {"tasks": [{"id": scene.index + 1, "data": {"image": png_data_uri(scene.image)}}],
            "label_config": xml, "project": "1.1", "params": {"context": None}}
    reply = client.post("/predict", json=body)
    if reply.status_code != 200:
        raise RuntimeError(f"/predict answered {reply.status_code}: {reply.get_data(as_text=True)[:200]}")
    return reply.get_json()["results"][0]["result"]


def backend_scene(client, xml: str, labels: list[str], scene, tally: Tally) -> None:
    results = predict(client, xml, scene)
    for label in labels:
        matched, returned, true = label_box_matches(results, label, scene)
        if not true:
            tally.add("backend_absent_empty", float(not returned))
            continue
        for name in ("backend_box_precision", f"backend_box_precision/{label}"):
            tally.add(name, matched, returned, returned)
        for name in ("backend_box_recall", f"backend_box_recall/{label}"):
            tally.add(name, matched, true, true)
        tally.add("backend_polygon_ciou", *label_polygon_counts(results, label, scene))


# ------------------------------------------------------------------------------ the run
def metric_names(labels: list[str]) -> list[str]:
    names = ["rec_accuracy", *(f"rec_accuracy/{kind}" for kind in EXPRESSION_KINDS), "rec_mean_iou",
             "mask_miou", "mask_ciou", "describe_accuracy", "caption_recall", "category_precision",
             "category_recall", "category_absent_empty", "backend_box_precision", "backend_box_recall",
             "backend_absent_empty", "backend_polygon_ciou"]
    return names + [f"backend_box_{kind}/{label}" for label in labels for kind in ("precision", "recall")]


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = Path(args.checkpoint)
    nc = NextChat.from_pretrained(str(checkpoint), vision_tower=str(checkpoint / "vision_tower"), device=args.device)
    client = create_app(load_settings({}, request_deadline_s=600.0), nc).test_client()
    xml = LABEL_CONFIG.read_text()
    labels = config_labels(xml)
    tally, objects = Tally(metric_names(labels)), 0
    for index in range(args.count):
        scene = make_scene(args.seed, index)
        objects += len(scene.objects)
        for measure in (rec_and_masks, descriptions, caption_recall, category_grounding):
            measure(nc, scene, tally)
        backend_scene(client, xml, labels, scene, tally)
    return {"checkpoint": str(checkpoint), "model_version": nc.model_version, "seed": args.seed,
            "scenes": args.count, "objects": objects, "label_config": LABEL_CONFIG.name, "labels": labels,
            "iou_threshold": IOU_THRESHOLD, "metrics": tally.report()}


def render(report: dict) -> str:
    title = (f"toy quality: {report['model_version']} on toy-world seed {report['seed']}, "
             f"scenes 0..{report['scenes'] - 1} ({report['objects']} objects), "
             f"backend config {report['label_config']}, IoU >= {report['iou_threshold']}")
    rows = [[name, "n/a" if m["value"] is None else f"{m['value']:.3f}", m["count"]]
            for name, m in report["metrics"].items()]
    return title + "\n" + _table(["metric", "value", "count"], rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args)
    table = render(report)
    if args.json:
        emit_report(report, args.json, table)
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
