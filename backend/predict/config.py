"""The label config as a prediction reads it: parsed, and held to the label and prompt limits."""

from __future__ import annotations

from backend.predict.errors import ConfigError
from backend.settings import Settings
from backend.studio.labeling import LabelConfigError, LabelingConfig, parse_label_config


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
