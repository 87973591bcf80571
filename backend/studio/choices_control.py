"""``<Choices>`` on an Image as this backend reads it: a closed question (README: Choices).

Attributes read (case-insensitive): ``choice`` (``single`` / ``single-radio`` / ``multiple``),
``perRegion="true"`` (ask about each region), ``perItem="true"`` (one answer per image of a
``valueList`` Image), ``prompt="..."`` (the question), ``value="$key"`` (choices from the task data, Label
Studio's dynamic choices), ``whenLabelValue="car,bus"`` (per-region: only regions with one of these labels,
as Label Studio shows the Choices only for them). Each ``<Choice>`` may carry ``prompt`` (its own yes/no
question), ``predicted_values`` / ``synonyms`` (phrases meaning it), ``catch_all="true"`` (chosen when
no other choice is), ``alias`` (what Label Studio stores for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree

from backend.studio.config_parts import Label, is_true, read_labels, split_list, variable_key

_CHOICE_MODES = ("single", "single-radio", "multiple")


@dataclass(frozen=True)
class ChoicesControl:
    """A Choices control on one Image."""

    name: str
    to_name: str
    choices: tuple[Label, ...]
    multiple: bool = False
    per_region: bool = False
    per_item: bool = False
    prompt: str | None = None
    choices_key: str | None = None  # value="$key": more choices from the task data
    when_labels: tuple[str, ...] = ()

    @property
    def askable(self) -> tuple[Label, ...]:
        """Choices the question lists (a catch-all choice is what is left when none applies)."""
        return tuple(choice for choice in self.choices if not choice.catch_all)

    @property
    def catch_all(self) -> Label | None:
        return next((choice for choice in self.choices if choice.catch_all), None)

    def applies_to(self, region_labels) -> bool:
        """Whether a region with these label values gets this per-region question (whenLabelValue)."""
        return not self.when_labels or bool(set(self.when_labels) & set(region_labels))


def read_choices(name: str, element: ElementTree.Element, attrs: dict[str, str],
                 to_name: str) -> tuple[ChoicesControl | None, str]:
    """The control, or (None, why it is skipped)."""
    mode = (attrs.get("choice") or "single").strip().lower()
    if mode not in _CHOICE_MODES:
        return None, f"choice={attrs.get('choice')!r} is not one of {', '.join(_CHOICE_MODES)}"
    per_region, per_item = is_true(attrs.get("perregion")), is_true(attrs.get("peritem"))
    if per_region and per_item:
        return None, "perRegion and perItem together"
    choices_key = variable_key(attrs.get("value"))
    if attrs.get("value", "").strip() and choices_key is None:
        return None, f"value={attrs.get('value')!r} is not a task data variable like $options"
    choices = read_labels(element, "choice")
    if not choices and choices_key is None:
        return None, "Choices has no Choice"
    prompt = (attrs.get("prompt") or "").strip() or None
    return ChoicesControl(name=name, to_name=to_name, choices=choices, multiple=mode == "multiple",
                          per_region=per_region, per_item=per_item, prompt=prompt, choices_key=choices_key,
                          when_labels=split_list(attrs.get("whenlabelvalue"))), ""
