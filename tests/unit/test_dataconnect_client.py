"""DeltasClient against a fake DataConnect on httpx.MockTransport: requests, retries, errors."""

from __future__ import annotations

import gzip
import logging
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest

from publisher.dataconnect import ClientHooks, DeltasClient, RetrySettings
from publisher.entities import EntitySpec, load_entities
from publisher.errors import (
    PublisherError,
    SourceAccessDenied,
    SourceAuthFailed,
    SourceBusy,
    SourceRequestRejected,
    SourceUnavailable,
    WindowTooLarge,
)
from tests.unit.dataconnect_fakes import (
    CLIENT_SECRET,
    PASSWORD,
    FakeClock,
    FakeDataConnect,
    FixedDraw,
    dc_error,
    json_response,
    make_settings,
)

ENTITIES = load_entities()
CUSTOMERS = ENTITIES["Customers"]
START = datetime(2019, 10, 1, 18, 0, tzinfo=UTC)
STOP = START + timedelta(minutes=15)
ROWS = [
    {"CustomerID": "659c2a38-d083-4421-9330-46d779702f85", "RowEvent": "Added"},
    {"CustomerID": "ab55bf26-7b51-4d27-896a-52d850909685", "RowEvent": "Updated"},
]
#: With base_delay 1 and every draw 0.5, the n-th backoff is exactly 0.5 * 2**(n-1).
RETRY = RetrySettings(max_attempts=4, base_delay=1.0, max_delay=30.0, max_elapsed=300.0)


class Calls:
    """Records every hook call as a tuple."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def hooks(self) -> ClientHooks:
        return ClientHooks(
            on_request=lambda entity, status, seconds: self.log.append(("request", entity, status)),
            on_retry=lambda entity, reason, delay: self.log.append(
                ("retry", entity, reason, delay)
            ),
            on_token_refresh=lambda kind, outcome: self.log.append(("token", kind, outcome)),
            on_throttled=lambda entity: self.log.append(("throttled", entity)),
        )

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.log if c[0] == kind]


@pytest.fixture
def fake() -> FakeDataConnect:
    dc = FakeDataConnect()
    dc.rows["Customers"] = ROWS
    return dc


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def client(fake: FakeDataConnect, clock: FakeClock, calls: Calls) -> Iterator[DeltasClient]:
    with open_client(fake, clock, calls) as c:
        yield c


def open_client(
    fake: FakeDataConnect, clock: FakeClock, calls: Calls | None = None, **overrides: Any
) -> DeltasClient:
    overrides.setdefault("retry", RETRY)
    return DeltasClient(
        make_settings(**overrides),
        transport=fake.transport,
        clock=clock,
        sleep=clock.sleep,
        rng=FixedDraw(0.5),
        hooks=calls.hooks() if calls else None,
    )


# -- the request ---------------------------------------------------------------------------


def test_get_request_spells_window_in_source_zone_with_filters_params_and_headers(
    fake: FakeDataConnect, clock: FakeClock
) -> None:
    fake.rows["Activities"] = [{"ActivityID": 1}]
    zone = "America/Edmonton"
    with open_client(
        fake, clock, source_timezone=zone, location_type="Store", location_type_ids="12,14"
    ) as client:
        rows = client.fetch(ENTITIES["Activities"], START, STOP + timedelta(microseconds=123456))

    assert rows == [{"ActivityID": 1}]
    (request,) = fake.requests
    assert request.method == "GET"
    assert request.url.host == "dc.example.com"
    assert request.url.path == "/deltas/Activities"
    # Edmonton is UTC-6 in October; %f is cut to milliseconds.
    assert list(request.url.params.multi_items()) == [
        ("StartDate", "2019-10-01T12:00:00.000"),
        ("StopDate", "2019-10-01T12:15:00.123"),
        ("LocationType", "Store"),
        ("LocationTypeIDs", "12,14"),
        ("LanguageCode", "en-us"),
    ]
    assert request.headers["Authorization"] == "Bearer at-1"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Accept-Encoding"] == "gzip"
    assert request.headers["User-Agent"].startswith("dataconnect-publisher/")
    assert request.content == b""


def test_entity_without_location_filter_gets_only_the_window(
    fake: FakeDataConnect, clock: FakeClock
) -> None:
    with open_client(fake, clock, location_type="Store") as client:
        client.fetch(ENTITIES["Discussions"], START, STOP)
    assert [k for k, _ in fake.requests[0].url.params.multi_items()] == ["StartDate", "StopDate"]


def test_post_sends_the_parameters_as_a_form_body(fake: FakeDataConnect, clock: FakeClock) -> None:
    with open_client(fake, clock, request_method="POST", location_type="Region") as client:
        assert client.fetch(CUSTOMERS, START, STOP) == ROWS
    (request,) = fake.requests
    assert request.method == "POST"
    assert request.url.query == b""
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qsl(request.content.decode()) == [
        ("StartDate", "2019-10-01T18:00:00.000"),
        ("StopDate", "2019-10-01T18:15:00.000"),
        ("LocationType", "Region"),
    ]


def test_url_joins_base_path_and_template(fake: FakeDataConnect, clock: FakeClock) -> None:
    base = "https://dc.example.com/api/"
    with open_client(fake, clock, base_url=base, path_template="/v2/{entity}/deltas") as client:
        client.fetch(CUSTOMERS, START, STOP)
    assert str(fake.requests[0].url).startswith("https://dc.example.com/api/v2/Customers/deltas?")


def test_per_entity_path_overrides_the_template(fake: FakeDataConnect, clock: FakeClock) -> None:
    with open_client(fake, clock, paths={"Activities": "/crm/ActivityDeltas"}) as client:
        client.fetch(CUSTOMERS, START, STOP)
        client.fetch(ENTITIES["Activities"], START, STOP)
    assert [r.url.path for r in fake.requests if "oauth2" not in r.url.path] == [
        "/deltas/Customers",
        "/crm/ActivityDeltas",
    ]


def test_session_cookie_is_sent_back(client: DeltasClient, fake: FakeDataConnect) -> None:
    client.fetch(CUSTOMERS, START, STOP)
    client.fetch(ENTITIES["Activities"], START, STOP)
    assert "Cookie" not in fake.requests[0].headers
    assert fake.requests[1].headers["Cookie"] == "DataConnectState=session-1"


def test_gzip_body_is_decoded(client: DeltasClient, fake: FakeDataConnect) -> None:
    body = gzip.compress(orjson.dumps(ROWS))
    fake.queue(httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"}))
    assert client.fetch(CUSTOMERS, START, STOP) == ROWS


def streamed(body: bytes, **headers: str) -> httpx.Response:
    """A 200 whose body is still to be read, as a real connection gives it (a Response made
    with ``content=`` arrives read already, and decoded by httpx)."""
    return httpx.Response(200, stream=httpx.ByteStream(body), headers=headers)


def test_streamed_gzip_body_is_decoded_by_the_client(
    client: DeltasClient, fake: FakeDataConnect
) -> None:
    text = orjson.dumps(ROWS)
    body = gzip.compress(text[:40]) + gzip.compress(text[40:])  # two members: RFC 1952 allows it
    fake.queue(streamed(body, **{"Content-Encoding": "gzip"}))
    assert client.fetch(CUSTOMERS, START, STOP) == ROWS


def test_streamed_broken_gzip_is_retried_as_a_malformed_body(
    client: DeltasClient, fake: FakeDataConnect, calls: Calls
) -> None:
    good = gzip.compress(orjson.dumps(ROWS))
    fake.queue(
        streamed(good[: len(good) // 2], **{"Content-Encoding": "gzip"}),
        streamed(good, **{"Content-Encoding": "gzip"}),
    )
    assert client.fetch(CUSTOMERS, START, STOP) == ROWS
    # The exchange succeeded both times; the first body was unreadable, like bad JSON.
    assert [r[1] for r in calls.of("request")] == ["200", "200"]
    assert [r[1] for r in calls.of("retry")] == ["malformed_body"]


def test_gzip_can_be_declined(fake: FakeDataConnect, clock: FakeClock) -> None:
    with open_client(fake, clock, accept_gzip=False) as client:
        client.fetch(CUSTOMERS, START, STOP)
    assert fake.requests[0].headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize(
    ("start", "stop"),
    [(STOP, START), (START, START), (START.replace(tzinfo=None), STOP)],
    ids=["reversed", "empty", "naive"],
)
def test_bad_window_is_a_programming_error(
    client: DeltasClient, fake: FakeDataConnect, start: datetime, stop: datetime
) -> None:
    with pytest.raises(ValueError):
        client.fetch(CUSTOMERS, start, stop)
    assert fake.requests == []


# -- authentication ------------------------------------------------------------------------


def test_token_is_acquired_once_and_reused(
    client: DeltasClient, fake: FakeDataConnect, calls: Calls
) -> None:
    for _ in range(3):
        client.fetch(CUSTOMERS, START, STOP)
    assert [f["grant_type"] for f in fake.token_forms] == ["password"]
    assert calls.of("token") == [("password", "ok")]


def test_token_is_refreshed_before_it_expires(
    fake: FakeDataConnect, clock: FakeClock, calls: Calls
) -> None:
    fake.expires_in = 3600
    with open_client(fake, clock, calls, token_refresh_margin=300) as client:
        client.fetch(CUSTOMERS, START, STOP)
        clock.advance(3300)
        client.fetch(CUSTOMERS, START, STOP)
    assert [f["grant_type"] for f in fake.token_forms] == ["password", "refresh_token"]
    assert fake.token_forms[1]["refresh_token"] == "rt-1"
    assert [r.headers["Authorization"] for r in fake.requests] == ["Bearer at-1", "Bearer at-2"]
    assert calls.of("retry") == []


def test_401_gets_one_new_token_and_the_request_is_sent_again(
    client: DeltasClient, fake: FakeDataConnect, clock: FakeClock
) -> None:
    client.fetch(CUSTOMERS, START, STOP)
    fake.revoke_all()
    assert client.fetch(CUSTOMERS, START, STOP) == ROWS
    assert [r.headers["Authorization"] for r in fake.requests] == [
        "Bearer at-1", "Bearer at-1", "Bearer at-2",
    ]  # fmt: skip
    assert [f["grant_type"] for f in fake.token_forms] == ["password", "refresh_token"]
    assert clock.sleeps == []


def test_a_second_401_stops_the_entity(client: DeltasClient, fake: FakeDataConnect) -> None:
    fake.queue(dc_error(401, "Token not valid for this database"))
    fake.queue(dc_error(401, "Token not valid for this database"))
    with pytest.raises(SourceAuthFailed) as caught:
        client.fetch(CUSTOMERS, START, STOP)
    assert len(fake.requests) == 2
    assert "HTTP 401: Token not valid for this database" in str(caught.value)


def test_refused_credentials_stop_the_entity_without_retrying(
    client: DeltasClient, fake: FakeDataConnect, clock: FakeClock
) -> None:
    fake.queue_token(json_response(400, {"error": "invalid_client"}))
    with pytest.raises(SourceAuthFailed, match="check client_id and client_secret"):
        client.fetch(CUSTOMERS, START, STOP)
    assert fake.requests == []
    assert clock.sleeps == []


def test_token_endpoint_down_is_retried_then_reported(
    client: DeltasClient, fake: FakeDataConnect, calls: Calls
) -> None:
    fake.queue_token(*(dc_error(503, "down") for _ in range(4)))
    with pytest.raises(SourceUnavailable, match=r"token endpoint .*HTTP 503.*gave up after 4"):
        client.fetch(CUSTOMERS, START, STOP)
    assert [r[1] for r in calls.of("retry")] == ["token_unavailable"] * 3
    assert fake.requests == []


# -- status mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, SourceRequestRejected),
        (403, SourceAccessDenied),
        (404, SourceAccessDenied),
        (413, WindowTooLarge),
        (302, SourceRequestRejected),
        (405, SourceRequestRejected),
    ],
)
def test_final_statuses_raise_at_once(
    client: DeltasClient,
    fake: FakeDataConnect,
    clock: FakeClock,
    status: int,
    error: type[PublisherError],
) -> None:
    fake.queue(dc_error(status, "The request is invalid.\nStartDate is missing"))
    with pytest.raises(error) as caught:
        client.fetch(CUSTOMERS, START, STOP)
    assert type(caught.value) is error
    assert str(caught.value).startswith(
        f"DataConnect test Customers StartDate=2019-10-01T18:00:00.000 "
        f"StopDate=2019-10-01T18:15:00.000: HTTP {status}: "
        "The request is invalid. StartDate is missing"
    )
    assert len(fake.requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_transient_statuses_are_retried(
    client: DeltasClient, fake: FakeDataConnect, clock: FakeClock, calls: Calls, status: int
) -> None:
    fake.queue(dc_error(status, "busy"), dc_error(status, "busy"))
    assert client.fetch(CUSTOMERS, START, STOP) == ROWS
    assert clock.sleeps == [0.5, 1.0]
    assert calls.of("retry") == [("Customers", str(status), 0.5), ("Customers", str(status), 1.0)]
    assert [c[1] for c in calls.of("request")] == [str(status), str(status), "200"]


def test_exhausted_retries_raise_the_last_status(
    client: DeltasClient, fake: FakeDataConnect, clock: FakeClock
) -> None:
    fake.queue(*(dc_error(500, "Database error") for _ in range(3)), dc_error(503, "maint"))
    with pytest.raises(SourceUnavailable) as caught:
        client.fetch(CUSTOMERS, START, STOP)
    assert len(fake.requests) == RETRY.max_attempts
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert "HTTP 503: maint (gave up after 4 attempts in 3.5 s)" in str(caught.value)


def test_max_elapsed_bounds_the_retries(fake: FakeDataConnect, clock: FakeClock) -> None:
    def slow_failure(request: httpx.Request) -> httpx.Response:
        clock.advance(10)  # each answer takes 10 s
        return dc_error(503, "slow")

    fake.queue(*(slow_failure for _ in range(10)))
    retry = RetrySettings(max_attempts=10, base_delay=1.0, max_delay=30.0, max_elapsed=25.0)
    with open_client(fake, clock, retry=retry) as client, pytest.raises(SourceUnavailable):
        client.fetch(CUSTOMERS, START, STOP)
    # Answers end at 10 s, 20.5 s and 31.5 s: after the third, no sleep fits in 25 s.
    assert clock.sleeps == [0.5, 1.0]
    assert len(fake.requests) == 3


def test_retry_after_seconds_is_honoured(
    client: DeltasClient, fake: FakeDataConnect, clock: FakeClock
) -> None:
    fake.queue(dc_error(503, "maint", {"Retry-After": "7"}))
    assert client.fetch(CUSTOMERS, START, STOP) == ROWS
    assert clock.sleeps == [7.0]


def test_retry_after_http_date_is_honoured(
    client: DeltasClient, fake: FakeDataConnect, clock: FakeClock
) -> None:
    when = format_datetime(clock.now() + timedelta(seconds=12), usegmt=True)
    fake.queue(dc_error(503, "maint", {"Retry-After": when}))
    assert client.fetch(CUSTOMERS, START, STOP) == ROWS
    assert clock.sleeps == [12.0]


def test_retry_after_beyond_the_budget_is_reported_at_once(
    client: DeltasClient, fake: FakeDataConnect, clock: FakeClock
) -> None:
    fake.queue(dc_error(503, "maint", {"Retry-After": "3600"}))
    with pytest.raises(SourceUnavailable) as caught:
        client.fetch(CUSTOMERS, START, STOP)
    assert caught.value.retry_after == 3600.0
    assert clock.sleeps == []


# -- 429 and the in-flight limit -----------------------------------------------------------


def test_429_shrinks_the_limit_backs_off_and_the_limit_grows_back(
    client: DeltasClient, fake: FakeDataConnect, clock: FakeClock, calls: Calls
) -> None:
    busy = "Rate Limiting Applied. 8 active requests are already in progress."
    fake.queue(dc_error(429, busy))
    assert client.limiter.limit == 4
    assert client.fetch(CUSTOMERS, START, STOP) == ROWS
    assert client.limiter.limit == 2
    assert calls.of("throttled") == [("Customers",)]
    assert calls.of("retry") == [("Customers", "429", 0.5)]
    limits = []
    for _ in range(12):
        client.fetch(CUSTOMERS, START, STOP)
        limits.append(client.limiter.limit)
    assert limits == sorted(limits)
    assert limits[-1] == 4
    assert client.limiter.in_flight == 0


def test_429_until_the_budget_ends_raises_source_busy(
    client: DeltasClient, fake: FakeDataConnect
) -> None:
    fake.queue(*(dc_error(429, "Rate Limiting Applied.") for _ in range(4)))
    with pytest.raises(SourceBusy, match=r"HTTP 429: Rate Limiting Applied\. \(gave up after 4"):
        client.fetch(CUSTOMERS, START, STOP)
    assert client.limiter.limit == 1


def test_concurrent_fetches_never_exceed_the_in_flight_limit(
    fake: FakeDataConnect, clock: FakeClock
) -> None:
    lock = threading.Lock()
    active, peak = 0, 0

    def counted(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.003)
        with lock:
            active -= 1
        return json_response(200, ROWS)

    fake.queue(*(counted for _ in range(48)))
    results: list[list[dict[str, Any]]] = []

    shared = open_client(fake, clock, max_in_flight=3)

    def worker(entity: EntitySpec) -> None:
        for _ in range(6):
            results.append(shared.fetch(entity, START, STOP))

    with shared:
        threads = [threading.Thread(target=worker, args=(e,)) for e in ENTITIES.values()]
        threads += [threading.Thread(target=worker, args=(CUSTOMERS,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [ROWS] * 48
    assert peak == 3
    assert [f["grant_type"] for f in fake.token_forms] == ["password"]


# -- unreadable answers and broken connections ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'[{"CustomerID": "a"}, {"Custo', "not JSON"),
        (b'{"rows": []}', "a JSON dict, not an array"),
        (b"", "not JSON"),
    ],
    ids=["truncated", "object", "empty"],
)
def test_unreadable_body_is_retried_then_reported(
    client: DeltasClient, fake: FakeDataConnect, calls: Calls, body: bytes, problem: str
) -> None:
    fake.queue(*(httpx.Response(200, content=body) for _ in range(4)))
    with pytest.raises(SourceUnavailable, match=f"unreadable answer \\({problem}"):
        client.fetch(CUSTOMERS, START, STOP)
    assert [r[1] for r in calls.of("retry")] == ["malformed_body"] * 3


def test_fetch_then_hands_the_rows_over_inside_the_gate_and_downloads_outside_it(
    fake: FakeDataConnect, clock: FakeClock
) -> None:
    gate = threading.Lock()
    seen: list[tuple[str, bool]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(("download", gate.locked()))
        return json_response(200, ROWS)

    def then(rows: list[dict[str, Any]]) -> int:
        seen.append(("then", gate.locked()))
        return len(rows)

    fake.queue(answer)
    with open_client(fake, clock) as client:
        assert client.fetch_then(CUSTOMERS, START, STOP, then, gate=gate) == len(ROWS)
    assert seen == [("download", False), ("then", True)]
    assert not gate.locked()


def test_fetch_then_retries_an_unreadable_body_without_holding_the_gate(
    fake: FakeDataConnect, clock: FakeClock, calls: Calls
) -> None:
    gate = threading.Lock()
    held_while_sleeping: list[bool] = []
    handed: list[list[dict[str, Any]]] = []

    def sleep(seconds: float) -> None:
        held_while_sleeping.append(gate.locked())
        clock.sleep(seconds)

    fake.queue(httpx.Response(200, content=b'[{"CustomerID": '), json_response(200, ROWS))
    client = DeltasClient(
        make_settings(retry=RETRY),
        transport=fake.transport,
        clock=clock,
        sleep=sleep,
        rng=FixedDraw(0.5),
        hooks=calls.hooks(),
    )
    with client:
        client.fetch_then(CUSTOMERS, START, STOP, handed.append, gate=gate)
    assert handed == [ROWS]  # only the good body reaches ``then``
    assert held_while_sleeping == [False]
    assert [r[1] for r in calls.of("retry")] == ["malformed_body"]


def test_a_non_object_element_is_one_bad_row_not_a_bad_body(
    client: DeltasClient, fake: FakeDataConnect
) -> None:
    # The mapper dead-letters it; refusing the body would stall the stream on it forever.
    fake.queue(httpx.Response(200, content=b'[{"CustomerID": "a"}, 7]'))
    assert client.fetch(CUSTOMERS, START, STOP) == [{"CustomerID": "a"}, 7]


def test_error_object_with_200_is_retried_and_its_message_quoted(
    client: DeltasClient, fake: FakeDataConnect
) -> None:
    fake.queue(dc_error(200, "Execution Timeout Expired"))
    assert client.fetch(CUSTOMERS, START, STOP) == ROWS
    fake.queue(*(dc_error(200, "Execution Timeout Expired") for _ in range(4)))
    with pytest.raises(SourceUnavailable, match=r"not an array.*: Execution Timeout Expired"):
        client.fetch(CUSTOMERS, START, STOP)


class _CutShort(httpx.SyncByteStream):
    """A body that stops halfway, as when the server drops the connection mid-transfer."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'[{"CustomerID": "659c2a38'
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


def test_dropped_connections_and_timeouts_are_retried(
    fake: FakeDataConnect, clock: FakeClock, calls: Calls
) -> None:
    fake.queue(
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.Response(200, stream=_CutShort()),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("[Errno 111] Connection refused"),
    )
    retry = RetrySettings(max_attempts=5, base_delay=1.0)
    with open_client(fake, clock, calls, retry=retry) as client:
        assert client.fetch(CUSTOMERS, START, STOP) == ROWS
    assert [c[1] for c in calls.of("request")] == [
        "connection_dropped", "connection_dropped", "timeout", "connect_error", "200",
    ]  # fmt: skip


def test_dropped_connection_reported_with_its_kind(
    client: DeltasClient, fake: FakeDataConnect
) -> None:
    fake.queue(*(httpx.RemoteProtocolError("Server disconnected") for _ in range(4)))
    with pytest.raises(SourceUnavailable, match=r"connection_dropped \(RemoteProtocolError"):
        client.fetch(CUSTOMERS, START, STOP)
    assert client.limiter.in_flight == 0


# -- secrets -------------------------------------------------------------------------------


def _everything_said(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    text = "".join(traceback.format_exception(error))
    return text + "\n".join(r.getMessage() for r in caplog.records)


def test_secrets_stay_out_of_errors_and_logs_when_the_token_endpoint_fails(
    client: DeltasClient, fake: FakeDataConnect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # whatever configure_logging set before
    echo = f"bad client secret {CLIENT_SECRET} for password {PASSWORD}"
    fake.queue_token(json_response(503, {"error": "temporarily_unavailable",
                                         "error_description": echo}))  # fmt: skip
    fake.queue_token(json_response(400, {"error": "invalid_client", "error_description": echo}))
    with pytest.raises(SourceAuthFailed) as caught:
        client.fetch(CUSTOMERS, START, STOP)
    said = _everything_said(caught.value, caplog)
    assert "bad client secret *** for password ***" in said
    assert CLIENT_SECRET not in said
    assert PASSWORD not in said
    assert len(caplog.records) >= 2  # the retry warning and httpx's request lines


def test_tokens_stay_out_of_errors_and_logs(
    client: DeltasClient, fake: FakeDataConnect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.queue(
        dc_error(401, "Bearer at-1 was revoked"),
        dc_error(503, "token at-2 is fine, database is not"),
        *(dc_error(500, "session of at-2 lost") for _ in range(3)),
    )
    with pytest.raises(SourceUnavailable) as caught:
        client.fetch(CUSTOMERS, START, STOP)
    said = _everything_said(caught.value, caplog)
    assert "token *** is fine" in said
    for secret in ("at-1", "at-2", "rt-1", "rt-2", CLIENT_SECRET, PASSWORD):
        assert secret not in said
