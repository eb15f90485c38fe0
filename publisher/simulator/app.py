"""The request handler: one object plays the DataConnect Deltas service and its token endpoint.

:meth:`Simulator.handle` turns (method, path, query, headers, body) into a :class:`SimResponse`;
the in-process ``httpx.MockTransport`` (:meth:`Simulator.transport`) and the real HTTP server
(:class:`publisher.simulator.server.SimulatorServer`) are thin adapters around it.

Checks on a Deltas request, in order: route (404), method (405), bearer token (401), entity
access (403), parameters (400), location access (403), requests in flight (429), injected faults
(slow, 5xx, broken bodies), row estimate (413), then the rows.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from publisher.entities import EntitySpec, load_entities
from publisher.errors import ConfigError
from publisher.simulator.admin import AdminApi
from publisher.simulator.auth import TokenStore
from publisher.simulator.body import flatten, gzip_json_array, json_array
from publisher.simulator.clock import Clock, system_clock
from publisher.simulator.data import Dataset
from publisher.simulator.faults import FaultDecision, FaultInjector, FaultSettings
from publisher.simulator.history import Block, Segment
from publisher.simulator.ids import salt, seeded_random
from publisher.simulator.params import BadRequest, DeltasQuery, merge_params, parse_deltas
from publisher.simulator.responses import (
    JSON_TYPE,
    SimResponse,
    accepts_gzip,
    error_response,
    gzip_body,
    json_response,
)
from publisher.simulator.settings import SimulatorSettings
from publisher.simulator.stats import Stats
from publisher.simulator.transport import mock_transport
from publisher.timefmt import to_millis

if TYPE_CHECKING:
    import httpx

TOKEN_PATH = "/v1/oauth2/token"  # noqa: S105 - a URL path, not a secret
ADMIN_PREFIX = "/_simulator/"
SESSION_COOKIE = "DataConnectState"
_DENIED_401 = "Authorization has been denied for this request."
_FAULT_MESSAGES = {500: "An error has occurred.", 503: "The service is unavailable."}


class Simulator:
    """A deterministic DataConnect: same seed, settings and ``history_end``, same rows."""

    def __init__(
        self,
        settings: SimulatorSettings | None = None,
        clock: Clock = system_clock,
        *,
        faults: FaultSettings | None = None,
        entities: Mapping[str, EntitySpec] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or SimulatorSettings()
        self.clock = clock
        self._sleep = sleep
        if entities is None:
            entities = (
                load_entities(self.settings.schemas_dir)
                if self.settings.schemas_dir
                else load_entities()
            )
        self.entities = dict(entities)
        unknown = sorted(
            (set(self.settings.rows) | self.settings.denied_entities) - set(self.entities)
        )
        if unknown:
            raise ConfigError([f"unknown entities in settings: {', '.join(unknown)}"])
        self._by_lower = {name.lower(): spec for name, spec in self.entities.items()}
        self.dataset = Dataset(self.settings, self.entities, clock())
        self.tokens = TokenStore(self.settings, clock)
        self.faults = FaultInjector(faults or FaultSettings())
        self.stats = Stats(self.settings.max_in_flight)
        self._route = _compile_template(self.settings.deltas_path)
        self._visible_stores = self.dataset.tree.visible_stores(self.settings.allowed_location_ids)
        self._admin = AdminApi(self)

    # ----- public helpers ------------------------------------------------------------------

    def deltas_path(self, entity: str) -> str:
        """The URL path of an entity's Deltas endpoint."""
        return self.settings.deltas_path.replace("{entity}", entity)

    def changes(self, entity: str, start: datetime, stop: datetime) -> list[bytes]:
        """Ground truth: every visible version with change time in [start, stop), all locations.

        The same bytes the Deltas endpoint serves (bad rows included), in change-time order.
        """
        history = self.dataset.history(entity)
        return history.rows(to_millis(start), to_millis(stop), to_millis(self.clock()), None)

    def transport(self) -> httpx.MockTransport:
        """An in-process ``httpx.MockTransport`` that sends every request to :meth:`handle`."""
        return mock_transport(self)

    # ----- the handler ---------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> SimResponse:
        """Answer one HTTP request. Header names may come in any case."""
        lower = {k.lower(): v for k, v in headers.items()}
        method = method.upper()
        if path.startswith(ADMIN_PREFIX):
            return self._admin.handle(method, path, query, lower, body)
        if path.rstrip("/").lower() == TOKEN_PATH:
            response = self._token(method, query, lower, body)
        else:
            match = self._route.fullmatch(path)
            spec = self._by_lower.get(match.group("entity").lower()) if match else None
            if spec is None:
                response = error_response(
                    404, f"No HTTP resource was found that matches the request URI '{path}'."
                )
            else:
                response = self._deltas(spec, method, query, lower, body)
        if response.drop is None:
            self.stats.response(response.status, len(response.body))
        return response

    def _token(
        self, method: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> SimResponse:
        self.stats.token_request()
        if method != "POST":
            return _not_allowed(method, "POST")
        decision = self.faults.decide("token", None)
        broken = self._apply_fault(decision)
        if broken is not None:
            return broken
        params = merge_params(query, body, headers.get("content-type"))
        result = self.tokens.token_request({k: v for k, (_, v) in params.items()})
        return json_response(
            result.status, result.body, {"Cache-Control": "no-store", "Pragma": "no-cache"}
        )

    def _deltas(
        self,
        spec: EntitySpec,
        method: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> SimResponse:
        s = self.settings
        cookies = headers.get("cookie", "")
        self.stats.data_request(f"{SESSION_COOKIE}=" in cookies)
        if method not in ("GET", "POST"):
            return _not_allowed(method)
        if not self.tokens.authorized(headers.get("authorization")):
            return error_response(401, _DENIED_401, {"WWW-Authenticate": "Bearer"})
        if spec.name in s.denied_entities:
            return error_response(403, f"The user does not have access to {spec.name}.")
        try:
            request = parse_deltas(
                spec,
                merge_params(query, body, headers.get("content-type")),
                self.dataset.tree,
                s.tzinfo,
                strict=s.strict_params,
                start_inclusive=s.start_inclusive,
                stop_inclusive=s.stop_inclusive,
            )
        except BadRequest as exc:
            return error_response(400, str(exc))
        stores = request.locations.stores
        if self._visible_stores is not None:
            if stores is not None and not stores <= self._visible_stores:
                return error_response(
                    403, "The user does not have access to one or more of the requested locations."
                )
            stores = self._visible_stores if stores is None else stores
        in_flight = self.stats.enter()
        if in_flight is not None:
            return error_response(
                429, f"Rate Limiting Applied. {in_flight} active requests are already in progress."
            )
        try:
            return self._serve(spec, request, stores, headers, cookies)
        finally:
            self.stats.leave()

    def _serve(
        self,
        spec: EntitySpec,
        request: DeltasQuery,
        stores: frozenset[int] | None,
        headers: Mapping[str, str],
        cookies: str,
    ) -> SimResponse:
        s = self.settings
        decision = self.faults.decide("data", spec.name)
        broken = self._apply_fault(decision)
        if broken is not None:
            return broken
        count, segments = self._select(spec, request, stores)
        if segments is None:
            return error_response(
                413,
                f"The request is estimated to return {count} rows, which exceeds the limit "
                f"of {s.max_rows} rows. Narrow the date range.",
            )
        outcome = decision.outcome
        damaged = outcome is not None and outcome.kind in ("truncate", "malformed")
        gzip = s.gzip and accepts_gzip(headers.get("accept-encoding"))
        if gzip and not damaged and s.order == "change_time":
            rows_sent = _count(segments)
            body = gzip_json_array(segments, s.gzip_level)
        else:
            rows = flatten(segments)
            rows_sent = len(rows)
            if s.order == "shuffled":
                seeded_random(salt(s.seed, spec.name, request.lo, request.hi)).shuffle(rows)
            body = json_array(rows)
            if outcome is not None and outcome.kind == "truncate":
                body = body[: len(body) // 2]
            elif outcome is not None and outcome.kind == "malformed":
                body = body[:-1] + b",}"
            if gzip:
                body = gzip_body(body, s.gzip_level)
        self.stats.rows(spec.name, rows_sent)
        # a catch-up asks for the following window next: render it while the client works
        self.dataset.prefetch(spec.name, request.hi, to_millis(self.clock()), len(segments) + 1)
        out_headers = {"Content-Type": JSON_TYPE, "Vary": "Accept-Encoding"}
        if gzip:
            out_headers["Content-Encoding"] = "gzip"
        if f"{SESSION_COOKIE}=" not in cookies:
            out_headers["Set-Cookie"] = (
                f"{SESSION_COOKIE}={secrets.token_hex(16)}; path=/; HttpOnly"
            )
        return SimResponse(200, out_headers, body, "mid_body" if _drops_mid(decision) else None)

    def _select(
        self, spec: EntitySpec, request: DeltasQuery, stores: frozenset[int] | None
    ) -> tuple[int, list[Segment] | None]:
        """The row count (estimated or exact) and the rows, or None above ``max_rows``."""
        s = self.settings
        history = self.dataset.history(spec.name)
        now = to_millis(self.clock())
        if s.limit_mode == "estimate":
            share = 1.0 if stores is None else len(stores) / len(self.dataset.tree.store_ids)
            estimate = history.estimate(request.lo, request.hi, now, share)
            if estimate > s.max_rows:
                return estimate, None
            return estimate, history.segments(request.lo, request.hi, now, stores)
        segments = history.segments(request.lo, request.hi, now, stores)
        count = _count(segments)
        return count, None if count > s.max_rows else segments

    def _apply_fault(self, decision: FaultDecision) -> SimResponse | None:
        """Sleep for slow faults; return the response of a terminal fault, if one fired."""
        if decision.fired:
            self.stats.faults(decision.fired)
        if decision.delay:
            self._sleep(decision.delay)
        outcome = decision.outcome
        if outcome is None or outcome.kind in ("truncate", "malformed", "drop_mid_body"):
            return None
        if outcome.kind == "drop":
            return SimResponse(0, drop="before")
        headers = {} if outcome.retry_after is None else {"Retry-After": str(outcome.retry_after)}
        message = _FAULT_MESSAGES.get(outcome.status, "Injected failure.")
        return error_response(outcome.status, message, headers)


def _count(segments: list[Segment]) -> int:
    return sum(len(seg.rows if isinstance(seg, Block) else seg) for seg in segments)


def _drops_mid(decision: FaultDecision) -> bool:
    return decision.outcome is not None and decision.outcome.kind == "drop_mid_body"


def _not_allowed(method: str, allow: str = "GET, POST") -> SimResponse:
    return error_response(
        405, f"The requested resource does not support http method '{method}'.", {"Allow": allow}
    )


def _compile_template(template: str) -> re.Pattern[str]:
    before, _, after = template.partition("{entity}")
    return re.compile(re.escape(before) + r"(?P<entity>[^/]+)" + re.escape(after) + "/?", re.I)
