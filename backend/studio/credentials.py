"""The key the backend sends to Label Studio (image downloads, API calls): one token policy for all.

LABEL_STUDIO_API_KEY is either a legacy token, sent as ``Token <key>``, or a personal access token
(a JWT with token_type "refresh"), exchanged at /api/token/refresh for a short-lived access JWT that
is sent as ``Bearer <access>`` and exchanged again when it expires. The key only ever goes to Label
Studio's own URL.

Who exchanges it:
* where the API is used (batch --from-project, export --from-project, the tests' client), through
  label-studio-sdk, which does the exchange itself: :func:`sdk_client` is the one place an SDK client
  is made, and :class:`SdkCredentials` gives plain HTTP calls of the same job (image downloads) the
  header of that client, so a job exchanges its key once, in the SDK;
* the server, which never loads the SDK, through :class:`LabelStudioCredentials` for its image
  downloads: the same rules, exchanging again shortly before the access token's ``exp`` (60 s when it
  has none) and after a 401. An access JWT given directly is sent as ``Bearer <key>``.
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


def _api_error_reason(exc) -> str:
    body = getattr(exc, "body", None)
    detail = body.get("detail") if isinstance(body, dict) else body
    return f"HTTP {getattr(exc, 'status_code', '?')}: {detail or type(exc).__name__}"


def sdk_client(url: str, api_key: str, timeout_s: float = 60.0):
    """A label_studio_sdk.LabelStudio client for `url` with `api_key` (the SDK exchanges a personal access
    token itself). TokenExchangeError with a one-line reason for an expired or unusable key."""
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    try:
        return LabelStudio(base_url=url.rstrip("/"), api_key=api_key.strip(), timeout=timeout_s)
    except ApiError as exc:
        raise TokenExchangeError(f"LABEL_STUDIO_API_KEY refused: {_api_error_reason(exc)}") from None


class SdkCredentials:
    """The Authorization header of an SDK client, for plain HTTP calls to the same Label Studio (the
    interface of LabelStudioCredentials: ``kind``, ``headers()``, ``invalidate()``)."""

    def __init__(self, client, api_key: str):
        self._client = client
        claims = jwt_claims(api_key.strip()) if api_key.strip() else None
        self.kind = "none" if not api_key.strip() else "legacy" if claims is None else str(
            claims.get("token_type", "access"))

    def headers(self) -> dict[str, str]:
        from label_studio_sdk.core.api_error import ApiError

        if self.kind == "none":
            return {}
        try:
            # the SDK's wrapper builds the header, exchanging a personal access token when needed
            return {"Authorization": self._client._client_wrapper.get_headers()["Authorization"]}
        except ApiError as exc:
            raise TokenExchangeError(f"token refresh failed: {_api_error_reason(exc)}") from None

    def invalidate(self) -> None:
        """Nothing to forget: the SDK exchanges again when its access token expires."""
