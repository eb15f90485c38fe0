"""Progress of long catch-ups: how far each lagging stream got, how fast, and when it is done.

A stream is *catching up* while its committed watermark is further behind the clock than
``threshold`` (e.g. after a first start with an old ``start_from``, or after an outage). For
those streams the publisher logs, at most every ``interval`` seconds, one INFO line each:
windows and rows committed by this process, rows/s, the watermark, the lag and an ETA; and
one INFO line when a stream has caught up. On a terminal the same figures also appear as one
compact, self-overwriting status line.

The ETA comes from the rate at which the watermark advances (seconds of source time per
second of wall time, over the last ``horizon`` seconds of commits). The clock moves too, so
the lag only shrinks by ``rate - 1`` per second: ``ETA = lag / (rate - 1)``, and there is no
ETA while the watermark does not gain on the clock.

:class:`ProgressTracker` is the pure core: it is given commit events and times and returns
what to report. :class:`ProgressReporter` is the edge: the Publisher's ``on_commit`` hook,
the logger and the terminal.
"""

from __future__ import annotations

import logging
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from publisher.service import Stream

log = logging.getLogger(__name__)

#: Seconds between two progress reports (the first one comes this long after the start).
DEFAULT_INTERVAL = 30.0
#: Seconds of commits the rates are measured over.
DEFAULT_HORIZON = 60.0


@dataclass(frozen=True, slots=True)
class StreamProgress:
    """Where one stream stands; ``windows`` and ``rows`` count what this process committed."""

    stream: str
    windows: int
    rows: int
    rows_per_second: float | None
    watermark: datetime
    lag_seconds: float
    eta_seconds: float | None  # None: not measured yet, or the watermark is not gaining
    elapsed_seconds: float


@dataclass(slots=True)
class _Sample:
    at: datetime
    watermark: datetime
    rows: int  # the stream's published-rows total at ``at``


@dataclass(slots=True)
class _Track:
    started: datetime
    start_rows: int
    windows: int = 0
    catching_up: bool = False
    samples: deque[_Sample] = field(default_factory=deque)


class ProgressTracker:
    """Turns commit events into progress figures; pure: every time is passed in."""

    def __init__(
        self,
        *,
        threshold: timedelta,
        interval: float = DEFAULT_INTERVAL,
        horizon: float = DEFAULT_HORIZON,
    ) -> None:
        if interval <= 0 or horizon <= 0:
            raise ValueError("interval and horizon must be positive")
        self.threshold = threshold
        self.interval = interval
        self.horizon = horizon
        self._tracks: dict[str, _Track] = {}
        self._last_report: datetime | None = None

    def start(self, stream: str, watermark: datetime, rows_total: int, at: datetime) -> None:
        """Declare a stream with its restored watermark and published-rows total."""
        track = _Track(started=at, start_rows=rows_total)
        track.samples.append(_Sample(at, watermark, rows_total))
        track.catching_up = at - watermark > self.threshold
        self._tracks[stream] = track
        if self._last_report is None:
            self._last_report = at

    def committed(
        self, stream: str, watermark: datetime, rows_total: int, at: datetime
    ) -> StreamProgress | None:
        """Record one committed window; returns the final figures when the stream has just
        caught up (its lag fell to ``threshold`` or below), else None."""
        track = self._tracks.get(stream)
        if track is None:  # not declared: count from its first commit
            self.start(stream, watermark, rows_total, at)
            return None
        track.windows += 1
        track.samples.append(_Sample(at, watermark, rows_total))
        # Keep one sample at or before the horizon, so the rate always spans it when it can.
        while len(track.samples) > 2 and at - track.samples[1].at >= timedelta(
            seconds=self.horizon
        ):
            track.samples.popleft()
        lagging = at - watermark > self.threshold
        if track.catching_up and not lagging:
            track.catching_up = False
            return self._figures(stream, track, at)
        track.catching_up = lagging
        return None

    def due(self, now: datetime) -> list[StreamProgress]:
        """Figures of every stream still catching up, when ``interval`` has passed since the
        last report (or the start); an empty list otherwise."""
        last = self._last_report
        if last is None or (now - last).total_seconds() < self.interval:
            return []
        self._last_report = now
        return [
            self._figures(name, track, now)
            for name, track in sorted(self._tracks.items())
            if track.catching_up
        ]

    def lagging(self) -> bool:
        """Whether any stream is still catching up."""
        return any(t.catching_up for t in self._tracks.values())

    def _figures(self, stream: str, track: _Track, now: datetime) -> StreamProgress:
        first, last = track.samples[0], track.samples[-1]
        span = (last.at - first.at).total_seconds()
        lag = max(0.0, (now - last.watermark).total_seconds())
        rows_per_second = eta = None
        if span > 0:
            rows_per_second = (last.rows - first.rows) / span
            advance = (last.watermark - first.watermark).total_seconds() / span
            # The clock moves at 1 s/s, so the lag only shrinks by what exceeds it.
            if advance > 1.0:
                eta = lag / (advance - 1.0)
        return StreamProgress(
            stream=stream,
            windows=track.windows,
            rows=last.rows - track.start_rows,
            rows_per_second=rows_per_second,
            watermark=last.watermark,
            lag_seconds=lag,
            eta_seconds=eta,
            elapsed_seconds=(now - track.started).total_seconds(),
        )


def format_duration(seconds: float | None) -> str:
    """``45s``, ``12m05s``, ``5h02m``, ``3d04h``; ``?`` for None."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def _rate(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def progress_line(p: StreamProgress) -> str:
    """The INFO line of a stream that is catching up."""
    return (
        f"catching up {p.stream}: {p.windows} windows, {p.rows:,} rows "
        f"({_rate(p.rows_per_second)} rows/s), watermark {p.watermark.isoformat()}, "
        f"lag {format_duration(p.lag_seconds)}, ETA {format_duration(p.eta_seconds)}"
    )


def caught_up_line(p: StreamProgress) -> str:
    """The INFO line of a stream that has just caught up."""
    return (
        f"caught up {p.stream}: {p.windows} windows, {p.rows:,} rows in "
        f"{format_duration(p.elapsed_seconds)}, lag {format_duration(p.lag_seconds)}"
    )


def status_line(progress: Sequence[StreamProgress], width: int) -> str:
    """One compact line for a terminal: every lagging stream, cut to ``width`` characters."""
    parts = [
        f"{p.stream} lag {format_duration(p.lag_seconds)} ETA {format_duration(p.eta_seconds)} "
        f"{_rate(p.rows_per_second)} rows/s"
        for p in progress
    ]
    line = "catching up: " + " | ".join(parts)
    return line if len(line) <= width else line[: max(0, width - 3)] + "..."


def _fields(p: StreamProgress) -> dict[str, object]:
    """The ``extra=`` fields of a progress record (JSON logs carry them as keys)."""
    return {
        "stream": p.stream,
        "windows": p.windows,
        "rows": p.rows,
        "rows_per_second": None if p.rows_per_second is None else round(p.rows_per_second, 1),
        "watermark": p.watermark.isoformat(),
        "lag_seconds": round(p.lag_seconds, 1),
        "eta_seconds": None if p.eta_seconds is None else round(p.eta_seconds, 1),
    }


class ProgressReporter:
    """The Publisher's ``on_commit`` hook: feeds the tracker, logs and draws the status line.

    ``terminal`` is where the status line goes (None: no status line); pass it only when it
    is a terminal, e.g. ``sys.stderr`` when ``sys.stderr.isatty()``.
    """

    def __init__(
        self,
        tracker: ProgressTracker,
        clock: Callable[[], datetime],
        *,
        terminal: TextIO | None = None,
        logger: logging.Logger = log,
    ) -> None:
        self.tracker = tracker
        self.clock = clock
        self.terminal = terminal
        self.logger = logger
        self._drawn = False

    def begin(self, streams: Iterable[Stream]) -> None:
        """Declare the streams with their restored checkpoints, before the loop starts."""
        now = self.clock()
        for s in streams:
            self.tracker.start(s.id, s.committed.watermark, s.committed.rows_published, now)

    def on_commit(self, streams: Sequence[Stream]) -> None:
        """Called by the Publisher after each committed transaction with its streams."""
        now = self.clock()
        for s in streams:
            done = self.tracker.committed(
                s.id, s.committed.watermark, s.committed.rows_published, now
            )
            if done is not None:
                self.logger.info(caught_up_line(done), extra=_fields(done))
        due = self.tracker.due(now)
        for p in due:
            self.logger.info(progress_line(p), extra=_fields(p))
        if self.terminal is not None:
            if due:
                self._draw(self.terminal, due)
            elif self._drawn and not self.tracker.lagging():
                self._draw(self.terminal, [])

    def _draw(self, terminal: TextIO, progress: Sequence[StreamProgress]) -> None:
        if not progress:
            # Every stream caught up: wipe the status line rather than leave stale figures.
            terminal.write("\x1b[K")
            self._drawn = False
        else:
            width = shutil.get_terminal_size().columns - 1
            # Cleared, drawn, cursor back to column 0: the next log line overwrites it.
            terminal.write("\x1b[K" + status_line(progress, width) + "\r")
            self._drawn = True
        terminal.flush()
