"""The Flask app Label Studio talks to: /health, /setup, /predict, /webhook, /versions, /metrics, /train/status.

Reply shapes follow what Label Studio 1.23.2 accepts (docs/label-studio.md). Auth (when
configured) covers /predict, /setup, /versions, /metrics and /train/status. /health stays open so a probe
costs nothing and says only whether the model is ready. /webhook stays open because Label Studio sends its
annotation webhooks without the ML backend's Basic auth; they only queue annotations for export and are
answered at once. "Start Training" (START_TRAINING) comes with the backend's auth, is refused without it
when auth is configured, and only queues a training job (backend.train).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, jsonify, request

from backend.deadline import Deadline
from backend.export.live import LIVE_EVENTS
from backend.http.admission import Admission, Overloaded
from backend.http.auth import auth_required, is_authorized
from backend.http.body import checked_config, read_json_body, validate_predict_body
from backend.http.errors import error_reply, register_error_handlers
from backend.images import ImageLoader
from backend.predict.contract import NextChatModel
from backend.predict.errors import InvalidContext, ModelUnavailable
from backend.predict.holder import ModelHolder, load_model
from backend.predict.predictor import Predictor
from backend.predict.refusals import refusal_entry
from backend.settings import Settings, load_settings
from backend.train.service import TrainingService

log = logging.getLogger("backend.http")

OPEN_ENDPOINTS = ("health", "index", "webhook")
TRAINING_OFF = "training needs STAGE3_DIR (the live export) and MODEL_DIR (where runs go)"


@dataclass
class Counters:
    """The /metrics counters (thread-safe)."""

    values: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, **increments: int) -> None:
        with self.lock:
            self.values.update(increments)

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.values)


@dataclass
class Service:
    """Everything the routes share: one per app."""

    settings: Settings
    holder: ModelHolder
    predictor: Predictor
    admission: Admission
    exporter: object | None
    counters: Counters
    training: TrainingService | None = None


def make_exporter(settings: Settings, image_loader):
    """The live stage-3 exporter when STAGE3_DIR is set (it fetches images with our loader); else None."""
    if not settings.stage3_dir:
        return None
    from backend.export.live import LiveExporter

    return LiveExporter(settings.stage3_dir, images_loader=image_loader)


def make_training(settings: Settings, exporter) -> TrainingService | None:
    """In-server stage-3 training when both STAGE3_DIR (its data) and MODEL_DIR (its runs) are set; else None."""
    if not (settings.stage3_dir and settings.model_dir):
        return None
    return TrainingService(settings, exporter)


def create_app(settings: Settings, model: NextChatModel | None = None, *,
               load: Callable[[], NextChatModel] | None = None, image_loader=None, exporter=None) -> Flask:
    """The app around a loaded `model`, or around `load`, a zero-argument callable run once in a background
    thread (so /health answers while the weights load). With training on, the published delta recorded
    under MODEL_DIR is applied to the model before it serves (backend.train)."""
    image_loader = image_loader or ImageLoader(settings)
    exporter = exporter if exporter is not None else make_exporter(settings, image_loader)
    training = make_training(settings, exporter)
    if training is not None and load is not None:
        load = training.restoring(load)
    elif training is not None and model is not None:
        training.restore(model)
    holder = ModelHolder(model=model, load=load)
    if training is not None:
        training.attach(holder)
    service = Service(
        settings=settings, holder=holder, predictor=Predictor(holder, settings, image_loader),
        admission=Admission(settings.max_concurrency, settings.max_queue, settings.queue_timeout_s,
                            settings.retry_after_s),
        exporter=exporter, counters=Counters(), training=training,
    )
    app = Flask("backend")
    app.extensions["nextchat"] = service
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    register_auth(app, settings, service.counters)
    register_error_handlers(app, settings.retry_after_s, service.counters.count)
    register_routes(app, service)
    register_webhook_routes(app, service)
    holder.start_loading()
    return app


def register_auth(app: Flask, settings: Settings, counters: Counters) -> None:
    @app.before_request
    def check_auth():
        if request.endpoint in OPEN_ENDPOINTS or not auth_required(settings):
            return None
        if not is_authorized(request.headers.get("Authorization"), settings):
            counters.count(unauthorized=1)
            reply = error_reply("authentication required", 401)
            reply.headers["WWW-Authenticate"] = 'Basic realm="nextchat-ls"'
            return reply
        return None


def health_body(holder: ModelHolder) -> tuple[dict, int]:
    state = holder.state()
    body = {"status": state.status, "model_class": "NextChat", "model_ready": state.ready}
    if state.model_version:
        body["model_version"] = state.model_version
    if state.reason:
        body["reason"] = state.reason
    return body, 200 if state.ready else 503


def register_routes(app: Flask, service: Service) -> None:
    settings, holder = service.settings, service.holder

    @app.get("/")
    def index():
        body, _ = health_body(holder)  # liveness: 200 whenever the process answers
        return jsonify(body)

    @app.get("/health")
    def health():
        body, status = health_body(holder)  # readiness: 503 until the model is loaded
        return jsonify(body), status

    @app.post("/setup")
    def setup():
        body = read_json_body(settings.max_request_bytes)
        if body.get("schema") is not None:
            checked_config(body["schema"], settings)
        return jsonify({"model_version": holder.require().model_version})

    @app.post("/predict")
    def predict():
        deadline = Deadline.after(settings.request_deadline_s)
        tasks, config, context = validate_predict_body(read_json_body(settings.max_request_bytes), settings)
        try:
            holder.require()
            with service.admission.slot(deadline):
                results = service.predictor.predict(tasks, config, context, deadline)
        except (InvalidContext, ModelUnavailable, Overloaded) as exc:
            if context is None:
                raise  # the HTTP status, for callers that read it (backend.http.errors)
            return jsonify({"results": [interactive_refusal(exc, config, context, service)]})
        service.counters.count(predict_requests=1, tasks=len(tasks))
        return jsonify({"results": results})

    @app.get("/versions")
    def versions():
        state = holder.state()
        return jsonify({"versions": [state.model_version] if state.model_version else []})

    @app.get("/metrics")
    def metrics():
        snapshot = service.counters.snapshot()
        snapshot.update(service.admission.snapshot())
        snapshot["model_ready"] = holder.state().ready
        if service.training is not None:
            snapshot.update(service.training.metrics())
        return jsonify(snapshot)


def register_webhook_routes(app: Flask, service: Service) -> None:
    """/webhook (annotation events for the live export, Start Training) and /train/status."""
    settings = service.settings

    @app.post("/webhook")
    def webhook():
        body = read_json_body(settings.max_request_bytes)
        if body.get("action") == "START_TRAINING" and not is_authorized(request.headers.get("Authorization"),
                                                                        settings):
            service.counters.count(unauthorized=1)
            return error_reply("Start Training needs the backend's auth (set it on the ML backend in Label "
                               "Studio)", 401)
        return jsonify(webhook_reply(body, service))

    @app.get("/train/status")
    def train_status():
        if service.training is None:
            return jsonify({"enabled": False, "reason": TRAINING_OFF})
        return jsonify(service.training.status())


def interactive_refusal(exc: Exception, config, context: dict, service: Service) -> dict:
    """A refused interactive call answered with 200 and its reason where the annotator looks
    (backend.predict.refusals); busy and loading say when to try again."""
    reason = exc.reason if isinstance(exc, Overloaded) else str(exc)
    retry_after_s = exc.retry_after_s if isinstance(exc, Overloaded) else None
    if isinstance(exc, ModelUnavailable):
        retry_after_s = service.settings.retry_after_s
    if retry_after_s is not None:
        reason = f"{reason}; try again in {retry_after_s} s"
    log.warning("interactive call refused: %s", reason)
    service.counters.count(interactive_refusals=1)
    return refusal_entry(config, context, reason, service.holder.state().model_version)


def webhook_reply(body: dict, service: Service) -> dict:
    action = body.get("action")
    if action in LIVE_EVENTS:
        if service.exporter is None:
            return {"status": "ignored", "reason": "STAGE3_DIR is not set"}
        service.exporter.submit(body)
        service.counters.count(webhooks_queued=1)
        return {"status": "queued", "action": action}
    if action == "START_TRAINING":
        if service.training is None:
            return {"status": "ignored", "reason": TRAINING_OFF}
        project = body.get("project") if isinstance(body.get("project"), dict) else {}
        service.counters.count(train_webhooks=1)
        return service.training.request(project.get("id"))
    return {"status": "Unknown event"}


def create_app_from_env() -> Flask:
    """The production app: settings from the environment, the model loaded once in the background.
    For `gunicorn -c python:backend.http.gunicorn_conf 'backend.http.app:create_app_from_env()'`."""
    settings = load_settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO))
    return create_app(settings, load=lambda: load_model(settings))
