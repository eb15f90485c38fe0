"""The simulator's notion of "now": a callable returning a timezone-aware datetime.

Live mode and token expiry follow the injected clock, so tests move time by hand with
:class:`ManualClock` and the CLI uses :func:`system_clock`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The real current time in UTC."""
    return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to; thread-safe, callable like :data:`Clock`."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def now(self) -> datetime:
        """The current (manual) time."""
        return self()

    def advance(self, seconds: float) -> datetime:
        """Move time forward by ``seconds`` and return the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (aware)."""
        if moment.tzinfo is None:
            raise ValueError("naive datetime")
        with self._lock:
            self._now = moment
