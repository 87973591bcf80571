"""Prompt construction for NExT-Chat v1 (docs/model.md): the vicuna_v1.1 template and task prompts.

A prompt is a list of ``(text, is_markup)`` parts. Markup parts may hold model tokens
(``<im_start>``, ``<at>``, ``<boxes>``); user parts are always encoded as plain text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
BOX_PLACEHOLDER = "<at> <boxes>"

# Task templates of the release (config/_base_/dataset/template/*.json, v1).
REC_TEMPLATE = "Where is {expr} in the image?"
REG_TEMPLATE = "Please describe {objs}."
GC_PROMPT = "Can you describe the image and include object locations?"
VQA_LOC_SUFFIX = " Please mention related object locations."

Parts = list[tuple[str, bool]]
_REFERENCE_RE = re.compile(r"\[[^\[\]]*\]")


class PromptError(ValueError):
    """A prompt that cannot be built (for example a box reference without a box)."""


@dataclass(frozen=True)
class UserTurn:
    parts: Parts            # the user text, with box references already turned into markup
    box_order: list[int]    # indices into the caller's boxes, one per <boxes> token, in order


def image_markup(num_image_tokens: int) -> str:
    return "<im_start>" + "<im_patch>" * num_image_tokens + "<im_end>"


def render(turn: UserTurn, num_image_tokens: int) -> Parts:
    """``<system> USER: <image> <text> ASSISTANT:`` with the image expanded to its tokens."""
    head = f"{SYSTEM} USER: {image_markup(num_image_tokens)} "
    return [(head, True), *turn.parts, (" ASSISTANT:", True)]


def plain(text: str) -> UserTurn:
    """Free text, no box references."""
    return UserTurn(parts=[(text, False)], box_order=[])


def with_box_references(text: str, num_boxes: int) -> UserTurn:
    """Turn ``[0]`` / ``[0,1]`` references into ``<at> <boxes>`` markup, as the release's demo does.

    A reference is a bracketed JSON list of non-negative ints (``",]"`` read as ``"]"``). Any
    other bracketed text stays text. A reference to a box that was not given is an error.
    """
    text = text.replace(",]", "]")
    parts: Parts = []
    order: list[int] = []
    cursor = 0
    for match in _REFERENCE_RE.finditer(text):
        group = _parse_group(match.group(0))
        if group is None:
            continue
        missing = [i for i in group if i >= num_boxes]
        if missing:
            raise PromptError(f"box reference {match.group(0)} names box {missing[0]} but {num_boxes} "
                              f"box(es) were given")
        if match.start() > cursor:
            parts.append((text[cursor:match.start()], False))
        parts.append((" ".join([BOX_PLACEHOLDER] * len(group)), True))
        order.extend(group)
        cursor = match.end()
    if cursor < len(text):
        parts.append((text[cursor:], False))
    return UserTurn(parts=parts, box_order=order)


def _parse_group(span: str) -> list[int] | None:
    try:
        value = json.loads(span)
    except ValueError:
        return None
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return None
    return value


# ---------------------------------------------------------------------------- task prompts
def referring(expression: str) -> UserTurn:
    """REC / RES: locate (and segment) what the expression names."""
    head, tail = REC_TEMPLATE.split("{expr}")
    return UserTurn(parts=[(head, True), (expression, False), (tail, True)], box_order=[])


def region_description() -> UserTurn:
    """REG: describe the one input box."""
    head, tail = REG_TEMPLATE.split("{objs}")
    return UserTurn(parts=[(head, True), (BOX_PLACEHOLDER, True), (tail, True)], box_order=[0])


def grounded_caption() -> UserTurn:
    """GC: a caption with every mentioned object located."""
    return UserTurn(parts=[(GC_PROMPT, True)], box_order=[])


def question_with_locations(question: str, num_boxes: int = 0) -> UserTurn:
    """VQA with locations; the question may reference input boxes as [0], [1]."""
    turn = with_box_references(question, num_boxes) if num_boxes else plain(question)
    return UserTurn(parts=[*turn.parts, (VQA_LOC_SUFFIX, True)], box_order=turn.box_order)
