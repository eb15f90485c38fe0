"""Read-ahead: render the blocks after a served window while the client works on it.

A catch-up walks forward in time, window after window; while the poller maps and publishes one
window, the simulator's CPU is idle. One background thread renders the blocks that the next
window will most likely need, so the next request is served from the cache. Best effort: a
full queue drops the hint, and the thread exits when idle (a new hint starts it again).
"""

from __future__ import annotations

import queue
import threading

from publisher.simulator.history import EntityHistory

_IDLE_SECONDS = 2.0


class Prefetcher:
    """Renders hinted block ranges in one short-lived daemon thread."""

    def __init__(self, max_blocks: int) -> None:
        self._max = max_blocks
        self._hints: queue.Queue[tuple[EntityHistory, int, int]] = queue.Queue(maxsize=4)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hint(self, history: EntityHistory, after_ms: int, now_ms: int, blocks: int) -> None:
        """The client will probably ask for ``blocks`` blocks starting at time ``after_ms``."""
        if self._max <= 0:
            return
        first = history.block_at(after_ms)
        last = min(first + min(blocks, self._max), history.last_block(now_ms) + 1)
        if last <= first:
            return
        try:
            self._hints.put_nowait((history, first, last))
        except queue.Full:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="simulator-prefetch", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                history, first, last = self._hints.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._hints.empty():
                        self._thread = None
                        return
                continue
            for j in range(first, last):
                history.block(j)  # generated once, then served from the cache
