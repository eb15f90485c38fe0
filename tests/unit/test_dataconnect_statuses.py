"""statuses.py: every DataConnect answer maps to the right exception, action and message."""

from __future__ import annotations

import httpx
import orjson
import pytest

from publisher.dataconnect.statuses import (
    MESSAGE_LIMIT,
    Action,
    RequestContext,
    failure_for_body,
    failure_for_status,
    failure_for_transport,
    gave_up,
    scrub,
    server_message,
    token_failure_for_status,
    transport_kind,
)
from publisher.errors import (
    EntityStopped,
    PublisherError,
    RetryableError,
    SourceAccessDenied,
    SourceAuthFailed,
    SourceBusy,
    SourceRequestRejected,
    SourceUnavailable,
    WindowTooLarge,
)

CTX = RequestContext("prod", "Customers", "2019-10-01T18:00:00.000", "2019-10-01T18:15:00.000")


def error_body(message: str) -> bytes:
    return orjson.dumps({"Error": True, "Message": message})


@pytest.mark.parametrize(
    ("status", "error", "action"),
    [
        (400, SourceRequestRejected, Action.RAISE),
        (401, SourceAuthFailed, Action.REAUTHENTICATE),
        (403, SourceAccessDenied, Action.RAISE),
        (404, SourceAccessDenied, Action.RAISE),
        (413, WindowTooLarge, Action.RAISE),
        (429, SourceBusy, Action.THROTTLE),
        (408, SourceUnavailable, Action.RETRY),
        (500, SourceUnavailable, Action.RETRY),
        (502, SourceUnavailable, Action.RETRY),
        (503, SourceUnavailable, Action.RETRY),
        (504, SourceUnavailable, Action.RETRY),
        (301, SourceRequestRejected, Action.RAISE),
        (405, SourceRequestRejected, Action.RAISE),
        (422, SourceRequestRejected, Action.RAISE),
    ],
)
def test_every_status_maps_to_one_exception_and_action(
    status: int, error: type[PublisherError], action: Action
) -> None:
    failure = failure_for_status(status, error_body("no"), None, CTX)
    assert type(failure.error) is error
    assert failure.action is action
    assert failure.kind == str(status)
    # What the caller does is decided by the exception's branch of the tree.
    assert isinstance(failure.error, RetryableError) == (action in (Action.RETRY, Action.THROTTLE))
    assert isinstance(failure.error, EntityStopped) == (
        error in (SourceRequestRejected, SourceAccessDenied, SourceAuthFailed)
    )


def test_message_names_source_entity_window_status_and_server_message() -> None:
    failure = failure_for_status(403, error_body("User has no access to location 12"), None, CTX)
    assert str(failure.error) == (
        "DataConnect prod Customers StartDate=2019-10-01T18:00:00.000 "
        "StopDate=2019-10-01T18:15:00.000: HTTP 403: User has no access to location 12"
    )


def test_non_json_error_body_is_not_quoted() -> None:
    failure = failure_for_status(502, b"<html><body>Bad Gateway</body></html>", None, CTX)
    assert str(failure.error).endswith(": HTTP 502")


def test_retry_after_travels_with_retryable_errors() -> None:
    assert failure_for_status(503, b"", 12.0, CTX).retry_after == 12.0
    assert failure_for_status(429, b"", 3.0, CTX).retry_after == 3.0
    assert failure_for_status(400, b"", 3.0, CTX).retry_after is None


def test_server_text_is_one_line_truncated_and_scrubbed() -> None:
    long = "line one\r\n\tline two " + "x" * 1000 + " token-abc"
    message = server_message(error_body(long), ["token-abc"])
    assert message is not None
    assert message.startswith("line one line two xxx")
    assert len(message) == MESSAGE_LIMIT
    assert message.endswith("...")
    assert scrub("Bearer token-abc expired", ["token-abc", ""]) == "Bearer *** expired"


@pytest.mark.parametrize(
    "body", [b"", b"[]", b'{"Error": true}', b'{"Message": 5}', b'{"Message": " "}']
)
def test_bodies_without_a_message(body: bytes) -> None:
    assert server_message(body) is None


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectTimeout("timed out"), "timeout"),
        (httpx.ReadTimeout("timed out"), "timeout"),
        (httpx.PoolTimeout("timed out"), "timeout"),
        (httpx.ConnectError("refused"), "connect_error"),
        (httpx.RemoteProtocolError("peer closed connection"), "connection_dropped"),
        (httpx.ReadError("reset by peer"), "connection_dropped"),
        (httpx.WriteError("broken pipe"), "connection_dropped"),
        (httpx.DecodingError("bad gzip"), "malformed_body"),
        (httpx.ProxyError("proxy said no"), "network_error"),
    ],
)
def test_transport_errors_are_retried_with_their_kind(exc: httpx.RequestError, kind: str) -> None:
    assert transport_kind(exc) == kind
    failure = failure_for_transport(exc, CTX)
    assert (failure.kind, failure.action) == (kind, Action.RETRY)
    assert isinstance(failure.error, SourceUnavailable)
    assert failure.error.__cause__ is exc
    assert str(exc) in str(failure.error)


def test_unreadable_body_quotes_the_message_of_an_error_object() -> None:
    failure = failure_for_body("a JSON dict, not an array", error_body("Timeout expired"), CTX)
    assert (failure.kind, failure.action) == ("malformed_body", Action.RETRY)
    assert str(failure.error).endswith(
        "unreadable answer (a JSON dict, not an array): Timeout expired"
    )


def test_gave_up_keeps_the_type_and_retry_after() -> None:
    final = gave_up(failure_for_status(429, error_body("8 active"), 4.0, CTX), 6, 41.25)
    assert type(final) is SourceBusy
    assert final.retry_after == 4.0
    assert str(final).endswith("HTTP 429: 8 active (gave up after 6 attempts in 41.2 s)")


@pytest.mark.parametrize(
    ("status", "body", "grant", "error", "action"),
    [
        (400, {"error": "invalid_grant"}, "refresh_token", SourceAuthFailed, Action.REAUTHENTICATE),
        (400, {"error": "invalid_grant"}, "password", SourceAuthFailed, Action.RAISE),
        (400, {"error": "invalid_client"}, "refresh_token", SourceAuthFailed, Action.RAISE),
        (401, {"error": "invalid_client"}, "password", SourceAuthFailed, Action.RAISE),
        (403, {}, "password", SourceAuthFailed, Action.RAISE),
        (429, {}, "password", SourceUnavailable, Action.RETRY),
        (500, {}, "refresh_token", SourceUnavailable, Action.RETRY),
        (503, {}, "password", SourceUnavailable, Action.RETRY),
    ],
)
def test_token_endpoint_statuses(
    status: int, body: dict[str, str], grant: str, error: type[PublisherError], action: Action
) -> None:
    failure = token_failure_for_status(status, orjson.dumps(body), grant, "prod")
    assert type(failure.error) is error
    assert failure.action is action
    assert str(failure.error).startswith(f"DataConnect prod: token endpoint ({grant} grant)")


def test_oauth_error_code_is_quoted_only_when_it_looks_like_one() -> None:
    body = orjson.dumps({"error": "<script>alert(1)</script>", "error_description": "no"})
    failure = token_failure_for_status(400, body, "password", "prod")
    assert "script" not in str(failure.error)
    assert "(HTTP 400: no)" in str(failure.error)
