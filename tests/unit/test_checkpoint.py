"""The checkpoint record and the overlap set that survive restarts."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from publisher.checkpoint import Checkpoint, SeenSet, latest, row_digest

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_digest_depends_on_key_and_thumbprint() -> None:
    a = row_digest("42", "aa60b3b5-d0dd-47aa-84d8-05bd6d9e7326")
    assert a == row_digest("42", "aa60b3b5-d0dd-47aa-84d8-05bd6d9e7326")
    assert a != row_digest("43", "aa60b3b5-d0dd-47aa-84d8-05bd6d9e7326")
    assert a != row_digest("42", "aa60b3b5-d0dd-47aa-84d8-05bd6d9e7327")
    assert 0 <= a < 2**64


def test_prune_forgets_only_windows_stopped_before_the_next_start() -> None:
    seen = SeenSet()
    seen.add(1, 1000)
    seen.add(2, 2000)
    seen.add(3, 3000)
    seen.prune(2000)
    assert 1 not in seen
    assert 2 in seen  # equal: kept, in case the source treats StopDate as inclusive
    assert 3 in seen


@given(st.dictionaries(st.integers(0, 2**64 - 1), st.integers(0, 2**45), max_size=200))
def test_seen_set_round_trips_through_json(entries: dict[int, int]) -> None:
    assert SeenSet.from_json(SeenSet(entries).to_json()).entries == entries


def test_checkpoint_round_trip_and_latest_per_stream() -> None:
    seen = SeenSet({row_digest("k", "t"): 1_700_000_000_000})
    a1 = Checkpoint("src/Customers", T0, T0, seen, rows_published=5, updated_at=T0)
    a2 = Checkpoint("src/Customers", datetime(2026, 1, 2, tzinfo=UTC), T0, rows_published=9)
    b = Checkpoint("src/FollowUps", T0, T0, last_error="boom", state="stopped")
    decoded = Checkpoint.decode(a1.encode())
    assert decoded == a1
    got = latest(
        [
            (b"src/Customers", a1.encode()),
            (b"src/FollowUps", b.encode()),
            (b"src/Customers", a2.encode()),
        ]
    )
    assert got["src/Customers"].rows_published == 9
    assert got["src/FollowUps"].last_error == "boom"
    assert latest([(b"src/FollowUps", b.encode()), (b"src/FollowUps", None)]) == {}
