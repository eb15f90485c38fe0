"""Fakes for the DataConnect client's unit tests: a clock, and a DataConnect to mock-transport.

Imported by the other ``test_dataconnect_*`` modules; it holds no tests itself.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson

from publisher.dataconnect import SourceHTTPSettings

BASE_URL = "https://dc.example.com"
TOKEN_URL = "https://accounts.example.com/v1/oauth2/token"
CLIENT_ID = "publisher-client"
CLIENT_SECRET = "s3cret-Client-Value"
USERNAME = "svc-publisher"
PASSWORD = "hunter2-Pass-Value"


def make_settings(**overrides: Any) -> SourceHTTPSettings:
    """Settings of a source named ``test`` pointing at the fake; keyword overrides win."""
    values: dict[str, Any] = {
        "name": "test",
        "base_url": BASE_URL,
        "token_url": TOKEN_URL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "username": USERNAME,
        "password": PASSWORD,
    }
    values.update(overrides)
    return SourceHTTPSettings(**values)


class FakeClock:
    """Monotonic and wall clocks that move only when told; ``sleep`` records and advances."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.wall0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.wall0 + timedelta(seconds=self.t - 1000.0)

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class FixedDraw:
    """A random source that always draws the same number, so jittered delays are exact."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """An answer with a JSON body."""
    return httpx.Response(
        status,
        content=orjson.dumps(body),
        headers={"Content-Type": "application/json"} | (headers or {}),
    )


def dc_error(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A DataConnect error answer: ``{"Error": true, "Message": ...}``."""
    return json_response(status, {"Error": True, "Message": message}, headers)


Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeDataConnect:
    """Plays DataConnect's token endpoint and Deltas endpoints behind ``httpx.MockTransport``.

    The token endpoint checks the credentials, issues ``at-N``/``rt-N`` pairs and, as the
    real one does, revokes the old access token when a refresh token is exchanged. Deltas
    endpoints check the bearer token (401 otherwise), set a ``DataConnectState`` cookie and
    answer ``rows[entity]``, unless an answer was queued with ``queue`` (taken in order; an
    exception is raised instead, a callable is called with the request).
    """

    def __init__(self, expires_in: int | None = 43199) -> None:
        self.expires_in = expires_in
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[httpx.Request] = []
        self.token_forms: list[dict[str, str]] = []
        self.valid_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self._pairs: dict[str, str] = {}  # refresh token -> access token issued with it
        self._answers: list[Answer] = []
        self._token_answers: list[httpx.Response] = []
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        self.transport = httpx.MockTransport(self.handle)

    def queue(self, *answers: Answer) -> None:
        """Answer the next Deltas requests with these, in order."""
        self._answers.extend(answers)

    def queue_token(self, *answers: httpx.Response) -> None:
        """Answer the next token requests with these, in order."""
        self._token_answers.extend(answers)

    def revoke_all(self) -> None:
        """Forget every access token, as when the server restarts its sessions."""
        self.valid_tokens.clear()

    def handle(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            return self._token(request)
        with self._lock:
            self.requests.append(request)
            auth = request.headers.get("Authorization", "")
            if auth.removeprefix("Bearer ") not in self.valid_tokens:
                return dc_error(401, "Authorization has been denied for this request.")
            answer = self._answers.pop(0) if self._answers else None
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        if answer is not None:
            return answer(request)
        entity = request.url.path.rsplit("/", 1)[-1]
        response = json_response(200, self.rows.get(entity, []))
        if "DataConnectState" not in request.headers.get("Cookie", ""):
            response.headers["Set-Cookie"] = "DataConnectState=session-1; Path=/; HttpOnly"
        return response

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        with self._lock:
            self.token_forms.append(form)
            if self._token_answers:
                return self._token_answers.pop(0)
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                return json_response(400, {"error": "invalid_client"})
            if form.get("grant_type") == "password":
                if form.get("username") != USERNAME or form.get("password") != PASSWORD:
                    return json_response(400, {"error": "invalid_grant"})
            elif form.get("grant_type") == "refresh_token":
                old = form.get("refresh_token", "")
                if old not in self.refresh_tokens:
                    return json_response(400, {"error": "invalid_grant"})
                self.refresh_tokens.discard(old)
                self.valid_tokens.discard(self._pairs.pop(old, ""))
            else:
                return json_response(400, {"error": "unsupported_grant_type"})
            n = next(self._serial)
            access, refresh = f"at-{n}", f"rt-{n}"
            self.valid_tokens.add(access)
            self.refresh_tokens.add(refresh)
            self._pairs[refresh] = access
        body: dict[str, Any] = {"access_token": access, "refresh_token": refresh}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return json_response(200, body)
