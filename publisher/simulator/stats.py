"""Counters a test or a benchmark reads back from ``GET /_simulator/stats``."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    """Thread-safe request counters and the data-request concurrency gate."""

    def __init__(self, max_in_flight: int) -> None:
        self._lock = threading.Lock()
        self._max = max_in_flight
        self.in_flight = 0
        self.peak_in_flight = 0
        self._by_status: Counter[int] = Counter()
        self._rows: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self.bytes_served = 0
        self.data_requests = 0
        self.token_requests = 0
        self.with_session_cookie = 0

    def enter(self) -> int | None:
        """Admit a data request: None when admitted, else how many are already in flight."""
        with self._lock:
            if self.in_flight >= self._max:
                return self.in_flight
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return None

    def leave(self) -> None:
        """A data request admitted by :meth:`enter` has finished."""
        with self._lock:
            self.in_flight -= 1

    def response(self, status: int, body_bytes: int) -> None:
        """Count one answered request (data or token)."""
        with self._lock:
            self._by_status[status] += 1
            self.bytes_served += body_bytes

    def data_request(self, with_cookie: bool) -> None:
        """Count one request to a Deltas path."""
        with self._lock:
            self.data_requests += 1
            self.with_session_cookie += with_cookie

    def token_request(self) -> None:
        """Count one request to the token endpoint."""
        with self._lock:
            self.token_requests += 1

    def rows(self, entity: str, count: int) -> None:
        """Count rows sent in a successful Deltas response."""
        with self._lock:
            self._rows[entity] += count

    def faults(self, kinds: tuple[str, ...]) -> None:
        """Count injected faults by kind."""
        with self._lock:
            self._faults.update(kinds)

    def snapshot(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        with self._lock:
            return {
                "requests_by_status": {str(k): v for k, v in sorted(self._by_status.items())},
                "data_requests": self.data_requests,
                "token_requests": self.token_requests,
                "rows_served": dict(self._rows),
                "rows_served_total": sum(self._rows.values()),
                "bytes_served": self.bytes_served,
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
                "max_in_flight": self._max,
                "faults_injected": dict(self._faults),
                "requests_with_session_cookie": self.with_session_cookie,
            }
