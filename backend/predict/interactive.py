"""Interactive (auto-annotation) calls: what the annotator typed or drew, answered as suggestions.

Label Studio forwards the browser's `context.result` (docs/label-studio.md). Per Image, first match wins:
1. a question TextArea result -> `ask`: the answer TextArea plus the regions the answer locates, each
   labelled from its phrase by backend.studio.phrases, the phrase as its per-region text; the question is
   echoed. Input boxes (`question_boxes`): rectangles sent in the same context, else those of the
   annotator's latest draft of the task. A typed question's context holds only the TextArea, and
   Label Studio sends the asking user's drafts along; the editor saves a draft ~5 s after a change
   (read in LS 1.23's editor source, not yet seen in a browser). "[0]", "[1]" in the question name
   the boxes in that order; a question without references about "this person" / "that car" / "here"
   (or, for boxes in the context, any question) gets the last drawn box as [0];
2. a prompt TextArea result -> `ground` the referring expression. Its regions get the label named as
   "label: expression", else the label selected in the context, else the label the expression matches,
   else each control's first label. The prompt is echoed back so it stays visible;
3. clicks with a smart KeyPointLabels (Alt+click: negative) -> one mask from all of them, on the
   rectangle sent along, on the region already on the task under them, or alone
   (backend.predict.clicks);
4. a rectangle drawn with the smart tool (the last `origin: "manual"` one, else the last) ->
   `describe` it into the per-region TextArea, segment it into the polygon / brush / bitmask controls and
   ask its per-region Choices (backend.predict.choices). The box
   is re-emitted with a NEW id and the text carries that id: Label Studio deletes the dynamic box when
   the suggestion is accepted, and text tied to the deleted id would be orphaned (docs/label-studio.md).
A prompt or question TextArea may hold several submissions (no maxSubmissions): the last one is asked,
and only it is echoed, so typing a new one and pressing Add asks again.
"""

from __future__ import annotations

import logging
import math
import re
import sys

from backend.predict.calls import ModelCalls
from backend.predict.clicks import answer_clicks, read_clicks
from backend.predict.errors import InvalidContext
from backend.predict.workflows import RegionWorkflows
from backend.studio.phrases import labels_for_region, split_label_prefix
from backend.studio.results import new_region_id, region_results, result_labels
from backend.studio.results.readers import result_box, result_texts
from model.prompts import PromptError, with_box_references

log = logging.getLogger("backend.predict")

_DEICTIC = re.compile(r"\b(?:this|these|that|those|here)\b", re.IGNORECASE)
_NEXT_WORD = re.compile(r"\s+([^\W\d_][\w'-]*)")
# words after "that"/"this" that show it is not pointing at a thing ("a car that is red", "this is")
_NOT_A_NOUN = frozenset("""is are was were be been has have had does do did can could will would should may might
must the a an it its he she they we you i in on at of to for with and or but not""".split())


def context_items_for(context: dict, target) -> list[dict]:
    """The context results that belong to this Image."""
    return [item for item in context.get("result", []) if isinstance(item, dict) and item.get("to_name") == target.name]


def last_submission(item: dict) -> str:
    """The newest text submitted to a TextArea result (its last one; the backend's messages left out)."""
    texts = [text.strip() for text in result_texts(item) if text.strip()]
    return texts[-1] if texts else ""


def _text_item(items, areas, max_chars: int):
    """(item, its last submission) of the first TextArea result from one of `areas`, else (None, "")."""
    names = {area.name for area in areas}
    for item in items:
        if item.get("from_name") in names and item.get("type") == "textarea":
            value = item.get("value")
            if not isinstance(value, dict):
                raise InvalidContext(f"context result {item.get('from_name')!r} has no value object")
            text = last_submission(item)
            if len(text) > max_chars:
                raise InvalidContext(f"{item.get('from_name')} text longer than MAX_PROMPT_CHARS={max_chars}")
            if text:
                return item, text
    return None, ""


def _echo(item: dict, text: str) -> dict:
    """The typed text sent back under the same id, so the TextArea keeps showing it."""
    return {"id": item.get("id") or new_region_id(), "from_name": item["from_name"], "to_name": item["to_name"],
            "type": "textarea", "value": {"text": [text]}}


def _rectangles(items) -> list[dict]:
    return [item for item in items if item.get("type") == "rectanglelabels"]


def drawn_box_pixels(item: dict, width: int, height: int) -> tuple[float, float, float, float]:
    """Pixel xyxy of a drawn rectangle, clamped to the image; InvalidContext for bad geometry."""
    value = item.get("value")
    keys = ("x", "y", "width", "height")
    if not isinstance(value, dict) or not all(isinstance(value.get(k), (int, float)) for k in keys):
        raise InvalidContext("drawn box needs numeric x, y, width, height")
    numbers = [float(value[k]) for k in keys] + [float(value.get("rotation") or 0)]
    if not all(math.isfinite(n) for n in numbers) or value["width"] <= 0 or value["height"] <= 0:
        raise InvalidContext("drawn box has non-finite or non-positive geometry")
    x0, y0, x1, y1 = result_box(item, width, height)
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InvalidContext("drawn box lies outside the image or is under one pixel")
    return (x0, y0, x1, y1)


def has_box_reference(question: str) -> bool:
    """Whether `question` names an input box as [0], [0,1]... (the model's own grammar, model.prompts)."""
    return bool(with_box_references(question, sys.maxsize).box_order)


def refer_to_box(question: str) -> str | None:
    """`question` with " [0]" after its first pointing phrase ("this person" -> "this person [0]",
    "what is that?" -> "what is that [0]?", "here" -> "here [0]"), or None when it has none."""
    for match in _DEICTIC.finditer(question):
        following = _NEXT_WORD.match(question, match.end())
        word = following.group(1).lower() if following else None
        pointer = match.group(0).lower()
        if pointer == "that" and word in _NOT_A_NOUN:
            continue  # "the car that is parked": a relative clause, not a pointer
        if pointer == "here" or word in _NOT_A_NOUN:
            following = None  # "here", "is this a dog?": the reference goes right after the pointer
        end = following.end() if following else match.end()
        return f"{question[:end]} [0]{question[end:]}"
    return None


def _draft_rectangles(task: dict, target) -> list[dict]:
    """Rectangles on this Image in the latest of the task's drafts (Label Studio sends the asking
    annotator's drafts with an interactive call; the editor saves them as the annotator works)."""
    drafts = [draft for draft in task.get("drafts") or []
              if isinstance(draft, dict) and isinstance(draft.get("result"), list)]
    if not drafts:
        return []
    latest = max(drafts, key=lambda draft: str(draft.get("updated_at") or draft.get("created_at") or ""))
    return [item for item in latest["result"] if isinstance(item, dict)
            and item.get("type") == "rectanglelabels" and item.get("to_name") == target.name]


def _last_drawn(rectangles: list[dict]) -> dict:
    manual = [rect for rect in rectangles if rect.get("origin") == "manual"]
    return (manual or rectangles)[-1]


def question_boxes(question, task, target, items, width, height) -> tuple[str, list]:
    """(the question as the model gets it, its input boxes in pixel xyxy); see the module doc."""
    sent_along = _rectangles(items)
    if sent_along:
        rectangles = sent_along
    else:  # a draft's rectangle that cannot be used is left out (logged), not a 400
        rectangles = [rect for rect in _draft_rectangles(task, target) if _usable(rect, width, height)]
    if has_box_reference(question):
        if not rectangles:
            raise InvalidContext("the question refers to a box ([0]) but none is drawn; draw it first")
        return question, [drawn_box_pixels(rect, width, height) for rect in rectangles]
    pointed = refer_to_box(question)
    if rectangles and (pointed or sent_along):
        return pointed or f"Regarding [0]: {question}", [drawn_box_pixels(_last_drawn(rectangles), width, height)]
    return question, []


def _usable(rect: dict, width: int, height: int) -> bool:
    try:
        drawn_box_pixels(rect, width, height)
    except InvalidContext as exc:
        log.info("draft rectangle %r left out of the question's boxes: %s", rect.get("id"), exc)
        return False
    return True


def _selected_label(items) -> str | None:
    """The label of the last labelled region in the context (what the annotator has selected)."""
    for item in reversed(items):
        labels = result_labels(item)
        if labels:
            return labels[0]
    return None


def predict_interactive(flows: RegionWorkflows, task, target, image, items, calls: ModelCalls) -> list[dict]:
    if not items:
        return []
    max_chars = flows.settings.max_prompt_chars
    item, question = _text_item(items, target.question_areas, max_chars)
    if item is not None:
        return _ask_question(flows, task, target, image, items, item, question, calls)
    item, prompt = _text_item(items, target.prompt_areas, max_chars)
    if item is not None:
        return _typed_prompt(flows, target, image, items, item, prompt, calls)
    rectangles = _rectangles(items)
    clicks = read_clicks(target, items, image.width, image.height, flows.settings.max_clicks)
    if clicks is not None:
        drawn = None
        if rectangles:
            rect = _last_drawn(rectangles)
            drawn = (drawn_box_pixels(rect, image.width, image.height), next(iter(result_labels(rect)), None))
        return answer_clicks(flows, task, target, image, clicks, drawn, calls)
    if rectangles:
        return _drawn_box(flows, target, image, _last_drawn(rectangles), calls)
    return []


def _ask_question(flows, task, target, image, items, item, question, calls) -> list[dict]:
    asked, boxes = question_boxes(question, task, target, items, image.width, image.height)
    try:
        results = flows.answer_question(target, image, asked, boxes, calls)
    except PromptError as exc:
        raise InvalidContext(str(exc)) from None
    return results + [_echo(item, question)]


def _typed_prompt(flows, target, image, items, item, prompt, calls) -> list[dict]:
    all_labels = [label for control in target.region_controls for label in control.labels]
    prefix_label, expression = split_label_prefix(prompt, all_labels)
    wanted = prefix_label.value if prefix_label is not None else _selected_label(items)
    labels = labels_for_region(target.region_controls, expression, chosen=wanted, fallback_first=True)
    return flows.ground_expression(target, image, expression, labels, calls) + [_echo(item, prompt)]


def _drawn_box(flows, target, image, rect, calls) -> list[dict]:
    box = drawn_box_pixels(rect, image.width, image.height)
    drawn_labels = result_labels(rect)
    wanted = drawn_labels[0] if drawn_labels else None
    labels = labels_for_region(target.region_controls, wanted, chosen=wanted, fallback_first=True)
    text = calls.describe(image, box) if target.region_areas else None
    needs_mask = any(control.kind != "rectanglelabels" for control in target.region_controls)
    mask, score = None, 1.0  # the annotator's own box
    if needs_mask:
        # a drawn box is an explicit request: its mask is not gated by MASK_IOU_THRESHOLD (the score travels)
        region = calls.segment(image, box)
        mask, score = region.mask, float(region.score)
    shapes = region_results(target, image.width, image.height, labels=labels, box=box, mask=mask,
                            score=score, text=text, polygon=flows.polygon)
    return shapes + flows.region_choices(target, image, box, shapes, labels, calls)
