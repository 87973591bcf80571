"""Optional request authentication: HTTP Basic (what Label Studio sends) or a bearer token.

Only the Authorization header counts; a token in the query string is never read. Comparisons are
constant-time (hmac.compare_digest over bytes of the whole credential).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
import time

import requests

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


# ---------------------------------------------------------------------------------------------
# Outbound: the key the backend sends to Label Studio when it downloads task files.


class TokenExchangeError(Exception):
    """The personal access token could not be exchanged for an access token."""


def _jwt_claims(token: str) -> dict | None:
    """The (unverified) claims of a JWT, or None when the key is not a JWT (a legacy token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


class LabelStudioCredentials:
    """Builds the Authorization header for Label Studio from LABEL_STUDIO_API_KEY.

    A legacy token is sent as `Token <key>`. A personal access token (a JWT with token_type
    "refresh") is exchanged at /api/token/refresh for a short-lived access JWT, sent as
    `Bearer <access>` and exchanged again shortly before it expires. An access JWT given directly
    is sent as `Bearer <key>`.
    """

    REFRESH_MARGIN_S = 30.0

    def __init__(self, label_studio_url: str, api_key: str, timeout_s: float = 10.0, post=None):
        self._url = label_studio_url.rstrip("/")
        self._key = api_key.strip()
        self._timeout_s = timeout_s
        self._post = post or requests.post
        self._lock = threading.Lock()
        self._access: str | None = None
        self._access_expires_at = 0.0
        claims = _jwt_claims(self._key) if self._key else None
        self.kind = "none" if not self._key else "legacy" if claims is None else str(
            claims.get("token_type", "access")
        )

    def headers(self) -> dict[str, str]:
        if self.kind == "none":
            return {}
        if self.kind == "legacy":
            return {"Authorization": f"Token {self._key}"}
        if self.kind == "refresh":
            return {"Authorization": f"Bearer {self._access_token()}"}
        return {"Authorization": f"Bearer {self._key}"}

    def invalidate(self) -> None:
        """Forget the cached access token (after a 401), so the next call exchanges again."""
        with self._lock:
            self._access = None

    def _access_token(self) -> str:
        with self._lock:
            if self._access and time.time() < self._access_expires_at - self.REFRESH_MARGIN_S:
                return self._access
            self._access, self._access_expires_at = self._exchange()
            return self._access

    def _exchange(self) -> tuple[str, float]:
        try:
            reply = self._post(
                f"{self._url}/api/token/refresh",
                json={"refresh": self._key},
                timeout=self._timeout_s,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise TokenExchangeError(f"token refresh failed: {type(exc).__name__}") from None
        if reply.status_code != 200:
            raise TokenExchangeError(f"token refresh failed: HTTP {reply.status_code}")
        try:
            access = reply.json()["access"]
        except (ValueError, KeyError, TypeError):
            raise TokenExchangeError("token refresh failed: reply has no access token") from None
        claims = _jwt_claims(access) or {}
        expires_at = float(claims.get("exp", time.time() + 60))
        return access, expires_at
