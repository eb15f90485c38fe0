"""backoff.py: exact full-jitter delays, the retry budget, and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from publisher.dataconnect.backoff import backoff_delay, next_delay, parse_retry_after
from publisher.dataconnect.settings import RetrySettings

RETRY = RetrySettings(max_attempts=8, base_delay=0.5, max_delay=5.0, max_elapsed=60.0)
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_delay_doubles_up_to_the_cap_and_scales_with_the_draw() -> None:
    assert [backoff_delay(RETRY, n, 1.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_delay(RETRY, 3, 0.25) == 0.5
    assert backoff_delay(RETRY, 3, 0.0) == 0.0
    assert backoff_delay(RETRY, 10_000, 0.5) == 2.5  # no overflow after many failures


def test_gives_up_after_max_attempts() -> None:
    assert next_delay(RETRY, 7, 0.0, None, 0.5) == 2.5
    assert next_delay(RETRY, 8, 0.0, None, 0.5) is None


def test_gives_up_when_the_sleep_would_pass_max_elapsed() -> None:
    assert next_delay(RETRY, 3, 58.0, None, 1.0) == 2.0
    assert next_delay(RETRY, 3, 58.5, None, 1.0) is None


def test_retry_after_is_a_floor_and_counts_against_the_budget() -> None:
    assert next_delay(RETRY, 1, 0.0, 7.0, 0.5) == 7.0  # longer than max_delay: honoured
    assert next_delay(RETRY, 4, 0.0, 0.1, 1.0) == 4.0  # shorter than the backoff
    assert next_delay(RETRY, 1, 0.0, 61.0, 0.5) is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wed, 01 May 2024 11:59:00 GMT", 0.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Wed, 01 May 2024 12:00:30 -0000", 30.0),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_retry_after_date_is_measured_from_the_wall_clock() -> None:
    later = NOW + timedelta(hours=1)
    assert parse_retry_after("Wed, 01 May 2024 13:00:10 GMT", later) == 10.0
