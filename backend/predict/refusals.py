"""Refused interactive calls, made visible. The labeling UI shows neither a non-2xx body nor an
``errors`` list, so a refused interactive call would look like "nothing happened". Instead it is answered
with 200 and its one-line reason as a marked message line (MESSAGE_PREFIX) in a TextArea the annotator
looks at: the TextArea the request came from (the typed prompt or question stays above the message), else
the Image's answer / prompt / question / caption TextArea, else, for a drawn box or a click, the per-region
TextArea of that box or click returned as a suggestion. A message is never a label, and reading results
back (interactive contexts, export) drops it. Callers without a context keep the HTTP status."""

from __future__ import annotations

import math

from backend.predict.interactive import context_items_for, last_submission
from backend.studio.labeling import ImageTarget, LabelingConfig
from backend.studio.results import TextAreaResult, new_region_id
from backend.studio.results.textarea import MESSAGE_PREFIX


def _message_for_target(target: ImageTarget, items: list[dict], reason: str) -> list[dict]:
    whole_image = target.prompt_areas + target.question_areas
    names = {area.name for area in whole_image}
    for item in items:
        if item.get("type") == "textarea" and item.get("from_name") in names:
            typed = last_submission(item)
            builder = TextAreaResult(item["from_name"], target.name)
            return [builder.build(typed, region_id=item.get("id") or None, message=reason)]
    for area in target.answer_areas + target.prompt_areas + target.question_areas + target.caption_areas:
        return [TextAreaResult.for_control(area).build("", message=reason)]
    return _message_on_drawn_box(target, items, reason) or _message_on_click(target, items, reason)


def _finite_rectangle(item: dict) -> bool:
    value = item.get("value")
    keys = ("x", "y", "width", "height")
    return (item.get("type") == "rectanglelabels" and isinstance(value, dict)
            and all(isinstance(value.get(k), (int, float)) and math.isfinite(value[k]) for k in keys)
            and value["width"] > 0 and value["height"] > 0)


def _message_on_drawn_box(target: ImageTarget, items: list[dict], reason: str) -> list[dict]:
    """The drawn box again (a new id: accepting deletes the drawn one) with the message as its text."""
    rectangles = [item for item in items if _finite_rectangle(item)]
    if not rectangles or not target.region_areas:
        return []
    drawn = ([item for item in rectangles if item.get("origin") == "manual"] or rectangles)[-1]
    region_id = new_region_id()
    box = {key: value for key, value in drawn.items() if key not in ("id", "origin", "score")}
    text = {key: box[key] for key in ("to_name", "original_width", "original_height", "image_rotation") if key in box}
    geometry = {key: drawn["value"][key] for key in ("x", "y", "width", "height", "rotation") if key in drawn["value"]}
    text.update(id=region_id, from_name=target.region_areas[0].name, type="textarea",
                value={**geometry, "text": [MESSAGE_PREFIX + " ".join(reason.split())]})
    return [{**box, "id": region_id}, text]


def _message_on_click(target: ImageTarget, items: list[dict], reason: str) -> list[dict]:
    """The last click again as a plain key point (a new id: accepting deletes the clicked one) with the
    message as its text."""
    names = {control.name for control in target.click_controls}
    clicks = [item for item in items if item.get("type") == "keypointlabels" and item.get("from_name") in names
              and isinstance(item.get("value"), dict) and _finite(item["value"], ("x", "y"))]
    if not clicks or not target.region_areas:
        return []
    click, region_id = clicks[-1], new_region_id()
    geometry = {key: click["value"][key] for key in ("x", "y", "width") if key in click["value"]}
    sizes = {key: click[key] for key in ("original_width", "original_height", "image_rotation") if key in click}
    labels = [label for label in click["value"].get("keypointlabels") or [] if isinstance(label, str)]
    point = {**sizes, "id": region_id, "from_name": click["from_name"], "to_name": target.name,
             "type": "keypointlabels", "value": {**geometry, "keypointlabels": labels}}
    text = {**sizes, "id": region_id, "from_name": target.region_areas[0].name, "to_name": target.name,
            "type": "textarea", "value": {**geometry, "text": [MESSAGE_PREFIX + " ".join(reason.split())]}}
    return [point, text]


def _finite(value: dict, keys) -> bool:
    return all(isinstance(value.get(k), (int, float)) and math.isfinite(value[k]) for k in keys)


def refusal_entry(config: LabelingConfig, context: dict, reason: str, model_version: str) -> dict:
    """The prediction entry that carries `reason` to the annotator (an empty result where the config has
    no TextArea for it: then only the log says why)."""
    results = []
    for target in config.targets:
        items = context_items_for(context, target)
        if items:
            results += _message_for_target(target, items, reason)
    return {"model_version": model_version, "score": 0.0, "result": results}
