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

    def segment(self, image: Image.Image, box: Box) -> FoundRegion: ...

    def caption(self, image: Image.Image) -> LocatedText: ...

    def ask(self, image: Image.Image, question: str, boxes: list[Box] | None = None) -> LocatedText: ...

    def stop_when(self, should_stop: Callable[[], bool]) -> AbstractContextManager: ...
