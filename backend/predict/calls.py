"""Typed model calls for one request: each takes the GPU lock, within the request's deadline, at the
request's urgency (an annotator's interactive call goes before a batch's next call)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image

from backend.deadline import Deadline
from backend.predict.contract import Box, FoundRegion, LocatedText, NextChatModel, Point
from backend.predict.errors import OutOfTime
from backend.predict.holder import ModelHolder
from model.decoding import GenerationStopped

T = TypeVar("T")


@dataclass(frozen=True)
class ModelCalls:
    holder: ModelHolder
    deadline: Deadline
    urgent: bool = False  # True for interactive calls: an annotator is waiting

    @property
    def model_version(self) -> str:
        return self.holder.require().model_version

    def run(self, work: Callable[[NextChatModel], T]) -> T:
        """`work(model)` holding the GPU lock, waiting for it no longer than the deadline. The model stops
        decoding at its next step once the deadline passes (no GPU work outlives the request)."""
        if self.deadline.expired() or not self.holder.lock.acquire(self.deadline.remaining(), urgent=self.urgent):
            raise OutOfTime()
        try:
            model = self.holder.require()
            with model.stop_when(self.deadline.expired):
                return work(model)
        except GenerationStopped:
            raise OutOfTime() from None
        finally:
            self.holder.lock.release()

    def ground(self, image: Image.Image, expression: str) -> list[FoundRegion]:
        return self.run(lambda model: model.ground(image, expression))

    def ground_many(self, image: Image.Image, expressions: list[str]) -> list[list[FoundRegion]]:
        return self.run(lambda model: model.ground_many(image, expressions))

    def describe(self, image: Image.Image, box: Box) -> str:
        return self.run(lambda model: model.describe(image, box))

    def segment(self, image: Image.Image, box: Box | None = None, points: Sequence[Point] | None = None,
                point_labels: Sequence[int] | None = None) -> FoundRegion:
        return self.run(lambda model: model.segment(image, box, points, point_labels))

    def refine(self, image: Image.Image, expression: str, points: Sequence[Point],
               point_labels: Sequence[int] | None = None, region_index: int = 0) -> FoundRegion:
        return self.run(lambda model: model.refine(image, expression, points, point_labels, region_index))

    def caption(self, image: Image.Image) -> LocatedText:
        return self.run(lambda model: model.caption(image))

    def ask(self, image: Image.Image, question: str, boxes: list[Box]) -> LocatedText:
        return self.run(lambda model: model.ask(image, question, boxes))
