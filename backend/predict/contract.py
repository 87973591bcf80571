"""The model contract: everything the backend asks of NExT-Chat, written down as Protocols.

`model.NextChat` implements it, and so does the test double (tests/backend/fakes.py); a test checks
both against these signatures. Images are decoded RGB PIL images; boxes are pixel xyxy on that image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

Box = Sequence[float]  # pixel xyxy
Point = Sequence[float]  # pixel (x, y): a click


class FoundRegion(Protocol):
    """A located object: its box, its mask (bool [H, W] at the image's size), SAM's IoU guess, its phrase."""

    box: tuple[float, float, float, float]
    mask: np.ndarray
    score: float
    phrase: str


class LocatedText(Protocol):
    """A caption or an answer: the text and one region per located phrase."""

    text: str
    regions: list


@runtime_checkable
class NextChatModel(Protocol):
    """What the backend calls. One call at a time per model (the backend holds the GPU lock)."""

    @property
    def model_version(self) -> str: ...

    def ground(self, image: Image.Image, expression: str) -> list[FoundRegion]: ...

    def ground_many(self, image: Image.Image, expressions: list[str]) -> list[list[FoundRegion]]: ...

    def describe(self, image: Image.Image, box: Box) -> str: ...

    def segment(self, image: Image.Image, box: Box | None = None, points: Sequence[Point] | None = None,
                point_labels: Sequence[int] | None = None) -> FoundRegion:
        """SAM's mask for a drawn box and/or clicks (labels 1 positive, 0 negative; default all 1); at least
        one of the two. ValueError (one line) for a point off the image or a bad label."""

    def refine(self, image: Image.Image, expression: str, points: Sequence[Point],
               point_labels: Sequence[int] | None = None, region_index: int = 0) -> FoundRegion:
        """Region ``region_index`` of ``ground(image, expression)``, its mask decoded again with the clicks
        added (the text's seg tokens kept). ValueError (one line) as ``segment``, or for a bad index."""

    def caption(self, image: Image.Image) -> LocatedText: ...

    def ask(self, image: Image.Image, question: str, boxes: list[Box] | None = None) -> LocatedText: ...

    def stop_when(self, should_stop: Callable[[], bool]) -> AbstractContextManager: ...
