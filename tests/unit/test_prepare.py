"""Preparing a window on the fetch thread: keys, values, headers, order, skips and refusals."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from publisher.checkpoint import row_digest
from publisher.codec import EntityCodec
from publisher.entities import load_entities
from publisher.errors import RowRejected
from publisher.mapping import RowMapper
from publisher.prepare import Event, StreamShape, encode_late, header_bytes, prepare
from publisher.service import base_headers
from publisher.windows import Window

ENTITIES = load_entities()
SPEC = ENTITIES["AccountsReceivable"]
T0 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(hours=1), T0)
NOW_MS = 1_772_400_000_000


def shape(**codec: Any) -> StreamShape:
    return StreamShape(
        "src/AccountsReceivable",
        RowMapper(SPEC, source_name="src", version="9.9.9"),
        EntityCodec(SPEC, **codec),
        "src:",
        "!",
        base_headers("src", "AccountsReceivable"),
    )


def row(key: int, minute: int, event: str = "Added", **extra: Any) -> dict[str, Any]:
    changed = (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
    return {
        SPEC.key_field: key,
        "RowThumbprint": f"thumb-{key}-{minute}-{event}",
        "RowInserted": changed,
        "RowUpdated": "" if event == "Added" else changed,
        "RowEvent": event,
        **extra,
    }


def test_events_carry_key_value_and_headers_in_change_time_order() -> None:
    rows = [row(1, 30, "Updated"), row(2, 5), row(1, 10), row(3, 30, "Deleted")]
    s = shape()
    out = prepare(s, WINDOW, rows, now_ms=NOW_MS)
    assert out.rows == 4
    assert out.rejected == []
    # Change-time order; the tie at minute 30 keeps the response's order.
    assert [e.key for e in out.events] == [b"src:2!", b"src:1!", b"src:1!", b"src:3!"]
    assert [e.op for e in out.events] == ["c", "c", "u", "d"]
    first = out.events[0]
    assert first.digest == row_digest("2", "thumb-2-5-Added")
    assert first.row is None  # encoded: the parsed row is not kept
    assert isinstance(first.value, bytes)
    record = s.codec.decode(first.value)
    assert record["ts_ms"] == NOW_MS
    assert record["source"]["window_start"] == WINDOW.start_ms
    assert dict(first.headers) == {
        "dc-connector": b"dataconnect-publisher",
        "dc-source": b"src",
        "dc-entity": b"AccountsReceivable",
        "dc-op": b"c",
        "idempotency-key": b"src/AccountsReceivable/2/thumb-2-5-Added",
    }


def test_rows_to_skip_are_not_encoded_but_kept_for_a_late_encoding() -> None:
    rows = [row(1, 1), row(2, 2)]
    s = shape()
    skip = {row_digest("1", "thumb-1-1-Added")}
    out = prepare(s, WINDOW, rows, now_ms=NOW_MS, skip=skip)
    skipped, encoded = out.events
    assert skipped.value is None
    assert skipped.row is rows[0]
    assert isinstance(encoded.value, bytes)
    late = encode_late(s, skipped, WINDOW, NOW_MS)
    assert late == prepare(s, WINDOW, rows[:1], now_ms=NOW_MS).events[0].value


def test_refused_rows_keep_their_source_row_for_the_dead_letter() -> None:
    money = next(f.name for f in SPEC.fields if f.kind == "money")
    too_big = row(1, 1, **{money: Decimal("1e30")})  # not JSON-like: the mapper refuses it
    not_object = ["not", "a", "row"]
    out = prepare(shape(), WINDOW, [too_big, not_object, row(2, 2)], now_ms=NOW_MS)
    assert [(r, e.reason) for r, e in out.rejected] == [
        (too_big, "bad_value"),
        (not_object, "not_an_object"),
    ]
    assert [e.key for e in out.events] == [b"src:2!"]


def test_a_record_the_encoder_refuses_becomes_a_rejection_with_its_row() -> None:
    text = next(f.name for f in SPEC.fields if f.kind == "string")
    rows = [row(1, 1, **{text: "lone \ud800 surrogate"})]  # a str no UTF-8 can hold
    (event,) = prepare(shape(), WINDOW, rows, now_ms=NOW_MS).events
    assert isinstance(event.value, RowRejected)
    assert event.value.reason == "bad_value"
    assert event.row is rows[0]


def test_a_prepared_window_pickles_to_the_same_events_and_rejections() -> None:
    # How a decode process sends a window back: events as plain tuples, rebuilt as Events.
    rows = [row(k, k % 40, ("Added", "Updated", "Deleted")[k % 3]) for k in range(60)]
    rows.append(["not", "a", "row"])
    skip = frozenset({prepare(shape(), WINDOW, rows[:1], now_ms=NOW_MS).events[0].digest})
    out = prepare(shape(), WINDOW, rows, now_ms=NOW_MS, skip=skip)
    back = pickle.loads(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301 - ours
    assert (back.window, back.rows, back.events) == (out.window, out.rows, out.events)
    assert all(type(e) is Event for e in back.events)
    assert any(e.value is None and e.row == rows[0] for e in back.events)  # skipped, row kept
    assert [(r, e.reason, e.detail) for r, e in back.rejected] == [
        (r, e.reason, e.detail) for r, e in out.rejected
    ]


def test_a_record_over_the_size_limit_is_refused_whole_with_its_row() -> None:
    # A record larger than the topic takes would abort every transaction carrying it; the row
    # goes to the dead-letter topic instead, with its source row for the raw JSON.
    text = next(f.name for f in SPEC.fields if f.kind == "string")
    small, big = row(1, 1), row(2, 2, **{text: "x" * 5000})
    (event,) = prepare(shape(), WINDOW, [dict(big)], now_ms=NOW_MS).events
    assert isinstance(event.value, bytes)
    size = len(event.value) + len(event.key) + header_bytes(event.headers)  # what Kafka gets
    limited = dataclasses.replace(shape(), max_record_bytes=size - 1)
    out = prepare(limited, WINDOW, [small, big], now_ms=NOW_MS)
    kept, refused = out.events
    assert isinstance(kept.value, bytes) and kept.row is None
    assert isinstance(refused.value, RowRejected) and refused.row is big
    assert refused.value.reason == "too_large"
    assert f"would be {size:,} bytes, over publisher.max_record_bytes = {size - 1:,}" in str(
        refused.value
    )
    # Exactly at the limit is published.
    exact = dataclasses.replace(shape(), max_record_bytes=size)
    assert isinstance(prepare(exact, WINDOW, [dict(big)], now_ms=NOW_MS).events[0].value, bytes)


def test_a_late_encoding_refuses_a_record_over_the_size_limit_too() -> None:
    text = next(f.name for f in SPEC.fields if f.kind == "string")
    big = row(2, 2, **{text: "x" * 5000})
    s = shape()
    (encoded,) = prepare(s, WINDOW, [dict(big)], now_ms=NOW_MS).events
    assert isinstance(encoded.value, bytes)
    size = len(encoded.value) + len(encoded.key) + header_bytes(encoded.headers)
    limited = dataclasses.replace(s, max_record_bytes=size - 1)
    (skipped,) = prepare(limited, WINDOW, [big], now_ms=NOW_MS, skip={encoded.digest}).events
    assert skipped.value is None  # not encoded: an earlier window had it
    with pytest.raises(RowRejected, match="too_large"):
        encode_late(limited, skipped, WINDOW, NOW_MS)
    assert encode_late(dataclasses.replace(s, max_record_bytes=size), skipped, WINDOW, NOW_MS)
