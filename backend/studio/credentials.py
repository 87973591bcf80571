"""The key the backend sends to Label Studio (image downloads, API calls): one token policy for all.

LABEL_STUDIO_API_KEY is either a legacy token, sent as ``Token <key>``, or a personal access token
(a JWT with token_type "refresh"), exchanged at /api/token/refresh for a short-lived access JWT that
is sent as ``Bearer <access>`` and exchanged again shortly before it expires (its ``exp`` claim; 60 s
when it has none). An access JWT given directly is sent as ``Bearer <key>``. The key only ever goes
to Label Studio's own URL.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time

import requests

ACCESS_TOKEN_FALLBACK_LIFETIME_S = 60.0


class TokenExchangeError(Exception):
    """The personal access token could not be exchanged for an access token."""


def jwt_claims(token: str) -> dict | None:
    """The (unverified) claims of a JWT, or None when the key is not a JWT (a legacy token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


class LabelStudioCredentials:
    """The Authorization header for Label Studio from LABEL_STUDIO_API_KEY (the module doc's rules)."""

    REFRESH_MARGIN_S = 30.0

    def __init__(self, label_studio_url: str, api_key: str, timeout_s: float = 10.0, post=None):
        self._url = label_studio_url.rstrip("/")
        self._key = api_key.strip()
        self._timeout_s = timeout_s
        self._post = post or requests.post
        self._lock = threading.Lock()
        self._access: str | None = None
        self._access_expires_at = 0.0
        claims = jwt_claims(self._key) if self._key else None
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
        claims = jwt_claims(access) or {}
        expires_at = float(claims.get("exp", time.time() + ACCESS_TOKEN_FALLBACK_LIFETIME_S))
        return access, expires_at
