"""Reading a Deltas request's parameters: pure functions that say what was asked or why not.

From the vendor page: ``StartDate`` and ``StopDate`` (required, ``2019-10-01T18:00:00.000``),
``LocationType`` + ``LocationTypeIDs`` (default ``-1``: all) on entities with location filters,
``LanguageCode`` (default ``en-us``) on Activities only. Parameter names are matched without
regard to case, as ASP.NET binds them. A query-string parameter wins over the same one in a
form body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from publisher.entities import EntitySpec
from publisher.simulator.locations import LocationTree, RequestedLocations
from publisher.timefmt import parse_request_date, to_millis

_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


class BadRequest(ValueError):
    """The request's parameters are missing or malformed: answer 400 with this message."""


@dataclass(frozen=True, slots=True)
class DeltasQuery:
    """A valid Deltas request: change times [lo, hi) in epoch ms, and the locations asked."""

    lo: int
    hi: int
    locations: RequestedLocations


def merge_params(
    query: Mapping[str, str], body: bytes, content_type: str | None
) -> dict[str, tuple[str, str]]:
    """Parameters by lower-cased name -> (name as sent, value); the URL's win over the body's."""
    merged: dict[str, tuple[str, str]] = {}
    if body and "application/x-www-form-urlencoded" in (content_type or "").lower():
        text = body.decode("utf-8", errors="replace")
        for name, value in parse_qsl(text, keep_blank_values=True):
            merged.setdefault(name.lower(), (name, value))
    for name, value in query.items():
        merged[name.lower()] = (name, value)
    return merged


def allowed_params(spec: EntitySpec) -> frozenset[str]:
    """Lower-cased names the vendor page lists for this entity."""
    names = {"startdate", "stopdate"} | {p.lower() for p in spec.params}
    if spec.location_filter:
        names |= {"locationtype", "locationtypeids"}
    return frozenset(names)


def parse_deltas(
    spec: EntitySpec,
    params: Mapping[str, tuple[str, str]],
    tree: LocationTree,
    zone: ZoneInfo,
    *,
    strict: bool,
    start_inclusive: bool,
    stop_inclusive: bool,
) -> DeltasQuery:
    """Validate a Deltas request; raise :class:`BadRequest` with a readable message."""
    if strict:
        allowed = allowed_params(spec)
        unknown = sorted(sent for key, (sent, _) in params.items() if key not in allowed)
        if unknown:
            names = ", ".join(unknown)
            raise BadRequest(f"The parameter(s) {names} are not valid for {spec.name}.")
    start = _date(params, "StartDate", zone)
    stop = _date(params, "StopDate", zone)
    if start > stop:
        raise BadRequest("StartDate must be earlier than or equal to StopDate.")
    language = params.get("languagecode")
    if (
        language is not None
        and "languagecode" in allowed_params(spec)
        and not _LANGUAGE.match(language[1])
    ):
        raise BadRequest(f"LanguageCode {language[1][:32]!r} is not a valid language code.")
    locations = RequestedLocations(None, ())
    if spec.location_filter:
        kind = params.get("locationtype", ("", None))[1]
        ids = params.get("locationtypeids", ("", None))[1]
        try:
            locations = tree.resolve(kind, ids)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    # the millisecond grid makes both inclusivity settings exact half-open bounds
    lo = start if start_inclusive else start + 1
    hi = stop + 1 if stop_inclusive else stop
    return DeltasQuery(lo, hi, locations)


def _date(params: Mapping[str, tuple[str, str]], name: str, zone: ZoneInfo) -> int:
    sent = params.get(name.lower())
    if sent is None or sent[1].strip() == "":
        raise BadRequest(f"{name} is required.")
    try:
        return to_millis(parse_request_date(sent[1], zone))
    except ValueError:
        raise BadRequest(
            f"{name} {sent[1][:40]!r} is not a valid date (expected yyyy-MM-ddTHH:mm:ss.fff)."
        ) from None
