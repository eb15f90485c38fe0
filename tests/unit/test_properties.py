"""Properties the fault suite leans on, over generated inputs (hypothesis):

- a row becomes one event that keeps every field it carries (schema fields converted, unknown
  ones as JSON text in ``_extra``) and its version identity, and survives the Avro codec;
- any JSON object at all either becomes an event or is rejected with a reason: no other
  exception can stall a stream;
- after a 413 split the window still starts at the old one's start (no gap), moves the
  watermark forward and shrinks until the minimum; the sizer stays within its bounds.

(No gap, no overlap beyond the configured one and a monotonic watermark across commits and
replays are properties of tests/unit/test_windows.py.)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.codec import EntityCodec
from publisher.entities import TRACKING_FIELDS, EntitySpec, load_entities
from publisher.errors import RowRejected
from publisher.mapping import RowMapper
from publisher.windows import Window, WindowSizer, split_window

ENTITIES = load_entities()
CODECS = {name: EntityCodec(spec) for name, spec in ENTITIES.items()}
MAPPERS = {name: RowMapper(spec, source_name="s", version="v") for name, spec in ENTITIES.items()}
WINDOW = (1_700_000_000_000, 1_700_000_900_000)
NOW = 1_700_001_000_000

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # orjson reads larger integers as floats
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


# hypothesis takes naive bounds and attaches the zone itself.
EARLIEST = datetime(2000, 1, 1)  # noqa: DTZ001
LATEST = datetime(2099, 1, 1)  # noqa: DTZ001


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """Every DataConnect spelling: 0 to 7 fraction digits, with or without Z."""
    moment = draw(st.datetimes(EARLIEST, LATEST, timezones=st.just(UTC)))
    digits = draw(st.integers(0, 7))
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}0"[:digits]
    return text + ("Z" if draw(st.booleans()) else "")


def guids() -> st.SearchStrategy[str]:
    return st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())


def value_of(kind: str) -> st.SearchStrategy[Any]:
    """Values DataConnect sends for a field of this dc_kind (null and "" included)."""
    empty = st.sampled_from([None, ""])
    by_kind: dict[str, st.SearchStrategy[Any]] = {
        "guid": guids(),
        "int": st.integers(-(2**63), 2**63 - 1) | st.integers(-(10**9), 10**9).map(str),
        "string": st.text(max_size=40) | st.integers(-(10**12), 10**12),
        "phone": st.integers(0, 10**11) | st.text(max_size=15),
        "postal": st.integers(0, 99999) | st.text(max_size=10),
        "money": st.decimals(-(10**12), 10**12, places=4).map(float)
        | st.integers(-(10**12), 10**12),
        "bool": st.sampled_from([True, False, 0, 1, "true", "FALSE", "1", "0"]),
        "flag": st.sampled_from([True, False, "True", "false"]),
        "timestamp": timestamps(),
    }
    return empty | by_kind[kind]


def key_of(spec: EntitySpec) -> st.SearchStrategy[Any]:
    kind = next(f.kind for f in spec.fields if f.name == spec.key_field)
    return guids() if kind == "guid" else st.integers(1, 2**62)


@st.composite
def rows(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A well-formed row of a random entity: some schema fields, unknown extra columns, the
    tracking columns, in a random order."""
    name = draw(st.sampled_from(sorted(ENTITIES)))
    spec = ENTITIES[name]
    row: dict[str, Any] = {}
    for f in spec.fields:
        if f.name != spec.key_field and draw(st.booleans()):
            row[f.name] = draw(value_of(f.kind))
    known = spec.field_names | set(TRACKING_FIELDS)
    extra_names = st.text(min_size=1, max_size=12).filter(lambda n: n not in known)
    row.update(draw(st.dictionaries(extra_names, json_values, max_size=4)))
    row[spec.key_field] = draw(key_of(spec))
    event = draw(st.sampled_from(["Added", "Updated", "Deleted", "added", "DELETED"]))
    row["RowThumbprint"] = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    row["RowInserted"] = draw(timestamps())
    row["RowUpdated"] = "" if event == "Added" else draw(timestamps() | st.just(""))
    row["RowEvent"] = event
    order = draw(st.permutations(list(row)))
    return name, {k: row[k] for k in order}


@settings(max_examples=30, deadline=None)
@given(rows())
def test_a_row_keeps_every_field_and_its_version_through_mapping_and_avro(
    drawn: tuple[str, dict[str, Any]],
) -> None:
    name, row = drawn
    spec = ENTITIES[name]
    kinds = {f.name: f.kind for f in spec.fields}
    event = MAPPERS[name].map(row, *WINDOW, NOW)

    # The version: key, thumbprint, operation and change time identify it downstream.
    assert event.thumbprint == row["RowThumbprint"]
    assert event.key.lower() == str(row[spec.key_field]).lower()
    assert event.op == {"added": "c", "updated": "u", "deleted": "d"}[row["RowEvent"].lower()]
    src = event.record["source"]
    assert (src["row_thumbprint"], src["row_event"]) == (row["RowThumbprint"], row["RowEvent"])

    # Every field: schema fields where the schema puts them, unknown ones as JSON text.
    value = event.record["before" if event.op == "d" else "after"]
    assert event.record["after" if event.op == "d" else "before"] is None
    assert set(value) == set(kinds) | {"_extra"}
    unknown = {k: v for k, v in row.items() if k not in kinds and k not in TRACKING_FIELDS}
    assert {k: orjson.loads(v) for k, v in value["_extra"].items()} == unknown
    assert set(event.unknown_fields) == set(unknown)
    for field, kind in kinds.items():
        raw = row.get(field)
        if raw is None or (raw == "" and kind not in ("string", "phone", "postal")):
            assert value[field] is None, field
        elif kind in ("string", "phone", "postal"):
            assert value[field] == (raw if isinstance(raw, str) else str(raw)), field
        elif kind == "money":
            assert value[field] == Decimal(repr(raw)).quantize(Decimal("0.0001")), field
        else:
            assert value[field] is not None, field

    # And the Avro record carries all of it: decode(encode(x)) == x.
    codec = CODECS[name]
    assert codec.decode(codec.encode(event.record)) == event.record


garbage_rows = st.dictionaries(
    st.sampled_from(
        sorted({f.name for s in ENTITIES.values() for f in s.fields} | set(TRACKING_FIELDS))
    )
    | st.text(max_size=10),
    json_values | timestamps() | guids(),
    max_size=12,
)


@st.composite
def damaged_rows(draw: st.DrawFn) -> tuple[str, Any]:
    """A well-formed row with some columns given any JSON value, or removed: often the key
    or a tracking column, whose checks come first."""
    name, row = draw(rows())
    vital = [ENTITIES[name].key_field, *TRACKING_FIELDS]
    columns = [c for c in vital if draw(st.integers(0, 3)) == 0]
    columns += draw(st.lists(st.sampled_from(sorted(row)), max_size=3, unique=True))
    for column in dict.fromkeys(columns):
        if draw(st.integers(0, 3)) == 0:
            row.pop(column, None)
        else:
            row[column] = draw(st.text(max_size=12) | json_values)
    if draw(st.integers(0, 2)) == 0:  # the RowEvent set is open: any text may come
        row["RowEvent"] = draw(st.text(min_size=1, max_size=12))
    return name, row


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        damaged_rows(),
        damaged_rows(),
        st.tuples(st.sampled_from(sorted(ENTITIES)), garbage_rows | json_values),
    )
)
def test_any_json_becomes_an_event_or_a_rejection_never_another_error(
    drawn: tuple[str, Any],
) -> None:
    name, row = drawn
    try:
        event = MAPPERS[name].map(row, *WINDOW, NOW)
    except RowRejected as exc:
        assert exc.reason in {
            "not_an_object",
            "missing_key",
            "missing_thumbprint",
            "unknown_row_event",
            "bad_timestamp",
            "bad_value",
        }
        return
    try:
        CODECS[name].encode(event.record)
    except RowRejected as exc:
        assert exc.reason == "bad_value"


ms_moments = st.integers(1_600_000_000_000, 1_900_000_000_000).map(
    lambda ms: datetime.fromtimestamp(ms / 1000, UTC)
)


@given(
    watermark=ms_moments,
    overlap_ms=st.integers(0, 3_600_000),
    span_ms=st.integers(1, 86_400_000),
    min_ms=st.integers(1, 600_000),
)
def test_413_splits_keep_the_start_and_shrink_to_the_minimum(
    watermark: datetime, overlap_ms: int, span_ms: int, min_ms: int
) -> None:
    window = Window(
        start=watermark - timedelta(milliseconds=overlap_ms),
        stop=watermark + timedelta(milliseconds=span_ms),
        watermark=watermark,
    )
    min_size = timedelta(milliseconds=min_ms)
    splits = 0
    while (smaller := split_window(window, min_size)) is not None:
        # No gap: the half re-reads the same start (overlap included) and still moves on.
        assert smaller.start == window.start
        assert smaller.watermark == watermark
        assert watermark < smaller.stop < window.stop
        assert smaller.new_span >= min_size - timedelta(milliseconds=1)
        window = smaller
        splits += 1
        assert splits < 64
    assert window.new_span <= min_size or splits == 0


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["too_large", "accepted_after_split", "observed"]),
            st.integers(1, 3_600_000),  # span in ms: a window is never above max_size
            st.integers(0, 10**6),  # rows
        ),
        max_size=50,
    )
)
def test_window_sizer_stays_within_its_bounds(steps: list[tuple[str, int, int]]) -> None:
    lo, hi = timedelta(seconds=1), timedelta(hours=1)
    sizer = WindowSizer(size=timedelta(minutes=15), min_size=lo, max_size=hi, target_rows=5000)
    for action, span_ms, count in steps:
        span = timedelta(milliseconds=span_ms)
        if action == "observed":
            sizer.observed(span, count)
        else:
            getattr(sizer, action)(span)
        assert lo <= sizer.size <= hi
