"""The Flask app Label Studio talks to: /health, /ready, /setup, /predict, /webhook, /versions, /metrics.

Reply shapes follow what Label Studio 1.23.2 accepts (docs/label-studio.md). Auth (when
configured) covers /predict, /setup, /versions and /metrics. /health (liveness: 200 whenever the process
answers, with the model's state) and /ready (503 until the model is loaded) stay open so a probe costs
nothing. /webhook does not take the ML backend's Basic auth (Label Studio sends webhooks without it):
with WEBHOOK_TOKEN set it needs that token in X-Webhook-Token; it only queues annotations for export,
never runs the model, and answers at once.
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
from backend.http.admission import Admission
from backend.http.auth import WEBHOOK_TOKEN_HEADER, auth_required, is_authorized, webhook_authorized
from backend.http.body import BadRequest, checked_config, parse_context, read_json_body
from backend.http.errors import error_reply, register_error_handlers
from backend.http.predict_body import read_predict_body
from backend.images import ImageLoader
from backend.predict.contract import NextChatModel
from backend.predict.errors import ModelUnavailable
from backend.predict.holder import ModelHolder, load_model
from backend.predict.predictor import Predictor
from backend.predict.projects import ParamsError, ProjectStore, parse_extra_params, project_key, project_run
from backend.predict.versions import base_version
from backend.settings import Settings, load_settings

log = logging.getLogger("backend.http")

OPEN_ENDPOINTS = ("health", "ready", "index", "webhook")
MODEL_STATES = {"UP": "ready", "LOADING": "loading", "ERROR": "failed"}
LOADING_VERSION = "loading"  # what /setup answers before the model (and so its version) is known


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
    projects: ProjectStore


def make_exporter(settings: Settings, image_loader):
    """The live stage-3 exporter when STAGE3_DIR is set (it fetches images with our loader); else None."""
    if not settings.stage3_dir:
        return None
    from backend.export.live import LiveExporter

    return LiveExporter(settings.stage3_dir, images_loader=image_loader)


def create_app(settings: Settings, model: NextChatModel | None = None, *,
               load: Callable[[], NextChatModel] | None = None, image_loader=None, exporter=None) -> Flask:
    """The app around a loaded `model`, or around `load`, a zero-argument callable run once in a background
    thread (so /health answers while the weights load)."""
    image_loader = image_loader or ImageLoader(settings)
    holder = ModelHolder(model=model, load=load)
    service = Service(
        settings=settings, holder=holder, predictor=Predictor(holder, settings, image_loader),
        admission=Admission(settings.max_concurrency, settings.max_queue, settings.queue_timeout_s,
                            settings.retry_after_s),
        exporter=exporter if exporter is not None else make_exporter(settings, image_loader),
        counters=Counters(), projects=ProjectStore(settings.model_dir),
    )
    if settings.stage3_dir and not settings.webhook_token:
        log.warning("WEBHOOK_TOKEN is not set: anyone who reaches this port can post annotations into "
                    "STAGE3_DIR=%s through /webhook (docs/deploy.md shows how to set a token)", settings.stage3_dir)
    app = Flask("backend")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    register_auth(app, settings, service.counters)
    register_error_handlers(app, settings.retry_after_s, service.counters.count)
    register_routes(app, service)
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


def health_body(holder: ModelHolder, settings: Settings) -> tuple[dict, bool]:
    """(the /health and /ready body, whether the model is ready)."""
    state = holder.state()
    body = {"status": "UP", "model": MODEL_STATES[state.status], "model_class": "NextChat",
            "model_ready": state.ready}
    if state.model_version:
        body["model_version"] = base_version(settings, state.model_version)
    if state.reason:
        body["reason"] = state.reason
    return body, state.ready


def setup_reply(body: dict, service: Service) -> dict:
    """/setup: the project's extra params validated and kept, its model version (versions.py)."""
    settings, holder = service.settings, service.holder
    state = holder.state()
    if state.status == "ERROR":
        raise ModelUnavailable(state.reason)
    key = project_key(body.get("project"))
    try:
        params = parse_extra_params(body.get("extra_params"), settings)
    except ParamsError as exc:
        log.warning("/setup of project %s refused: %s", key, exc)
        raise BadRequest(str(exc)) from None
    config = checked_config(body["schema"], settings) if body.get("schema") is not None else None
    service.projects.update(key, params=params)
    if not state.ready and not settings.model_version:
        return {"model_version": LOADING_VERSION, "model": "loading"}
    if config is None:
        return {"model_version": base_version(settings, state.model_version)}
    run = project_run(settings, params, config, state.model_version)
    service.projects.update(key, model_version=run.model_version)
    return {"model_version": run.model_version}


def predict_reply(service: Service) -> dict:
    settings = service.settings
    deadline = Deadline.after(settings.request_deadline_s)
    body = read_predict_body(settings)
    config = checked_config(body.label_config, settings)
    context = parse_context(body.params)
    model = service.holder.require()
    key = project_key(body.project)
    run = project_run(settings, service.projects.params(key), config, model.model_version)
    service.projects.update(key, model_version=run.model_version)
    with service.admission.slot(deadline):
        results = service.predictor.predict(body.tasks, config, context, deadline, run)
    reason = f"left out: the request exceeded {body.left_out_reason}; retrieve predictions again for this task"
    results += [{"model_version": run.model_version, "score": 0.0, "error": reason}] * body.left_out
    service.counters.count(predict_requests=1, tasks=len(body.tasks), tasks_left_out=body.left_out)
    return {"results": results}


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

    @app.post("/webhook")
    def webhook():
        if not webhook_authorized(request.headers.get(WEBHOOK_TOKEN_HEADER), settings):
            service.counters.count(unauthorized_webhooks=1)
            return error_reply(f"webhook refused: {WEBHOOK_TOKEN_HEADER} header missing or wrong", 401)
        return jsonify(webhook_reply(read_json_body(settings.max_task_data_bytes), service))

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
        return jsonify(snapshot)


def webhook_reply(body: dict, service: Service) -> dict:
    action = body.get("action")
    if action in LIVE_EVENTS:
        if service.exporter is None:
            return {"status": "ignored", "reason": "STAGE3_DIR is not set"}
        service.exporter.submit(body)
        service.counters.count(webhooks_queued=1)
        return {"status": "queued", "action": action}
    if action == "START_TRAINING":
        return {"status": "ignored", "reason": "training is not supported"}
    return {"status": "Unknown event"}


def create_app_from_env() -> Flask:
    """The production app: settings from the environment, the model loaded once in the background.
    For `gunicorn -c python:backend.http.gunicorn_conf 'backend.http.app:create_app_from_env()'`."""
    settings = load_settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO))
    return create_app(settings, load=lambda: load_model(settings))
