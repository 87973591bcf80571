"""The real NExT-Chat (tiny random checkpoint) with its answers scripted per question.

A random checkpoint's free text means nothing, so each answer is *forced* through the model API's
``forced_answer`` (teacher forcing: the given text runs through the model, its boxes, masks and scores
are decoded for real). `ScriptedNextChat.answers` maps a question, exactly as the backend sends it, to
the answer; a question with no script gets `default`. Every model call is recorded with the image it
was made on (its size and first pixel), so tests can tell which image of a task each call used.
"""

from __future__ import annotations

import io

from PIL import Image

from backend.predict.holder import load_model
from backend.settings import load_settings
from tests.backend.fakes import data_uri, image_signature


class ScriptedNextChat:
    def __init__(self, model, answers: dict[str, str] | None = None, default: str = "Hard to say."):
        self.model, self.answers, self.default = model, dict(answers or {}), default
        self.calls: list[tuple] = []

    def __getattr__(self, name):  # model_version, stop_when ... as the model has them
        return getattr(self.model, name)

    def ask(self, image, question, boxes=None):
        boxes = [tuple(box) for box in boxes or []]
        reply = self.model.ask(image, question, boxes, forced_answer=self.answers.get(question, self.default))
        self.calls.append(("ask", image_signature(image), question, boxes, reply.text))
        return reply

    def caption(self, image):
        reply = self.model.caption(image, forced_answer=self.default)
        self.calls.append(("caption", image_signature(image), reply.text))
        return reply

    def ground_many(self, image, expressions):
        found = self.model.ground_many(image, expressions)
        self.calls.append(("ground_many", image_signature(image), tuple(expressions), found))
        return found

    def ground(self, image, expression):
        found = self.model.ground(image, expression)
        self.calls.append(("ground", image_signature(image), expression, found))
        return found

    def describe(self, image, box):
        text = self.model.describe(image, box)
        self.calls.append(("describe", image_signature(image), tuple(box), text))
        return text

    def segment(self, image, box=None, points=None, point_labels=None):
        region = self.model.segment(image, box, points, point_labels)
        self.calls.append(("segment", image_signature(image), tuple(box) if box is not None else None, region))
        return region

    def called(self, method: str) -> list[tuple]:
        return [call for call in self.calls if call[0] == method]

    def questions(self) -> list[str]:
        return [call[2] for call in self.called("ask")]


def load_tiny_model(checkpoint):
    """The random tiny checkpoint loaded as the backend loads a model (use in a module-scoped fixture)."""
    settings = load_settings({}, checkpoint=str(checkpoint), vision_tower=str(checkpoint / "vision_tower"))
    return load_model(settings)


def image_uri(width: int, height: int, color=(135, 190, 235)) -> str:
    """A PNG data URI of a simple scene (a block and a disc on a plain background)."""
    from PIL import ImageDraw

    image = Image.new("RGB", (width, height), color)
    draw = ImageDraw.Draw(image)
    draw.rectangle([width // 10, height // 3, width // 2, height - 5], fill=(200, 30, 40))
    draw.ellipse([width * 3 // 5, height // 6, width - 10, height // 2], fill=(140, 90, 40))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return data_uri(buffer.getvalue())


def signature_of(width: int, height: int, color=(135, 190, 235)) -> str:
    r, g, b = color
    return f"{width}x{height}#{r:02x}{g:02x}{b:02x}"


def config_as_shown(xml: str, data: dict) -> str:
    """The config as Label Studio's editor shows it for a task: each control with ``value="$key"`` gets the
    task's dynamic labels / choices as ``<Label>`` / ``<Choice>`` children (written independently of the
    backend's own reader, for label-studio-sdk's validation, which knows only a config's static labels)."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(xml)
    for element in root.iter():
        value = element.get("value", "")
        kind = element.tag.lower()
        if not value.startswith("$") or not (kind.endswith("labels") or kind == "choices"):
            continue
        child_tag = "Choice" if kind == "choices" else "Label"
        present = {child.get("value") for child in element}
        for item in data.get(value[1:], []):
            if item["value"] not in present:
                ElementTree.SubElement(element, child_tag, {"value": item["value"]})
        del element.attrib["value"]
    return ElementTree.tostring(root, encoding="unicode")
