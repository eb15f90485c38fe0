"""The simulator's change history: deterministic, consistent per key, windows add up."""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import orjson
import pytest

from publisher.entities import load_entities
from publisher.simulator import ManualClock, Simulator, SimulatorSettings
from publisher.simulator.data import Dataset
from publisher.simulator.testing import kind_matches
from publisher.timefmt import parse_timestamp

START = datetime(2024, 2, 1, tzinfo=UTC)
END = datetime(2024, 2, 2, tzinfo=UTC)
ENTITIES = load_entities()
KEYS = {name: spec.key_field for name, spec in ENTITIES.items()}


def make(**overrides: Any) -> Simulator:
    settings = SimulatorSettings(
        **{
            "default_rows": 3000,
            "profiles": 64,
            "history_start": START,
            "history_end": END,
            **overrides,
        }
    )
    return Simulator(settings, ManualClock(END))


def rows_of(
    sim: Simulator, entity: str, start: datetime = START, stop: datetime = END
) -> list[Any]:
    return [orjson.loads(r) for r in sim.changes(entity, start, stop)]


def change_time(row: dict[str, Any]) -> datetime:
    moment = parse_timestamp(row["RowUpdated"] or row["RowInserted"])
    assert moment is not None
    return moment


def test_same_seed_gives_identical_bytes_and_another_seed_does_not() -> None:
    for entity in ENTITIES:
        first = make(seed=5, default_rows=400).changes(entity, START, END)
        again = make(seed=5, default_rows=400).changes(entity, START, END)
        other = make(seed=6, default_rows=400).changes(entity, START, END)
        assert first == again
        assert first != other


def test_history_holds_about_the_requested_number_of_versions() -> None:
    sim = make(default_rows=2000, rows={"Customers": 5000})
    assert 4900 <= len(sim.changes("Customers", START, END)) <= 5000
    assert 1950 <= len(sim.changes("Discussions", START, END)) <= 2000


@pytest.mark.parametrize("entity", sorted(ENTITIES))
def test_every_key_has_a_consistent_version_history(entity: str) -> None:
    rows = rows_of(make(), entity)
    key = KEYS[entity]
    by_key: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_key[row[key]].append(row)
    thumbprints = Counter(row["RowThumbprint"] for row in rows)
    assert thumbprints.most_common(1)[0][1] == 1, "a RowThumbprint is fresh per version"
    events = Counter(row["RowEvent"] for row in rows)
    assert set(events) == {"Added", "Updated", "Deleted"}
    for versions in by_key.values():
        first, *later = versions  # response order is change-time order
        assert first["RowEvent"] == "Added"
        assert first["RowUpdated"] == ""
        for version in later:
            assert version["RowEvent"] in ("Updated", "Deleted")
            inserted = parse_timestamp(version["RowInserted"])
            assert inserted == parse_timestamp(first["RowInserted"])
            assert change_time(version) > change_time(first)
        assert all(v["RowEvent"] != "Deleted" for v in versions[:-1]), "nothing after a delete"
        if entity != "Discussions":
            location = "StoreLocationID" if entity == "Customers" else "LocationID"
            assert len({v[location] for v in versions}) == 1, "a row stays at its store"


def test_rows_come_in_change_time_order_with_ties_and_multi_version_windows() -> None:
    rows = rows_of(make(), "Customers")
    times = [change_time(r) for r in rows]
    assert times == sorted(times)
    assert len(set(times)) < len(times), "some versions share a timestamp"
    quarter = timedelta(minutes=15)
    windows = Counter((t - START) // quarter for t in times)
    keys_in_window: Counter[tuple[int, str]] = Counter(
        ((t - START) // quarter, r["CustomerID"]) for t, r in zip(times, rows, strict=True)
    )
    assert max(keys_in_window.values()) >= 2, "one key changes twice inside a 15-minute window"
    assert len(windows) > 50


def test_adjacent_windows_add_up_to_the_whole_range() -> None:
    sim = make()
    whole = sim.changes("Activities", START, END)
    cuts = [START + timedelta(minutes=m) for m in (0, 7, 61, 62, 300, 301, 900)] + [END]
    # cut exactly on some row's change time too, so a tie straddles no boundary unnoticed
    cuts.insert(3, change_time(orjson.loads(whole[100])))
    cuts.sort()
    pieces = [row for a, b in pairwise(cuts) for row in sim.changes("Activities", a, b)]
    assert pieces == whole


@pytest.mark.parametrize("block_size", [45, 64, 257])
def test_windows_on_a_fine_grid_add_up_for_any_block_geometry(block_size: int) -> None:
    sim = make(block_size=block_size, default_rows=1500)
    whole = sim.changes("FollowUps", START, END)
    grid = [START + timedelta(minutes=10 * i) for i in range(145)]
    pieces = [row for a, b in pairwise(grid) for row in sim.changes("FollowUps", a, b)]
    assert pieces == whole


def test_keys_are_unique_among_added_rows_and_int_keys_count_up() -> None:
    sim = make()
    for entity in ("Customers", "Activities"):
        added = [r[KEYS[entity]] for r in rows_of(sim, entity) if r["RowEvent"] == "Added"]
        assert len(added) == len(set(added))
    ids = [r["ActivityID"] for r in rows_of(sim, "Activities") if r["RowEvent"] == "Added"]
    assert all(isinstance(i, int) and i > 0 for i in ids)


def test_deleted_rows_can_carry_only_the_key_and_tracking_columns() -> None:
    full = [r for r in rows_of(make(), "Customers") if r["RowEvent"] == "Deleted"]
    bare = [
        r for r in rows_of(make(deleted_rows="key_only"), "Customers") if r["RowEvent"] == "Deleted"
    ]
    assert full and len(full) == len(bare)
    assert "City" in full[0]
    assert all(
        set(r) == {"CustomerID", "RowThumbprint", "RowInserted", "RowUpdated", "RowEvent"}
        for r in bare
    )
    assert [r["RowThumbprint"] for r in full] == [r["RowThumbprint"] for r in bare]


def test_bad_rows_of_every_kind_are_part_of_the_ground_truth() -> None:
    rows = rows_of(make(bad_row_rate=0.2, huge_string_chars=5000, default_rows=1500), "Customers")
    known = {f.name for f in ENTITIES["Customers"].fields} | {
        "RowThumbprint",
        "RowInserted",
        "RowUpdated",
        "RowEvent",
    }
    missing_key = [r for r in rows if "CustomerID" not in r]
    unknown_event = [r for r in rows if r["RowEvent"] not in ("Added", "Updated", "Deleted")]
    extra = [r for r in rows if set(r) - known]
    huge = [r for r in rows if any(isinstance(v, str) and len(v) >= 5000 for v in r.values())]
    control = [r for r in rows if any(isinstance(v, str) and "\u0000" in v for v in r.values())]
    kinds = {f.name: f.kind for f in ENTITIES["Customers"].fields}
    wrong = [
        r
        for r in rows
        if any(name in r and not kind_matches(kind, r[name]) for name, kind in kinds.items())
    ]
    for found in (missing_key, unknown_event, extra, huge, control, wrong):
        assert found
    assert sum(map(len, (missing_key, unknown_event, extra, huge, control))) / len(rows) > 0.1


def test_generation_stays_inside_the_cache_budget() -> None:
    settings = SimulatorSettings(
        default_rows=0,
        rows={"Customers": 12_000},
        profiles=16,
        cache_mb=1,
        history_start=START,
        history_end=END,
    )
    dataset = Dataset(settings, ENTITIES, END)
    history = dataset.history("Customers")
    total = len(history.rows(0, 2**62, 2**62, None))
    assert total > 11_500  # about 15 MB of JSON went through a 1 MB cache
    assert dataset.cache_bytes <= 2**20 + 400_000  # budget plus at most one block


@pytest.mark.parametrize("level", [None, 1])
def test_prerender_compresses_each_block_once_when_asked(level: int | None) -> None:
    settings = SimulatorSettings(
        default_rows=0, rows={"Customers": 4000}, profiles=16, history_start=START, history_end=END
    )
    dataset = Dataset(settings, ENTITIES, END)
    history = dataset.history("Customers")
    assert dataset.prerender(level) == sum(
        len(history.block(j).rows) for j in range(history.history_blocks)
    )
    blocks = [history.block(j) for j in range(history.history_blocks)]
    if level is None:
        assert all(b.deflated is None for b in blocks)
    else:  # the stream a gzip answer stitches in: the rows joined with ","
        assert all(b.deflated == deflated(b",".join(b.rows), level) for b in blocks)


def deflated(data: bytes, level: int) -> bytes:
    squeezer = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return squeezer.compress(data) + squeezer.flush(zlib.Z_SYNC_FLUSH)
