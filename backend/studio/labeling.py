"""Read a Label Studio labeling config: what this backend can fill in, and what it skips.

``parse_label_config(xml)`` returns a :class:`LabelingConfig`: one :class:`ImageTarget` per
``<Image>`` with the region controls (RectangleLabels, PolygonLabels, BrushLabels), the smart
KeyPointLabels whose clicks prompt masks (backend.studio.keypoints) and the TextAreas pointing
at it, each TextArea with a role. Anything it cannot serve (plain KeyPointLabels, video,
controls on no Image, unknown roles...) is listed in ``skipped`` with a reason and
logged; it never raises for those. Only XML that cannot be read raises LabelConfigError.

Attribute conventions (documented for users in label_config/README.md):

* ``<Label value="cat" prompt="a cat on the sofa">``: referring expression for that label
  (default: the value).
* ``<Label predicted_values="kitten,kitty">`` (Label Studio ML backends' own convention) or
  ``synonyms="kitten,kitty"``: comma-separated phrases that map to this label.
* ``<Label catch_all="true">``: the label for phrases that match no other label.
* ``<TextArea role="...">``: ``prompt`` (referring expression), ``question``, ``caption``,
  ``answer``, ``description`` (per-region text). Without ``role``: ``perRegion="true"`` means
  description; otherwise the name decides (contains "caption", "answer", "question"), else
  prompt. A perRegion TextArea is always a description.

Attribute names are matched case-insensitively, as Label Studio's editor does.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from xml.etree import ElementTree

from backend.studio.keypoints import KeyPointControl, is_smart_keypoints, keypoint_control, unserved_hint

logger = logging.getLogger(__name__)

REGION_KINDS = ("rectanglelabels", "polygonlabels", "brushlabels")
TEXTAREA_ROLES = ("prompt", "question", "caption", "answer", "description")
_ROLE_ALIASES = {"expression": "prompt", "referring": "prompt", "region": "description",
                 "phrase": "description", "per-region": "description"}
_UNSERVED_CONTROLS = {
    "keypointlabels", "keypoint", "ellipselabels", "ellipse", "bitmasklabels", "bitmask",
    "rectangle", "polygon", "brush", "labels", "choices", "taxonomy", "rating", "number",
    "datetime", "ranker", "pairwise", "relations", "magicwand", "vectorlabels", "vector",
}
_OBJECT_TAGS = {
    "image", "text", "hypertext", "audio", "audioplus", "video", "timeseries", "paragraphs",
    "table", "pdf", "list", "markdown", "multichannel", "chat",
}
_VISUAL_TAGS = {"view", "header", "style", "filter", "collapse", "label", "choice", "shortcut",
                "relation", "channel", "pagedview", "panel", "dialog", "char"}
_TRUE = {"true", "1", "yes", "on"}


class LabelConfigError(ValueError):
    """The labeling config is not readable XML; the message is one line, safe to return."""


@dataclass(frozen=True)
class Label:
    """One ``<Label>`` of a region control."""

    value: str
    prompt: str | None = None
    synonyms: tuple[str, ...] = ()
    catch_all: bool = False

    @property
    def referring_expression(self) -> str:
        """Text to ground for this label: its ``prompt`` attribute, else its value."""
        return self.prompt or self.value


@dataclass(frozen=True)
class RegionControl:
    """A RectangleLabels / PolygonLabels / BrushLabels control on one Image.

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
    click_controls: tuple[KeyPointControl, ...] = ()  # smart KeyPointLabels: clicks are point prompts

    @property
    def text_areas(self) -> tuple[TextAreaControl, ...]:
        return (self.prompt_areas + self.question_areas + self.region_areas
                + self.caption_areas + self.answer_areas)


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

    def target(self, name: str) -> ImageTarget | None:
        return next((target for target in self.targets if target.name == name), None)

    def control(self, name: str) -> RegionControl | TextAreaControl | None:
        """The region control or TextArea with this ``name`` (a result's from_name)."""
        for target in self.targets:
            for control in target.region_controls + target.text_areas:
                if control.name == name:
                    return control
        return None


@dataclass
class _Draft:
    """Mutable collector used while walking the tree."""

    name: str
    value_key: str
    region_controls: list = field(default_factory=list)
    areas: dict = field(default_factory=lambda: {role: [] for role in TEXTAREA_ROLES})
    click_controls: list = field(default_factory=list)

    def freeze(self) -> ImageTarget:
        return ImageTarget(
            name=self.name, value_key=self.value_key,
            region_controls=tuple(self.region_controls),
            prompt_areas=tuple(self.areas["prompt"]),
            question_areas=tuple(self.areas["question"]),
            region_areas=tuple(self.areas["description"]),
            caption_areas=tuple(self.areas["caption"]),
            answer_areas=tuple(self.areas["answer"]),
            click_controls=tuple(self.click_controls),
        )


# --------------------------------------------------------------------------- parsing


def _read_xml(xml_text: str) -> ElementTree.Element:
    if not isinstance(xml_text, str) or not xml_text.strip():
        raise LabelConfigError("labeling config is empty")
    if re.search(r"<!(DOCTYPE|ENTITY)", xml_text, flags=re.IGNORECASE):
        raise LabelConfigError("labeling config must not contain a DTD or entity declarations")
    try:
        return ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as error:
        raise LabelConfigError(f"labeling config is not valid XML: {error}") from None


def _attrs(element: ElementTree.Element) -> dict[str, str]:
    return {key.lower(): value for key, value in element.attrib.items()}


def _is_true(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value.strip().lower() in _TRUE


def _split_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _variable_key(value: str | None) -> str | None:
    """``"$image"`` -> ``"image"``; a literal value -> None."""
    match = re.fullmatch(r"\s*\$([\w.\-]+)\s*", value or "")
    return match.group(1) if match else None


def _tag(element: ElementTree.Element) -> str:
    return element.tag if isinstance(element.tag, str) else ""


def _read_labels(element: ElementTree.Element) -> tuple[Label, ...]:
    labels = []
    for child in element.iter():
        if _tag(child).lower() != "label":
            continue
        attrs = _attrs(child)
        value = attrs.get("value", "").strip()
        if not value:
            continue
        synonyms = _split_list(attrs.get("predicted_values")) + _split_list(attrs.get("synonyms"))
        prompt = (attrs.get("prompt") or "").strip() or None
        labels.append(Label(value=value, prompt=prompt, synonyms=tuple(dict.fromkeys(synonyms)),
                            catch_all=_is_true(attrs.get("catch_all"))))
    return tuple(labels)


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
    for element in root.iter():
        tag = _tag(element)
        lowered = tag.lower()
        attrs = _attrs(element)
        name = attrs.get("name")
        if lowered == "image":
            _collect_image(element, attrs, images, skipped)
        elif lowered in REGION_KINDS or lowered == "textarea" or is_smart_keypoints(lowered, attrs):
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
    key = _variable_key(attrs.get("value"))
    if not name:
        skipped.append(Skipped(_tag(element), None, "Image without a name"))
    elif key is None:
        skipped.append(Skipped(_tag(element), name,
                               "Image value is not a task data variable like $image"))
    elif name in images:
        skipped.append(Skipped(_tag(element), name, "duplicate Image name"))
    else:
        images[name] = _Draft(name=name, value_key=key)


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
    elif kind == "keypointlabels":
        values = [label.value for label in _read_labels(element)]
        for draft in targets:
            draft.click_controls.append(keypoint_control(name, draft.name, attrs, values))
    else:
        _attach_region_control(kind, tag, name, element, attrs, targets, skipped)


def _attach_region_control(kind, tag, name, element, attrs, targets, skipped) -> None:
    if attrs.get("value", "").strip():
        skipped.append(Skipped(tag, name, "labels loaded from task data (value=...) "
                                          "are not supported"))
        return
    labels = _read_labels(element)
    if not labels:
        skipped.append(Skipped(tag, name, f"{tag} has no Label"))
        return
    for draft in targets:
        draft.region_controls.append(RegionControl(
            name=name, kind=kind, to_name=draft.name, labels=labels,
            smart=_is_true(attrs.get("smart"), default=True),
            preannotate=_is_true(attrs.get("preannotate"), default=True),
            match_contains=_is_true(attrs.get("matchcontains"), default=True),
            match_similarity=_is_true(attrs.get("matchsimilarity"), default=True),
            min_similarity=_min_similarity(attrs.get("minsimilarity"), name, skipped)))


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


def _attach_textarea(name, attrs, targets, skipped) -> None:
    role, why = _textarea_role(name, attrs)
    if role is None:
        skipped.append(Skipped("TextArea", name, why))
        return
    for draft in targets:
        draft.areas[role].append(TextAreaControl(
            name=name, to_name=draft.name, role=role,
            per_region=_is_true(attrs.get("perregion")),
            value_key=_variable_key(attrs.get("value"))))


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
        target = draft.freeze()
        if target.region_controls or target.text_areas:
            targets.append(target)
        else:
            skipped.append(Skipped("Image", target.name, "no control this backend fills "
                                                         "points at this Image"))
    for item in skipped:
        logger.warning("label config: skipping %s%s: %s", item.tag,
                       f" {item.name!r}" if item.name else "", item.reason)
    return LabelingConfig(targets=tuple(targets), skipped=tuple(skipped))
