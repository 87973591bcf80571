"""Referring prompts as users type them: ``cat . dog .`` (GroundingDINO's habit) is several phrases.

A prompt with a dot that has whitespace before it is a list of phrases separated by dots; each phrase
is grounded on its own (all decoded as one batch). Any other prompt, "the man in a red shirt" or
"St. Louis sign", is one phrase, kept as typed.
"""

from __future__ import annotations

import re

_SEPARATOR = re.compile(r"\s+\.")
_DOT = re.compile(r"\s*\.\s*")


def split_prompt(text: str, limit: int = 200) -> list[str]:
    """The phrases of a typed prompt (module doc), in order, duplicates removed, at most `limit`."""
    text = text.strip()
    if _SEPARATOR.search(text):
        parts = _DOT.split(text)
    else:
        parts = [text]
    phrases = list(dict.fromkeys(part.strip() for part in parts if part.strip()))
    return phrases[:limit]
