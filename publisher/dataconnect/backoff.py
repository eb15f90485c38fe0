"""When to retry: exponential backoff with full jitter, and the ``Retry-After`` header.

Pure functions of their inputs; the random draw and the current time are passed in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from publisher.dataconnect.settings import RetrySettings


def backoff_delay(retry: RetrySettings, failures: int, draw: float) -> float:
    """Full jitter: uniform in [0, min(max_delay, base_delay * 2**(failures-1))).

    ``failures`` counts the failed tries so far (1 after the first); ``draw`` is in [0, 1).
    Full jitter spreads the retries of many threads that failed together, so they do not
    hit DataConnect again in lockstep.
    """
    ceiling = min(retry.max_delay, retry.base_delay * 2.0 ** min(failures - 1, 62))
    return draw * ceiling


def next_delay(
    retry: RetrySettings,
    failures: int,
    elapsed: float,
    retry_after: float | None,
    draw: float,
) -> float | None:
    """Seconds to sleep before the next try, or None when the fetch must give up.

    A server's ``Retry-After`` is a floor under the jittered delay. The fetch gives up when
    ``max_attempts`` tries have failed or when sleeping would carry it past ``max_elapsed``.
    """
    if failures >= retry.max_attempts:
        return None
    delay = backoff_delay(retry, failures, draw)
    if retry_after is not None:
        delay = max(delay, retry_after)
    if elapsed + delay > retry.max_elapsed:
        return None
    return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP date).

    None when absent or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
