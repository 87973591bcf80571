"""Refused interactive calls, made visible. The labeling UI shows neither a non-2xx body nor an
``errors`` list, so a refused interactive call would look like "nothing happened". Instead it is answered
with 200 and its one-line reason as a marked message line (MESSAGE_PREFIX) in a TextArea the annotator
looks at: the TextArea the request came from (the typed prompt or question stays above the message), else
the Image's answer / prompt / question / caption TextArea, else, for a drawn box, the per-region TextArea
of that box returned as a suggestion. A message is never a label, and reading results
back (interactive contexts, export) drops it. Callers without a context keep the HTTP status."""

from __future__ import annotations

import math

from backend.predict.interactive import context_items_for
from backend.studio.labeling import ImageTarget, LabelingConfig
from backend.studio.results import TextAreaResult, new_region_id, result_text
from backend.studio.results.textarea import MESSAGE_PREFIX


def _message_for_target(target: ImageTarget, items: list[dict], reason: str) -> list[dict]:
    whole_image = target.prompt_areas + target.question_areas
    names = {area.name for area in whole_image}
    for item in items:
        if item.get("type") == "textarea" and item.get("from_name") in names:
            typed = result_text(item).strip()
            builder = TextAreaResult(item["from_name"], target.name)
            return [builder.build(typed, region_id=item.get("id") or None, message=reason)]
    for area in target.answer_areas + target.prompt_areas + target.question_areas + target.caption_areas:
        return [TextAreaResult.for_control(area).build("", message=reason)]
    return _message_on_drawn_box(target, items, reason)


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


def refusal_entry(config: LabelingConfig, context: dict, reason: str, model_version: str) -> dict:
    """The prediction entry that carries `reason` to the annotator (an empty result where the config has
    no TextArea for it: then only the log says why)."""
    results = []
    for target in config.targets:
        items = context_items_for(context, target)
        if items:
            results += _message_for_target(target, items, reason)
    return {"model_version": model_version, "score": 0.0, "result": results}
