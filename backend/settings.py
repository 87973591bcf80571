"""Every setting of the backend in one frozen dataclass, read from the environment and the CLI.

The environment names follow Label Studio's own ML backends (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY,
BASIC_AUTH_USER, ...) so their compose files carry over. CLI flags override the environment.
`redacted()` is the only view of the settings that may be logged.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

MIB = 1024 * 1024

SECRET_FIELDS = ("label_studio_api_key", "basic_auth_pass", "auth_token", "webhook_token")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    # model: chosen by the operator only (never by a label config or a request)
    checkpoint: str = ""
    vision_tower: str = ""
    delta: str = ""  # a stage-3 delta (RUN/delta.safetensors) applied to the checkpoint
    device: str = "auto"
    dtype: str = "auto"
    # server
    host: str = "127.0.0.1"
    port: int = 9090
    threads: int = 0  # 0: max_concurrency + max_queue + 4
    log_level: str = "INFO"
    # Label Studio
    label_studio_url: str = ""
    label_studio_api_key: str = field(default="", repr=False)
    local_files_document_root: str = ""
    # auth on /predict, /setup, /versions, /metrics (never /health, /webhook)
    basic_auth_user: str = ""
    basic_auth_pass: str = field(default="", repr=False)
    auth_token: str = field(default="", repr=False)
    # /webhook: the token Label Studio's webhook must send in X-Webhook-Token; empty: open
    webhook_token: str = field(default="", repr=False)
    # model version: empty = what the model reports (<checkpoint>@<revision>); see backend/predict/versions.py
    model_version: str = ""
    # MODEL_DIR: per-project settings (Label Studio's "extra params", projects.json; empty: memory only) and
    # stage-3 training runs (MODEL_DIR/stage3/)
    model_dir: str = ""
    # prediction (each also a per-project extra param: backend/predict/projects.py)
    score_threshold: float = 0.0
    mask_iou_threshold: float = 0.3
    polygon_tolerance: float = 1.0
    polygon_max_parts: int = 10
    polygon_min_part_fraction: float = 0.02
    describe_regions: bool = True
    default_prompt: str = ""
    # request limits: MAX_REQUEST_BYTES bounds the raw /predict body (streamed, annotations never kept);
    # MAX_TASK_DATA_BYTES the task data read from it (tasks past it are answered without a result)
    max_request_bytes: int = 256 * MIB
    max_task_data_bytes: int = 32 * MIB
    max_tasks_per_request: int = 1000
    max_labels: int = 200
    max_prompt_chars: int = 500
    max_clicks: int = 64  # clicks in one interactive context
    max_concurrency: int = 2
    max_queue: int = 16
    queue_timeout_s: float = 30.0
    retry_after_s: int = 5
    request_deadline_s: float = 80.0
    ml_timeout_predict_s: float = 0.0  # Label Studio's ML_TIMEOUT_PREDICT when known: the deadline follows it
    # image fetching
    allowed_image_hosts: tuple[str, ...] = ()
    image_connect_timeout_s: float = 5.0
    image_read_timeout_s: float = 10.0
    image_total_timeout_s: float = 30.0
    max_image_bytes: int = 64 * MIB
    max_image_pixels: int = 50_000_000
    image_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
    max_redirects: int = 5
    verify_tls: bool = True
    # stage-3 export of submitted annotations (/webhook); empty: off
    stage3_dir: str = ""
    # stage-3 training from STAGE3_DIR on "Start Training" (needs STAGE3_DIR and MODEL_DIR)
    train_min_new_records: int = 4
    train_cooldown_s: float = 60.0
    train_settle_s: float = 2.0
    train_epochs: int = 3
    train_max_steps: int = 0  # 0: by epochs
    train_batch_size: int = 8
    train_lr: float = 2e-5
    train_val_fraction: float = 0.1
    train_loss: str = "reference"

    @property
    def server_threads(self) -> int:
        """Threads so that every admitted or queued request, plus /health, gets a thread at once."""
        return self.threads or (self.max_concurrency + self.max_queue + 4)

    def redacted(self) -> dict:
        """The settings as a dict that is safe to log: secrets are replaced by whether they are set."""
        view = dataclasses.asdict(self)
        for name in SECRET_FIELDS:
            view[name] = "<set>" if view[name] else "<unset>"
        return view

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


# env variable -> field; the first variable that is set wins for a field listed twice
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "checkpoint": ("NEXTCHAT_CHECKPOINT",),
    "vision_tower": ("NEXTCHAT_VISION_TOWER",),
    "delta": ("NEXTCHAT_DELTA",),
    "device": ("DEVICE",),
    "dtype": ("DTYPE",),
    "host": ("HOST",),
    "port": ("PORT",),
    "threads": ("THREADS",),
    "log_level": ("LOG_LEVEL",),
    "label_studio_url": ("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST"),
    "label_studio_api_key": ("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"),
    "local_files_document_root": (
        "LOCAL_FILES_DOCUMENT_ROOT",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT",
    ),
    "basic_auth_user": ("BASIC_AUTH_USER",),
    "basic_auth_pass": ("BASIC_AUTH_PASS",),
    "auth_token": ("BACKEND_AUTH_TOKEN",),
    "webhook_token": ("WEBHOOK_TOKEN",),
    "model_version": ("MODEL_VERSION",),
    "model_dir": ("MODEL_DIR",),
    "score_threshold": ("SCORE_THRESHOLD",),
    "mask_iou_threshold": ("MASK_IOU_THRESHOLD",),
    "polygon_tolerance": ("POLYGON_TOLERANCE",),
    "polygon_max_parts": ("POLYGON_MAX_PARTS",),
    "polygon_min_part_fraction": ("POLYGON_MIN_PART_FRACTION",),
    "describe_regions": ("DESCRIBE_REGIONS",),
    "default_prompt": ("DEFAULT_PROMPT",),
    "max_request_bytes": ("MAX_REQUEST_BYTES",),
    "max_task_data_bytes": ("MAX_TASK_DATA_BYTES",),
    "max_tasks_per_request": ("MAX_TASKS_PER_REQUEST",),
    "max_labels": ("MAX_LABELS",),
    "max_prompt_chars": ("MAX_PROMPT_CHARS",),
    "max_clicks": ("MAX_CLICKS",),
    "max_concurrency": ("MAX_CONCURRENCY",),
    "max_queue": ("MAX_QUEUE",),
    "queue_timeout_s": ("QUEUE_TIMEOUT_S",),
    "retry_after_s": ("RETRY_AFTER_S",),
    "request_deadline_s": ("REQUEST_DEADLINE_S",),
    "ml_timeout_predict_s": ("ML_TIMEOUT_PREDICT",),
    "allowed_image_hosts": ("ALLOWED_IMAGE_HOSTS",),
    "image_connect_timeout_s": ("IMAGE_CONNECT_TIMEOUT_S",),
    "image_read_timeout_s": ("IMAGE_READ_TIMEOUT_S",),
    "image_total_timeout_s": ("IMAGE_TOTAL_TIMEOUT_S",),
    "max_image_bytes": ("MAX_IMAGE_BYTES",),
    "max_image_pixels": ("MAX_IMAGE_PIXELS",),
    "image_formats": ("IMAGE_FORMATS",),
    "max_redirects": ("MAX_REDIRECTS",),
    "verify_tls": ("VERIFY_TLS",),
    "stage3_dir": ("STAGE3_DIR",),
    "train_min_new_records": ("TRAIN_MIN_NEW_RECORDS",),
    "train_cooldown_s": ("TRAIN_COOLDOWN_S",),
    "train_settle_s": ("TRAIN_SETTLE_S",),
    "train_epochs": ("TRAIN_EPOCHS",),
    "train_max_steps": ("TRAIN_MAX_STEPS",),
    "train_batch_size": ("TRAIN_BATCH_SIZE",),
    "train_lr": ("TRAIN_LR",),
    "train_val_fraction": ("TRAIN_VAL_FRACTION",),
    "train_loss": ("TRAIN_LOSS",),
}


def convert_value(name: str, raw: str, default):
    """Turn the text of a setting into the type of its default value."""
    raw = raw.strip()
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r}: {exc}") from None
    return raw


def _check(settings: Settings) -> Settings:
    positive = [
        "port", "max_request_bytes", "max_task_data_bytes", "max_tasks_per_request", "max_labels", "max_prompt_chars",
        "max_clicks",
        "max_concurrency", "image_connect_timeout_s", "image_read_timeout_s",
        "image_total_timeout_s", "max_image_bytes", "max_image_pixels", "request_deadline_s",
        "train_epochs", "train_batch_size",
    ]
    for name in positive:
        if getattr(settings, name) <= 0:
            raise SettingsError(f"{name} must be > 0, got {getattr(settings, name)}")
    for name in ("max_queue", "queue_timeout_s", "retry_after_s", "max_redirects", "threads", "ml_timeout_predict_s",
                 "train_min_new_records", "train_cooldown_s", "train_settle_s", "train_max_steps", "train_lr"):
        if getattr(settings, name) < 0:
            raise SettingsError(f"{name} must be >= 0, got {getattr(settings, name)}")
    if not 0.0 <= settings.train_val_fraction < 1.0:
        raise SettingsError(f"train_val_fraction must be in [0, 1), got {settings.train_val_fraction}")
    if settings.train_loss not in ("reference", "clean"):
        raise SettingsError(f"TRAIN_LOSS={settings.train_loss!r}: use reference or clean")
    from PIL import Image

    Image.init()
    formats = tuple(f.upper() for f in settings.image_formats)
    unknown = [f for f in formats if f not in Image.OPEN]
    if unknown or not formats:
        raise SettingsError(f"IMAGE_FORMATS: {', '.join(unknown) or 'empty'} not readable by Pillow")
    return settings.replace(
        image_formats=formats,
        allowed_image_hosts=tuple(h.lower() for h in settings.allowed_image_hosts),
        label_studio_url=settings.label_studio_url.rstrip("/"),
    )


def load_settings(env: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Settings from `env` (default os.environ), then `overrides` (CLI flags; None means not given)."""
    env = os.environ if env is None else env
    defaults = Settings()
    values = {}
    for spec in fields(Settings):
        for env_name in ENV_NAMES.get(spec.name, ()):
            if env.get(env_name, "").strip() != "":
                values[spec.name] = convert_value(env_name, env[env_name], getattr(defaults, spec.name))
                break
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in ENV_NAMES:
            raise SettingsError(f"unknown setting {name}")
        if isinstance(value, str):
            value = convert_value(name, value, getattr(defaults, name))
        values[name] = value
    if "request_deadline_s" not in values and values.get("ml_timeout_predict_s"):
        values["request_deadline_s"] = deadline_for_timeout(values["ml_timeout_predict_s"])
    return _check(Settings(**values))


def deadline_for_timeout(ml_timeout_predict_s: float) -> float:
    """The request deadline under Label Studio's ML_TIMEOUT_PREDICT: 20% earlier, at most 20 s earlier
    (100 s -> 80 s, 300 s -> 280 s, 30 s -> 24 s), so the answer is sent before Label Studio gives up."""
    margin = min(20.0, 0.2 * ml_timeout_predict_s)
    return max(1.0, ml_timeout_predict_s - margin)


def add_model_options(parser) -> None:
    """The model's command-line options, shared by `serve` and `batch` (each mirrors an env setting)."""
    parser.add_argument("--checkpoint", help="NExT-Chat checkpoint dir or hub id (NEXTCHAT_CHECKPOINT)")
    parser.add_argument("--vision-tower", help="CLIP vision tower dir or hub id (NEXTCHAT_VISION_TOWER)")
    parser.add_argument("--delta", metavar="PATH", help="a stage-3 delta to apply, RUN/delta.safetensors from "
                        "`finetune` (NEXTCHAT_DELTA); checked against the checkpoint")
    parser.add_argument("--device", help="cuda, cuda:N, cpu or auto (DEVICE; default auto)")
    parser.add_argument("--dtype", help="bf16, fp16, fp32 or auto (DTYPE; default auto)")

