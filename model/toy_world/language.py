"""Referring expressions, region descriptions and grounded captions from an object's attributes.

Every phrase is lower case with single spaces. An expression picks out exactly one object of its
scene: it names the category plus what sets the object apart (colour, size, left/right-most). Left and
right compare box centres (fractions of the width) and need a gap of `SIDE_GAP` to every other
candidate. A caption template marks each mention with `{i}`, i the object's index in the scene.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

SIDE_GAP = 0.10
MAX_EXPRESSIONS = 3
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth")
MARKER = re.compile(r"\{\d+\}")


@dataclass(frozen=True)
class Facts:
    """What language may say about an object: `centre` is its box centre as a fraction of the width."""

    category: str
    colour: str | None
    size: str | None
    centre: float


def noun_phrase(article: str, category: str, colour: str | None = None, size: str | None = None) -> str:
    """ "the big red car", "a person in a blue shirt", "the traffic light showing green"."""
    words = [article] + ([size] if size else [])
    if colour and category not in ("person", "traffic light"):
        words.append(colour)
    words.append(category)
    if colour and category == "person":
        words += ["in", article, colour, "shirt"]
    elif colour and category == "traffic light":
        words += ["showing", colour]
    return " ".join(words)


def description(facts: Facts) -> str:
    return noun_phrase("a", facts.category, facts.colour, facts.size)


def extreme_side(facts: list[Facts], i: int, group: list[int]) -> str | None:
    """"left" / "right" when object i is that far side of the other members of `group` by SIDE_GAP."""
    others = [facts[j].centre for j in group if j != i]
    if not others:
        return None
    if facts[i].centre + SIDE_GAP <= min(others):
        return "left"
    if facts[i].centre - SIDE_GAP >= max(others):
        return "right"
    return None


def candidate_expressions(facts: list[Facts], i: int) -> list[str]:
    """Every unambiguous expression for object i, most natural first (may be empty)."""
    me = facts[i]
    same = [j for j, f in enumerate(facts) if f.category == me.category]
    same_colour = [j for j in same if facts[j].colour == me.colour]
    found = []
    if len(same) == 1:
        found.append(noun_phrase("the", me.category))
    if me.colour and len(same_colour) == 1:
        found.append(noun_phrase("the", me.category, me.colour))
    if me.size:
        found.append(noun_phrase("the", me.category, size=me.size))
    side = extreme_side(facts, i, same)
    if side:
        found.append(f"{noun_phrase('the', me.category)} on the {side}")
    if me.size and me.colour:
        found.append(noun_phrase("the", me.category, me.colour, me.size))
    colour_side = extreme_side(facts, i, same_colour) if me.colour and len(same_colour) > 1 else None
    if colour_side:
        found.append(f"{noun_phrase('the', me.category, me.colour)} on the {colour_side}")
    return list(dict.fromkeys(found))


def ordinal_expression(facts: list[Facts], i: int) -> str:
    """The last resort: "the second car from the left" (rank by box centre among the category)."""
    same = sorted((j for j, f in enumerate(facts) if f.category == facts[i].category), key=lambda j: facts[j].centre)
    return f"the {ORDINALS[same.index(i)]} {facts[i].category} from the left"


def expressions_for(facts: list[Facts], i: int) -> tuple[str, ...]:
    return tuple(candidate_expressions(facts, i)[:MAX_EXPRESSIONS]) or (ordinal_expression(facts, i),)


EXPRESSION_KINDS = ("category", "colour", "size", "side", "colour and size", "colour and side", "ordinal")


def expression_kind(category: str, colour: str | None, size: str | None, expression: str) -> str:
    """Which of EXPRESSION_KINDS ``expression`` (one of an object's, built by the rules above) tells its object
    apart by: "category" for "the car", "colour" for "the red car", ... "ordinal" for the last resort."""
    plain, coloured = noun_phrase("the", category), noun_phrase("the", category, colour) if colour else None
    built = {plain: "category", coloured: "colour",
             noun_phrase("the", category, size=size) if size else None: "size",
             noun_phrase("the", category, colour, size) if size and colour else None: "colour and size"}
    built.update({f"{coloured} on the {side}": "colour and side" for side in ("left", "right") if coloured})
    built.update({f"{plain} on the {side}": "side" for side in ("left", "right")})
    built.update({f"the {ordinal} {category} from the left": "ordinal" for ordinal in ORDINALS})
    if expression not in built:
        raise ValueError(f"{expression!r} is not an expression of a {category} (colour {colour}, size {size})")
    return built[expression]


def is_clear_cut(facts: list[Facts], margin: float) -> bool:
    """Each object has an expression, and no two of a category sit near the SIDE_GAP threshold
    (within `margin`), so that another render size cannot change what left/right say."""
    for i, me in enumerate(facts):
        if not candidate_expressions(facts, i):
            return False
        for other in facts[i + 1 :]:
            if other.category == me.category and abs(abs(other.centre - me.centre) - SIDE_GAP) < margin:
                return False
    return True


def caption_template(facts: list[Facts], ground: str, rng: random.Random, order: list[int]) -> str:
    """The objects in `order` (left to right), each mention followed by `{i}`:
    "a red car {0} and a dog {1} on the road ."."""
    mentions = [f"{description(facts[i])} {{{i}}}" for i in order]
    text = mentions[0] if mentions else "nothing"
    for number, mention in enumerate(mentions[1:], start=2):
        connector = rng.choice(("and", "next to")) if number == len(mentions) else ","
        text += f" {connector} {mention}"
    return f"{text} on the {ground} ."


def fill_markers(template: str, marker: str = "") -> str:
    """The template with each `{i}` replaced by `marker` (or dropped), spaces collapsed."""
    return " ".join(MARKER.sub(lambda _: marker, template).split())
