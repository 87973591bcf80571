"""The Flask app Label Studio talks to: /health, /setup, /predict, /webhook, /versions, /metrics.

Reply shapes follow what Label Studio 1.23.2 was seen to accept (shared/reference/label-studio.md
§3, §4, §8). Every error is JSON {"error": "<one line>"}; no traceback ever reaches a response.
Auth (when configured) covers /predict, /setup, /versions and /metrics. /health stays open so a probe
costs nothing and says only whether the model is ready. /webhook stays open because Label Studio
sends its webhooks without the ML backend's Basic auth (reference §3 "Basic auth"); it only queues
annotations for export, never runs the model, and answers at once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from backend.auth import auth_required, is_authorized
from backend.images import ImageLoader
from backend.limits import Admission, Deadline, Overloaded
from backend.predictor import (
    ConfigError,
    InvalidContext,
    ModelHolder,
    ModelUnavailable,
    Predictor,
    load_model,
    parse_config,
)
from backend.settings import Settings, load_settings

log = logging.getLogger("backend.app")

# the events backend.export.live.LiveExporter applies to the stage-3 directory
EXPORT_EVENTS = (
    "ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_DELETED",
)


class BadRequest(Exception):
    """The request is malformed; `status` is 400 unless said otherwise."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.status = status


def error_reply(reason: str, status: int, retry_after_s: int | None = None) -> Response:
    reply = jsonify({"error": " ".join(str(reason).split())})
    reply.status_code = status
    if retry_after_s is not None:
        reply.headers["Retry-After"] = str(retry_after_s)
    return reply


def read_body(cap: int) -> bytes:
    """The raw body, never more than `cap` bytes read: 413 past it, with or without Content-Length.

    Werkzeug's own limit on a chunked stream (wsgi.input_terminated, as gunicorn sets) truncates
    silently at the cap, so a streamed body is read here with its own count."""
    length = request.content_length
    if length is not None:
        if length > cap:
            raise BadRequest("request body exceeds MAX_REQUEST_BYTES", 413)
        return request.get_data(cache=True)
    if not request.environ.get("wsgi.input_terminated"):
        return b""  # no length and a server that does not delimit the stream: nothing safe to read
    stream = request.environ["wsgi.input"]
    chunks, size = [], 0
    while chunk := stream.read(min(64 * 1024, cap + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise BadRequest("request body exceeds MAX_REQUEST_BYTES", 413)
    return b"".join(chunks)


def read_json_body(cap: int) -> dict:
    """The request body as a JSON object; 413 past MAX_REQUEST_BYTES (chunked too), else 400."""
    try:
        raw = read_body(cap)
    except RequestEntityTooLarge:
        raise BadRequest("request body exceeds MAX_REQUEST_BYTES", 413) from None
    if not raw:
        raise BadRequest("empty request body; expected a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"expected a JSON object, got {type(body).__name__}")
    return body


def make_exporter(settings: Settings, image_loader):
    """The live stage-3 exporter when STAGE3_DIR is set (it fetches images with our loader); else None."""
    if not settings.stage3_dir:
        return None
    try:
        from backend.export.live import LiveExporter
    except ImportError as exc:
        log.error("STAGE3_DIR is set but the exporter is unavailable: %s", exc)
        return None
    return LiveExporter(settings.stage3_dir, images_loader=image_loader)


def create_app(settings: Settings, model=None, *, image_loader=None, exporter=None) -> Flask:
    """The app. `model` is a loaded model, or a zero-argument callable that loads it (run once, in
    a background thread, so /health answers while the weights load)."""
    app = Flask("backend")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    holder = ModelHolder(model)
    image_loader = image_loader or ImageLoader(settings)
    predictor = Predictor(holder, settings, image_loader)
    admission = Admission(
        settings.max_concurrency, settings.max_queue, settings.queue_timeout_s, settings.retry_after_s
    )
    exporter = exporter if exporter is not None else make_exporter(settings, image_loader)
    counters: Counter = Counter()
    counters_lock = threading.Lock()

    def count(**increments):
        with counters_lock:
            counters.update(increments)

    app.extensions["nextchat"] = {
        "holder": holder, "predictor": predictor, "admission": admission, "exporter": exporter,
    }
    holder.start_loading()

    @app.before_request
    def check_auth():
        if request.endpoint in ("health", "index", "webhook") or not auth_required(settings):
            return None
        if not is_authorized(request.headers.get("Authorization"), settings):
            count(unauthorized=1)
            reply = error_reply("authentication required", 401)
            reply.headers["WWW-Authenticate"] = 'Basic realm="nextchat-ls"'
            return reply
        return None

    @app.errorhandler(BadRequest)
    def on_bad_request(exc: BadRequest):
        count(bad_requests=1)
        return error_reply(exc.reason, exc.status)

    @app.errorhandler(InvalidContext)
    def on_invalid_context(exc: InvalidContext):
        count(bad_requests=1)
        return error_reply(str(exc), 400)

    @app.errorhandler(Overloaded)
    def on_overloaded(exc: Overloaded):
        return error_reply(exc.reason, exc.status, exc.retry_after_s)

    @app.errorhandler(ModelUnavailable)
    def on_model_unavailable(exc: ModelUnavailable):
        count(model_unavailable=1)
        return error_reply(str(exc), 503, settings.retry_after_s)

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException):
        if isinstance(exc, RequestEntityTooLarge):
            return error_reply("request body exceeds MAX_REQUEST_BYTES", 413)
        return error_reply(exc.description or exc.name, exc.code or 500)

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        count(internal_errors=1)
        return error_reply("internal error (see the backend log)", 500)

    def health_body() -> tuple[dict, int]:
        state = holder.state()
        body = {"status": state.status, "model_class": "NextChat", "model_ready": state.ready}
        if state.model_version:
            body["model_version"] = state.model_version
        if state.reason:
            body["reason"] = state.reason
        return body, 200 if state.ready else 503

    @app.get("/")
    def index():
        body, _ = health_body()  # liveness: 200 whenever the process answers
        return jsonify(body)

    @app.get("/health")
    def health():
        body, status = health_body()  # readiness: 503 until the model is loaded
        return jsonify(body), status

    @app.post("/setup")
    def setup():
        body = read_json_body(settings.max_request_bytes)
        schema = body.get("schema")
        if schema is not None:
            if not isinstance(schema, str):
                raise BadRequest("schema must be a string of label config XML")
            try:
                parse_config(schema, settings)
            except ConfigError as exc:
                raise BadRequest(str(exc)) from None
        return jsonify({"model_version": holder.require().model_version})

    @app.post("/predict")
    def predict():
        deadline = Deadline.after(settings.request_deadline_s)
        body = read_json_body(settings.max_request_bytes)
        tasks, config, context = validate_predict_body(body, settings)
        holder.require()
        with admission.slot(deadline):
            results = predictor.predict(tasks, config, context, deadline)
        count(predict_requests=1, tasks=len(tasks))
        return jsonify({"results": results})

    @app.post("/webhook")
    def webhook():
        body = read_json_body(settings.max_request_bytes)
        action = body.get("action")
        if action in EXPORT_EVENTS:
            if exporter is None:
                return jsonify({"status": "ignored", "reason": "STAGE3_DIR is not set"})
            exporter.submit(body)
            count(webhooks_queued=1)
            return jsonify({"status": "queued", "action": action})
        if action == "START_TRAINING":
            return jsonify({"status": "ignored", "reason": "training is not supported"})
        return jsonify({"status": "Unknown event"})

    @app.get("/versions")
    def versions():
        state = holder.state()
        return jsonify({"versions": [state.model_version] if state.model_version else []})

    @app.get("/metrics")
    def metrics():
        with counters_lock:
            snapshot = dict(counters)
        snapshot.update(admission.snapshot())
        snapshot["model_ready"] = holder.state().ready
        return jsonify(snapshot)

    return app


def _check_task(index: int, task) -> None:
    if not isinstance(task, dict):
        raise BadRequest(f"tasks[{index}] must be an object")
    if not isinstance(task.get("data"), dict):
        raise BadRequest(f"tasks[{index}] has no 'data' object")


def validate_predict_body(body: dict, settings: Settings):
    """(tasks, parsed config, context or None) from a /predict body, or BadRequest."""
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        raise BadRequest("'tasks' must be a list of tasks")
    if not tasks:
        raise BadRequest("'tasks' is empty")
    if len(tasks) > settings.max_tasks_per_request:
        raise BadRequest(
            f"{len(tasks)} tasks exceed MAX_TASKS_PER_REQUEST={settings.max_tasks_per_request}", 413
        )
    for index, task in enumerate(tasks):
        _check_task(index, task)
    label_config = body.get("label_config")
    if not isinstance(label_config, str) or not label_config.strip():
        raise BadRequest("'label_config' must be the label config XML string")
    try:
        config = parse_config(label_config, settings)
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise BadRequest("'params' must be an object")
    context = (params or {}).get("context")
    if context is not None:
        if not isinstance(context, dict):
            raise BadRequest("'params.context' must be an object")
        if not isinstance(context.get("result", []), list):
            raise BadRequest("'params.context.result' must be a list")
        if not context.get("result"):
            context = None
    return tasks, config, context


def create_app_from_env() -> Flask:
    """The production app: settings from the environment, the model loaded once in the background.
    For `gunicorn -c python:backend.gunicorn_conf 'backend.app:create_app_from_env()'`."""
    settings = load_settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO))
    return create_app(settings, lambda: load_model(settings))


def run_gunicorn(settings: Settings) -> None:
    """Serve under gunicorn in this process (one worker, gthread); returns when it stops."""
    from gunicorn.app.base import BaseApplication

    from backend.gunicorn_conf import gunicorn_options

    class Server(BaseApplication):
        def load_config(self):
            for key, value in gunicorn_options(settings).items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(settings, lambda: load_model(settings))

    Server().run()
