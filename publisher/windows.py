"""Window arithmetic: which StartDate/StopDate to ask for next. Pure functions of their inputs.

For a stream with committed watermark ``W`` the next window is::

    [max(W - overlap, origin), min(now - settle_delay, W + size))

Its end is fixed when the window is planned and never moves while it is fetched and published;
the watermark becomes that end only after the window's transaction commits. ``size`` adapts:
a 413 or a timeout halves it, sparse windows let it grow back to ``max_window``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from publisher.timefmt import floor_millis, to_millis


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time range ``[start, stop)`` asked of DataConnect, and the watermark it
    advances (``stop`` becomes the watermark once the window is committed)."""

    start: datetime
    stop: datetime
    watermark: datetime  # the committed watermark this window was planned from

    @property
    def start_ms(self) -> int:
        return to_millis(self.start)

    @property
    def stop_ms(self) -> int:
        return to_millis(self.stop)

    @property
    def new_span(self) -> timedelta:
        """How far this window moves the watermark."""
        return self.stop - self.watermark


def plan_window(
    watermark: datetime,
    now: datetime,
    *,
    origin: datetime,
    overlap: timedelta,
    settle_delay: timedelta,
    size: timedelta,
) -> Window | None:
    """The next window after ``watermark``, or None when nothing settled lies beyond it yet."""
    stop = floor_millis(min(now - settle_delay, watermark + size))
    if stop <= watermark:
        return None
    start = max(watermark - overlap, origin)
    return Window(start=start, stop=stop, watermark=watermark)


def split_window(window: Window, min_size: timedelta) -> Window | None:
    """The first half of the new part of ``window`` (after a 413), or None when it is already
    as small as allowed. The overlap part is kept: the half still re-reads it."""
    span = window.new_span
    if span <= min_size:
        return None
    half = max(min_size, span / 2)
    return Window(
        start=window.start,
        stop=floor_millis(window.watermark + half),
        watermark=window.watermark,
    )


@dataclass(slots=True)
class WindowSizer:
    """Adapts the window size to the source: shrink on 413/timeouts, grow when sparse."""

    size: timedelta
    min_size: timedelta
    max_size: timedelta
    target_rows: int

    def too_large(self, span: timedelta) -> None:
        """A window of ``span`` was refused (413) or timed out."""
        self.size = max(self.min_size, min(self.size, span / 2))

    def accepted_after_split(self, span: timedelta) -> None:
        """After 413 splits, DataConnect accepted a window of ``span``: start from that size."""
        self.size = max(self.min_size, min(self.size, span))

    def observed(self, span: timedelta, rows: int) -> None:
        """A window of ``span`` returned ``rows`` rows."""
        if rows > 4 * self.target_rows:
            self.size = max(self.min_size, span / 2)
        elif rows < self.target_rows // 2 and span >= self.size:
            self.size = min(self.max_size, self.size * 2)
