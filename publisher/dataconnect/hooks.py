"""Callbacks the client makes for metrics; every one defaults to doing nothing.

The service wires them to :class:`publisher.metrics.PublisherMetrics`, binding the source
name (one client per source). Every code passed is short and lowercase (an HTTP status such
as ``503``, or an error kind such as ``timeout``), fit for a metric label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _ignore(*_args: object) -> None:
    """The default hook."""


@dataclass(frozen=True, slots=True)
class ClientHooks:
    """Optional callbacks of :class:`publisher.dataconnect.client.DeltasClient`."""

    #: (entity, status or error kind, seconds) after every Deltas request, failures included.
    on_request: Callable[[str, str, float], None] = _ignore
    #: (entity, reason code, delay in seconds) before every retry sleep.
    on_retry: Callable[[str, str, float], None] = _ignore
    #: (grant kind ``password``/``refresh_token``, outcome ``ok``/``rejected``/``unavailable``)
    #: after every token request.
    on_token_refresh: Callable[[str, str], None] = _ignore
    #: (entity,) when DataConnect answered 429.
    on_throttled: Callable[[str], None] = _ignore
