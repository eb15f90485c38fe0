"""Time and randomness, injected so tests run instantly and can assert exact delays."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock for durations and deadlines, and a wall clock for HTTP dates."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def now(self) -> datetime:
        """The current timezone-aware wall-clock time."""
        ...


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.now(UTC)


class RandomSource(Protocol):
    """Anything with ``random() -> float`` in [0, 1), such as ``random.Random``."""

    def random(self) -> float:
        """A float in [0, 1)."""
        ...
