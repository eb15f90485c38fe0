"""TokenManager against a fake token endpoint: acquire, refresh early, fall back, fail clearly."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from publisher.dataconnect import TokenManager
from publisher.errors import SourceAuthFailed, SourceUnavailable
from tests.unit.dataconnect_fakes import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USERNAME,
    FakeClock,
    FakeDataConnect,
    json_response,
    make_settings,
)


@pytest.fixture
def fake() -> FakeDataConnect:
    return FakeDataConnect(expires_in=3600)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def http(fake: FakeDataConnect) -> Iterator[httpx.Client]:
    with httpx.Client(transport=fake.transport) as client:
        yield client


@pytest.fixture
def outcomes() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def tokens(http: httpx.Client, clock: FakeClock, outcomes: list[tuple[str, str]]) -> TokenManager:
    return manager(http, clock, outcomes)


def manager(
    http: httpx.Client, clock: FakeClock, outcomes: list[tuple[str, str]], **overrides: Any
) -> TokenManager:
    settings = make_settings(**overrides)
    return TokenManager(settings, http, clock, on_token=lambda *kv: outcomes.append(kv))


def grants(fake: FakeDataConnect) -> list[str]:
    return [form["grant_type"] for form in fake.token_forms]


def test_password_grant_sends_the_credentials_form_encoded_once(
    fake: FakeDataConnect, http: httpx.Client, clock: FakeClock, outcomes: list[tuple[str, str]]
) -> None:
    tokens = manager(http, clock, outcomes)
    assert tokens.token() == "at-1"
    assert tokens.token() == "at-1"
    assert fake.token_forms == [
        {
            "grant_type": "password",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "username": USERNAME,
            "password": PASSWORD,
        }
    ]
    assert outcomes == [("password", "ok")]


def test_refresh_happens_a_margin_before_expiry(
    fake: FakeDataConnect, http: httpx.Client, clock: FakeClock, outcomes: list[tuple[str, str]]
) -> None:
    tokens = manager(http, clock, outcomes, token_refresh_margin=300)
    assert tokens.token() == "at-1"
    clock.advance(3299.9)
    assert tokens.token() == "at-1"
    clock.advance(0.1)
    assert tokens.token() == "at-2"
    assert fake.token_forms[1] == {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": "rt-1",
    }
    assert outcomes == [("password", "ok"), ("refresh_token", "ok")]


def test_margin_is_at_most_half_of_a_short_lifetime(
    fake: FakeDataConnect, http: httpx.Client, clock: FakeClock, outcomes: list[tuple[str, str]]
) -> None:
    fake.expires_in = 10
    tokens = manager(http, clock, outcomes, token_refresh_margin=300)
    tokens.token()
    clock.advance(4.9)
    assert tokens.token() == "at-1"
    clock.advance(0.1)
    assert tokens.token() == "at-2"


def test_without_expires_in_the_token_is_kept_until_a_401(
    fake: FakeDataConnect, http: httpx.Client, clock: FakeClock, outcomes: list[tuple[str, str]]
) -> None:
    fake.expires_in = None
    tokens = manager(http, clock, outcomes)
    tokens.token()
    clock.advance(10 * 86400)
    assert tokens.token() == "at-1"
    tokens.invalidate("at-1")
    assert tokens.token() == "at-2"


def test_refused_refresh_token_falls_back_to_one_password_grant(
    fake: FakeDataConnect,
    http: httpx.Client,
    clock: FakeClock,
    outcomes: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokens = manager(http, clock, outcomes)
    tokens.token()
    fake.refresh_tokens.clear()  # the refresh token expired or was revoked
    clock.advance(3600)
    assert tokens.token() == "at-2"
    assert grants(fake) == ["password", "refresh_token", "password"]
    assert outcomes == [("password", "ok"), ("refresh_token", "rejected"), ("password", "ok")]
    assert "refused the refresh token" in caplog.text


def test_fallback_password_grant_refused_raises_once(
    fake: FakeDataConnect, http: httpx.Client, clock: FakeClock, outcomes: list[tuple[str, str]]
) -> None:
    tokens = manager(http, clock, outcomes)
    tokens.token()
    clock.advance(3600)
    fake.queue_token(
        json_response(400, {"error": "invalid_grant"}),
        json_response(400, {"error": "invalid_grant", "error_description": "user disabled"}),
    )
    with pytest.raises(SourceAuthFailed) as caught:
        tokens.token()
    assert str(caught.value) == (
        "DataConnect test: token endpoint (password grant) refused the request "
        "(HTTP 400 invalid_grant: user disabled); check username and password"
    )
    assert grants(fake) == ["password", "refresh_token", "password"]


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ({"error": "invalid_client"}, "check client_id and client_secret"),
        ({"error": "unauthorized_client"}, "check client_id and client_secret"),
        ({"error": "invalid_grant"}, "check username and password"),
        ({"error": "unsupported_grant_type"}, "check token_url and the credentials"),
        ({}, "check token_url and the credentials"),
    ],
)
def test_refused_credentials_raise_auth_failed_with_a_hint(
    fake: FakeDataConnect,
    tokens: TokenManager,
    outcomes: list[tuple[str, str]],
    answer: dict[str, str],
    hint: str,
) -> None:
    fake.queue_token(json_response(400, answer))
    with pytest.raises(SourceAuthFailed, match=f"HTTP 400.*; {hint}$"):
        tokens.token()
    assert outcomes == [("password", "rejected")]
    assert len(fake.token_forms) == 1


def test_401_status_from_token_endpoint_is_a_refusal(
    fake: FakeDataConnect, http: httpx.Client, clock: FakeClock, outcomes: list[tuple[str, str]]
) -> None:
    fake.queue_token(json_response(401, {"error": "invalid_client"}))
    with pytest.raises(SourceAuthFailed, match="HTTP 401 invalid_client"):
        manager(http, clock, outcomes).token()


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (httpx.Response(200, content=b"<html>maintenance</html>"), "not JSON"),
        (json_response(200, ["at-1"]), "not a JSON object"),
        (json_response(200, {"token_type": "bearer"}), "no access_token"),
        (json_response(200, {"access_token": "tök\n"}), "access_token is not header text"),
        (json_response(503, {"error": "temporarily_unavailable"}), "HTTP 503"),
        (json_response(429, {}), "HTTP 429"),
    ],
)
def test_unusable_token_answers_are_transient(
    fake: FakeDataConnect,
    tokens: TokenManager,
    outcomes: list[tuple[str, str]],
    answer: httpx.Response,
    problem: str,
) -> None:
    fake.queue_token(answer)
    with pytest.raises(SourceUnavailable, match=problem):
        tokens.token()
    assert outcomes == [("password", "unavailable")]
    assert tokens.token() == "at-1"  # the next call asks again


def test_unreachable_token_endpoint_is_transient(clock: FakeClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with httpx.Client(transport=httpx.MockTransport(refuse)) as http:
        tokens = TokenManager(make_settings(), http, clock)
        with pytest.raises(SourceUnavailable, match=r"token endpoint \(password grant\): conn"):
            tokens.token()


def test_failed_refresh_keeps_the_current_token_until_it_expires(
    fake: FakeDataConnect,
    http: httpx.Client,
    clock: FakeClock,
    outcomes: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokens = manager(http, clock, outcomes, token_refresh_margin=300)
    tokens.token()
    clock.advance(3400)  # inside the margin, not expired
    fake.queue_token(json_response(503, {}), json_response(503, {}))
    assert tokens.token() == "at-1"
    assert "stays in use until it expires" in caplog.text
    clock.advance(200)  # now expired
    with pytest.raises(SourceUnavailable):
        tokens.token()
    assert tokens.token() == "at-2"
    assert grants(fake) == ["password", "refresh_token", "refresh_token", "refresh_token"]


def test_invalidate_renews_once_for_all_threads_that_saw_the_401(
    fake: FakeDataConnect, http: httpx.Client, clock: FakeClock, outcomes: list[tuple[str, str]]
) -> None:
    tokens = manager(http, clock, outcomes)
    tokens.token()
    tokens.invalidate("at-1")
    assert tokens.token() == "at-2"
    tokens.invalidate("at-1")  # a late thread reporting the old token changes nothing
    assert tokens.token() == "at-2"
    assert grants(fake) == ["password", "refresh_token"]


def test_threads_share_one_token_request(
    fake: FakeDataConnect, http: httpx.Client, clock: FakeClock, outcomes: list[tuple[str, str]]
) -> None:
    tokens = manager(http, clock, outcomes)
    start = threading.Barrier(8)
    got: list[str] = []

    def worker() -> None:
        start.wait()
        got.append(tokens.token())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["at-1"] * 8
    assert grants(fake) == ["password"]


def test_secrets_never_reach_errors_or_logs(
    fake: FakeDataConnect,
    http: httpx.Client,
    clock: FakeClock,
    outcomes: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = manager(http, clock, outcomes)
    tokens.token()
    clock.advance(3600)
    echo = f"refresh rt-1 with {CLIENT_SECRET}/{PASSWORD} refused"
    fake.queue_token(
        json_response(400, {"error": "invalid_grant", "error_description": echo}),
        json_response(400, {"error": "invalid_client", "error_description": echo}),
    )
    with pytest.raises(SourceAuthFailed) as caught:
        tokens.token()
    said = str(caught.value) + caplog.text + repr(tokens)
    assert "refresh *** with ***/*** refused" in said
    for secret in (CLIENT_SECRET, PASSWORD, "rt-1", "at-1"):
        assert secret not in said
