"""The OAuth2 token endpoint and bearer-token checks, as DataConnect's accounts service does them.

``POST /v1/oauth2/token`` with a form body: ``grant_type=password`` (client_id, client_secret,
username, password) or ``grant_type=refresh_token`` (client_id, client_secret, refresh_token).
The answer is ``{"access_token", "expires_in", "refresh_token"}``. Exchanging a refresh token
revokes the access token issued with it and the refresh token itself. Errors are HTTP 400 with
an OAuth2 ``error`` code: ``unsupported_grant_type``, ``invalid_client``, ``invalid_grant``.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from publisher.simulator.clock import Clock
from publisher.simulator.settings import SimulatorSettings


@dataclass(slots=True)
class _Grant:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_expires: datetime
    refresh_expires: datetime


@dataclass(frozen=True, slots=True)
class TokenResult:
    """HTTP status and JSON body of a token request."""

    status: int
    body: dict[str, Any]


class TokenStore:
    """Issues, refreshes, checks, expires and revokes tokens; thread-safe."""

    def __init__(self, settings: SimulatorSettings, clock: Clock) -> None:
        self._s = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._by_access: dict[str, _Grant] = {}
        self._by_refresh: dict[str, _Grant] = {}
        self.issued = 0

    def token_request(self, form: Mapping[str, str]) -> TokenResult:
        """Answer one token request (its form fields)."""
        grant = form.get("grant_type", "")
        if grant not in ("password", "refresh_token"):
            return _error("unsupported_grant_type", f"grant_type {grant[:32]!r} is not supported")
        if not (
            _same(form.get("client_id", ""), self._s.client_id)
            and _same(form.get("client_secret", ""), self._s.client_secret.get_secret_value())
        ):
            return _error("invalid_client", "client_id or client_secret is not valid")
        with self._lock:
            if grant == "password":
                if not (
                    _same(form.get("username", ""), self._s.username)
                    and _same(form.get("password", ""), self._s.password.get_secret_value())
                ):
                    return _error("invalid_grant", "The user name or password is incorrect.")
            else:
                old = self._by_refresh.pop(form.get("refresh_token", ""), None)
                if old is None or old.refresh_expires <= self._clock():
                    return _error("invalid_grant", "The refresh token is invalid or expired.")
                self._by_access.pop(old.access_token, None)  # the exchange revokes it
            issued = self._issue()
        return TokenResult(
            200,
            {
                "access_token": issued.access_token,
                "expires_in": self._s.token_ttl,
                "refresh_token": issued.refresh_token,
            },
        )

    def _issue(self) -> _Grant:
        now = self._clock()
        grant = _Grant(
            access_token=secrets.token_urlsafe(32),
            refresh_token=secrets.token_urlsafe(32),
            access_expires=now + timedelta(seconds=self._s.token_ttl),
            refresh_expires=now + timedelta(seconds=self._s.refresh_ttl),
        )
        self._by_access[grant.access_token] = grant
        self._by_refresh[grant.refresh_token] = grant
        self.issued += 1
        return grant

    def authorized(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries a live bearer token."""
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        with self._lock:
            grant = self._by_access.get(token.strip())
            return grant is not None and self._clock() < grant.access_expires

    def expire_all(self) -> int:
        """Make every access token expired now (refresh tokens stay usable)."""
        with self._lock:
            now = self._clock()
            for grant in self._by_access.values():
                grant.access_expires = now
            return len(self._by_access)

    def revoke_all(self) -> int:
        """Forget every access and refresh token: clients must use the password grant."""
        with self._lock:
            count = len(self._by_access) + len(self._by_refresh)
            self._by_access.clear()
            self._by_refresh.clear()
            return count


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _error(code: str, description: str) -> TokenResult:
    return TokenResult(400, {"error": code, "error_description": description})
