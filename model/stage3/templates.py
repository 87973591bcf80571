"""Question templates for stage-3 samples: the backend's one, or the reference's pool of 60.

A template holds ``{expr}``; the expression stays user text (never markup), the rest is markup, as in
:func:`model.prompts.referring`. The training answer is ``Answer: <at> <boxes> .``.
"""

from __future__ import annotations

from .. import prompts

BACKEND = "backend"
REFERENCE_POOL = "reference-pool"
TEMPLATE_CHOICES = (BACKEND, REFERENCE_POOL)
ANSWER_MARKUP = " Answer: <at> <boxes> ."

_VERBS = ("Where is", "Can you find", "Can you detect", "Can you locate", "Please find", "Please detect",
          "Please locate", "Find", "Detect", "Locate")
_STATEMENTS = ("Please find", "Find")  # end with "." when nothing follows the expression


def _places(verb: str) -> tuple[str, ...]:
    return ("", " in the image", " in image") if verb == "Where is" else ("", " in image", " in the image")


def reference_pool() -> list[str]:
    """The release's REC question pool (60 templates): 10 verbs x 3 places, with and without a final mark."""
    marked, bare = [], []
    for verb in _VERBS:
        for place in _places(verb):
            end = "." if (verb in _STATEMENTS and not place) else "?"
            marked.append(f"{verb} {{expr}}{place}{end}")
            bare.append(f"{verb} {{expr}}{place}")
    return marked + bare


def templates_for(choice: str) -> list[str]:
    if choice == BACKEND:
        return [prompts.REC_TEMPLATE]
    if choice == REFERENCE_POOL:
        return reference_pool()
    raise ValueError(f"unknown template choice {choice!r}; use one of {list(TEMPLATE_CHOICES)}")


def question_turn(template: str, expression: str) -> prompts.UserTurn:
    """The user turn of ``template`` with ``expression`` as plain text."""
    if template.count("{expr}") != 1:
        raise ValueError(f"template {template!r} must hold {{expr}} once")
    head, tail = template.split("{expr}")
    parts = [(head, True), (expression, False), (tail, True)]
    return prompts.UserTurn(parts=[p for p in parts if p[0]], box_order=[])
