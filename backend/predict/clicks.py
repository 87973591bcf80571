"""Clicks that prompt and fix masks: smart KeyPointLabels results in an interactive context.

Label Studio sends a click with the smart key point tool as a key point result with ``is_positive``
(false after Alt+click), together with every other key point of the same label still on the image
(docs/label-studio.md). So one context holds all the clicks of one correction, and they give one mask.
What the clicks work on, first match wins:

1. a rectangle sent in the same context (API clients; the labeling UI sends clicks alone): SAM gets
   the box and the clicks;
2. a region already on the task under the first positive click (else the first click), in what the
   annotator sees: the latest draft of the task, else its latest annotation, else its latest prediction.
   HTTP is stateless, so the region's text is what carries the model's intent: its per-region text,
   then the whole-image prompt kept with it, then its label's referring expression. Each is grounded
   again, and the first located region that overlaps the clicked one (box IoU >= MATCH_IOU) is
   refined with the clicks (``refine``: its seg tokens and box plus the points, so what the text said
   still counts). When none overlaps, the clicked region's box and the clicks go to SAM. The answer
   reuses the clicked region's ids, so accepting it replaces the region instead of adding a copy;
3. nothing under the clicks: the clicks alone (at least one must be positive).

The mask goes to every mask control (PolygonLabels, BrushLabels), its bounding box to RectangleLabels,
and a description to the per-region TextArea (the clicked region's own text when it has one). A fixed
region keeps its label, clicks with a rectangle get the rectangle's; other clicks get the label they were
made with (else each control's first label).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from backend.predict.calls import ModelCalls
from backend.predict.errors import InvalidContext
from backend.studio.geometry import mask_to_box
from backend.studio.labeling import ImageTarget
from backend.studio.phrases import labels_for_region
from backend.studio.results import region_results, result_labels, result_mask
from backend.studio.results.readers import result_is_positive, result_point, result_texts
from model.reasons import one_line

log = logging.getLogger("backend.predict")

MATCH_IOU = 0.5  # a located region stands for the clicked one when their boxes overlap at least this much
_SHAPE_TYPES = ("rectanglelabels", "polygonlabels", "brushlabels")
_EDGE = 1e-6  # percent: a click this far off the image edge (float rounding) is put on the edge


@dataclass(frozen=True)
class Clicks:
    points: list[tuple[float, float]]  # pixel (x, y) on the image
    labels: list[int]                  # 1 positive, 0 negative (Alt+click), one per point
    label: str | None = None           # the label they were made with

    @property
    def anchor(self) -> tuple[float, float]:
        """The click that says which region is meant: the first positive one, else the first."""
        return next((p for p, label in zip(self.points, self.labels) if label == 1), self.points[0])


@dataclass
class ClickedRegion:
    """A region already on the task under the clicks: its shape per control, its box, what it says."""

    shapes: dict[str, dict]                      # control name -> shape result (ids reused by the answer)
    box: tuple[float, float, float, float]       # pixel xyxy of the clicked shape's mask
    label: str | None = None
    text: str | None = None                      # its per-region text
    expressions: list[str] = field(default_factory=list)  # what to ground again, best first


def read_clicks(target: ImageTarget, items: list[dict], width: int, height: int, max_clicks: int) -> Clicks | None:
    """The clicks on this Image's smart KeyPointLabels in the context, or None when there are none."""
    names = {control.name for control in target.click_controls}
    keypoints = [item for item in items if item.get("type") == "keypointlabels" and item.get("from_name") in names]
    if not keypoints:
        return None
    if len(keypoints) > max_clicks:
        raise InvalidContext(f"{len(keypoints)} clicks in one call, more than MAX_CLICKS={max_clicks}")
    points = [_click_pixels(item, width, height) for item in keypoints]
    labels = [int(result_is_positive(item)) for item in keypoints]
    label = next((result_labels(item)[0] for item in keypoints if result_labels(item)), None)
    return Clicks(points, labels, label)


def _click_pixels(item: dict, width: int, height: int) -> tuple[float, float]:
    value = item.get("value")
    numbers = [value.get(key) for key in ("x", "y")] if isinstance(value, dict) else []
    if len(numbers) != 2 or not all(isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n)
                                    for n in numbers):
        raise InvalidContext("a click needs numeric x and y (percent of the image)")
    x, y = numbers
    if not (-_EDGE <= x <= 100 + _EDGE and -_EDGE <= y <= 100 + _EDGE):
        raise InvalidContext(f"the click at ({x:g}%, {y:g}%) lies outside the image")
    on_image = {"x": min(max(x, 0.0), 100.0), "y": min(max(y, 0.0), 100.0)}
    return result_point({"value": on_image}, width, height)


def answer_clicks(flows, task: dict, target: ImageTarget, image, clicks: Clicks, drawn: tuple | None,
                  calls: ModelCalls) -> list[dict]:
    """The results for one set of clicks (module doc); ``drawn``: (pixel xyxy, label or None) of a rectangle
    sent along."""
    drawn_box, drawn_label = drawn if drawn is not None else (None, None)
    width, height = image.size
    clicked = None
    if drawn_box is None:
        clicked = clicked_region(target, task_results(task), clicks, width, height, flows.settings.max_prompt_chars)
        if clicked is None and 1 not in clicks.labels:
            raise InvalidContext("only negative clicks (Alt+click) and no region under them; "
                                 "click on the object first, without Alt")
    found = _mask_for(calls, image, clicks, drawn_box, clicked)
    mask = np.asarray(found.mask).astype(bool)
    if not mask.any():
        raise InvalidContext("the clicks leave an empty mask; click inside the object, without Alt")
    wanted = (clicked.label if clicked is not None else drawn_label) or clicks.label  # a fix keeps its label
    labels = labels_for_region(target.region_controls, wanted, chosen=wanted, fallback_first=True)
    text = None
    if target.region_areas:
        text = clicked.text if clicked is not None and clicked.text else calls.describe(image, mask_to_box(mask))
    results = region_results(target, width, height, labels=labels, mask=mask, score=float(found.score),
                             text=text, polygon=flows.polygon)
    return _replacing(results, clicked)


def _mask_for(calls: ModelCalls, image, clicks: Clicks, drawn_box, clicked: ClickedRegion | None):
    points, labels = clicks.points, clicks.labels
    try:
        if drawn_box is not None:
            return calls.segment(image, drawn_box, points, labels)
        if clicked is None:
            return calls.segment(image, None, points, labels)
        for expression in clicked.expressions:
            overlaps = [box_iou(region.box, clicked.box) for region in calls.ground(image, expression)]
            if overlaps and max(overlaps) >= MATCH_IOU:
                return calls.refine(image, expression, points, labels, int(np.argmax(overlaps)))
        log.info("clicks: no located region overlaps the clicked one; its box and the clicks go to SAM")
        return calls.segment(image, clicked.box, points, labels)
    except InvalidContext:
        raise
    except ValueError as exc:  # a click or label the model refuses, in one line
        raise InvalidContext(one_line(exc)) from None


def _replacing(results: list[dict], clicked: ClickedRegion | None) -> list[dict]:
    """The answer under the clicked region's ids (the first shape per control, and the text with it)."""
    if clicked is None:
        return results
    renamed: dict[str, str] = {}
    for result in results:
        old = clicked.shapes.get(result["from_name"])
        if result["type"] != "textarea" and old is not None and old["id"] not in renamed.values():
            renamed[result["id"]] = old["id"]
    return [{**result, "id": renamed.get(result["id"], result["id"])} for result in results]


# ----------------------------------------------------------------------------- regions already on the task
def task_results(task: dict) -> list[dict]:
    """What the annotator sees now: the results of their latest draft, else of the latest annotation,
    else of the latest prediction (Label Studio sends all three with an interactive call)."""
    for key in ("drafts", "annotations", "predictions"):
        entries = [entry for entry in task.get(key) or []
                   if isinstance(entry, dict) and isinstance(entry.get("result"), list)]
        if entries:
            latest = max(entries, key=lambda entry: str(entry.get("updated_at") or entry.get("created_at") or ""))
            return [item for item in latest["result"] if isinstance(item, dict)]
    return []


def clicked_region(target: ImageTarget, results: list[dict], clicks: Clicks, width: int, height: int,
                   max_chars: int) -> ClickedRegion | None:
    """The region under the anchor click (the smallest shape there, with the other controls' shapes of the
    same object), or None."""
    controls = {control.name: control for control in target.region_controls}
    x, y = clicks.anchor
    column, row = min(int(x), width - 1), min(int(y), height - 1)
    under = []  # (area, shape, box)
    for item in results:
        if (item.get("to_name") != target.name or item.get("type") not in _SHAPE_TYPES
                or item.get("from_name") not in controls):
            continue
        mask = _shape_mask(item, width, height)
        if mask is not None and mask[row, column]:
            under.append((int(mask.sum()), item, mask_to_box(mask)))
    if not under:
        return None
    _, chosen, box = min(under, key=lambda entry: entry[0])
    shapes = {chosen["from_name"]: chosen}
    for _, item, other_box in sorted(under, key=lambda entry: -box_iou(entry[2], box)):
        if item["from_name"] not in shapes and box_iou(other_box, box) >= MATCH_IOU:
            shapes[item["from_name"]] = item
    labels = result_labels(chosen)
    label = labels[0] if labels else None
    text = _region_text(target, results, shapes)
    return ClickedRegion(shapes, box, label, text, _expressions(target, results, controls[chosen["from_name"]],
                                                                label, text, max_chars))


def _shape_mask(item: dict, width: int, height: int):
    try:
        return result_mask(item, width, height)
    except (KeyError, TypeError, ValueError) as exc:
        log.info("clicks: region %r on the task has unreadable geometry (%s); left out", item.get("id"), one_line(exc))
        return None


def _region_text(target: ImageTarget, results: list[dict], shapes: dict[str, dict]) -> str | None:
    areas = {area.name for area in target.region_areas}
    ids = {shape.get("id") for shape in shapes.values()}
    for item in results:
        if item.get("type") == "textarea" and item.get("from_name") in areas and item.get("id") in ids:
            texts = [text.strip() for text in result_texts(item) if text.strip()]
            if texts:
                return texts[-1]
    return None


def _expressions(target: ImageTarget, results, control, label, text, max_chars: int) -> list[str]:
    """What to ground again for the clicked region, best first: its text, the prompt kept with it, its label's
    referring expression (each within MAX_PROMPT_CHARS)."""
    prompts = {area.name for area in target.prompt_areas}
    typed = [texts[-1].strip() for item in results
             if item.get("type") == "textarea" and item.get("from_name") in prompts
             for texts in [result_texts(item)] if texts and texts[-1].strip()]
    found = control.label(label) if label else None
    candidates = [text, *typed, found.referring_expression if found is not None else label]
    return [c for c in dict.fromkeys(c for c in candidates if c) if len(c) <= max_chars]


def box_iou(a, b) -> float:
    """Intersection over union of two pixel xyxy boxes (0 for empty ones)."""
    if a is None or b is None:
        return 0.0
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
