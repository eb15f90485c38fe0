"""How many requests one source may have in flight: an AIMD limit shared by its entities.

DataConnect's 429 is a limit on concurrent requests per RQ database ("8 active requests are
already in progress"), shared with every other client of that database, so the right number
for us moves. The limiter halves its limit on a 429 and grows it back by one after a limit's
worth of successes (additive increase, multiplicative decrease, as TCP does), never above the
configured ``max_in_flight`` nor below one.

Several requests that were in flight together often get 429 together; they report the same
overload, so only the first 429 of each *generation* halves the limit. A ticket remembers the
generation it was issued in, and a shrink starts a new generation.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ticket:
    """One request's permission to be in flight; pass it back to report the outcome."""

    generation: int


class InFlightLimiter:
    """A blocking, thread-safe counting limit whose size adapts to 429 answers."""

    def __init__(self, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._max = max_in_flight
        self._window = float(max_in_flight)
        self._in_flight = 0
        self._generation = 0
        self._changed = threading.Condition()

    @property
    def limit(self) -> int:
        """Requests allowed in flight right now."""
        with self._changed:
            return self._limit()

    @property
    def in_flight(self) -> int:
        """Requests in flight right now."""
        with self._changed:
            return self._in_flight

    def _limit(self) -> int:
        return math.floor(self._window)

    def acquire(self) -> Ticket:
        """Block until a request may start, then count it as in flight."""
        with self._changed:
            self._changed.wait_for(lambda: self._in_flight < self._limit())
            self._in_flight += 1
            return Ticket(self._generation)

    def release(self) -> None:
        """Count a request as finished, whatever its outcome."""
        with self._changed:
            if self._in_flight == 0:
                raise RuntimeError("release() without acquire()")
            self._in_flight -= 1
            self._changed.notify()

    @contextmanager
    def slot(self) -> Iterator[Ticket]:
        """``acquire()`` for the duration of a ``with`` block."""
        ticket = self.acquire()
        try:
            yield ticket
        finally:
            self.release()

    def record_success(self) -> None:
        """A request was served: grow the limit by 1/limit (one step per limit's worth)."""
        with self._changed:
            before = self._limit()
            self._window = min(float(self._max), self._window + 1.0 / self._window)
            if self._limit() > before:
                self._changed.notify_all()

    def record_throttled(self, ticket: Ticket) -> bool:
        """A request got 429: halve the limit unless this overload was already counted.

        Returns whether the limit shrank.
        """
        with self._changed:
            if ticket.generation != self._generation:
                return False
            self._generation += 1
            before = self._limit()
            self._window = max(1.0, self._window / 2.0)
            return self._limit() < before
