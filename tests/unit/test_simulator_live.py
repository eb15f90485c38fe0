"""Live mode: changes keep arriving as the injected clock moves, some of them late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import orjson

from publisher.simulator import ManualClock, Simulator, SimulatorSettings
from publisher.timefmt import parse_timestamp

START = datetime(2024, 2, 1, tzinfo=UTC)
END = datetime(2024, 2, 2, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def live(**overrides: Any) -> tuple[Simulator, ManualClock]:
    clock = ManualClock(END)
    settings = SimulatorSettings(
        **{
            "default_rows": 300,
            "profiles": 16,
            "history_start": START,
            "history_end": END,
            "live": True,
            "rate": 10.0,
            "block_size": 64,
            **overrides,
        }
    )
    return Simulator(settings, clock), clock


def thumbs(sim: Simulator, entity: str, start: datetime, stop: datetime) -> set[str]:
    return {orjson.loads(r)["RowThumbprint"] for r in sim.changes(entity, start, stop)}


def test_new_versions_appear_at_the_configured_rate_as_time_passes() -> None:
    sim, clock = live()
    assert sim.changes("Customers", END, END + 10 * MINUTE) == []
    clock.advance(60)
    arrived = sim.changes("Customers", END, END + 10 * MINUTE)
    assert 540 <= len(arrived) <= 610
    rows = [orjson.loads(r) for r in arrived]
    times = [parse_timestamp(r["RowUpdated"] or r["RowInserted"]) for r in rows]
    assert all(t is not None and END <= t <= END + MINUTE for t in times)


def test_without_live_mode_nothing_arrives_after_the_history() -> None:
    sim, clock = live(live=False)
    clock.advance(3600)
    assert sim.changes("Customers", END, END + 120 * MINUTE) == []


def test_late_rows_land_in_windows_already_polled_but_no_later_than_late_delay() -> None:
    sim, clock = live(late_fraction=0.3, late_delay=30.0)
    clock.advance(60)
    first = thumbs(sim, "Customers", END, END + MINUTE)
    clock.advance(25)
    later = thumbs(sim, "Customers", END, END + MINUTE)
    clock.advance(5)  # now 30 s (late_delay) after the window's end: it is final
    final = thumbs(sim, "Customers", END, END + MINUTE)
    clock.advance(600)
    assert thumbs(sim, "Customers", END, END + MINUTE) == final
    assert first < later < final
    late_share = (len(final) - len(first)) / len(final)
    assert 0.05 < late_share < 0.3


def test_late_rows_carry_a_change_time_before_they_became_visible() -> None:
    sim, clock = live(late_fraction=0.5, late_delay=30.0)
    clock.set(END + MINUTE)
    seen_at_60 = thumbs(sim, "Customers", END, END + MINUTE)
    clock.set(END + 2 * MINUTE)
    late = [
        orjson.loads(raw)
        for raw in sim.changes("Customers", END, END + MINUTE)
        if orjson.loads(raw)["RowThumbprint"] not in seen_at_60
    ]
    assert late
    for row in late:
        changed = parse_timestamp(row["RowUpdated"] or row["RowInserted"])
        assert changed is not None
        assert END + timedelta(seconds=30) <= changed < END + MINUTE


def test_live_history_is_deterministic_and_windows_add_up() -> None:
    (a, clock_a), (b, clock_b) = live(late_fraction=0.2), live(late_fraction=0.2)
    clock_a.advance(300)
    clock_b.advance(300)
    whole = a.changes("Activities", START, END + 10 * MINUTE)
    assert whole == b.changes("Activities", START, END + 10 * MINUTE)
    cuts = [START, END - MINUTE, END, END + MINUTE, END + 2 * MINUTE, END + 10 * MINUTE]
    pieces: list[bytes] = []
    for lo, hi in pairwise(cuts):
        pieces.extend(a.changes("Activities", lo, hi))
    assert sorted(pieces) == sorted(whole)
    assert len(pieces) == len(whole)
