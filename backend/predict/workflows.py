"""Model answers -> Label Studio results: the region workflows shared by pre-annotation and interactive calls.

Pre-annotation (no context), on every Image of the config:
* each label of each RectangleLabels / PolygonLabels / BrushLabels control is a referring expression
  (its `prompt` attribute, else its value; none of a control with `preannotate="false"`); all of them go
  to one `ground_many` call so the image is encoded once. Every region found becomes a box / polygon(s) /
  brush mask on the controls having that label, plus a description in the per-region TextArea
  (DESCRIBE_REGIONS). On an Image with a caption or question TextArea the labels are the categories of
  the caption's / answer's phrases, so only labels with a `prompt` attribute are grounded on their own;
* a referring expression stored in the task data under the prompt TextArea's key is grounded too;
* a caption TextArea gets a grounded caption, a question stored in the task data an answer (echoed
  into its TextArea). One region per located phrase, labelled by backend.studio.phrases (the phrase's
  label, else the catch-all label; a phrase with neither is logged and gets no shape but stays in the
  text), the phrase as its per-region text (docs/workflows.md).

Every region made (from labels, an expression, a caption or an answer; in interactive calls a drawn box)
also gets the answers of the Image's per-region Choices (backend.predict.choices), attached to its first
shape. Whole-image Choices are asked by backend.predict.targets, which runs these workflows per image.
"""

from __future__ import annotations

import logging

from PIL import Image

from backend.predict.calls import ModelCalls
from backend.predict.choices import ChoiceQuestions
from backend.predict.contract import FoundRegion
from backend.predict.errors import TaskError
from backend.settings import Settings
from backend.studio.config_parts import data_value
from backend.studio.labeling import ImageTarget
from backend.studio.phrases import labels_for_region
from backend.studio.prompts import split_prompt
from backend.studio.results import PolygonOptions, TextAreaResult, region_results

log = logging.getLogger("backend.predict")


class RegionWorkflows:
    """The thresholds and shapes of one configuration, applied to what the model finds."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.polygon = PolygonOptions(tolerance_px=settings.polygon_tolerance, max_parts=settings.polygon_max_parts,
                                      min_part_fraction=settings.polygon_min_part_fraction)
        self.choices = ChoiceQuestions(settings)  # Choices of the image and per-region attributes

    # -------------------------------------------------------------------------- pre-annotation
    def preannotate(self, task: dict, target: ImageTarget, image: Image.Image, calls: ModelCalls) -> list[dict]:
        results = self.ground_labels(target, image, calls)
        for area in target.prompt_areas:
            expression = self.stored_text(task, area) or self.settings.default_prompt.strip()
            if expression:
                results += self.ground_expression(target, image, expression, None, calls)
        if target.caption_areas:
            caption = calls.caption(image)
            results += self.texts(target.caption_areas, caption.text)
            results += self.phrase_regions(target, image, caption.regions, "caption", calls)
        for area in target.question_areas:
            question = self.stored_text(task, area)
            if question:
                results += self.texts([area], question) + self.answer_question(target, image, question, [], calls)
        return results

    def stored_text(self, task: dict, area) -> str:
        """Text kept in the task data for a TextArea (its value="$key", else its name)."""
        text = data_value(task["data"], area.data_key)
        if not isinstance(text, str) or not text.strip():
            return ""
        if len(text) > self.settings.max_prompt_chars:
            raise TaskError(f"{area.name} text longer than MAX_PROMPT_CHARS={self.settings.max_prompt_chars}")
        return text.strip()

    def ground_labels(self, target: ImageTarget, image: Image.Image, calls: ModelCalls) -> list[dict]:
        labels_by_expression: dict[str, dict[str, str]] = {}
        phrase_categories = bool(target.caption_areas or target.question_areas)
        for control in (control for control in target.region_controls if control.preannotate):
            for label in control.prompt_labels:
                if phrase_categories and label.prompt is None:
                    continue  # a category for caption / answer phrases (module doc)
                labels_by_expression.setdefault(label.referring_expression, {}).setdefault(control.name, label.value)
        if not labels_by_expression:
            return []
        expressions = list(labels_by_expression)
        found = calls.ground_many(image, expressions)
        results = []
        for expression, regions in zip(expressions, found):
            for region in regions:
                results += self.region_to_results(target, image, region, labels_by_expression[expression], calls)
        return results

    # -------------------------------------------------------------------------- shared with interactive calls
    @staticmethod
    def texts(areas, text: str) -> list[dict]:
        """`text` in each of these whole-image TextAreas (none for empty text)."""
        return [TextAreaResult.for_control(area).build(text) for area in areas] if text.strip() else []

    def ground_expression(self, target: ImageTarget, image: Image.Image, expression: str,
                          chosen_labels: dict[str, str] | None, calls: ModelCalls) -> list[dict]:
        """Regions of a typed/stored referring expression, labelled `chosen_labels` (control -> label)
        or, when None, by matching the expression to each control's labels (else its first label).
        ``cat . dog .`` is several phrases (backend.studio.prompts), grounded as one batch, each
        labelled on its own."""
        phrases = split_prompt(expression, self.settings.max_labels)
        if len(phrases) > 1:
            found = calls.ground_many(image, phrases)
        else:
            phrases, found = [expression], [calls.ground(image, expression)]
        results = []
        for phrase, regions in zip(phrases, found):
            labels = chosen_labels
            if labels is None:
                labels = labels_for_region(target.region_controls, phrase, fallback_first=True)
            for region in regions:
                results += self.region_to_results(target, image, region, labels, calls)
        return results

    def answer_question(self, target: ImageTarget, image: Image.Image, question: str, boxes: list,
                        calls: ModelCalls) -> list[dict]:
        """`question` answered (`boxes`: pixel xyxy, the question's [0], [1]...): the answer TextArea and
        the regions the answer locates."""
        reply = calls.ask(image, question, boxes)
        return self.texts(target.answer_areas, reply.text) + self.phrase_regions(target, image, reply.regions, "answer",
                                                                               calls)

    def phrase_regions(self, target: ImageTarget, image: Image.Image, regions: list[FoundRegion],
                       source: str, calls: ModelCalls | None = None) -> list[dict]:
        """Regions of a caption/answer, each labelled from its phrase, its phrase as its per-region text.
        A control on which the phrase matches no label (and that has no catch-all label) gets no shape
        for it; the phrase stays in the caption/answer text, and this is logged."""
        results = []
        for region in regions:
            matched = labels_for_region(target.region_controls, region.phrase)
            labels = self.passing(target, matched, region.score)
            left_out = [control.name for control in target.region_controls if control.name not in matched]
            if left_out:
                log.info("%s phrase %r matches no label of %s and there is no catch_all label: no shape there "
                         "(the phrase stays in the text)", source, region.phrase, ", ".join(left_out))
            if labels:
                shapes = self.shapes(target, image, region, labels, region.phrase or None)
                results += shapes + self.region_choices(target, image, region.box, shapes, labels, calls)
        return results

    def passing(self, target: ImageTarget, labels: dict[str, str], score: float) -> dict[str, str]:
        """The controls of `labels` whose threshold `score` reaches (model_score_threshold, else
        SCORE_THRESHOLD)."""
        thresholds = {control.name: control.model_score_threshold for control in target.region_controls}
        return {name: label for name, label in labels.items()
                if score >= (self.settings.score_threshold if thresholds.get(name) is None else thresholds[name])}

    def region_to_results(self, target: ImageTarget, image: Image.Image, region: FoundRegion,
                          labels: dict[str, str], calls: ModelCalls) -> list[dict]:
        labels = self.passing(target, labels, region.score)
        if not labels:
            return []
        text = None
        if target.region_areas and self.settings.describe_regions:
            text = calls.describe(image, region.box)
        shapes = self.shapes(target, image, region, labels, text)
        return shapes + self.region_choices(target, image, region.box, shapes, labels, calls)

    def region_choices(self, target: ImageTarget, image: Image.Image, box, shapes: list[dict],
                       labels: dict[str, str], calls: ModelCalls | None) -> list[dict]:
        """The per-region Choices answered about one region (none without model calls to ask them)."""
        if calls is None or not target.choices:
            return []
        return self.choices.for_region(target, image, box, shapes, labels.values(), calls)

    def usable_mask(self, region: FoundRegion, image: Image.Image):
        """The region's mask if SAM's IoU guess reaches MASK_IOU_THRESHOLD and it fits the image."""
        mask = region.mask
        if mask is None or region.score < self.settings.mask_iou_threshold:
            return None
        if tuple(mask.shape) != (image.height, image.width):
            log.warning("mask shape %s does not match image %sx%s; dropped", mask.shape, image.width, image.height)
            return None
        return mask

    def shapes(self, target: ImageTarget, image: Image.Image, region: FoundRegion, labels: dict[str, str],
               text: str | None) -> list[dict]:
        return region_results(target, image.width, image.height, labels=labels, box=region.box,
                              mask=self.usable_mask(region, image), score=region.score, text=text,
                              polygon=self.polygon)
