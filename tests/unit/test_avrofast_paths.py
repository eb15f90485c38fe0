"""The generated encoder's inline paths write fastavro's bytes at every edge.

The inline varint code has one case per varint size and reads the value's bits from tables
without computing its zig-zag; string lengths come from one table with a fallback; records used
in one or two places are written inline, reusing variable names. Each of these has edges the
random tests in test_avro_fast.py rarely hit: they are enumerated here.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from publisher.avrofast import EncodeError, compile_encoder
from publisher.avrofast.codegen import Unfit
from publisher.avrofast.explain import FASTAVRO_ERRORS
from publisher.avrofast.wire import (
    GROUP,
    GROUP_EVEN,
    LONG_MAX,
    LONG_MIN,
    SMALL,
    SMALL_EVEN,
    SMALL_ODD,
    varint,
)

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
MISSES: tuple[type[Exception], ...] = (Unfit, *FASTAVRO_ERRORS)

#: Both sides of every power of two up to 2**65, both signs: every varint size change of the
#: value, of its zig-zag, and of the tables' 13/14-bit steps, plus the int32/int64 ends.
EDGES = sorted(
    {s * 2**k + d for k in range(66) for s in (1, -1) for d in (-2, -1, 0, 1, 2)}
    | {LONG_MIN - 1, LONG_MIN, LONG_MAX, LONG_MAX + 1, INT_MIN - 1, INT_MIN, INT_MAX, INT_MAX + 1}
)


def fastavro_bytes(schema: Any, value: Any) -> bytes | None:
    buf = io.BytesIO()
    try:
        schemaless_writer(buf, schema, value)
    except FASTAVRO_ERRORS:
        return None
    return buf.getvalue()


def fast_bytes(encode: Any, value: Any) -> bytes | None:
    try:
        body: bytes = encode.fast_path(value)
    except MISSES:
        return None
    return body


def _record(ftype: Any) -> dict[str, Any]:
    return {"type": "record", "name": "Top", "fields": [{"name": "f", "type": ftype}]}


MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
LOCAL_MILLIS = {"type": "long", "logicalType": "local-timestamp-millis"}
DATE = {"type": "int", "logicalType": "date"}


@pytest.mark.parametrize(
    ("ftype", "low", "high"),
    [
        ("long", LONG_MIN, LONG_MAX),
        ("int", INT_MIN, INT_MAX),
        (["null", "long"], LONG_MIN, LONG_MAX),
        (["null", "int"], INT_MIN, INT_MAX),
        (["long", "null"], LONG_MIN, LONG_MAX),
        (MILLIS, LONG_MIN, LONG_MAX),
        (["null", MILLIS], LONG_MIN, LONG_MAX),
        (LOCAL_MILLIS, LONG_MIN, LONG_MAX),
        (DATE, INT_MIN, INT_MAX),
        (["int", "long"], LONG_MIN, LONG_MAX),  # two range guards: kept, then the writers'
        (["long", "double"], None, None),  # out of range: the double
        ({"type": "array", "items": "long"}, LONG_MIN, LONG_MAX),
        ({"type": "map", "values": ["null", "int"]}, INT_MIN, INT_MAX),
    ],
)
def test_every_varint_size_and_range_end(ftype: Any, low: int | None, high: int | None) -> None:
    schema = parse_schema(_record(ftype))
    encode = compile_encoder(schema)
    kind = ftype.get("type") if isinstance(ftype, dict) else None
    for n in EDGES:
        ints = [n, -n, n] if kind == "array" else [n]
        value = {"f": ints if kind == "array" else {"k": n, "": n} if kind == "map" else n}
        expected = fastavro_bytes(schema, value)
        fast = fast_bytes(encode, value)
        if low is None or high is None or all(low <= i <= high for i in ints):
            assert fast == expected, n  # in range: the fast path writes it, and right
        else:
            assert fast is None, n  # out of range: fastavro decides
        if expected is None:
            with pytest.raises(EncodeError):
                encode(value)
        else:
            assert encode(value) == expected, n


@pytest.mark.parametrize("ftype", [MILLIS, ["null", MILLIS], LOCAL_MILLIS])
def test_datetimes_convert_to_every_varint_size(ftype: Any) -> None:
    schema = parse_schema(_record(ftype))
    encode = compile_encoder(schema)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    naive_ok = ftype is LOCAL_MILLIS
    for k in range(48):  # datetimes reach about 2**48 ms either side of 1970
        for ms in (2**k - 1, 2**k, -(2**k), -(2**k) - 1):
            try:
                moment = epoch + timedelta(milliseconds=ms)
            except OverflowError:
                continue
            value = {"f": moment.replace(tzinfo=None) if naive_ok else moment}
            expected = fastavro_bytes(schema, value)
            assert expected is not None
            assert fast_bytes(encode, value) == expected, ms


@pytest.mark.parametrize(
    "ftype",
    [
        "string",
        ["null", "string"],
        ["string", "null"],  # the union index is 0: a different header table
        "bytes",
        ["null", "bytes"],
        {"type": "map", "values": "string"},
        {"type": "array", "items": ["null", "string"]},
    ],
)
def test_lengths_around_the_end_of_the_length_table(ftype: Any) -> None:
    schema = parse_schema(_record(ftype))
    encode = compile_encoder(schema)
    kind = ftype.get("type") if isinstance(ftype, dict) else None
    binary = ftype == "bytes" or (isinstance(ftype, list) and "bytes" in ftype)
    for n in (0, 1, 63, 64, 65, 4095, 4096, 8191, 8192, 8193, 16383, 16384, 70_000):
        # "é" is two bytes: the length written is of the encoding, not of the text.
        for text in ("a" * n, "é" * (n // 2) + "a" * (n % 2)):
            data: Any = text.encode() if binary else text
            if kind == "map":
                data = {text: text}
            elif kind == "array":
                data = [text, None] * (n // 1000 + 1)
            value = {"f": data}
            expected = fastavro_bytes(schema, value)
            assert expected is not None
            assert fast_bytes(encode, value) == expected, (n, text[:1])


def test_blocks_of_thousands_of_items() -> None:
    schema = parse_schema(_record({"type": "map", "values": {"type": "array", "items": "long"}}))
    value = {"f": {f"k{i}": list(range(i % 3)) for i in range(9000)}}
    assert fast_bytes(compile_encoder(schema), value) == fastavro_bytes(schema, value)


# -- records written inline ----------------------------------------------------------------


def _named(name: str, *fields: tuple[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]}


#: Envelope-shaped: V is used twice (inline twice); W and X once inside V (inline in each
#: copy); S once; Shared three times (a function). Fields follow inline records, so a variable
#: reused by a later inline record must not be one its parent has yet to write.
INLINE_SCHEMA = _named(
    "Env",
    (
        "before",
        [
            "null",
            _named(
                "V",
                ("id", "long"),
                ("w", _named("W", ("a", "string"), ("b", ["null", "long"]))),
                ("xs", {"type": "array", "items": _named("X", ("c", "int"), ("d", "string"))}),
                ("tag", ["null", "string"]),
                ("one", _named("Shared", ("s", "string"), ("t", "long"))),
                ("two", "Shared"),
            ),
        ],
    ),
    ("after", ["null", "V"]),
    ("s", _named("S", ("e", "string"), ("when", ["null", MILLIS]))),
    ("third", ["null", "Shared"]),
    ("ts", "long"),
)


def _v(seed: int) -> dict[str, Any]:
    return {
        "id": seed,
        "w": {"a": f"w{seed}", "b": seed * 1000},
        "xs": [{"c": seed + i, "d": f"x{i}"} for i in range(seed % 3)],
        "tag": None if seed % 2 else f"tag{seed}",
        "one": {"s": "one", "t": -seed},
        "two": {"s": "two", "t": 2**40 + seed},
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_records_inline_and_shared_write_fastavros_bytes(seed: int) -> None:
    schema = parse_schema(INLINE_SCHEMA)
    encode = compile_encoder(schema)
    full = {
        "before": _v(seed),
        "after": _v(seed + 10),
        "s": {"e": "source", "when": 1_700_000_000_000 + seed},
        "third": {"s": "third", "t": 3},
        "ts": 1_700_000_300_000,
    }
    sparse = {  # missing fields with defaults or null: the field-by-field fetch
        "before": None,
        "after": {**_v(seed), "tag": None},
        "s": {"e": "source"},
        "ts": -seed,
    }
    for value in (full, sparse):
        expected = fastavro_bytes(schema, value)
        assert expected is not None
        assert fast_bytes(encode, value) == expected
    del sparse["after"]["id"]  # required: refused, as fastavro refuses it
    assert fastavro_bytes(schema, sparse) is None
    with pytest.raises(EncodeError):
        encode(sparse)


def test_a_record_used_twice_in_each_of_many_levels_does_not_multiply_the_code() -> None:
    # Inlined naively, a chain of records each holding its child twice would be written out
    # 2**depth times; only as many copies as a twice-used record needs are inline.
    depth = 14
    schema: Any = _named("L0", ("leaf", "long"))
    for level in range(1, depth):
        child = schema
        schema = _named(f"L{level}", ("left", child), ("right", child["name"]))
    encode = compile_encoder(schema)
    assert len(encode.source.splitlines()) < 60 * depth

    def tree(level: int) -> dict[str, Any]:
        if level == 0:
            return {"leaf": 7}
        sub = tree(level - 1)
        return {"left": sub, "right": sub}

    value = tree(depth - 1)
    assert fast_bytes(encode, value) == fastavro_bytes(parse_schema(schema), value)


def test_a_recursive_record_used_in_two_places_is_inline_then_a_function() -> None:
    schema = _named("Link", ("v", "long"), ("next", ["null", "Link"]))
    value = {"v": 1, "next": {"v": 2, "next": {"v": 3, "next": None}}}
    assert fast_bytes(compile_encoder(schema), value) == fastavro_bytes(schema, value)


# -- the tables themselves -------------------------------------------------------------------


def test_tables_hold_the_varints_they_stand_for() -> None:
    assert all(SMALL[z] == varint(z) for z in range(1 << 14))
    assert all(SMALL_EVEN[m] == varint(2 * m) for m in range(1 << 13))
    assert all(SMALL_ODD[m] == varint(2 * m + 1) for m in range(1 << 13))
    for k in range(1 << 14):  # GROUP[k] + the varint of the rest = the varint of the whole
        assert GROUP[k] + b"\x01" == varint(k + (1 << 14))
    assert all(GROUP_EVEN[m] == GROUP[2 * m] for m in range(1 << 13))
