"""publisher.avrofast writes exactly the bytes fastavro.schemaless_writer writes, and refuses
exactly the values fastavro refuses, naming the field."""

from __future__ import annotations

import copy
import io
import uuid
from collections import OrderedDict
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any, cast

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.avrofast import EncodeError, compile_encoder
from publisher.avrofast.branches import FAST_TYPES, Guard, Open, Take, verdict
from publisher.avrofast.codegen import PRIMITIVES, Unfit
from publisher.avrofast.explain import FASTAVRO_ERRORS
from publisher.entities import DEFAULT_SCHEMAS_DIR, load_entities

ENTITIES = load_entities(DEFAULT_SCHEMAS_DIR)
ENCODERS = {name: compile_encoder(spec.schema) for name, spec in ENTITIES.items()}
PARSED = {name: parse_schema(spec.schema) for name, spec in ENTITIES.items()}
CUSTOMERS = ENCODERS["Customers"]

#: What the fast path raises when it leaves a value to fastavro.
FAST_PATH_MISSES: tuple[type[Exception], ...] = (Unfit, *FASTAVRO_ERRORS)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
# Zig-zag varint length changes: +-2**(7k) and one either side, plus the int64 ends.
VARINT_EDGES = sorted(
    n
    for n in {LONG_MIN, LONG_MAX, 0}
    | {s * (2 ** (7 * k)) + d for k in range(1, 10) for s in (1, -1) for d in (-1, 0, 1)}
    if LONG_MIN <= n <= LONG_MAX
)


def fastavro_bytes(schema: Any, value: Any) -> bytes | None:
    """fastavro's bytes for ``value``, or None when fastavro refuses it."""
    buf = io.BytesIO()
    try:
        schemaless_writer(buf, schema, value)
    except FASTAVRO_ERRORS:
        return None
    return buf.getvalue()


# -- value strategies from a parsed schema ---------------------------------------------------

texts = st.text(max_size=80)  # every code point but lone surrogates: control chars, non-BMP
longs = st.integers(LONG_MIN, LONG_MAX) | st.sampled_from(VARINT_EDGES)
zones = st.sampled_from([UTC, timezone(timedelta(hours=-6)), timezone(timedelta(minutes=345))])
aware = st.datetimes(timezones=zones)


def decimals(precision: int, scale: int) -> st.SearchStrategy[Decimal]:
    """Decimals the schema accepts, biased to the precision limit."""
    top = 10**precision - 1
    unscaled = st.integers(-top, top) | st.sampled_from([top, -top, 0, 1, -1])
    return st.builds(lambda u, k: Decimal(u).scaleb(-k), unscaled, st.integers(0, scale))


def values(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that fit ``schema`` (parsed), of the types the product hands the encoder."""
    if isinstance(schema, list):
        return st.one_of([values(b, named) for b in schema])
    if isinstance(schema, str) and schema not in PRIMITIVES:
        return st.deferred(lambda: values(named[schema], named))
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical == "uuid":
        return st.uuids() | st.uuids().map(str)
    if logical in ("timestamp-millis", "timestamp-micros"):
        return longs | aware
    if logical == "decimal" and kind == "bytes":
        return decimals(schema["precision"], schema.get("scale", 0))
    if logical == "date":
        return st.dates() | st.integers(-(2**31), 2**31 - 1)
    if logical in ("time-millis", "time-micros"):
        return st.times()
    simple: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": longs,
        "float": st.floats(width=32),
        "double": st.floats() | st.integers(-(2**53), 2**53),
        "bytes": st.binary(max_size=80),
        "string": texts,
    }
    if kind in simple:
        return simple[kind]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array":
        return st.lists(values(schema["items"], named), max_size=4)
    if kind == "map":
        return st.dictionaries(texts, values(schema["values"], named), max_size=4)
    fields = schema["fields"]
    required = {f["name"]: values(f["type"], named) for f in fields if "default" not in f}
    optional = {f["name"]: values(f["type"], named) for f in fields if "default" in f}
    return st.fixed_dictionaries(required, optional=optional)


@st.composite
def change_events(draw: st.DrawFn, entity: str) -> dict[str, Any]:
    """An envelope: op c/u/d with before/after present or null, any row contents."""
    named: dict[str, Any] = {}
    parsed = parse_schema(ENTITIES[entity].schema, named)
    event: dict[str, Any] = draw(values(parsed, named))
    event["op"] = draw(st.sampled_from(["c", "u", "d"]))
    return event


@pytest.mark.parametrize("entity", sorted(ENTITIES))
@FAST
@given(data=st.data())
def test_change_events_encode_exactly_like_fastavro(entity: str, data: st.DataObject) -> None:
    event = data.draw(change_events(entity))
    expected = fastavro_bytes(PARSED[entity], event)
    assert expected is not None
    # The fast path itself produced them: a fallback to fastavro would hide a broken encoder.
    assert ENCODERS[entity].fast_path(event) == expected
    assert ENCODERS[entity](event) == expected


# -- random schemas, values that fit and values that do not ----------------------------------

JUNK: list[Any] = [
    None, True, False, 0, -1, 63, -65, 2**31, -(2**31) - 1, 2**63, LONG_MIN - 1, 1.5,
    float("nan"), float("inf"), 1e300, "", "x", "A", "2020-02-29", "\ud800", b"", b"abcd",
    bytearray(b"ab"), [], [1, "a"], {}, {"a": 1}, {"-type": "nope"}, ("string", "x"),
    Decimal("1.5"), Decimal("NaN"), Decimal("-0"), Decimal("1E+5"), Decimal("123456789.123"),
    datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), date(2020, 1, 2), time(1, 2, 3, 4567),
    uuid.UUID(int=7),
]  # fmt: skip

LEAF_SCHEMAS: list[Any] = [
        "null", "boolean", "int", "long", "float", "double", "bytes", "string",
        {"type": "string", "logicalType": "uuid"},
        {"type": "long", "logicalType": "timestamp-millis"},
        {"type": "long", "logicalType": "timestamp-micros"},
        {"type": "long", "logicalType": "local-timestamp-millis"},
        {"type": "int", "logicalType": "date"},
        {"type": "int", "logicalType": "time-millis"},
        {"type": "long", "logicalType": "time-micros"},
        {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
        {"type": "bytes", "logicalType": "decimal", "precision": 19, "scale": 4},
        {"type": "fixed", "name": "F", "size": 4},
        {"type": "fixed", "name": "F", "size": 8, "logicalType": "decimal", "precision": 9,
         "scale": 2},
        {"type": "enum", "name": "E", "symbols": ["A", "B", "x"]},
        {"type": "long", "logicalType": "not-a-known-one"},
]  # fmt: skip
LEAVES = st.sampled_from(LEAF_SCHEMAS)


def _union_key(schema: Any) -> Any:
    return schema if isinstance(schema, str) else (schema["type"], schema.get("name"))


def _unions(children: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    branches = children.filter(lambda s: not isinstance(s, list))
    return st.lists(branches, min_size=1, max_size=4, unique_by=_union_key)


def _records(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    fields = st.lists(children, min_size=1, max_size=4).map(
        lambda types: [{"name": f"f{i}", "type": t} for i, t in enumerate(types)]
    )
    return fields.map(lambda fs: {"type": "record", "name": "R", "fields": fs})


SCHEMAS = st.recursive(
    LEAVES,
    lambda children: (
        _unions(children)
        | children.map(lambda s: {"type": "array", "items": s})
        | children.map(lambda s: {"type": "map", "values": s})
        | _records(children)
    ),
    max_leaves=8,
)


def _rename(schema: Any, counter: list[int]) -> Any:
    """Give every named type a unique name (the strategies reuse R, E, F)."""
    if isinstance(schema, list):
        return [_rename(s, counter) for s in schema]
    if not isinstance(schema, dict):
        return schema
    copy = dict(schema)
    if "name" in copy:
        counter[0] += 1
        copy["name"] = f"{copy['name']}{counter[0]}"
    if "fields" in copy:
        copy["fields"] = [{**f, "type": _rename(f["type"], counter)} for f in copy["fields"]]
    for key in ("items", "values"):
        if key in copy:
            copy[key] = _rename(copy[key], counter)
    return copy


def _agrees_with_fastavro(data: st.DataObject) -> None:
    named: dict[str, Any] = {}
    parsed = parse_schema(_rename(data.draw(SCHEMAS), [0]), named)
    value = data.draw(st.one_of(values(parsed, named), st.sampled_from(JUNK)))
    encode = compile_encoder(parsed)
    expected = fastavro_bytes(parsed, value)
    try:
        fast: bytes | None = encode.fast_path(value)
    except FAST_PATH_MISSES:
        fast = None
    if fast is not None:  # whatever the fast path writes, fastavro writes too
        assert fast == expected
    if expected is None:
        with pytest.raises(EncodeError):
            encode(value)
    else:
        assert encode(value) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_schema_any_value_agrees_with_fastavro(data: st.DataObject) -> None:
    _agrees_with_fastavro(data)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_schema_any_value_agrees_with_fastavro_long_form(data: st.DataObject) -> None:
    _agrees_with_fastavro(data)


def test_the_union_choice_table_matches_fastavros_validator() -> None:
    """Where the table says a branch never takes a type, or always does, or does within the
    int/long range, fastavro's validator (which picks union branches) agrees."""
    samples = [v for v in JUNK if type(v) in FAST_TYPES] + [{"a": "b"}, [1, 2], {}]
    containers = [
        {"type": "map", "values": "int"},
        {"type": "array", "items": "int"},
        {"type": "record", "name": "R", "fields": []},
    ]
    for schema in LEAF_SCHEMAS + containers:
        parsed = parse_schema(schema)
        for example in samples:
            v = verdict(parsed, type(example))
            try:
                ok: bool | None = validate(example, parsed, raise_errors=False)
            except FASTAVRO_ERRORS:
                ok = None  # the validator raises: fastavro refuses the whole union
            if v is None:
                assert ok is False, (schema, example)
            elif v == Take():
                assert ok is True, (schema, example)
            elif v == Take(Guard.INT):
                assert ok is (-(2**31) <= example < 2**31), (schema, example)
            elif v == Take(Guard.LONG):
                assert ok is (LONG_MIN <= example <= LONG_MAX), (schema, example)
            else:  # decided by a conversion, the contents, or left to fastavro
                assert isinstance(v, Take | Open), (schema, example)


# -- hand-written cases ------------------------------------------------------------------------


def _event(**after: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"CustomerID": str(uuid.UUID(int=1)), "_extra": {}, **after}
    return {
        "before": None,
        "after": row,
        "source": {
            "connector": "dataconnect-publisher",
            "version": "0.1.0",
            "source": "acme",
            "entity": "Customers",
            "row_thumbprint": str(uuid.UUID(int=2)),
            "row_inserted": 1_700_000_000_123,
            "row_updated": None,
            "row_event": "Added",
            "window_start": 1_700_000_000_000,
            "window_stop": 1_700_000_300_000,
        },
        "op": "c",
        "ts_ms": 1_700_000_300_999,
    }


def _roundtrip(event: dict[str, Any]) -> bytes:
    expected = fastavro_bytes(PARSED["Customers"], event)
    assert expected is not None
    assert CUSTOMERS.fast_path(event) == expected
    return expected


@pytest.mark.parametrize("ts", VARINT_EDGES)
def test_longs_at_every_varint_boundary(ts: int) -> None:
    event = _event(LegacyCustomerID=ts)
    event["ts_ms"] = ts
    body = _roundtrip(event)
    decoded = cast(dict[str, Any], schemaless_reader(io.BytesIO(body), PARSED["Customers"], None))
    assert decoded["ts_ms"] == ts


def test_extra_map_empty_is_one_zero_byte_and_entries_are_blocks() -> None:
    empty = _roundtrip(_event())
    filled = _roundtrip(_event(_extra={"NewColumn": '"x"', "Other": "1"}))
    # _extra ends the row and source.connector (21 bytes: length 0x2a) follows it: the bodies
    # differ only by one block (count 2, then the entries) before the map's closing zero.
    after_map = b"\x00\x2adataconnect-publisher"
    block = b"\x04" + b"\x12NewColumn" + b'\x06"x"' + b"\x0aOther" + b"\x021"
    assert empty.count(after_map) == 1
    assert filled == empty.replace(after_map, block + after_map)


def test_long_strings_and_control_and_astral_characters() -> None:
    _roundtrip(_event(Notes="x" * 100_000, FirstName="\x00\x1f\u2028😀\U0001d518", LastName=""))


def test_logical_values_in_every_accepted_spelling() -> None:
    moment = datetime(2021, 3, 4, 5, 6, 7, 891_234, tzinfo=timezone(timedelta(hours=-6)))
    as_text = _event(EmailSetDate=moment, CustomerID=str(uuid.UUID(int=99)))
    as_objects = _event(EmailSetDate=moment, CustomerID=uuid.UUID(int=99))
    assert _roundtrip(as_text) == _roundtrip(as_objects)
    ar = ENCODERS["AccountsReceivable"]
    top = Decimal("999999999999999.9999")  # precision 19, scale 4
    for money in (top, -top, Decimal("0"), Decimal("-0.0001"), Decimal("12.5")):
        event = _event(CreditLimit=money)
        event["source"]["entity"] = "AccountsReceivable"
        assert ar.fast_path(event) == fastavro_bytes(PARSED["AccountsReceivable"], event)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"FirstName": 5}, "after.FirstName"),
        ({"LegacyCustomerID": "12"}, "after.LegacyCustomerID"),
        ({"LegacyCustomerID": 2**63}, "after.LegacyCustomerID"),
        ({"DoNotCall": "yes"}, "after.DoNotCall"),
        ({"Notes": "lone \ud800 surrogate"}, "after.Notes"),
        ({"EmailSetDate": "2020-01-01"}, "after.EmailSetDate"),
        ({"_extra": {"k": 1}}, "after._extra['k']"),
        ({"_extra": None}, "after._extra"),
    ],
)
def test_a_refused_value_names_its_field(value: dict[str, Any], field: str) -> None:
    event = _event(**value)
    assert fastavro_bytes(PARSED["Customers"], event) is None
    with pytest.raises(EncodeError) as caught:
        CUSTOMERS(event)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert "surrogate" not in str(caught.value)  # reasons never quote row values


def test_refused_top_level_values_and_missing_fields() -> None:
    event = _event()
    event["ts_ms"] = "soon"
    with pytest.raises(EncodeError, match=r"^ts_ms: "):
        CUSTOMERS(event)
    del event["source"]
    with pytest.raises(EncodeError) as caught:
        CUSTOMERS(event)
    assert caught.value.field == "source"
    assert "no default" in caught.value.reason
    with pytest.raises(EncodeError):
        CUSTOMERS(cast(dict[str, Any], [("op", "c")]))


def test_decimal_beyond_the_schema_precision_is_refused() -> None:
    event = _event(Balance=Decimal("1234567890123456.0001"))  # 20 digits > precision 19
    event["source"]["entity"] = "AccountsReceivable"
    with pytest.raises(EncodeError) as caught:
        ENCODERS["AccountsReceivable"](event)
    assert caught.value.field == "after.Balance"


def test_unusual_but_valid_values_take_fastavros_path_with_the_same_bytes() -> None:
    class Text(str):
        __slots__ = ()

    schema = PARSED["Customers"]
    plain = _event(FirstName="Ann")
    unusual = [
        _event(FirstName=Text("Ann")),  # a str subclass
        _event(FirstName="Ann", _extra=OrderedDict()),  # another mapping type
        {**plain, "after": MappingProxyType(plain["after"])},
        {**plain, "after": ("dataconnect.Customers.Value", plain["after"])},  # tuple notation
    ]
    for event in unusual:
        with pytest.raises(FAST_PATH_MISSES):
            CUSTOMERS.fast_path(event)
        assert CUSTOMERS(event) == fastavro_bytes(schema, event) == _roundtrip(plain)


def _same_as_fastavro(schema: Any, value: Any, *, fast: bool) -> None:
    expected = fastavro_bytes(schema, value)
    encode = compile_encoder(schema)
    if expected is None:
        with pytest.raises(EncodeError):
            encode(value)
    elif fast:
        assert encode.fast_path(value) == expected
    else:
        assert encode(value) == expected


@pytest.mark.parametrize(
    ("union", "value"),
    [
        (["null", "float", "string", "double"], 1.5),  # float fits: fastavro writes the double
        (["null", "float", "string", "double"], 3),
        (["null", "float", "string", "double"], "s"),
        (["float", "long"], 7),  # no double: float it is
        (["int", "long"], 2**31 - 1),
        (["int", "long"], 2**31),  # too big for int: the long branch
        (["int", "long"], -(2**31) - 1),
        (["null", "int"], 2**31),  # fits no branch: refused
        (["int", {"type": "enum", "name": "En", "symbols": ["X"]}, "string"], "X"),
        (["int", {"type": "enum", "name": "En", "symbols": ["X"]}, "string"], "Y"),
        (["string", {"type": "int", "logicalType": "date"}], "2020-01-02"),
        (["null", {"type": "int", "logicalType": "date"}, "string"], "2020-01-02"),
        ([{"type": "fixed", "name": "F", "size": 2}, "bytes"], b"ab"),
        ([{"type": "fixed", "name": "F", "size": 2}, "bytes"], b"abc"),
    ],
)
def test_union_branch_choice_follows_fastavro(union: list[Any], value: Any) -> None:
    schema = {"type": "record", "name": "Top", "fields": [{"name": "u", "type": union}]}
    # A date string is converted by fastavro's own logical writer: the fast path defers.
    _same_as_fastavro(schema, {"u": value}, fast=not isinstance(value, str) or "-" not in value)


def test_union_of_two_records_picks_the_one_with_most_fields() -> None:
    a = {"type": "record", "name": "A", "fields": [{"name": "a", "type": "long"}]}
    b = {
        "type": "record",
        "name": "B",
        "fields": [{"name": "a", "type": "long"}, {"name": "b", "type": "string"}],
    }
    schema = {"type": "record", "name": "Top", "fields": [{"name": "r", "type": [a, b]}]}
    _same_as_fastavro(schema, {"r": {"a": 1}}, fast=False)
    _same_as_fastavro(schema, {"r": {"a": 1, "b": "two"}}, fast=False)
    fits_neither = {"r": {"a": 1, "-type": "B"}}
    assert fastavro_bytes(schema, fits_neither) is None
    with pytest.raises(EncodeError) as caught:
        compile_encoder(schema)(fits_neither)
    assert caught.value.field == "r"


def test_a_row_whose_type_tag_names_another_record_is_refused() -> None:
    wrong = _event()
    wrong["after"]["-type"] = "dataconnect.Customers.Other"
    assert fastavro_bytes(PARSED["Customers"], wrong) is None
    with pytest.raises(EncodeError) as caught:
        CUSTOMERS(wrong)
    assert caught.value.field == "after"
    right = _event()
    right["after"]["-type"] = "dataconnect.Customers.Value"
    assert CUSTOMERS(right) == fastavro_bytes(PARSED["Customers"], right) == _roundtrip(_event())


def test_missing_field_without_default_is_refused_even_if_its_type_is_null() -> None:
    schema = {"type": "record", "name": "N", "fields": [{"name": "n", "type": {"type": "null"}}]}
    _same_as_fastavro(schema, {}, fast=False)
    _same_as_fastavro(schema, {"n": None}, fast=True)


def test_recursive_schema() -> None:
    schema = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "v", "type": "long"},
            {"name": "next", "type": ["null", "Node"], "default": None},
            {"name": "kids", "type": {"type": "array", "items": "Node"}, "default": []},
        ],
    }
    value = {"v": 1, "next": {"v": 2, "next": {"v": 3}}, "kids": [{"v": 4, "kids": []}]}
    encode = compile_encoder(schema)
    assert encode.fast_path(value) == fastavro_bytes(schema, value)


def test_parsed_and_raw_schemas_compile_to_the_same_encoder() -> None:
    raw = ENTITIES["FollowUps"].schema
    event = {"before": None, "after": None, "source": _event()["source"], "op": "d", "ts_ms": 5}
    untouched = copy.deepcopy(raw)
    assert compile_encoder(raw)(event) == compile_encoder(parse_schema(raw))(event)
    assert raw == untouched  # entity schemas are shared: compiling must not change them
