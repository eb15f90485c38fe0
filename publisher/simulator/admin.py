"""Admin endpoints under ``/_simulator/`` (no authentication; never part of DataConnect).

``GET  /_simulator/health``               ``{"status": "ok", "now": ...}``
``GET  /_simulator/info``                 entities and their paths, the location tree, the timeline
``GET  /_simulator/changes?entity=E&start=iso&stop=iso``
                                          ground truth: every visible row version with change
                                          time in [start, stop), all locations, as the Deltas
                                          endpoint spells them (bad rows included)
``GET  /_simulator/faults``               the fault rules (remaining counts included)
``POST /_simulator/faults``               replace them: ``{"seed": 0, "rules": [...]}``
``GET  /_simulator/stats``                requests by status, rows served, requests in flight
``POST /_simulator/tokens/expire?mode=expire|revoke``
                                          expire every access token (refresh still works) or
                                          revoke every token (clients must log in again)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from publisher.simulator.body import json_array
from publisher.simulator.faults import FaultSettings
from publisher.simulator.locations import LOCATION_TYPES
from publisher.simulator.params import merge_params
from publisher.simulator.responses import (
    JSON_TYPE,
    SimResponse,
    accepts_gzip,
    error_response,
    gzip_body,
    json_response,
)
from publisher.timefmt import from_millis, parse_timestamp, to_millis

if TYPE_CHECKING:
    from publisher.simulator.app import Simulator


class AdminApi:
    """Routes ``/_simulator/...`` requests to the simulator's parts."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> SimResponse:
        """Answer one admin request (header names lower-cased)."""
        name = path[len("/_simulator/") :].strip("/")
        routes = {
            ("GET", "health"): lambda: json_response(200, {"status": "ok", "now": self._now()}),
            ("GET", "info"): lambda: json_response(200, self._info()),
            ("GET", "changes"): lambda: self._changes(query, headers),
            ("GET", "faults"): lambda: json_response(200, self._sim.faults.current().to_json()),
            ("POST", "faults"): lambda: self._set_faults(body),
            ("GET", "stats"): lambda: json_response(200, self._sim.stats.snapshot()),
            ("POST", "tokens/expire"): lambda: self._expire(query, headers, body),
        }
        route = routes.get((method, name))
        if route is None:
            if any(n == name for _, n in routes):
                return error_response(405, f"{method} is not supported on {path}.")
            return error_response(404, f"No simulator admin endpoint {path}.")
        return route()

    def _now(self) -> str:
        return self._sim.clock().astimezone(UTC).isoformat()

    def _info(self) -> dict[str, Any]:
        sim = self._sim
        tree = sim.dataset.tree
        timeline = sim.dataset.timeline
        return {
            "seed": sim.settings.seed,
            "entities": {
                name: {
                    "path": sim.deltas_path(name),
                    "key": spec.key_field,
                    "location_filter": spec.location_filter,
                    "history_rows": sim.settings.rows_for(name),
                }
                for name, spec in sim.entities.items()
            },
            "locations": {t: list(tree.ids_of(t)) for t in LOCATION_TYPES},
            "stores": [
                {
                    "id": s.id,
                    "code": s.code,
                    "district": s.district,
                    "region": s.region,
                    "channel": s.channel,
                }
                for s in tree.stores
            ],
            "history_start": from_millis(timeline.start).isoformat(),
            "history_end": from_millis(timeline.anchor).isoformat(),
            "live": sim.settings.live,
            "now": self._now(),
        }

    def _changes(self, query: Mapping[str, str], headers: Mapping[str, str]) -> SimResponse:
        sim = self._sim
        entity = query.get("entity", "")
        if entity not in sim.entities:
            return error_response(404, f"Unknown entity {entity[:64]!r}.")
        now = sim.clock()
        try:
            start = _moment(query.get("start")) or from_millis(sim.dataset.timeline.start)
            stop = _moment(query.get("stop")) or from_millis(to_millis(now) + 1)
        except ValueError as exc:
            return error_response(400, f"start/stop: {exc}")
        body = json_array(sim.changes(entity, start, stop))
        out = {"Content-Type": JSON_TYPE}
        if accepts_gzip(headers.get("accept-encoding")):
            body = gzip_body(body, sim.settings.gzip_level)
            out["Content-Encoding"] = "gzip"
        return SimResponse(200, out, body)

    def _set_faults(self, body: bytes) -> SimResponse:
        try:
            settings = FaultSettings.from_json(orjson.loads(body or b"{}"))
        except (orjson.JSONDecodeError, ValueError) as exc:
            return error_response(400, f"Invalid fault settings: {exc}")
        self._sim.faults.replace(settings)
        return json_response(200, settings.to_json())

    def _expire(
        self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> SimResponse:
        params = merge_params(query, body, headers.get("content-type"))
        mode = params.get("mode", ("mode", "expire"))[1]
        if mode == "expire":
            return json_response(200, {"expired": self._sim.tokens.expire_all()})
        if mode == "revoke":
            return json_response(200, {"revoked": self._sim.tokens.revoke_all()})
        return error_response(400, "mode must be expire or revoke.")


def _moment(text: str | None) -> datetime | None:
    """An ISO time; a time without zone is UTC. None when absent."""
    if not text:
        return None
    moment = parse_timestamp(text, UTC)
    if moment is None:
        raise ValueError("empty time")
    return moment
