"""Choices answered by NExT-Chat: a closed question about the image, or about one region as [0].

The question (label_config/README.md, "Choices"):

* single choice (``choice="single"`` / ``"single-radio"``): ONE question listing the choices,
  ``"<question> Answer with one of: red, green, blue."``, where the question is the Choices' ``prompt``
  or "Which of these best describes the image?" ("... describes [0]?" for a region). The free answer is
  mapped to a choice by backend.studio.phrases (exact, plural, synonym, contained, similar, else the
  ``catch_all`` choice). One question, because the model then weighs the options against each other
  and the request costs one decode;
* ``choice="multiple"``: ONE YES/NO QUESTION PER CHOICE (the choice's own ``prompt``, else
  ``'Does "wet" describe the image? Answer yes or no.'``, or with the Choices' prompt
  ``'<prompt> Is "wet" a correct answer? Answer yes or no.'``). A list question ("which apply?") would
  need the model to enumerate, which a grounding VQA model does poorly; yes/no is what it answers
  best, and each choice is decided on its own. Every choice answered "yes" is selected; none: the
  ``catch_all`` choice if there is one, else no result.

About a region (``perRegion="true"``) the region's box is the question's input box ``[0]``; a prompt
without ``[0]`` is asked as ``"Regarding [0]: <prompt>"``. ``whenLabelValue`` limits the regions asked
about. The result's score says how directly the answer named the choice: the phrase match's score (1.0
for an exact, plural, synonym or whole-word match, the similarity ratio otherwise, 0.0 for the catch-all),
divided by how many choices a single-choice answer names; for several choices, their mean. NExT-Chat's
answers carry no probability of their own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence

from PIL import Image

from backend.predict.calls import ModelCalls
from backend.settings import Settings
from backend.studio.choices_control import ChoicesControl
from backend.studio.config_parts import Label
from backend.studio.labeling import ImageTarget
from backend.studio.phrases import YES, PhraseMatcher, yes_or_no
from backend.studio.results import ChoicesResult, anchor_shape
from model.prompts import PromptError, with_box_references

log = logging.getLogger("backend.predict")

IMAGE_QUESTION = "Which of these best describes the image?"
REGION_QUESTION = "Which of these best describes [0]?"


def about_region(question: str) -> str:
    """A question about region [0]: as it is when it names [0] (or another box), else prefixed."""
    return question if with_box_references(question, sys.maxsize).box_order else f"Regarding [0]: {question}"


def single_question(control: ChoicesControl, region: bool) -> str:
    question = control.prompt or (REGION_QUESTION if region else IMAGE_QUESTION)
    if region and control.prompt:
        question = about_region(question)
    return f"{question} Answer with one of: {', '.join(choice.value for choice in control.askable)}."


def yes_no_question(control: ChoicesControl, choice: Label, region: bool) -> str:
    if choice.prompt:
        question = choice.prompt
    elif control.prompt:
        question = f'{control.prompt} Is "{choice.value}" a correct answer?'
    else:
        question = f'Does "{choice.value}" describe {"[0]" if region else "the image"}?'
    return f"{about_region(question) if region else question} Answer yes or no."


class ChoiceQuestions:
    """Asks the Choices of an Image and builds their results."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def for_image(self, target: ImageTarget, image: Image.Image, calls: ModelCalls) -> list[dict]:
        """Results of the whole-image (and per-image) Choices of ``target``."""
        results = []
        for control in target.choices:
            if control.per_region:
                continue
            answer = self.answer(control, image, [], calls)
            if answer is not None:
                result = ChoicesResult.for_control(control).build(answer[0], score=answer[1])
                if control.per_item:
                    result["item_index"] = 0  # a single image is item 0 (a valueList's results get their own)
                results.append(result)
        return results

    def for_region(self, target: ImageTarget, image: Image.Image, box: Sequence[float], shapes: list[dict],
                   region_labels: Iterable[str], calls: ModelCalls) -> list[dict]:
        """Results of the per-region Choices for one region (``box``: pixel xyxy), attached to its first
        shape; [] when the region made no shape."""
        anchor = anchor_shape(shapes)
        wanted = [control for control in target.choices if control.per_region and control.applies_to(region_labels)]
        if anchor is None or not wanted:
            return []
        results = []
        for control in wanted:
            answer = self.answer(control, image, [tuple(box)], calls)
            if answer is not None:
                results.append(ChoicesResult.for_control(control).attach(answer[0], anchor, score=answer[1]))
        return results

    def answer(self, control: ChoicesControl, image: Image.Image, boxes: list,
               calls: ModelCalls) -> tuple[list[str], float] | None:
        """(the selected choices' result values, score), or None when the answers select nothing."""
        if not control.askable:
            return None
        try:
            found = self._multiple(control, image, boxes, calls) if control.multiple else \
                self._single(control, image, boxes, calls)
        except PromptError as exc:
            log.warning("Choices %r not asked: %s", control.name, exc)
            return None
        if not found and control.catch_all is not None:
            return [control.catch_all.result_value], 0.0
        if not found:
            return None
        return [choice.result_value for choice, _ in found], sum(score for _, score in found) / len(found)

    @staticmethod
    def _single(control, image, boxes, calls) -> list[tuple[Label, float]]:
        reply = calls.ask(image, single_question(control, bool(boxes)), boxes)
        matcher = PhraseMatcher(control.askable)
        match = matcher.match(reply.text)
        if match is None:
            log.info("Choices %r: the answer %r names none of the choices", control.name, reply.text)
            return []
        named = {found.label.value for found in (matcher.match(part) for part in _parts(reply.text)) if found}
        return [(match.label, match.score / max(1, len(named | {match.label.value})))]

    @staticmethod
    def _multiple(control, image, boxes, calls) -> list[tuple[Label, float]]:
        chosen = []
        for choice in control.askable:
            reply = calls.ask(image, yes_no_question(control, choice, bool(boxes)), boxes)
            verdict = yes_or_no(reply.text)
            if verdict is None:
                log.info("Choices %r, %r: the answer %r says neither yes nor no", control.name, choice.value,
                         reply.text)
            elif verdict.label == YES:
                chosen.append((choice, verdict.score))
        return chosen


def _parts(answer: str) -> list[str]:
    """An answer cut at commas, "or", "and" and "/": the options a hedging answer names one by one."""
    text = answer.replace("/", ",")
    for word in (" or ", " and "):
        text = text.replace(word, ",")
    return [part.strip() for part in text.split(",") if part.strip()]
