"""Fetch the rows of one Deltas window from DataConnect, retrying what is worth retrying.

One :class:`DeltasClient` per source, shared by the threads of all its entities: it owns the
source's HTTP connection pool and cookie jar (DataConnect keeps a ``DataConnectState``
session cookie), its token and its in-flight limiter. What each answer means is decided in
:mod:`publisher.dataconnect.statuses`; this module sends, waits and retries.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson

from publisher.dataconnect.auth import TokenManager
from publisher.dataconnect.backoff import next_delay, parse_retry_after
from publisher.dataconnect.clock import Clock, RandomSource, SystemClock
from publisher.dataconnect.coding import UndecodableBody, decode_content
from publisher.dataconnect.hooks import ClientHooks
from publisher.dataconnect.limiter import InFlightLimiter
from publisher.dataconnect.settings import SourceHTTPSettings
from publisher.dataconnect.statuses import (
    Action,
    Failure,
    RequestContext,
    failure_for_body,
    failure_for_status,
    failure_for_transport,
    gave_up,
)
from publisher.entities import EntitySpec
from publisher.errors import RetryableError
from publisher.timefmt import format_request_date

log = logging.getLogger(__name__)

Row = dict[str, Any]
_T = TypeVar("_T")
_NO_GATE = nullcontext()


def _as_is(rows: list[Row]) -> list[Row]:
    return rows


class BodyUnreadable(ValueError):
    """Raised by a ``then`` that parses the body itself (see :meth:`DeltasClient.fetch_then`):
    the answer is retried like any other unreadable one."""

    def __init__(self, problem: str, excerpt: bytes = b"") -> None:
        super().__init__(problem, excerpt)
        self.problem = problem
        self.excerpt = excerpt  # the start of the body, to quote a DataConnect message


@dataclass(frozen=True, slots=True)
class Body:
    """A 2xx answer's body as sent, and the ``Content-Encoding`` still to undo.

    Kept compressed until it is parsed: a window waiting for the decode gate holds about a
    sixth of its JSON's size, and a decode process is sent the small form.
    """

    sent: bytes
    coding: str | None = None

    def decoded(self) -> bytes:
        """The body with its coding undone (BodyUnreadable when it does not decode)."""
        try:
            return decode_content(self.sent, self.coding)
        except UndecodableBody as exc:
            raise BodyUnreadable(str(exc)) from None


def read_rows(body: Body) -> list[Row]:
    """The rows of a Deltas answer; BodyUnreadable (retried) when it is not a JSON array."""
    text = body.decoded()
    try:
        return parse_rows(text)
    except ValueError as exc:
        raise BodyUnreadable(str(exc), text) from None


def deltas_url(settings: SourceHTTPSettings, entity: str) -> str:
    """The absolute URL of an entity's Deltas endpoint."""
    template = settings.paths.get(entity, settings.path_template)
    path = template.format(entity=quote(entity, safe=""))
    return settings.base_url.rstrip("/") + path


def request_params(
    settings: SourceHTTPSettings, entity: EntitySpec, start: datetime, stop: datetime
) -> list[tuple[str, str]]:
    """The parameters of one Deltas request, in the order they are sent.

    StartDate and StopDate are spelled in the source's zone; the location filters go only
    to entities that take them, and only when configured; then the entity's fixed
    parameters (such as Activities' LanguageCode).
    """
    zone, fmt = settings.source_timezone, settings.date_format
    params = [
        ("StartDate", format_request_date(start, zone, fmt)),  # raises ValueError if naive
        ("StopDate", format_request_date(stop, zone, fmt)),
    ]
    if stop <= start:
        raise ValueError(f"empty window: stop {stop.isoformat()} <= start {start.isoformat()}")
    if entity.location_filter and settings.location_type is not None:
        params.append(("LocationType", settings.location_type))
        if settings.location_type_ids is not None:
            params.append(("LocationTypeIDs", settings.location_type_ids))
    params.extend(entity.params.items())
    return params


def parse_rows(body: bytes) -> list[Row]:
    """A Deltas body: a JSON array. Raises ValueError saying what is wrong.

    An element that is not an object is passed on, not refused: it is one bad row, which the
    mapper dead-letters (reason ``not_an_object``), and refusing the whole body would stall
    the stream on it forever.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"a JSON {type(data).__name__}, not an array")
    return data


def _read_body(response: httpx.Response) -> tuple[bytes, str | None]:
    """The body of a streamed response as sent, and the ``Content-Encoding`` still to undo."""
    try:
        return b"".join(response.iter_raw()), response.headers.get("Content-Encoding")
    except httpx.StreamConsumed:
        # A transport may answer with a response it has read already (httpx.MockTransport
        # does, for content given as bytes): httpx has undone the coding itself.
        return response.content, None


class DeltasClient:
    """Thread-safe client of one DataConnect source's Deltas endpoints.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); ``clock``,
    ``sleep`` and ``rng`` replace time and jitter; ``limiter`` defaults to one sized by
    ``settings.max_in_flight``.
    """

    def __init__(
        self,
        settings: SourceHTTPSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: RandomSource | None = None,
        hooks: ClientHooks | None = None,
        limiter: InFlightLimiter | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._sleep = sleep
        # Jitter needs no cryptographic strength; SystemRandom just needs no seeding.
        self._rng: RandomSource = rng or random.SystemRandom()
        self._hooks = hooks or ClientHooks()
        self._limiter = limiter or InFlightLimiter(settings.max_in_flight)
        if transport is None:
            # One spare connection for the token endpoint beside the limited data requests.
            pool = settings.max_in_flight + 1
            limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
            transport = httpx.HTTPTransport(verify=settings.verify_tls, limits=limits)
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            headers={
                "User-Agent": settings.user_agent,
                "Accept-Encoding": "gzip" if settings.accept_gzip else "identity",
            },
            follow_redirects=False,
        )
        self._tokens = TokenManager(
            settings, self._http, self._clock, on_token=self._hooks.on_token_refresh
        )
        self._credentials = (
            settings.client_secret.get_secret_value(),
            settings.password.get_secret_value(),
        )

    @property
    def limiter(self) -> InFlightLimiter:
        """This source's in-flight limiter (read ``limit`` and ``in_flight`` for gauges)."""
        return self._limiter

    def fetch(self, entity: EntitySpec, start: datetime, stop: datetime) -> list[Row]:
        """The rows DataConnect returns for ``entity`` between ``start`` and ``stop``.

        Transient failures (5xx, 429, timeouts, dropped connections, unreadable bodies) are
        retried with backoff until ``settings.retry`` runs out, then the last one is raised
        (SourceUnavailable or SourceBusy). A 401 gets one retry with a new token. Everything
        else raises at once: WindowTooLarge (split the window), SourceRequestRejected,
        SourceAccessDenied, SourceAuthFailed.
        """
        return self.fetch_then(entity, start, stop, _as_is)

    def fetch_then(
        self,
        entity: EntitySpec,
        start: datetime,
        stop: datetime,
        then: Callable[[Any], _T],
        *,
        gate: AbstractContextManager[object] = _NO_GATE,
        parse: Callable[[Body], Any] = read_rows,
    ) -> _T:
        """Like :meth:`fetch`, but hand the rows to ``then`` and return what it returns.

        Inflating and parsing the body, and ``then``, run while ``gate`` is held, and the rows
        are freed before it is released; the download runs outside it. Parsed rows take about
        three times their JSON size (3.8 KiB per Customers row), so a process whose fetch
        threads share one gate holds at most one window of them at a time, however many are
        downloading; under the GIL they could not be parsed faster side by side anyway.

        ``parse`` turns the :class:`Body` into what ``then`` receives. A ``then`` that parses
        the body itself, elsewhere, gets the Body as it is (an identity ``parse``). Either
        raises :class:`BodyUnreadable` for an answer that does not decode or parse, and the
        answer is retried.
        """
        params = request_params(self._settings, entity, start, stop)
        ctx = RequestContext(self._settings.name, entity.name, params[0][1], params[1][1])
        url = deltas_url(self._settings, entity.name)
        began = self._clock.monotonic()
        failures = 0
        reauthenticated = False
        while True:
            result = self._attempt(url, params, ctx, then=then, gate=gate, parse=parse)
            if not isinstance(result, Failure):
                return result
            if result.action is Action.REAUTHENTICATE and not reauthenticated:
                reauthenticated = True  # a fresh token, sent at once: no backoff
                continue
            if result.action not in (Action.RETRY, Action.THROTTLE):
                raise result.error
            failures += 1
            elapsed = self._clock.monotonic() - began
            delay = next_delay(
                self._settings.retry, failures, elapsed, result.retry_after, self._rng.random()
            )
            if delay is None:
                raise gave_up(result, failures, elapsed) from result.error
            log.warning("%s; retrying in %.2f s (attempt %d failed)", result.error, delay, failures)
            self._hooks.on_retry(entity.name, result.kind, delay)
            self._sleep(delay)

    def _attempt(
        self,
        url: str,
        params: list[tuple[str, str]],
        ctx: RequestContext,
        *,
        then: Callable[[Any], _T],
        gate: AbstractContextManager[object],
        parse: Callable[[Body], Any],
    ) -> _T | Failure:
        """Send one request; what ``then`` makes of its rows, or the failure statuses.py
        maps it to."""
        try:
            token = self._tokens.token()
        except RetryableError as exc:
            return Failure("token_unavailable", Action.RETRY, exc)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if self._settings.request_method == "GET":
            request = self._http.build_request("GET", url, params=tuple(params), headers=headers)
        else:
            request = self._http.build_request("POST", url, data=dict(params), headers=headers)
        # Only the exchange itself holds a slot: parsing, and sleeping before a retry, do not
        # keep DataConnect busy.
        with self._limiter.slot() as ticket:
            sent = self._clock.monotonic()
            try:
                # The body as sent: coding.py undoes its gzip, faster than httpx would.
                response = self._http.send(request, stream=True)
                try:
                    raw, coding = _read_body(response)
                finally:
                    response.close()
            except httpx.RequestError as exc:
                failure = failure_for_transport(exc, ctx)
                self._hooks.on_request(ctx.entity, failure.kind, self._clock.monotonic() - sent)
                return failure
            seconds = self._clock.monotonic() - sent
        status = response.status_code
        self._hooks.on_request(ctx.entity, str(status), seconds)
        secrets = (token, *self._credentials)
        if response.is_success:
            self._limiter.record_success()
            body = Body(raw, coding)
            del response, raw  # only the body is needed from here on
            with gate:
                try:
                    rows = parse(body)
                    del body
                    result = then(rows)
                except BodyUnreadable as exc:
                    return failure_for_body(exc.problem, exc.excerpt, ctx, secrets)
                del rows  # freed while the gate is held: the next window may parse now
            return result
        try:
            content = decode_content(raw, coding)
        except UndecodableBody:
            content = raw  # an error's own body only goes into its message
        del raw
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
        failure = failure_for_status(status, content, retry_after, ctx, secrets)
        if failure.action is Action.THROTTLE:
            self._limiter.record_throttled(ticket)
            self._hooks.on_throttled(ctx.entity)
        elif failure.action is Action.REAUTHENTICATE:
            self._tokens.invalidate(token)
        return failure

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> DeltasClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
