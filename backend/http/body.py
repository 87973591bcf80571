"""Reading and validating request bodies: size caps (chunked bodies too), JSON objects, /predict's shape."""

from __future__ import annotations

import json

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from backend.predict.config import parse_config
from backend.predict.errors import ConfigError
from backend.settings import Settings
from backend.studio.labeling import LabelingConfig

TOO_LARGE = "request body exceeds MAX_REQUEST_BYTES"


class BadRequest(Exception):
    """The request is malformed; `status` is 400 unless said otherwise."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.status = status


def read_body(cap: int) -> bytes:
    """The raw body, never more than `cap` bytes read: 413 past it, with or without Content-Length.

    Werkzeug's own limit on a chunked stream (wsgi.input_terminated, as gunicorn sets) truncates
    silently at the cap, so a streamed body is read here with its own count."""
    length = request.content_length
    if length is not None:
        if length > cap:
            raise BadRequest(TOO_LARGE, 413)
        return request.get_data(cache=True)
    if not request.environ.get("wsgi.input_terminated"):
        return b""  # no length and a server that does not delimit the stream: nothing safe to read
    stream = request.environ["wsgi.input"]
    chunks, size = [], 0
    while chunk := stream.read(min(64 * 1024, cap + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise BadRequest(TOO_LARGE, 413)
    return b"".join(chunks)


def read_json_body(cap: int) -> dict:
    """The request body as a JSON object; 413 past MAX_REQUEST_BYTES (chunked too), else 400."""
    try:
        raw = read_body(cap)
    except RequestEntityTooLarge:
        raise BadRequest(TOO_LARGE, 413) from None
    if not raw:
        raise BadRequest("empty request body; expected a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"expected a JSON object, got {type(body).__name__}")
    return body


def checked_config(xml, settings: Settings) -> LabelingConfig:
    if not isinstance(xml, str) or not xml.strip():
        raise BadRequest("'label_config' must be the label config XML string")
    try:
        return parse_config(xml, settings)
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None


def _check_task(index: int, task) -> None:
    if not isinstance(task, dict):
        raise BadRequest(f"tasks[{index}] must be an object")
    if not isinstance(task.get("data"), dict):
        raise BadRequest(f"tasks[{index}] has no 'data' object")


def _context(params) -> dict | None:
    if params is not None and not isinstance(params, dict):
        raise BadRequest("'params' must be an object")
    context = (params or {}).get("context")
    if context is None:
        return None
    if not isinstance(context, dict):
        raise BadRequest("'params.context' must be an object")
    if not isinstance(context.get("result", []), list):
        raise BadRequest("'params.context.result' must be a list")
    return context if context.get("result") else None


def validate_predict_body(body: dict, settings: Settings) -> tuple[list[dict], LabelingConfig, dict | None]:
    """(tasks, parsed config, context or None) from a /predict body, or BadRequest."""
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        raise BadRequest("'tasks' must be a list of tasks")
    if not tasks:
        raise BadRequest("'tasks' is empty")
    if len(tasks) > settings.max_tasks_per_request:
        raise BadRequest(f"{len(tasks)} tasks exceed MAX_TASKS_PER_REQUEST={settings.max_tasks_per_request}", 413)
    for index, task in enumerate(tasks):
        _check_task(index, task)
    config = checked_config(body.get("label_config"), settings)
    return tasks, config, _context(body.get("params"))
