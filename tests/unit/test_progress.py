"""Catch-up progress: the figures reported for a lagging stream, how often, and where."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from publisher.progress import (
    ProgressReporter,
    ProgressTracker,
    StreamProgress,
    format_duration,
    progress_line,
    status_line,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def catching_up_tracker(**kwargs: Any) -> ProgressTracker:
    """A stream 10 days behind; from T0, one commit a second moving it 1 h with 100 rows."""
    tracker = ProgressTracker(threshold=HOUR, interval=30, horizon=60, **kwargs)
    tracker.start("s/Customers", T0 - timedelta(days=10), 5_000, T0)
    return tracker


def commit_hours(tracker: ProgressTracker, seconds: range, rows: int = 100) -> None:
    for n in seconds:
        tracker.committed(
            "s/Customers", T0 - timedelta(days=10) + n * HOUR, 5_000 + n * rows, at(n)
        )


def test_a_lagging_stream_is_reported_with_rate_lag_and_eta() -> None:
    tracker = catching_up_tracker()
    commit_hours(tracker, range(1, 31))
    [p] = tracker.due(at(30))
    assert (p.stream, p.windows, p.rows) == ("s/Customers", 30, 3_000)  # this run's, not 5,000
    assert p.rows_per_second == pytest.approx(100.0)
    assert p.watermark == T0 - timedelta(days=10) + 30 * HOUR
    lag = (at(30) - p.watermark).total_seconds()
    assert p.lag_seconds == pytest.approx(lag)
    # The watermark gains 3600 s per second, the clock 1: the lag shrinks by 3599 s/s.
    assert p.eta_seconds == pytest.approx(lag / 3599)


def test_reports_come_at_most_once_per_interval() -> None:
    tracker = catching_up_tracker()
    reports = []
    for n in range(1, 91):
        commit_hours(tracker, range(n, n + 1))
        reports += [(n, len(tracker.due(at(n))))]
    assert [n for n, count in reports if count] == [30, 60, 90]


def test_a_stream_that_is_not_lagging_is_not_reported() -> None:
    tracker = ProgressTracker(threshold=HOUR, interval=30)
    tracker.start("s/FollowUps", T0 - timedelta(minutes=5), 0, T0)
    for n in range(1, 61):
        tracker.committed("s/FollowUps", at(n) - timedelta(minutes=5), n, at(n))
    assert tracker.due(at(60)) == []
    assert not tracker.lagging()


def test_catching_up_is_announced_once_with_this_runs_totals() -> None:
    tracker = ProgressTracker(threshold=HOUR, interval=30)
    tracker.start("s/Customers", T0 - 3 * HOUR, 0, T0)
    first = tracker.committed("s/Customers", T0 - 2 * HOUR, 10, at(10))
    done = tracker.committed("s/Customers", at(20) - timedelta(minutes=10), 25, at(20))
    again = tracker.committed("s/Customers", at(30) - timedelta(minutes=10), 30, at(30))
    assert first is None and again is None
    assert done is not None
    assert (done.windows, done.rows, done.elapsed_seconds) == (2, 25, 20.0)
    assert done.lag_seconds == pytest.approx(600.0)
    assert tracker.due(at(40)) == []  # nothing is lagging any more


def test_rates_follow_the_last_horizon_not_the_whole_run() -> None:
    tracker = catching_up_tracker()
    commit_hours(tracker, range(1, 61))  # 1 h of watermark per second for a minute
    base = T0 - timedelta(days=10) + 60 * HOUR
    for n in range(1, 121):  # then only 10 min per second, 10 rows per window
        tracker.committed(
            "s/Customers", base + n * timedelta(minutes=10), 11_000 + 10 * n, at(60 + n)
        )
    [p] = tracker.due(at(180))
    assert p.rows_per_second == pytest.approx(10.0)
    assert p.eta_seconds == pytest.approx(p.lag_seconds / 599)


def test_no_eta_while_the_watermark_does_not_gain_on_the_clock() -> None:
    tracker = catching_up_tracker()
    for n in range(1, 31):  # the watermark moves half as fast as the clock: lag grows
        tracker.committed(
            "s/Customers", T0 - timedelta(days=10) + timedelta(seconds=n / 2), n, at(n)
        )
    [p] = tracker.due(at(30))
    assert p.eta_seconds is None
    assert "ETA ?" in progress_line(p)


def test_first_report_needs_two_samples_for_rates() -> None:
    tracker = catching_up_tracker()
    [p] = tracker.due(at(30))  # no commit at all yet: lag known, rates not
    assert (p.windows, p.rows, p.rows_per_second, p.eta_seconds) == (0, 0, None, None)
    assert p.lag_seconds == pytest.approx(10 * 86400 + 30)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (0, "0s"), (59.4, "59s"), (61, "1m01s"), (3 * 3600 + 125, "3h02m"),
     (2 * 86400 + 5 * 3600, "2d05h")],
)  # fmt: skip
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def _progress(stream: str) -> StreamProgress:
    return StreamProgress(stream, 3, 1234, 56.0, T0, 7200.0, 90.0, 30.0)


def test_status_line_lists_every_stream_and_fits_the_width() -> None:
    line = status_line([_progress("s/Customers"), _progress("s/FollowUps")], 200)
    assert line == (
        "catching up: s/Customers lag 2h00m ETA 1m30s 56 rows/s"
        " | s/FollowUps lag 2h00m ETA 1m30s 56 rows/s"
    )
    short = status_line([_progress("s/Customers"), _progress("s/FollowUps")], 40)
    assert len(short) == 40 and short.endswith("...")


def fake_stream(stream: str, watermark: datetime, rows: int) -> Any:
    return SimpleNamespace(
        id=stream, committed=SimpleNamespace(watermark=watermark, rows_published=rows)
    )


def test_reporter_logs_info_lines_with_fields_and_draws_on_the_terminal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [T0]
    terminal = io.StringIO()
    reporter = ProgressReporter(
        ProgressTracker(threshold=HOUR, interval=30), lambda: now[0], terminal=terminal
    )
    stream = fake_stream("s/Customers", T0 - 5 * HOUR, 0)
    reporter.begin([stream])
    caplog.set_level(logging.INFO, logger="publisher.progress")
    for n in range(1, 31):
        now[0] = at(n)
        stream.committed.watermark = T0 - 5 * HOUR + n * timedelta(minutes=5)
        stream.committed.rows_published = 10 * n
        reporter.on_commit([stream])
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith(
        "catching up s/Customers: 30 windows, 300 rows (10 rows/s)"
    )
    assert (record.stream, record.windows, record.rows) == ("s/Customers", 30, 300)  # type: ignore[attr-defined]
    assert record.eta_seconds == pytest.approx(  # type: ignore[attr-defined]
        # 5 min of watermark per second: the lag shrinks by 299 s/s
        ((at(30) - stream.committed.watermark).total_seconds()) / 299,
        abs=0.1,
    )
    assert terminal.getvalue().startswith("\x1b[Kcatching up: s/Customers lag 2h30m")
    assert terminal.getvalue().endswith("\r")

    caplog.clear()
    now[0] = at(31)
    stream.committed.watermark = at(31) - timedelta(minutes=2)
    reporter.on_commit([stream])
    [done] = caplog.records
    assert done.getMessage() == "caught up s/Customers: 31 windows, 300 rows in 31s, lag 2m00s"
    assert terminal.getvalue().endswith("\r\x1b[K")  # the stale status line is wiped


def test_reporter_without_a_terminal_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    now = [T0]
    reporter = ProgressReporter(ProgressTracker(threshold=HOUR, interval=1), lambda: now[0])
    stream = fake_stream("s/Customers", T0 - 5 * HOUR, 0)
    reporter.begin([stream])
    caplog.set_level(logging.INFO, logger="publisher.progress")
    now[0] = at(2)
    reporter.on_commit([stream])
    assert len(caplog.records) == 1
