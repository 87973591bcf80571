"""The config as Label Studio's editor shows it for one task: Repeaters expanded, dynamic labels loaded.

* ``<Repeater>``: expanded with the task's data (backend.studio.repeater), then read like any config.
* ``<RectangleLabels ... value="$labels">`` (any region control) and ``<Choices value="$options">``: the
  task data under that key is Label Studio's dynamic-label list, ``[{"value": "forklift"}, {"value":
  "pallet", "background": "orange"}, ...]``; each object becomes a Label after the control's own
  ``<Label>``s (a value the config already has is not repeated). An object's ``prompt``,
  ``predicted_values`` / ``synonyms``, ``catch_all`` and ``alias`` work as the ``<Label>`` attributes do
  (label_config/README.md); Label Studio passes an object's other keys to the editor and the backend
  ignores them. A missing key means no extra labels (the editor shows none either).

Anything else under the key (a list of plain strings, a string...) is refused with a one-line reason
(:class:`TaskConfigError`): the editor cannot show such labels, so results using them would be lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from backend.studio.config_parts import Label, data_value, label_from_attrs
from backend.studio.labeling import ImageTarget, LabelingConfig, parse_label_config
from backend.studio.repeater import RepeaterError, expand_repeaters


class TaskConfigError(ValueError):
    """A task's data does not fit its config's dynamic parts; the message is one line."""


def is_task_dependent(config: LabelingConfig) -> bool:
    """Whether some part of the config is read from each task's data."""
    return config.has_repeater or any(
        control.labels_key for target in config.targets for control in target.region_controls) or any(
        control.choices_key for target in config.targets for control in target.choices)


def config_for_task(config: LabelingConfig, data: Mapping) -> LabelingConfig:
    """``config`` for the task whose ``data`` this is (the same object when nothing depends on the task).
    The result depends on no task any more: resolving it again changes nothing."""
    if not is_task_dependent(config):
        return config
    if config.has_repeater:
        try:
            config = parse_label_config(expand_repeaters(config.xml, data))
        except RepeaterError as exc:
            raise TaskConfigError(str(exc)) from None
    return replace(config, targets=tuple(_target_for_task(target, data) for target in config.targets))


def _target_for_task(target: ImageTarget, data: Mapping) -> ImageTarget:
    controls = tuple(
        replace(control, labels=_merged(control.labels, task_labels(data, control.labels_key, control.name)),
                labels_key=None) if control.labels_key else control
        for control in target.region_controls)
    choices = tuple(
        replace(control, choices=_merged(control.choices, task_labels(data, control.choices_key, control.name)),
                choices_key=None) if control.choices_key else control
        for control in target.choices)
    return replace(target, region_controls=controls, choices=choices)


def _merged(own: tuple[Label, ...], loaded: tuple[Label, ...]) -> tuple[Label, ...]:
    values = {label.value for label in own}
    extra = []
    for label in loaded:
        if label.value not in values:
            values.add(label.value)
            extra.append(label)
    return own + tuple(extra)


def task_labels(data: Mapping, key: str, control_name: str) -> tuple[Label, ...]:
    """The Labels of the dynamic-label list under ``key`` in the task data; () when the key is missing."""
    items = data_value(data, key)
    if items is None:
        return ()
    where = f"task data {key!r} (dynamic labels of {control_name!r})"
    if not isinstance(items, list):
        raise TaskConfigError(f'{where}: must be a list of {{"value": ...}} objects, got {type(items).__name__}')
    labels = []
    for index, item in enumerate(items):
        label = label_from_attrs(item) if isinstance(item, Mapping) else None
        if label is None:
            got = type(item).__name__ if not isinstance(item, Mapping) else "an object without a text value"
            raise TaskConfigError(f'{where}: item {index} must be an object with a text "value", got {got}')
        labels.append(label)
    return tuple(labels)
