"""The model_version this backend reports, for /setup, /predict, /versions and batch jobs: the one rule.

    <base>+cfg.<8 hex>          e.g.  nextchat-7b-336@1a2b3c4+cfg.5e6f7a8b

* base: ``MODEL_VERSION`` when set, else what the model reports, kept whole. ``model.NextChat`` reports
  ``<checkpoint name>@<short revision>`` (the hub snapshot's commit, else a hash of the weight files'
  names, sizes and times: model/versioning.py); a model that adds its own suffix (a fine-tuned delta's
  ``+ft3.<8 hex>``) keeps it, and ours comes after it.
* suffix: 8 hex characters of a hash over everything that changes what a project's predictions hold:
  every field this backend reads from the label config (per Image: its controls, their labels,
  prompts, synonyms, catch-all and matching attributes, ``model_skip`` / ``model_score_threshold``,
  the TextAreas and their roles; not colours or layout) and the prediction settings in force for the
  project (``PREDICTION_SETTINGS``, after its extra params).

Label Studio only asks for tasks that lack a prediction of the version /setup returned, so editing a
label's prompt, a threshold or a project's extra params gives a new version and "Retrieve predictions"
recomputes; an unchanged project keeps its version across restarts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from backend.settings import Settings
from backend.studio.labeling import LabelingConfig

SUFFIX_MARK = "+cfg."
# Settings that change what a prediction holds; each is also a per-project extra param (projects.py)
PREDICTION_SETTINGS = ("score_threshold", "mask_iou_threshold", "polygon_tolerance", "polygon_max_parts",
                       "polygon_min_part_fraction", "describe_regions", "default_prompt")


def base_version(settings: Settings, model_version: str) -> str:
    """MODEL_VERSION, else the model's own version (with any suffix the model itself adds)."""
    return settings.model_version.strip() or model_version


def output_suffix(config: LabelingConfig, settings: Settings) -> str:
    """8 hex characters over the config as this backend reads it and the prediction settings."""
    described = {
        "targets": [dataclasses.asdict(target) for target in config.targets],
        "settings": {name: getattr(settings, name) for name in PREDICTION_SETTINGS},
    }
    text = json.dumps(described, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def project_version(base: str, config: LabelingConfig, settings: Settings) -> str:
    """The version of predictions made with `config` under `settings` (module doc)."""
    return f"{base}{SUFFIX_MARK}{output_suffix(config, settings)}"
