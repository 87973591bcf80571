"""Read a Label Studio labeling config: what this backend can fill in, and what it skips.

``parse_label_config(xml)`` returns a :class:`LabelingConfig`: one :class:`ImageTarget` per
``<Image>`` (``value="$image"``, or ``valueList="$images"`` for a list of images) with the region
controls (RectangleLabels, PolygonLabels, BrushLabels, BitmaskLabels), the smart KeyPointLabels whose
clicks prompt masks (backend.studio.keypoints), the TextAreas and the Choices
(backend.studio.choices_control) pointing at it, each TextArea with a role. A region control's
``value="$labels"`` (labels from the task data) and a Repeater's copies are resolved per task by
backend.studio.task_config. Anything it cannot serve (plain KeyPointLabels, video, controls on no Image,
unknown roles...) is listed in ``skipped`` with a reason and logged; it never raises for those. Only
XML that cannot be read raises LabelConfigError.

Attribute conventions (documented for users in label_config/README.md):

* ``<Label value="cat" prompt="a cat on the sofa">``: referring expression for that label
  (default: the value).
* ``<Label predicted_values="kitten,kitty">`` (Label Studio ML backends' own convention) or
  ``synonyms="kitten,kitty"``: comma-separated phrases that map to this label.
* ``<Label catch_all="true">``: the label for phrases that match no other label.
* ``model_skip="true"`` on a control: the model never fills it; ``model_score_threshold="0.4"`` on a
  region control: its regions need at least that score (else SCORE_THRESHOLD), as label-studio-ml-backend's
  examples read them.
* ``<TextArea role="...">``: ``prompt`` (referring expression), ``question``, ``caption``,
  ``answer``, ``description`` (per-region text). Without ``role``: ``perRegion="true"`` means
  description; otherwise the name decides (contains "caption", "answer", "question"), else
  prompt. A perRegion TextArea is always a description.

Attribute names are matched case-insensitively, as Label Studio's editor does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import lru_cache
from xml.etree import ElementTree

from backend.studio.choices_control import ChoicesControl, read_choices
from backend.studio.config_parts import Label, LabelConfigError, read_labels, variable_key
from backend.studio.config_parts import attrs_of as _attrs
from backend.studio.config_parts import is_true as _is_true
from backend.studio.config_parts import read_xml as _read_xml
from backend.studio.config_parts import split_list as _split_list
from backend.studio.config_parts import tag_of as _tag
from backend.studio.keypoints import KeyPointControl, is_smart_keypoints, keypoint_control, unserved_hint
from backend.studio.repeater import is_repeater

logger = logging.getLogger(__name__)

__all__ = ["ChoicesControl", "ImageTarget", "Label", "LabelConfigError", "LabelingConfig", "RegionControl",
           "Skipped", "TextAreaControl", "parse_label_config"]

REGION_KINDS = ("rectanglelabels", "polygonlabels", "brushlabels", "bitmasklabels")
TEXTAREA_ROLES = ("prompt", "question", "caption", "answer", "description")
_ROLE_ALIASES = {"expression": "prompt", "referring": "prompt", "region": "description",
                 "phrase": "description", "per-region": "description"}
_UNSERVED_CONTROLS = {
    "keypointlabels", "keypoint", "ellipselabels", "ellipse", "bitmask",
    "rectangle", "polygon", "brush", "labels", "taxonomy", "rating", "number",
    "datetime", "ranker", "pairwise", "relations", "magicwand", "vectorlabels", "vector",
}
_OBJECT_TAGS = {
    "image", "text", "hypertext", "audio", "audioplus", "video", "timeseries", "paragraphs",
    "table", "pdf", "list", "markdown", "multichannel", "chat",
}
_VISUAL_TAGS = {"view", "header", "style", "filter", "collapse", "label", "choice", "shortcut",
                "relation", "channel", "pagedview", "panel", "dialog", "char"}
# whole-image outputs that have no per-image form here: not filled on a valueList Image
_WHOLE_TASK_ROLES = ("caption", "question", "answer")


@dataclass(frozen=True)
class RegionControl:
    """A RectangleLabels / PolygonLabels / BrushLabels / BitmaskLabels control on one Image.

    ``kind`` is the Label Studio result type (``"rectanglelabels"``...).
    """

    name: str
    kind: str
    to_name: str
    labels: tuple[Label, ...]
    smart: bool = True
    preannotate: bool = True  # preannotate="false": its labels are not grounded without a context
    # Phrase -> label matching stages (backend/studio/phrases.py), from the control's attributes
    # matchContains="false", matchSimilarity="false", minSimilarity="0.9".
    match_contains: bool = True
    match_similarity: bool = True
    min_similarity: float = 0.8
    labels_key: str | None = None  # value="$key": more labels from the task data (Label Studio's dynamic labels)
    model_skip: bool = False
    model_score_threshold: float | None = None  # None: SCORE_THRESHOLD

    @property
    def match_options(self) -> dict:
        return {"contains": self.match_contains, "similarity": self.match_similarity,
                "min_similarity": self.min_similarity}

    def label(self, value: str) -> Label | None:
        """The Label with exactly this value, or None."""
        return next((label for label in self.labels if label.value == value), None)

    @property
    def catch_all(self) -> Label | None:
        return next((label for label in self.labels if label.catch_all), None)

    @property
    def prompt_labels(self) -> tuple[Label, ...]:
        """Labels to pre-annotate from (a catch-all label names no object to look for)."""
        return tuple(label for label in self.labels if not label.catch_all)


@dataclass(frozen=True)
class TextAreaControl:
    """A TextArea on one Image, with the role this backend gives it."""

    name: str
    to_name: str
    role: str
    per_region: bool = False
    value_key: str | None = None
    model_skip: bool = False

    @property
    def data_key(self) -> str:
        """Task data key holding a stored text for it: ``value="$key"``, else its name."""
        return self.value_key or self.name


@dataclass(frozen=True)
class ImageTarget:
    """One ``<Image>`` and every control this backend can fill for it."""

    name: str
    value_key: str
    region_controls: tuple[RegionControl, ...] = ()
    prompt_areas: tuple[TextAreaControl, ...] = ()
    question_areas: tuple[TextAreaControl, ...] = ()
    region_areas: tuple[TextAreaControl, ...] = ()
    caption_areas: tuple[TextAreaControl, ...] = ()
    answer_areas: tuple[TextAreaControl, ...] = ()
    choices: tuple[ChoicesControl, ...] = ()
    value_list: bool = False  # valueList="$key": the task data holds a list of images (results carry item_index)
    click_controls: tuple[KeyPointControl, ...] = ()  # smart KeyPointLabels: clicks are point prompts

    @property
    def text_areas(self) -> tuple[TextAreaControl, ...]:
        return (self.prompt_areas + self.question_areas + self.region_areas
                + self.caption_areas + self.answer_areas)

    def for_model(self) -> ImageTarget:
        """This target without the controls marked model_skip="true"."""
        names = ("region_controls", "prompt_areas", "question_areas", "region_areas", "caption_areas", "answer_areas")
        return replace(self, **{name: tuple(c for c in getattr(self, name) if not c.model_skip) for name in names})


@dataclass(frozen=True)
class Skipped:
    """A tag this backend will not fill, and why."""

    tag: str
    name: str | None
    reason: str


@dataclass(frozen=True)
class LabelingConfig:
    targets: tuple[ImageTarget, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    xml: str = field(default="", repr=False, compare=False)  # the text parsed (a Repeater expands it per task)
    has_repeater: bool = False

    def target(self, name: str) -> ImageTarget | None:
        return next((target for target in self.targets if target.name == name), None)

    def control(self, name: str) -> RegionControl | TextAreaControl | ChoicesControl | None:
        """The region control, TextArea or Choices with this ``name`` (a result's from_name)."""
        for target in self.targets:
            for control in target.region_controls + target.text_areas + target.choices:
                if control.name == name:
                    return control
        return None


@dataclass
class _Draft:
    """Mutable collector used while walking the tree."""

    name: str
    value_key: str
    value_list: bool = False
    region_controls: list = field(default_factory=list)
    areas: dict = field(default_factory=lambda: {role: [] for role in TEXTAREA_ROLES})
    choices: list = field(default_factory=list)
    click_controls: list = field(default_factory=list)

    def freeze(self, skipped: list[Skipped]) -> ImageTarget:
        if self.value_list:
            self._drop_whole_task_outputs(skipped)
        return ImageTarget(
            name=self.name, value_key=self.value_key,
            region_controls=tuple(self.region_controls),
            prompt_areas=tuple(self.areas["prompt"]),
            question_areas=tuple(self.areas["question"]),
            region_areas=tuple(self.areas["description"]),
            caption_areas=tuple(self.areas["caption"]),
            answer_areas=tuple(self.areas["answer"]),
            choices=tuple(self.choices), value_list=self.value_list, click_controls=tuple(self.click_controls),
        )

    def _drop_whole_task_outputs(self, skipped: list[Skipped]) -> None:
        """A valueList Image is answered image by image: outputs with one value per task are skipped."""
        for role in _WHOLE_TASK_ROLES:
            for area in self.areas[role]:
                skipped.append(Skipped("TextArea", area.name, f"a {role} TextArea on the valueList Image "
                                                              f"{self.name!r} is not filled (no per-image form)"))
            self.areas[role] = []
        whole = [control for control in self.choices if not (control.per_region or control.per_item)]
        for control in whole:
            skipped.append(Skipped("Choices", control.name, f"Choices on the valueList Image {self.name!r} "
                                                            'need perItem="true" or perRegion="true"'))
        self.choices = [control for control in self.choices if control not in whole]


# --------------------------------------------------------------------------- parsing


_variable_key = variable_key
_read_labels = read_labels


def _textarea_role(name: str, attrs: dict[str, str]) -> tuple[str | None, str]:
    """The TextArea's role, or (None, why) when it cannot be given one."""
    if _is_true(attrs.get("perregion")):
        return "description", ""
    declared = attrs.get("role")
    if declared is not None:
        role = _ROLE_ALIASES.get(declared.strip().lower(), declared.strip().lower())
        if role == "description":
            return None, 'role "description" needs perRegion="true"'
        if role not in TEXTAREA_ROLES:
            return None, f"unknown role {declared!r}; use one of {', '.join(TEXTAREA_ROLES)}"
        return role, ""
    lowered = name.lower()
    for role in ("caption", "answer", "question"):
        if role in lowered:
            return role, ""
    return "prompt", ""


def _collect(root: ElementTree.Element) -> tuple[dict[str, _Draft], list, list[Skipped]]:
    """Walk the tree once: Image drafts by name, controls to attach, and early skips."""
    images: dict[str, _Draft] = {}
    controls: list[tuple[str, ElementTree.Element]] = []
    skipped: list[Skipped] = []
    templates = {id(inner) for element in root.iter() if is_repeater(element) for inner in element.iter()}
    for element in root.iter():
        if id(element) in templates:
            continue  # a Repeater's template: read per task, once expanded (backend.studio.repeater)
        tag = _tag(element)
        lowered = tag.lower()
        attrs = _attrs(element)
        name = attrs.get("name")
        if lowered == "image":
            _collect_image(element, attrs, images, skipped)
        elif lowered in REGION_KINDS or lowered in ("textarea", "choices") or is_smart_keypoints(lowered, attrs):
            controls.append((lowered, element))
        elif lowered in _UNSERVED_CONTROLS:
            skipped.append(Skipped(tag, name, f"{tag} is not a control this backend fills{unserved_hint(lowered)}"))
        elif lowered in _OBJECT_TAGS:
            skipped.append(Skipped(tag, name, f"{tag} data is not served (images only)"))
        elif lowered not in _VISUAL_TAGS and name is not None:
            skipped.append(Skipped(tag, name, f"unknown tag {tag}"))
    return images, controls, skipped


def _collect_image(element, attrs, images, skipped) -> None:
    name = attrs.get("name")
    list_key = _variable_key(attrs.get("valuelist"))
    key = list_key or _variable_key(attrs.get("value"))
    if not name:
        skipped.append(Skipped(_tag(element), None, "Image without a name"))
    elif key is None:
        skipped.append(Skipped(_tag(element), name,
                               "Image value is not a task data variable like $image (or valueList=\"$images\")"))
    elif name in images:
        skipped.append(Skipped(_tag(element), name, "duplicate Image name"))
    else:
        images[name] = _Draft(name=name, value_key=key, value_list=list_key is not None)


def _attach(kind: str, element, images: dict[str, _Draft], skipped: list[Skipped]) -> None:
    attrs = _attrs(element)
    tag = _tag(element)
    name = attrs.get("name")
    to_names = _split_list(attrs.get("toname"))
    if not name:
        skipped.append(Skipped(tag, None, f"{tag} without a name"))
        return
    targets = [images[to_name] for to_name in to_names if to_name in images]
    if not targets:
        skipped.append(Skipped(tag, name, f"{tag} toName={attrs.get('toname')!r} "
                                          "points at no served Image"))
        return
    if kind == "textarea":
        _attach_textarea(name, attrs, targets, skipped)
    elif kind == "choices":
        _attach_choices(name, element, attrs, targets, skipped)
    elif kind == "keypointlabels":
        values = [label.value for label in _read_labels(element)]
        for draft in targets:
            draft.click_controls.append(keypoint_control(name, draft.name, attrs, values))
    else:
        _attach_region_control(kind, tag, name, element, attrs, targets, skipped)


def _attach_region_control(kind, tag, name, element, attrs, targets, skipped) -> None:
    labels_key = _variable_key(attrs.get("value"))
    if attrs.get("value", "").strip() and labels_key is None:
        skipped.append(Skipped(tag, name, f"value={attrs.get('value')!r} is not a task data variable like $labels"))
        return
    labels = _read_labels(element)
    if not labels and labels_key is None:
        skipped.append(Skipped(tag, name, f"{tag} has no Label"))
        return
    for draft in targets:
        draft.region_controls.append(RegionControl(
            name=name, kind=kind, to_name=draft.name, labels=labels,
            smart=_is_true(attrs.get("smart"), default=True),
            preannotate=_is_true(attrs.get("preannotate"), default=True),
            match_contains=_is_true(attrs.get("matchcontains"), default=True),
            match_similarity=_is_true(attrs.get("matchsimilarity"), default=True),
            min_similarity=_min_similarity(attrs.get("minsimilarity"), name, skipped), labels_key=labels_key,
            model_skip=_is_true(attrs.get("model_skip")),
            model_score_threshold=_score_threshold(attrs.get("model_score_threshold"), name, skipped)))


def _score_threshold(text, name, skipped) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        value = -1.0
    if value is not None and not 0.0 <= value <= 1.0:
        skipped.append(Skipped("model_score_threshold", name, f"model_score_threshold={text!r} is not in [0, 1]; "
                                                              "using SCORE_THRESHOLD"))
        return None
    return value


def _min_similarity(text, name, skipped) -> float:
    if text is None:
        return 0.8
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        skipped.append(Skipped("minSimilarity", name, f"minSimilarity={text!r} is not in (0, 1]; using 0.8"))
        return 0.8
    return value


def _attach_choices(name, element, attrs, targets, skipped) -> None:
    for draft in targets:
        control, why = read_choices(name, element, attrs, draft.name)
        if control is None:
            skipped.append(Skipped("Choices", name, why))
            return
        draft.choices.append(control)


def _attach_textarea(name, attrs, targets, skipped) -> None:
    role, why = _textarea_role(name, attrs)
    if role is None:
        skipped.append(Skipped("TextArea", name, why))
        return
    for draft in targets:
        draft.areas[role].append(TextAreaControl(
            name=name, to_name=draft.name, role=role,
            per_region=_is_true(attrs.get("perregion")),
            value_key=_variable_key(attrs.get("value")), model_skip=_is_true(attrs.get("model_skip"))))


@lru_cache(maxsize=64)
def parse_label_config(xml_text: str) -> LabelingConfig:
    """Parse a labeling config; cached per text (Label Studio resends it on every /setup).

    Raises LabelConfigError (one-line reason) if the XML cannot be read. Unservable parts are
    returned in ``skipped`` and logged once per distinct config.
    """
    root = _read_xml(xml_text)
    images, controls, skipped = _collect(root)
    for kind, element in controls:
        _attach(kind, element, images, skipped)
    targets = []
    for draft in images.values():
        target = draft.freeze(skipped)
        if target.region_controls or target.text_areas or target.choices:
            targets.append(target)
        else:
            skipped.append(Skipped("Image", target.name, "no control this backend fills "
                                                         "points at this Image"))
    for item in skipped:
        logger.warning("label config: skipping %s%s: %s", item.tag,
                       f" {item.name!r}" if item.name else "", item.reason)
    return LabelingConfig(targets=tuple(targets), skipped=tuple(skipped), xml=xml_text,
                          has_repeater=any(is_repeater(element) for element in root.iter()))
