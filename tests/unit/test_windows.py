"""Window arithmetic: no gap, no overlap beyond the configured one, watermark monotonic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from publisher.windows import Window, WindowSizer, plan_window, split_window

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_first_window_starts_at_origin_and_ends_at_size() -> None:
    w = plan_window(
        T0,
        T0 + timedelta(days=1),
        origin=T0,
        overlap=timedelta(minutes=5),
        settle_delay=timedelta(seconds=30),
        size=timedelta(hours=1),
    )
    assert w == Window(start=T0, stop=T0 + timedelta(hours=1), watermark=T0)


def test_window_end_is_capped_by_settle_delay() -> None:
    now = T0 + timedelta(minutes=10)
    w = plan_window(
        T0,
        now,
        origin=T0,
        overlap=timedelta(0),
        settle_delay=timedelta(seconds=30),
        size=timedelta(hours=1),
    )
    assert w is not None
    assert w.stop == now - timedelta(seconds=30)


def test_no_window_when_nothing_settled_beyond_watermark() -> None:
    now = T0 + timedelta(seconds=20)
    assert (
        plan_window(
            T0,
            now,
            origin=T0,
            overlap=timedelta(0),
            settle_delay=timedelta(seconds=30),
            size=timedelta(hours=1),
        )
        is None
    )


def test_split_halves_the_new_part_and_keeps_the_overlap() -> None:
    w = Window(start=T0 - timedelta(minutes=5), stop=T0 + timedelta(hours=1), watermark=T0)
    half = split_window(w, timedelta(seconds=1))
    assert half == Window(start=w.start, stop=T0 + timedelta(minutes=30), watermark=T0)
    tiny = Window(start=T0, stop=T0 + timedelta(seconds=1), watermark=T0)
    assert split_window(tiny, timedelta(seconds=1)) is None


def test_sizer_shrinks_on_413_and_grows_when_sparse() -> None:
    sizer = WindowSizer(
        size=timedelta(hours=1),
        min_size=timedelta(minutes=1),
        max_size=timedelta(hours=4),
        target_rows=1000,
    )
    sizer.too_large(timedelta(hours=1))
    assert sizer.size == timedelta(minutes=30)
    sizer.observed(timedelta(minutes=30), rows=10)
    assert sizer.size == timedelta(hours=1)
    for _ in range(5):
        sizer.observed(sizer.size, rows=0)
    assert sizer.size == timedelta(hours=4)  # never beyond max
    sizer.observed(timedelta(hours=4), rows=10_000)
    assert sizer.size == timedelta(hours=2)


@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=7200),  # seconds the clock advances
            st.integers(min_value=1, max_value=7200),  # window size in seconds
            st.booleans(),  # whether the window commits (else it is replayed)
        ),
        min_size=1,
        max_size=40,
    ),
    overlap_s=st.integers(min_value=0, max_value=900),
    settle_s=st.integers(min_value=0, max_value=120),
)
def test_windows_cover_time_without_gaps_and_watermark_never_moves_back(
    steps: list[tuple[int, int, bool]], overlap_s: int, settle_s: int
) -> None:
    overlap = timedelta(seconds=overlap_s)
    settle = timedelta(seconds=settle_s)
    watermark = T0
    now = T0
    covered_until = T0  # everything before this was inside a committed window
    for advance, size_s, commits in steps:
        now += timedelta(seconds=advance)
        w = plan_window(
            watermark,
            now,
            origin=T0,
            overlap=overlap,
            settle_delay=settle,
            size=timedelta(seconds=size_s),
        )
        if w is None:
            assert now - settle <= watermark
            continue
        assert w.start <= watermark < w.stop  # no gap: starts at or before the watermark
        assert watermark - w.start <= overlap  # overlap never beyond the configured one
        assert w.stop <= now - settle  # never asks for unsettled time
        assert w.start >= T0
        if commits:
            assert w.stop >= watermark
            covered_until = max(covered_until, w.stop)
            watermark = w.stop  # only a commit moves the watermark
    assert covered_until == watermark
