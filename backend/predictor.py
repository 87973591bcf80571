"""Tasks -> Label Studio predictions, with the model loaded once and its GPU work serialised.

Pre-annotation (no context): on every Image of the config,
* each label of each RectangleLabels / PolygonLabels / BrushLabels control is a referring expression
  (its `prompt` attribute, else its value); all of them go to one `ground_many` call so the image is
  encoded once. Every region found becomes a box / polygon(s) / brush mask on the controls having that
  label, plus a description in the per-region TextArea (DESCRIBE_REGIONS). On an Image with a caption
  or question TextArea the labels are the categories of the caption's / answer's phrases, so only
  labels with a `prompt` attribute are grounded on their own;
* a referring expression stored in the task data under the prompt TextArea's key is grounded too;
* a caption TextArea gets a grounded caption, a question stored in the task data an answer (echoed
  into its TextArea). One region per located phrase, labelled by backend.phrases (the phrase's label,
  else the catch-all label; a phrase with neither is logged and gets no shape but stays in the text),
  the phrase as its per-region text (docs/workflows.md).
Interactive calls (params.context) are handled in backend.interactive.

One bad task never sinks a batch: it gets an empty result and its reason is logged. A task the
deadline did not reach gets an entry without "result", which Label Studio skips (so it is retried on
the next retrieve) while the order and count of entries stay right.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass

from backend.images import ImageError
from backend.interactive import context_items_for, predict_interactive
from backend.labeling import ImageTarget, LabelConfigError, LabelingConfig, parse_label_config
from backend.limits import PriorityLock
from backend.phrases import labels_for_region
from backend.results import PolygonOptions, TextAreaResult, prediction_entry, region_results
from backend.settings import Settings
from model.decoding import GenerationStopped

log = logging.getLogger("backend.predictor")


class ConfigError(ValueError):
    """The label config cannot be used (bad XML, too many labels); one line, safe to return."""


class InvalidContext(ValueError):
    """The interactive context is unusable (bad box, prompt too long); answered with 400."""


class ModelUnavailable(RuntimeError):
    """The model cannot serve now (loading, failed, out of GPU memory); answered with 503."""


class TaskError(ValueError):
    """This task cannot be predicted (its data is unusable); the others go on."""


class OutOfTime(Exception):
    """The request's deadline passed while a task was in progress."""


# ------------------------------------------------------------------------------ config
def parse_config(xml: str, settings: Settings) -> LabelingConfig:
    """The parsed config, or ConfigError for XML that does not parse or exceeds the limits."""
    try:
        config = parse_label_config(xml)
    except LabelConfigError as exc:
        raise ConfigError(str(exc)) from None
    labels = [label for target in config.targets for control in target.region_controls for label in control.labels]
    if len(labels) > settings.max_labels:
        raise ConfigError(f"label config has {len(labels)} labels, more than MAX_LABELS={settings.max_labels}")
    for label in labels:
        if len(label.referring_expression) > settings.max_prompt_chars:
            raise ConfigError(
                f"label {label.value[:40]!r}: prompt longer than MAX_PROMPT_CHARS={settings.max_prompt_chars}"
            )
    return config


# ------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class ModelState:
    status: str  # UP, LOADING, ERROR
    ready: bool
    model_version: str = ""
    reason: str = ""


class ModelHolder:
    """The one model of this process: given loaded, or loaded once by a background thread.

    `lock` serialises GPU work; /health reads `state()` and never takes it."""

    def __init__(self, model_or_loader):
        self.lock = PriorityLock()
        self._model = None
        self._loader = None
        self._error = ""
        if model_or_loader is None:
            self._error = "no model configured"
        elif callable(model_or_loader) and not hasattr(model_or_loader, "ground_many"):
            self._loader = model_or_loader
        else:
            self._model = model_or_loader

    def start_loading(self) -> None:
        if self._loader is not None:
            threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def _load(self) -> None:
        try:
            model = self._loader()
        except Exception as exc:  # noqa: BLE001 - any load failure becomes a readiness reason
            log.exception("model failed to load")
            self._error = f"model failed to load: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        else:
            self._model = model
            log.info("model ready: %s", model.model_version)
        finally:
            self._loader = None

    def state(self) -> ModelState:
        model = self._model
        if model is not None:
            return ModelState("UP", True, model.model_version)
        if self._loader is not None:
            return ModelState("LOADING", False, reason="model is loading")
        return ModelState("ERROR", False, reason=self._error)

    def require(self):
        model = self._model
        if model is None:
            raise ModelUnavailable(self.state().reason or "model is not ready")
        return model


DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
          "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32"}


def load_model(settings: Settings):
    """NextChat from the operator's checkpoint (the only place weights are chosen)."""
    import torch

    from model import NextChat

    device = settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype_name = settings.dtype.lower()
    if dtype_name == "auto":
        dtype_name = "bf16" if device.startswith("cuda") else "fp32"
    if dtype_name not in DTYPES:
        raise ValueError(f"DTYPE={settings.dtype!r}; use one of bf16, fp16, fp32, auto")
    dtype = getattr(torch, DTYPES[dtype_name])
    log.info("loading NExT-Chat from %s on %s as %s", settings.checkpoint, device, dtype)
    return NextChat.from_pretrained(settings.checkpoint, vision_tower=settings.vision_tower or None,
                                    device=device, dtype=dtype)


def is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def release_gpu_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------ prediction
class Predictor:
    """Runs the workflows above for a batch of tasks within a deadline."""

    def __init__(self, holder: ModelHolder, settings: Settings, image_loader):
        self.holder = holder
        self.settings = settings
        self.images = image_loader
        self._calls = threading.local()  # per request thread: is it interactive?
        self.polygon = PolygonOptions(tolerance_px=settings.polygon_tolerance, max_parts=settings.polygon_max_parts,
                                      min_part_fraction=settings.polygon_min_part_fraction)

    def with_model(self, deadline, work):
        """`work(model)` holding the GPU lock, waiting for the lock no longer than the deadline. The model
        stops decoding at its next step once the deadline passes (no GPU work outlives the request)."""
        urgent = getattr(self._calls, "urgent", False)
        if deadline.expired() or not self.holder.lock.acquire(deadline.remaining(), urgent=urgent):
            raise OutOfTime()
        try:
            model = self.holder.require()
            stop_when = getattr(model, "stop_when", None)
            if stop_when is None:
                return work(model)
            with stop_when(deadline.expired):
                return work(model)
        except GenerationStopped:
            raise OutOfTime() from None
        finally:
            self.holder.lock.release()

    def call_model(self, deadline, method: str, *args):
        return self.with_model(deadline, lambda model: getattr(model, method)(*args))

    def predict(self, tasks: list[dict], config: LabelingConfig, context: dict | None, deadline) -> list[dict]:
        self._calls.urgent = context is not None  # interactive: an annotator is waiting (see PriorityLock)
        model_version = self.holder.require().model_version
        entries = []
        for task in tasks:
            if deadline.expired():
                entries.append(self._not_reached(task, model_version))
                continue
            entries.append(self._predict_task(task, config, context, deadline, model_version))
        return entries

    def predict_one(self, task, config: LabelingConfig, context, deadline, model_version: str) -> dict:
        """One task's prediction entry. Raises on failure (ImageError, TaskError, OutOfTime, model errors):
        :meth:`predict` turns those into an empty entry per task; batch jobs count them."""
        results = []
        for target in config.targets:
            results += self._predict_target(task, target, context, deadline)
        return prediction_entry(results, model_version)

    def _predict_task(self, task, config, context, deadline, model_version) -> dict:
        task_id = task.get("id")
        try:
            return self.predict_one(task, config, context, deadline, model_version)
        except (InvalidContext, ModelUnavailable):
            raise
        except OutOfTime:
            return self._not_reached(task, model_version)
        except (ImageError, TaskError) as exc:
            log.warning("task %s: no prediction: %s", task_id, exc)
            return prediction_entry([], model_version)
        except Exception as exc:  # noqa: BLE001 - one bad task must not sink the batch
            if not is_out_of_memory(exc):
                log.exception("task %s: no prediction: %s", task_id, type(exc).__name__)
                return prediction_entry([], model_version)
        # CUDA out of memory: only now, with the traceback (and the tensors its frames hold) gone,
        # can the cache be emptied; the request gets 503 and the next one starts clean
        release_gpu_memory()
        log.error("task %s: GPU out of memory; answering 503", task_id)
        raise ModelUnavailable("GPU out of memory; retry later")

    @staticmethod
    def _not_reached(task, model_version) -> dict:
        log.warning("task %s: skipped, the request deadline passed (Label Studio will ask again)", task.get("id"))
        return {"model_version": model_version, "score": 0.0, "error": "deadline passed before this task"}

    def _predict_target(self, task, target: ImageTarget, context, deadline) -> list[dict]:
        if context is not None:
            items = context_items_for(context, target)
            if not items:
                return []
            image = self._load_image(task, target, deadline)
            return predict_interactive(self, task, target, image, items, deadline)
        image = self._load_image(task, target, deadline)
        return self._preannotate(task, target, image, deadline)

    def _load_image(self, task, target: ImageTarget, deadline):
        value = task["data"].get(target.value_key)
        if value is None:
            raise TaskError(f"task data has no {target.value_key!r} for Image {target.name!r}")
        return self.images.load(value, task.get("id"), deadline)

    # -------------------------------------------------------------------------- pre-annotation
    def _preannotate(self, task, target: ImageTarget, image, deadline) -> list[dict]:
        results = self._ground_labels(target, image, deadline)
        for area in target.prompt_areas:
            expression = self.stored_text(task, area)
            if expression:
                results += self.ground_expression(target, image, expression, None, deadline)
        if target.caption_areas:
            caption = self.call_model(deadline, "caption", image)
            results += self.texts(target.caption_areas, caption.text)
            results += self.phrase_regions(target, image, caption.regions, "caption")
        for area in target.question_areas:
            question = self.stored_text(task, area)
            if question:
                results += self.texts([area], question) + self.answer(target, image, question, [], deadline)
        return results

    @staticmethod
    def texts(areas, text: str) -> list[dict]:
        """`text` in each of these whole-image TextAreas (none for empty text)."""
        return [TextAreaResult.for_control(area).build(text) for area in areas] if text.strip() else []

    def stored_text(self, task, area) -> str:
        """Text kept in the task data for a TextArea (its value="$key", else its name)."""
        text = task["data"].get(area.data_key)
        if not isinstance(text, str) or not text.strip():
            return ""
        if len(text) > self.settings.max_prompt_chars:
            raise TaskError(f"{area.name} text longer than MAX_PROMPT_CHARS={self.settings.max_prompt_chars}")
        return text.strip()

    def _ground_labels(self, target: ImageTarget, image, deadline) -> list[dict]:
        labels_by_expression: dict[str, dict[str, str]] = {}
        phrase_categories = bool(target.caption_areas or target.question_areas)
        for control in target.region_controls:
            for label in control.prompt_labels:
                if phrase_categories and label.prompt is None:
                    continue  # a category for caption / answer phrases (module doc)
                labels_by_expression.setdefault(label.referring_expression, {}).setdefault(control.name, label.value)
        if not labels_by_expression:
            return []
        expressions = list(labels_by_expression)
        found = self.call_model(deadline, "ground_many", image, expressions)
        results = []
        for expression, regions in zip(expressions, found):
            for region in regions:
                results += self.region_to_results(target, image, region, labels_by_expression[expression], deadline)
        return results

    def ground_expression(self, target, image, expression, chosen_labels, deadline) -> list[dict]:
        """Regions of a typed/stored referring expression, labelled `chosen_labels` (control -> label)
        or, when None, by matching the expression to each control's labels (else its first label)."""
        labels = chosen_labels
        if labels is None:
            labels = labels_for_region(target.region_controls, expression, fallback_first=True)
        regions = self.call_model(deadline, "ground", image, expression)
        results = []
        for region in regions:
            results += self.region_to_results(target, image, region, labels, deadline)
        return results

    def answer(self, target, image, question, boxes, deadline) -> list[dict]:
        """`question` answered (`boxes`: pixel xyxy, the question's [0], [1]...): the answer TextArea and
        the regions the answer locates."""
        reply = self.call_model(deadline, "ask", image, question, boxes)
        return self.texts(target.answer_areas, reply.text) + self.phrase_regions(target, image, reply.regions, "answer")

    def phrase_regions(self, target, image, regions, source: str) -> list[dict]:
        """Regions of a caption/answer, each labelled from its phrase by backend.phrases, its phrase as its
        per-region text. A control on which the phrase matches no label (and that has no catch-all label)
        gets no shape for it; the phrase stays in the caption/answer text, and this is logged."""
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
                results += self._shapes(target, image, region, labels, region.phrase or None)
        return results

    def region_to_results(self, target, image, region, labels, deadline) -> list[dict]:
        if region.score < self.settings.score_threshold:
            return []
        text = None
        if target.region_areas and self.settings.describe_regions:
            text = self.call_model(deadline, "describe", image, region.box)
        return self._shapes(target, image, region, labels, text)

    def usable_mask(self, region, image):
        """The region's mask if SAM's IoU guess reaches MASK_IOU_THRESHOLD and it fits the image."""
        mask = getattr(region, "mask", None)
        if mask is None or region.score < self.settings.mask_iou_threshold:
            return None
        if tuple(mask.shape) != (image.height, image.width):
            log.warning("mask shape %s does not match image %sx%s; dropped", mask.shape, image.width, image.height)
            return None
        return mask

    def _shapes(self, target, image, region, labels, text) -> list[dict]:
        return region_results(target, image.width, image.height, labels=labels, box=region.box,
                              mask=self.usable_mask(region, image), score=region.score, text=text,
                              polygon=self.polygon)
