"""The simulator's response value and the few ways it builds one."""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

JSON_TYPE = "application/json; charset=utf-8"
Drop = Literal["before", "mid_body"]


@dataclass(frozen=True, slots=True)
class SimResponse:
    """What to send back. ``drop`` asks the adapter to break the connection instead:
    ``before`` sends nothing, ``mid_body`` sends the headers and half of ``body``."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: Drop | None = None


def json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> SimResponse:
    """A JSON body with the right content type."""
    return SimResponse(
        status, {"Content-Type": JSON_TYPE, **(headers or {})}, orjson.dumps(payload)
    )


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> SimResponse:
    """DataConnect's error body: ``{"Error": true, "Message": "..."}``."""
    return json_response(status, {"Error": True, "Message": message}, headers)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header allows gzip (``gzip;q=0`` refuses it)."""
    for item in (accept_encoding or "").split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            if not q.startswith("q="):
                return True
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
    return False


def gzip_body(body: bytes, level: int) -> bytes:
    """gzip with a fixed mtime, so equal bodies compress to equal bytes."""
    return gzip.compress(body, compresslevel=level, mtime=0)
