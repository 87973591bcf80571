"""The Flask app Label Studio talks to: /health, /ready, /setup, /predict, /webhook, /versions, /metrics,
/train/status.

Reply shapes follow what Label Studio 1.23.2 accepts (docs/label-studio.md); the replies themselves are in
backend.http.replies. Auth (when configured) covers /predict, /setup, /versions, /metrics and
/train/status. /health (liveness: 200 whenever the process answers, with the model's state) and /ready
(503 until the model is loaded) stay open so a probe costs nothing. /webhook does not take the ML
backend's Basic auth for annotation events (Label Studio sends webhooks without it): with WEBHOOK_TOKEN set
they need that token in X-Webhook-Token; they only queue annotations for export and are answered at once.
"Start Training" (START_TRAINING) comes with the backend's auth, is refused without it when auth is
configured, and only queues a training job (backend.train).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, jsonify, request

from backend.http.admission import Admission
from backend.http.auth import WEBHOOK_TOKEN_HEADER, auth_required, is_authorized, webhook_authorized
from backend.http.body import read_json_body
from backend.http.errors import error_reply, register_error_handlers
from backend.http.replies import health_body, predict_reply, setup_reply, webhook_reply
from backend.http.service import TRAINING_OFF, Counters, Service, make_exporter, make_training
from backend.images import ImageLoader
from backend.predict.contract import NextChatModel
from backend.predict.holder import ModelHolder, load_model
from backend.predict.predictor import Predictor
from backend.predict.projects import ProjectStore
from backend.predict.versions import base_version
from backend.settings import Settings, load_settings

log = logging.getLogger("backend.http")

OPEN_ENDPOINTS = ("health", "ready", "index", "webhook")


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
        exporter=exporter, counters=Counters(), projects=ProjectStore(settings.model_dir), training=training,
    )
    if settings.stage3_dir and not settings.webhook_token:
        log.warning("WEBHOOK_TOKEN is not set: anyone who reaches this port can post annotations into "
                    "STAGE3_DIR=%s through /webhook (docs/deploy.md shows how to set a token)", settings.stage3_dir)
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


def register_routes(app: Flask, service: Service) -> None:
    settings, holder = service.settings, service.holder

    @app.get("/")
    def index():
        return jsonify(health_body(holder, settings)[0])

    @app.get("/health")
    def health():
        return jsonify(health_body(holder, settings)[0])  # liveness: 200 whenever the process answers

    @app.get("/ready")
    def ready():
        body, is_ready = health_body(holder, settings)  # readiness: 503 until the model is loaded
        reply = jsonify(body)
        if not is_ready:
            reply.status_code = 503
            reply.headers["Retry-After"] = str(settings.retry_after_s)
        return reply

    @app.post("/setup")
    def setup():
        return jsonify(setup_reply(read_json_body(settings.max_task_data_bytes), service))

    @app.post("/predict")
    def predict():
        return jsonify(predict_reply(service))

    @app.get("/versions")
    def versions():
        projects = service.projects.versions()
        state = holder.state()
        reply = {"versions": list(dict.fromkeys(projects.values())), "projects": projects}
        if state.model_version:
            reply["model"] = base_version(settings, state.model_version)
        return jsonify(reply)

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
        body = read_json_body(settings.max_task_data_bytes)
        if body.get("action") == "START_TRAINING":
            if not is_authorized(request.headers.get("Authorization"), settings):
                service.counters.count(unauthorized=1)
                return error_reply("Start Training needs the backend's auth (set it on the ML backend in Label "
                                   "Studio)", 401)
        elif not webhook_authorized(request.headers.get(WEBHOOK_TOKEN_HEADER), settings):
            service.counters.count(unauthorized_webhooks=1)
            return error_reply(f"webhook refused: {WEBHOOK_TOKEN_HEADER} header missing or wrong", 401)
        return jsonify(webhook_reply(body, service))

    @app.get("/train/status")
    def train_status():
        if service.training is None:
            return jsonify({"enabled": False, "reason": TRAINING_OFF})
        return jsonify(service.training.status())


def create_app_from_env() -> Flask:
    """The production app: settings from the environment, the model loaded once in the background.
    For `gunicorn -c python:backend.http.gunicorn_conf 'backend.http.app:create_app_from_env()'`."""
    settings = load_settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO))
    return create_app(settings, load=lambda: load_model(settings))
