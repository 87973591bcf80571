"""Inbound request authentication (optional): HTTP Basic (what Label Studio sends) or a bearer token.

Only the Authorization header counts; a token in the query string is never read. Comparisons are
constant-time (hmac.compare_digest over bytes of the whole credential).
"""

from __future__ import annotations

import base64
import binascii
import hmac

from backend.settings import Settings


def auth_required(settings: Settings) -> bool:
    return bool(settings.basic_auth_user or settings.basic_auth_pass or settings.auth_token)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _basic_ok(credentials: str, settings: Settings) -> bool:
    if not (settings.basic_auth_user or settings.basic_auth_pass):
        return False
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    # evaluate both comparisons so the time does not tell which half was wrong
    user_ok = _same(user, settings.basic_auth_user)
    pass_ok = _same(password, settings.basic_auth_pass)
    return user_ok and pass_ok


def _bearer_ok(credentials: str, settings: Settings) -> bool:
    return bool(settings.auth_token) and _same(credentials.strip(), settings.auth_token)


def is_authorized(authorization_header: str | None, settings: Settings) -> bool:
    """True when no auth is configured, or the header carries valid Basic or Bearer credentials."""
    if not auth_required(settings):
        return True
    if not authorization_header:
        return False
    scheme, _, credentials = authorization_header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        return _basic_ok(credentials, settings)
    if scheme == "bearer":
        return _bearer_ok(credentials, settings)
    return False


WEBHOOK_TOKEN_HEADER = "X-Webhook-Token"


def webhook_authorized(header_value: str | None, settings: Settings) -> bool:
    """True when WEBHOOK_TOKEN is unset, or the X-Webhook-Token header carries it (constant time)."""
    if not settings.webhook_token:
        return True
    return header_value is not None and _same(header_value.strip(), settings.webhook_token)
