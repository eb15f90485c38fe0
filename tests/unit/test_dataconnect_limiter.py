"""limiter.py: AIMD in-flight limit, one halving per overload, and a hard cap across threads."""

from __future__ import annotations

import threading
import time

import pytest

from publisher.dataconnect import InFlightLimiter


def test_starts_at_the_maximum_and_never_grows_past_it() -> None:
    limiter = InFlightLimiter(4)
    for _ in range(100):
        limiter.record_success()
    assert limiter.limit == 4


def test_429_halves_and_successes_add_one_per_limits_worth() -> None:
    limiter = InFlightLimiter(8)
    with limiter.slot() as ticket:
        assert limiter.record_throttled(ticket)
    assert limiter.limit == 4
    limits = []
    for _ in range(4 + 5):
        limiter.record_success()
        limits.append(limiter.limit)
    # About a limit's worth of successes add one: 1/4 + 1/4.25 + ... reaches 5 at the fifth.
    assert limits[:3] == [4, 4, 4]
    assert limits[4] == 5
    assert limits == sorted(limits)


def test_requests_of_one_overload_halve_the_limit_once() -> None:
    limiter = InFlightLimiter(8)
    tickets = [limiter.acquire() for _ in range(8)]
    shrank = [limiter.record_throttled(t) for t in tickets]
    for _ in tickets:
        limiter.release()
    assert shrank == [True] + [False] * 7
    assert limiter.limit == 4
    # A request sent after the shrink that is throttled again halves it again.
    with limiter.slot() as ticket:
        assert limiter.record_throttled(ticket)
    assert limiter.limit == 2


def test_never_below_one() -> None:
    limiter = InFlightLimiter(2)
    for _ in range(5):
        with limiter.slot() as ticket:
            limiter.record_throttled(ticket)
    assert limiter.limit == 1
    with limiter.slot():
        assert limiter.in_flight == 1
    assert limiter.in_flight == 0


def test_release_without_acquire_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        InFlightLimiter(1).release()
    with pytest.raises(ValueError):
        InFlightLimiter(0)


def _blocked_acquirer(limiter: InFlightLimiter) -> tuple[threading.Thread, threading.Event]:
    acquired = threading.Event()

    def run() -> None:
        limiter.acquire()
        acquired.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, acquired


def test_a_shrink_holds_waiters_until_in_flight_drops_below_the_new_limit() -> None:
    limiter = InFlightLimiter(4)
    tickets = [limiter.acquire() for _ in range(4)]
    limiter.record_throttled(tickets[0])
    thread, acquired = _blocked_acquirer(limiter)
    limiter.release()
    limiter.release()
    assert not acquired.wait(0.05)  # 2 in flight, limit 2: still full
    limiter.release()
    assert acquired.wait(2)
    thread.join()
    assert limiter.in_flight == 2


def test_growth_wakes_waiters() -> None:
    limiter = InFlightLimiter(2)
    ticket = limiter.acquire()
    limiter.record_throttled(ticket)
    thread, acquired = _blocked_acquirer(limiter)
    assert not acquired.wait(0.05)
    limiter.record_success()  # 1 -> 2
    assert acquired.wait(2)
    thread.join()
    assert limiter.in_flight == 2


def test_threads_never_exceed_the_limit() -> None:
    limiter = InFlightLimiter(3)
    lock = threading.Lock()
    active = peak = 0

    def worker() -> None:
        nonlocal active, peak
        for _ in range(10):
            with limiter.slot():
                with lock:
                    active += 1
                    peak = max(peak, active)
                time.sleep(0.001)
                with lock:
                    active -= 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 3
    assert limiter.in_flight == 0
