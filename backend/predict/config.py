"""The label config as a prediction reads it: parsed, resolved per task, and held to the label and prompt limits."""

from __future__ import annotations

from backend.predict.errors import ConfigError, TaskError
from backend.settings import Settings
from backend.studio.labeling import LabelConfigError, LabelingConfig, parse_label_config
from backend.studio.task_config import TaskConfigError, config_for_task


def parse_config(xml: str, settings: Settings) -> LabelingConfig:
    """The parsed config, or ConfigError for XML that does not parse or exceeds the limits."""
    try:
        config = parse_label_config(xml)
    except LabelConfigError as exc:
        raise ConfigError(str(exc)) from None
    problem = limit_problem(config, settings)
    if problem:
        raise ConfigError(problem)
    return config


def task_config(config: LabelingConfig, task: dict, settings: Settings) -> LabelingConfig:
    """The config for this task (Repeaters expanded, labels and choices from its data), or TaskError
    (one line) when the task's data does not fit it or makes it exceed the limits."""
    try:
        resolved = config_for_task(config, task.get("data") or {})
    except (TaskConfigError, LabelConfigError) as exc:
        raise TaskError(str(exc)) from None
    if resolved is not config:
        problem = limit_problem(resolved, settings)
        if problem:
            raise TaskError(f"with this task's data: {problem}")
    return resolved


def limit_problem(config: LabelingConfig, settings: Settings) -> str:
    """What exceeds MAX_LABELS / MAX_PROMPT_CHARS ('' when nothing does): labels and choices count."""
    labels = [label for target in config.targets for control in target.region_controls for label in control.labels]
    choices = [choice for target in config.targets for control in target.choices for choice in control.choices]
    labels += choices
    if len(labels) > settings.max_labels:
        what = "labels and choices" if choices else "labels"
        return f"label config has {len(labels)} {what}, more than MAX_LABELS={settings.max_labels}"
    prompts = [(label.value, label.referring_expression) for label in labels]
    prompts += [(control.name, control.prompt) for target in config.targets for control in target.choices
                if control.prompt]
    for name, prompt in prompts:
        if len(prompt) > settings.max_prompt_chars:
            return f"label {name[:40]!r}: prompt longer than MAX_PROMPT_CHARS={settings.max_prompt_chars}"
    return ""
