"""The access token of one DataConnect source: acquired, refreshed early, re-acquired on demand.

DataConnect's token endpoint speaks OAuth2: a ``password`` grant gives an access token (about
12 hours), its lifetime and a refresh token; a ``refresh_token`` grant exchanges the refresh
token for a new pair and revokes the old access token. The manager refreshes a margin before
expiry so no request goes out with a token about to lapse, falls back to the password grant
once when the refresh token is refused (expired or revoked), and keeps using a still-valid
token while the token endpoint is down. One lock makes the threads of all entities share one
token and send one token request at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import orjson

from publisher.dataconnect.clock import Clock
from publisher.dataconnect.settings import SourceHTTPSettings
from publisher.dataconnect.statuses import (
    Action,
    Failure,
    token_failure_for_body,
    token_failure_for_status,
    token_failure_for_transport,
)

log = logging.getLogger(__name__)

#: Called after every token request with (grant kind, outcome): kind is ``password`` or
#: ``refresh_token``, outcome ``ok``, ``rejected`` or ``unavailable``.
TokenHook = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class _Grant:
    """A token pair and when to replace it, on the monotonic clock."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float | None  # None: the server did not say; replaced only after a 401
    refresh_at: float | None
    revoked: bool = False  # DataConnect answered 401 to it

    def usable(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)

    def fresh(self, now: float) -> bool:
        return self.usable(now) and (self.refresh_at is None or now < self.refresh_at)


class TokenManager:
    """Hands out a valid access token to any thread; ``invalidate`` after a 401."""

    def __init__(
        self,
        settings: SourceHTTPSettings,
        http: httpx.Client,
        clock: Clock,
        on_token: TokenHook | None = None,
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._on_token = on_token
        self._lock = threading.Lock()
        self._grant: _Grant | None = None

    def token(self) -> str:
        """A valid access token, requesting a new one first when needed.

        Raises SourceAuthFailed when the credentials are refused and SourceUnavailable when
        the token endpoint cannot be reached (retry later).
        """
        with self._lock:
            now = self._clock.monotonic()
            grant = self._grant
            if grant is None or not grant.fresh(now):
                grant = self._grant = self._renew(grant, now)
            return grant.access_token

    def invalidate(self, rejected: str) -> None:
        """Forget ``rejected`` (DataConnect answered 401 to it) so the next call renews.

        Threads that got 401 with the same token all call this; only the first one counts,
        so the token is renewed once rather than once per thread.
        """
        with self._lock:
            if self._grant is not None and self._grant.access_token == rejected:
                self._grant = _Grant(rejected, self._grant.refresh_token, None, None, revoked=True)

    def _renew(self, grant: _Grant | None, now: float) -> _Grant:
        settings = self._settings
        if grant is not None and grant.refresh_token:
            refreshed = self._request("refresh_token", {"refresh_token": grant.refresh_token})
            if isinstance(refreshed, _Grant):
                return refreshed
            if refreshed.action is Action.REAUTHENTICATE:
                log.warning("%s; requesting a new token with the password grant", refreshed.error)
            elif refreshed.action is Action.RETRY and grant.usable(now):
                log.warning("%s; the current token stays in use until it expires", refreshed.error)
                return grant
            else:
                raise refreshed.error
        acquired = self._request(
            "password",
            {"username": settings.username, "password": settings.password.get_secret_value()},
        )
        if isinstance(acquired, Failure):
            raise acquired.error
        return acquired

    def _request(self, grant_type: str, fields: dict[str, str]) -> _Grant | Failure:
        """Send one token request; a new grant, or the failure mapped by statuses.py."""
        settings = self._settings
        secret = settings.client_secret.get_secret_value()
        form = {
            "grant_type": grant_type,
            "client_id": settings.client_id,
            "client_secret": secret,
            **fields,
        }
        # Scrubbed from any server text quoted in errors and logs; the lock is held.
        secrets = [secret, settings.password.get_secret_value(), *fields.values()]
        if self._grant is not None:
            secrets += [self._grant.access_token, self._grant.refresh_token or ""]
        sent_at = self._clock.monotonic()
        try:
            response = self._http.post(
                settings.token_url, data=form, headers={"Accept": "application/json"}
            )
        except httpx.RequestError as exc:
            result: _Grant | Failure = token_failure_for_transport(exc, grant_type, settings.name)
        else:
            if response.is_success:
                result = self._parse(
                    response.content, grant_type, sent_at, fields.get("refresh_token")
                )
            else:
                result = token_failure_for_status(
                    response.status_code, response.content, grant_type, settings.name, secrets
                )
        if isinstance(result, _Grant):
            outcome = "ok"
            log.info(
                "DataConnect %s: new access token (%s grant, expires in %s s)",
                settings.name,
                grant_type,
                "?" if result.expires_at is None else round(result.expires_at - sent_at),
            )
        else:
            outcome = "unavailable" if result.action is Action.RETRY else "rejected"
        if self._on_token is not None:
            self._on_token(grant_type, outcome)
        return result

    def _parse(
        self, body: bytes, grant_type: str, sent_at: float, previous_refresh: str | None
    ) -> _Grant | Failure:
        name = self._settings.name
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return token_failure_for_body("not JSON", grant_type, name)
        if not isinstance(data, dict):
            return token_failure_for_body("not a JSON object", grant_type, name)
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            return token_failure_for_body("no access_token", grant_type, name)
        if not access.isascii() or not access.isprintable():
            # It goes into an HTTP header: anything else would crash the request being built.
            return token_failure_for_body("access_token is not header text", grant_type, name)
        refresh = data.get("refresh_token")
        # OAuth2 lets a refresh answer omit the refresh token: the old one stays valid then.
        refresh = refresh if isinstance(refresh, str) and refresh else previous_refresh
        lifetime = _seconds(data.get("expires_in"))
        if lifetime is None:
            return _Grant(access, refresh, None, None)
        # Measured from when the request left, so the margin also covers its round trip.
        margin = min(self._settings.token_refresh_margin, lifetime / 2)
        return _Grant(access, refresh, sent_at + lifetime, sent_at + lifetime - margin)


def _seconds(value: object) -> float | None:
    """``expires_in`` as positive seconds (a number or a numeric string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            return None
    else:
        return None
    return seconds if seconds > 0 else None
