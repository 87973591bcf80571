"""Exceptions -> HTTP answers, in one table. Every error is JSON {"error": "<one line>"}; no traceback
ever reaches a response."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from backend.http.admission import Overloaded
from backend.http.body import TOO_LARGE, BadRequest
from backend.predict.errors import InvalidContext, ModelUnavailable
from model.reasons import one_line

log = logging.getLogger("backend.http")


def error_reply(reason, status: int, retry_after_s: int | None = None) -> Response:
    reply = jsonify({"error": one_line(reason, 1000)})
    reply.status_code = status
    if retry_after_s is not None:
        reply.headers["Retry-After"] = str(retry_after_s)
    return reply


def register_error_handlers(app: Flask, retry_after_s: int, count: Callable[..., None]) -> None:
    """exception class -> (status, Retry-After, the counter it bumps); HTTP errors and the rest below."""
    table: dict[type[Exception], Callable[[Exception], Response]] = {
        BadRequest: lambda exc: error_reply(exc.reason, exc.status),
        InvalidContext: lambda exc: error_reply(exc, 400),
        Overloaded: lambda exc: error_reply(exc.reason, exc.status, exc.retry_after_s),
        ModelUnavailable: lambda exc: error_reply(exc, 503, retry_after_s),
    }
    counters = {BadRequest: "bad_requests", InvalidContext: "bad_requests", ModelUnavailable: "model_unavailable"}

    def handler_for(kind: type[Exception]):
        def handle(exc: Exception) -> Response:
            if kind in counters:
                count(**{counters[kind]: 1})
            return table[kind](exc)
        return handle

    for kind in table:
        app.register_error_handler(kind, handler_for(kind))

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException):
        if isinstance(exc, RequestEntityTooLarge):
            return error_reply(TOO_LARGE, 413)
        return error_reply(exc.description or exc.name, exc.code or 500)

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        count(internal_errors=1)
        return error_reply("internal error (see the backend log)", 500)
