"""Reading request bodies: size caps (chunked bodies too), JSON objects, the label config.
/predict's body is read by backend.http.predict_body."""

from __future__ import annotations

import json
from collections.abc import Iterator

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


def body_chunks(cap: int, chunk_bytes: int = 64 * 1024) -> Iterator[bytes]:
    """The raw body in chunks, never more than `cap` bytes read: 413 past it, with or without
    Content-Length.

    Werkzeug's own limit on a chunked stream (wsgi.input_terminated, as gunicorn sets) truncates
    silently at the cap, so a streamed body is read here with its own count."""
    length = request.content_length
    if length is not None:
        if length > cap:
            raise BadRequest(TOO_LARGE, 413)
        stream = request.stream
    elif request.environ.get("wsgi.input_terminated"):
        stream = request.environ["wsgi.input"]
    else:
        return  # no length and a server that does not delimit the stream: nothing safe to read
    size = 0
    try:
        while chunk := stream.read(min(chunk_bytes, cap + 1 - size)):
            size += len(chunk)
            if size > cap:
                raise BadRequest(TOO_LARGE, 413)
            yield chunk
    except RequestEntityTooLarge:
        raise BadRequest(TOO_LARGE, 413) from None


def read_body(cap: int) -> bytes:
    """The raw body as bytes (see :func:`body_chunks`)."""
    return b"".join(body_chunks(cap))


def read_json_body(cap: int) -> dict:
    """The request body as a JSON object; 413 past MAX_REQUEST_BYTES (chunked too), else 400."""
    raw = read_body(cap)
    if not raw:
        raise BadRequest("empty request body; expected a JSON object")
    return json_object(raw)


def json_object(raw: bytes) -> dict:
    """`raw` parsed as a JSON object, or BadRequest with a one-line reason."""
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


def parse_context(params) -> dict | None:
    """The interactive context in /predict's `params` (None for pre-annotation), or BadRequest."""
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
