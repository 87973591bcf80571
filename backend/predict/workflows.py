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
"""

from __future__ import annotations

import logging

from PIL import Image

from backend.predict.calls import ModelCalls
from backend.predict.contract import FoundRegion
from backend.predict.errors import TaskError
from backend.settings import Settings
from backend.studio.labeling import ImageTarget
from backend.studio.phrases import labels_for_region
from backend.studio.results import PolygonOptions, TextAreaResult, region_results

log = logging.getLogger("backend.predict")


class RegionWorkflows:
    """The thresholds and shapes of one configuration, applied to what the model finds."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.polygon = PolygonOptions(tolerance_px=settings.polygon_tolerance, max_parts=settings.polygon_max_parts,
                                      min_part_fraction=settings.polygon_min_part_fraction)

    # -------------------------------------------------------------------------- pre-annotation
    def preannotate(self, task: dict, target: ImageTarget, image: Image.Image, calls: ModelCalls) -> list[dict]:
        results = self.ground_labels(target, image, calls)
        for area in target.prompt_areas:
            expression = self.stored_text(task, area)
            if expression:
                results += self.ground_expression(target, image, expression, None, calls)
        if target.caption_areas:
            caption = calls.caption(image)
            results += self.texts(target.caption_areas, caption.text)
            results += self.phrase_regions(target, image, caption.regions, "caption")
        for area in target.question_areas:
            question = self.stored_text(task, area)
            if question:
                results += self.texts([area], question) + self.answer_question(target, image, question, [], calls)
        return results

    def stored_text(self, task: dict, area) -> str:
        """Text kept in the task data for a TextArea (its value="$key", else its name)."""
        text = task["data"].get(area.data_key)
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
        or, when None, by matching the expression to each control's labels (else its first label)."""
        labels = chosen_labels
        if labels is None:
            labels = labels_for_region(target.region_controls, expression, fallback_first=True)
        results = []
        for region in calls.ground(image, expression):
            results += self.region_to_results(target, image, region, labels, calls)
        return results

    def answer_question(self, target: ImageTarget, image: Image.Image, question: str, boxes: list,
                        calls: ModelCalls) -> list[dict]:
        """`question` answered (`boxes`: pixel xyxy, the question's [0], [1]...): the answer TextArea and
        the regions the answer locates."""
        reply = calls.ask(image, question, boxes)
        return self.texts(target.answer_areas, reply.text) + self.phrase_regions(target, image, reply.regions, "answer")

    def phrase_regions(self, target: ImageTarget, image: Image.Image, regions: list[FoundRegion],
                       source: str) -> list[dict]:
        """Regions of a caption/answer, each labelled from its phrase, its phrase as its per-region text.
        A control on which the phrase matches no label (and that has no catch-all label) gets no shape
        for it; the phrase stays in the caption/answer text, and this is logged."""
        results = []
        for region in regions:
            if region.score < self.settings.score_threshold:
                continue
            labels = labels_for_region(target.region_controls, region.phrase)
            left_out = [control.name for control in target.region_controls if control.name not in labels]
            if left_out:
                log.info("%s phrase %r matches no label of %s and there is no catch_all label: no shape there "
                         "(the phrase stays in the text)", source, region.phrase, ", ".join(left_out))
            if labels:
                results += self.shapes(target, image, region, labels, region.phrase or None)
        return results

    def region_to_results(self, target: ImageTarget, image: Image.Image, region: FoundRegion,
                          labels: dict[str, str], calls: ModelCalls) -> list[dict]:
        if region.score < self.settings.score_threshold:
            return []
        text = None
        if target.region_areas and self.settings.describe_regions:
            text = calls.describe(image, region.box)
        return self.shapes(target, image, region, labels, text)

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
