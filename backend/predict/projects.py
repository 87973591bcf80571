"""Per-project settings from Label Studio's "extra params", kept per project (memory + MODEL_DIR).

Label Studio sends a project's ML backend ``extra_params`` in every /setup: a JSON object when set
through the API, the text typed into Connect model's "Any extra params" box otherwise (a JSON string),
or null. :func:`parse_extra_params` accepts all three; each key is one of ``PROJECT_PARAMS`` (case and
``-``/``_`` do not matter) and overrides the backend's setting of the same name for that project only.
A bad key or value is a one-line reason (/setup answers 400 with it; Label Studio then refuses to
connect and the backend logs the reason).

:class:`ProjectStore` keeps, per project id (the ``3`` of Label Studio's ``"3.1795611766"``), the
params and the model version last computed, in memory and, when ``MODEL_DIR`` is set, in
``MODEL_DIR/projects.json`` (written atomically), so a restart keeps them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from backend.predict.versions import base_version, project_version
from backend.settings import Settings, SettingsError, convert_value
from backend.studio.labeling import LabelingConfig

log = logging.getLogger("backend.predict")

STORE_FILE = "projects.json"
# key -> (lowest, highest) for numbers; None for text and true/false
PROJECT_PARAMS: dict[str, tuple[float, float] | None] = {
    "score_threshold": (0.0, 1.0),
    "mask_iou_threshold": (0.0, 1.0),
    "polygon_tolerance": (0.0, 1000.0),
    "polygon_max_parts": (1, 10_000),
    "polygon_min_part_fraction": (0.0, 1.0),
    "describe_regions": None,
    "default_prompt": None,
}


class ParamsError(ValueError):
    """Extra params that cannot be used; the message is one line naming the key."""


def project_key(project) -> str | None:
    """"3.1795611766" (what Label Studio sends) or 3 -> "3"; None when there is no usable id."""
    if isinstance(project, bool) or project is None:
        return None
    text = str(project).strip().split(".", 1)[0]
    return text if text.isdigit() else None


def _value(key: str, raw, defaults: Settings):
    default = getattr(defaults, key)
    if isinstance(raw, str):
        try:
            value = convert_value(key, raw, default)
        except SettingsError as exc:
            raise ParamsError(f"extra params: {exc}") from None
    elif isinstance(default, bool):
        if not isinstance(raw, bool):
            raise ParamsError(f"extra params: {key} must be true or false, got {raw!r}")
        value = raw
    elif isinstance(default, (int, float)) and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = type(default)(raw)
        if isinstance(default, int) and value != raw:
            raise ParamsError(f"extra params: {key} must be a whole number, got {raw!r}")
    else:
        raise ParamsError(f"extra params: {key} must be a {type(default).__name__}, got {raw!r}")
    bounds = PROJECT_PARAMS[key]
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ParamsError(f"extra params: {key}={value} is outside [{bounds[0]}, {bounds[1]}]")
    if key == "default_prompt" and len(value) > defaults.max_prompt_chars:
        raise ParamsError(f"extra params: default_prompt longer than MAX_PROMPT_CHARS={defaults.max_prompt_chars}")
    return value


def parse_extra_params(raw, defaults: Settings) -> dict:
    """The validated per-project settings in `raw` (dict, JSON text or None); ParamsError otherwise."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ParamsError(f"extra params are not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"extra params must be a JSON object, got {type(raw).__name__}")
    params = {}
    for given, value in raw.items():
        key = str(given).strip().lower().replace("-", "_")
        if key not in PROJECT_PARAMS:
            raise ParamsError(f"extra params: unknown key {given!r}; known: {', '.join(PROJECT_PARAMS)}")
        params[key] = _value(key, value, defaults)
    return params


def effective_settings(settings: Settings, params: dict) -> Settings:
    """The backend's settings with a project's params applied."""
    return settings.replace(**params) if params else settings


@dataclass(frozen=True)
class ProjectRun:
    """What predictions for one project use: the settings in force and the version they carry."""

    settings: Settings
    model_version: str


def project_run(settings: Settings, params: dict, config: LabelingConfig, model_version: str) -> ProjectRun:
    """`settings` with a project's `params`, and the version (backend/predict/versions.py) of predictions
    with `config` by a model reporting `model_version`."""
    effective = effective_settings(settings, params)
    return ProjectRun(effective, project_version(base_version(settings, model_version), config, effective))


class ProjectStore:
    """project id -> {"params": {...}, "model_version": str}; thread-safe, persisted under MODEL_DIR."""

    def __init__(self, model_dir: str = ""):
        self.path = Path(model_dir) / STORE_FILE if model_dir else None
        self._lock = threading.Lock()
        self._projects: dict[str, dict] = self._read()

    def _read(self) -> dict[str, dict]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            projects = json.loads(self.path.read_text("utf-8")).get("projects", {})
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("%s unreadable (%s); starting without per-project settings", self.path, type(exc).__name__)
            return {}
        return {str(key): value for key, value in projects.items() if isinstance(value, dict)}

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps({"projects": self._projects}, indent=1, sort_keys=True), "utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("cannot save per-project settings to %s: %s", self.path, exc.strerror or exc)

    def params(self, key: str | None) -> dict:
        if key is None:
            return {}
        with self._lock:
            return dict(self._projects.get(key, {}).get("params", {}))

    def update(self, key: str | None, *, params: dict | None = None, model_version: str | None = None) -> None:
        """Set a project's params and/or version; written to disk only when something changed."""
        if key is None:
            return
        with self._lock:
            record = dict(self._projects.get(key, {}))
            if params is not None:
                record["params"] = dict(params)
            if model_version is not None:
                record["model_version"] = model_version
            if record != self._projects.get(key):
                self._projects[key] = record
                self._write()

    def versions(self) -> dict[str, str]:
        with self._lock:
            return {key: record["model_version"] for key, record in sorted(self._projects.items(), key=_numeric)
                    if record.get("model_version")}


def _numeric(item) -> int:
    return int(item[0]) if item[0].isdigit() else 0
