"""Avro wire formats, fingerprints, the schema resolver, dead letters, and map+encode+decode."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import fastavro
import orjson
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.codec import (
    DEAD_LETTER_FORMAT,
    EntityCodec,
    SchemaResolver,
    UndecodableMessage,
    crc64_avro,
    dead_letter_value,
    parsing_canonical_form,
)
from publisher.entities import EntitySpec, load_entities
from publisher.errors import RowRejected
from publisher.mapping import RowMapper

ENTITIES = load_entities()
CODECS = {name: EntityCodec(spec) for name, spec in ENTITIES.items()}
GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
THUMB = "7C9E6679-7425-40DE-944B-E07FC1F90AE7"
WINDOW = (1_556_150_400_000, 1_556_154_000_000)
NOW = 1_556_160_000_000


def customers_event(**after: Any) -> dict[str, Any]:
    row = {"CustomerID": GUID, "RowThumbprint": THUMB, "RowEvent": "Added", **after}
    mapper = RowMapper(ENTITIES["Customers"], source_name="s", version="1")
    return mapper.map(row, *WINDOW, NOW).record


# --- fingerprints: the Avro specification's own test vectors (share/test/data/schema-tests.txt)

SPEC_VECTORS = [
    # (input schema, Parsing Canonical Form, CRC-64-AVRO fingerprint as Java's signed long)
    ('"null"', '"null"', 7195948357588979594),
    ('"boolean"', '"boolean"', -6970731678124411036),
    ('"int"', '"int"', 8247732601305521295),
    ('"long"', '"long"', -3434872931120570953),
    ('"string"', '"string"', -8142146995180207161),
    ('"bytes"', '"bytes"', 5746618253357095269),
    ('[ "int" , {"type":"boolean"} ]', '["int","boolean"]', 5392556393470105090),
    (
        '{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}',
        '{"name":"x.y.foo","type":"record","fields":[]}',
        5916914534497305771,
    ),
    (
        '{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}',
        '{"name":"foo","type":"record","fields":[]}',
        -4824392279771201922,
    ),
    (
        # The spec's "default":"true" is a string for a boolean, which fastavro rightly
        # refuses; the default is dropped from the canonical form either way.
        '{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":true},'
        '{"order":"descending","name":"f2","doc":"Hello","type":"int"}],'
        ' "type":"record", "name":"foo"}',
        '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},'
        '{"name":"f2","type":"int"}]}',
        -4860222112080293046,
    ),
    (
        '{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar",'
        ' "symbols":["A1", "A2"]}',
        '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}',
        -4448647247586288245,
    ),
    (
        '{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}',
        '{"name":"x.y.z.foo","type":"fixed","size":32}',
        -3064184465700546786,
    ),
    (
        '{ "values":"string", "type":"map"}',
        '{"type":"map","values":"string"}',
        -8732877298790414990,
    ),
    (
        '{"name":"PigValue","type":"record",'
        '"fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}',
        '{"name":"PigValue","type":"record","fields":[{"name":"value",'
        '"type":["null","int","long","PigValue"]}]}',
        -1759257747318642341,
    ),
]


@pytest.mark.parametrize(("schema", "canonical", "signed_fp"), SPEC_VECTORS)
def test_canonical_form_and_fingerprint_match_the_avro_spec_vectors(
    schema: str, canonical: str, signed_fp: int
) -> None:
    assert parsing_canonical_form(orjson.loads(schema)) == canonical
    assert crc64_avro(canonical.encode()) == signed_fp & 0xFFFF_FFFF_FFFF_FFFF


def test_fingerprint_of_nothing_is_the_spec_seed() -> None:
    assert crc64_avro(b"") == 0xC15D213AA4D7A795


@pytest.mark.parametrize("name", sorted(ENTITIES))
def test_entity_fingerprint_agrees_with_fastavro(name: str) -> None:
    codec = CODECS[name]
    assert codec.fingerprint_hex == fastavro_fingerprint(codec.canonical_form, "CRC-64-AVRO")
    # The canonical form drops docs, defaults, logical types and dc_kind, keeps full names.
    assert "dc_kind" not in codec.canonical_form and "doc" not in codec.canonical_form
    assert f'"name":"dataconnect.{name}.Value"' in codec.canonical_form


def test_every_entity_has_its_own_fingerprint() -> None:
    assert len({c.fingerprint for c in CODECS.values()}) == len(CODECS)


# --- wire formats ------------------------------------------------------------------------------


def test_single_object_header_then_a_plain_avro_body() -> None:
    codec = CODECS["Customers"]
    record = customers_event(
        FirstName="Jane", LegacyCustomerID=7, EmailSetDate="2019-04-25T06:19:12Z"
    )
    data = codec.encode(record)
    assert data[:2] == b"\xc3\x01"
    assert int.from_bytes(data[2:10], "little") == codec.fingerprint
    assert data[2:10].hex() == codec.fingerprint_hex
    # Any Avro reader with the .avsc reads the body, logical types included.
    body = cast(
        "dict[str, Any]",
        fastavro.schemaless_reader(
            io.BytesIO(data[10:]), fastavro.parse_schema(ENTITIES["Customers"].schema), None
        ),
    )
    assert body["after"]["CustomerID"] == uuid.UUID(GUID)
    assert body["after"]["FirstName"] == "Jane"
    assert body["after"]["EmailSetDate"] == datetime(2019, 4, 25, 6, 19, 12, tzinfo=UTC)
    assert body["op"] == "c"


def test_confluent_framing() -> None:
    codec = EntityCodec(ENTITIES["Customers"], wire_format="confluent", schema_id=258)
    record = customers_event(FirstName="Jane")
    data = codec.encode(record)
    assert data[:5] == b"\x00\x00\x00\x01\x02"
    assert data[5:] == CODECS["Customers"].encode(record)[10:]  # same body, other header
    assert codec.decode(data) == record
    with pytest.raises(UndecodableMessage):
        codec.decode(CODECS["Customers"].encode(record))


@pytest.mark.parametrize("schema_id", [None, -1, 2**31])
def test_confluent_needs_a_valid_schema_id(schema_id: int | None) -> None:
    with pytest.raises(ValueError, match="schema id"):
        EntityCodec(ENTITIES["Customers"], wire_format="confluent", schema_id=schema_id)


def test_round_trip_gives_back_the_record_exactly() -> None:
    record = customers_event(
        FirstName="Jane",
        DoNotCall="1",
        Brand={"a": [1, 2]},
        DateOfLastMarketingCampaign="2019-04-25T06:19:12.343",
        RowInserted="2019-04-25T06:19:12.343Z",
    )
    assert CODECS["Customers"].decode(CODECS["Customers"].encode(record)) == record


def test_round_trip_of_a_delete_and_money() -> None:
    row = {
        "AccountsReceivableID": 9,
        "CreditLimit": "-999999999999999.9999",
        "Balance": 0.1,
        "RowThumbprint": THUMB,
        "RowEvent": "Deleted",
    }
    mapper = RowMapper(ENTITIES["AccountsReceivable"], source_name="s", version="1")
    record = mapper.map(row, *WINDOW, NOW).record
    decoded = CODECS["AccountsReceivable"].decode(CODECS["AccountsReceivable"].encode(record))
    assert decoded == record
    assert decoded["before"]["CreditLimit"] == Decimal("-999999999999999.9999")
    assert decoded["before"]["Balance"] == Decimal("0.1")


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (
            lambda r: r["after"].__setitem__("LegacyCustomerID", "jane@example.com"),
            "after.LegacyCustomerID",
        ),
        (lambda r: r["after"].__setitem__("LegacyCustomerID", 2**64), "after.LegacyCustomerID"),
        (lambda r: r["after"].__setitem__("FirstName", 5), "after.FirstName"),
        (lambda r: r["after"]["_extra"].__setitem__("k", 1), "after._extra['k']"),
        (lambda r: r.__setitem__("ts_ms", 2**70), "ts_ms"),
        (lambda r: r.__setitem__("op", None), "op"),
        (lambda r: r["source"].pop("connector"), "source.connector"),
        (lambda r: r["source"].__setitem__("window_stop", "late"), "source.window_stop"),
        (lambda r: r.__setitem__("after", "jane@example.com"), "after"),
    ],
)
def test_encode_turns_avro_refusals_into_a_bad_value_naming_the_field(
    mutate: Any, where: str
) -> None:
    record = customers_event(FirstName="Jane")
    mutate(record)
    with pytest.raises(RowRejected) as info:
        CODECS["Customers"].encode(record)
    assert info.value.reason == "bad_value"
    assert info.value.detail.split(":")[0] == where
    assert "jane" not in str(info.value).lower()


def test_encode_refuses_money_with_more_than_four_places() -> None:
    mapper = RowMapper(ENTITIES["AccountsReceivable"], source_name="s", version="1")
    row = {"AccountsReceivableID": 9, "RowThumbprint": THUMB, "RowEvent": "Added"}
    record = mapper.map(row, *WINDOW, NOW).record
    record["after"]["Balance"] = Decimal("1.23456")
    with pytest.raises(RowRejected, match=r"bad_value: after\.Balance"):
        CODECS["AccountsReceivable"].encode(record)


def test_encode_refuses_a_non_record() -> None:
    with pytest.raises(RowRejected, match="bad_value: record"):
        CODECS["Customers"].encode("not a record")  # type: ignore[arg-type]


def test_decode_refuses_truncated_padded_and_foreign_bytes() -> None:
    codec = CODECS["Customers"]
    data = codec.encode(customers_event(FirstName="Jane"))
    for bad in (data[:-1], data + b"\x00", data[:10], CODECS["Discussions"].encode(_discussion())):
        with pytest.raises(UndecodableMessage):
            codec.decode(bad)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_decode_of_arbitrary_bytes_raises_only_undecodable(junk: bytes) -> None:
    codec = CODECS["Discussions"]
    try:
        record = codec.decode(codec.header + junk)
    except UndecodableMessage:
        return
    # Junk that happens to be a valid body re-encodes to exactly the same bytes.
    assert codec.encode(record) == codec.header + junk


# --- the resolver (for `tail`) -----------------------------------------------------------------


def _discussion() -> dict[str, Any]:
    mapper = RowMapper(ENTITIES["Discussions"], source_name="s", version="1")
    row = {"DiscussionID": 5, "DiscussionText": "hi", "RowThumbprint": THUMB, "RowEvent": "Added"}
    return mapper.map(row, *WINDOW, NOW).record


def test_resolver_finds_the_entity_by_fingerprint() -> None:
    resolver = SchemaResolver.for_entities(ENTITIES.values())
    customers = customers_event(FirstName="Jane")
    assert resolver.decode(CODECS["Customers"].encode(customers)) == ("Customers", customers)
    discussion = _discussion()
    assert resolver.decode(CODECS["Discussions"].encode(discussion)) == ("Discussions", discussion)


def test_resolver_handles_confluent_ids_and_refuses_unknown_headers() -> None:
    confluent = EntityCodec(ENTITIES["Discussions"], wire_format="confluent", schema_id=7)
    resolver = SchemaResolver([*CODECS.values(), confluent])
    discussion = _discussion()
    assert resolver.decode(confluent.encode(discussion)) == ("Discussions", discussion)
    unknown_fp = b"\xc3\x01" + bytes(8) + CODECS["Discussions"].encode(discussion)[10:]
    for bad in (unknown_fp, b"\x00\x00\x00\x00\x08" + b"\x00", b"{}", b""):
        with pytest.raises(UndecodableMessage):
            resolver.decode(bad)


# --- dead letters ------------------------------------------------------------------------------


def test_dead_letter_document_keeps_the_raw_row_verbatim() -> None:
    raw = b'{"CustomerID":"","Notes":"caf\xc3\xa9 \\u0000","N":1.50}'
    value = dead_letter_value(
        "store-a",
        "Customers",
        raw,
        reason="missing_key",
        detail="CustomerID is missing or empty",
        window_start_ms=WINDOW[0],
        window_stop_ms=WINDOW[1],
    )
    doc = orjson.loads(value)
    assert doc == {
        "format": DEAD_LETTER_FORMAT,
        "connector": "dataconnect-publisher",
        "source": "store-a",
        "entity": "Customers",
        "reason": "missing_key",
        "detail": "CustomerID is missing or empty",
        "window_start": WINDOW[0],
        "window_stop": WINDOW[1],
        "row": raw.decode(),
    }
    assert doc["row"].encode() == raw  # byte for byte, "1.50" not re-serialised as 1.5
    assert list(doc) == sorted(doc)  # stable key order


def test_dead_letter_survives_rows_that_are_not_objects_or_not_utf8() -> None:
    for raw in (b"[1,2]", b"null", b"\xff\xfe{"):
        doc = orjson.loads(
            dead_letter_value(
                "s", "E", raw, reason="r", detail="d", window_start_ms=0, window_stop_ms=1
            )
        )
        assert doc["row"] == raw.decode("utf-8", "replace")


# --- property: map + encode + decode loses nothing ---------------------------------------------

LONG = st.integers(-(2**63), 2**63 - 1)
MONEY = st.decimals(
    min_value=Decimal("-999999999999999.9999"),
    max_value=Decimal("999999999999999.9999"),
    places=4,
    allow_nan=False,
    allow_infinity=False,
)
MOMENT = st.datetimes(
    min_value=datetime(1753, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive by contract
    max_value=datetime(9998, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
TEXT = st.text(max_size=40)
# (raw JSON value as DataConnect could send it, the value the event must carry)
Pair = tuple[Any, Any]


def _timestamp_pairs() -> st.SearchStrategy[Pair]:
    def spell(moment: datetime) -> Pair:
        floored = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        # Integer arithmetic: float seconds lose a millisecond on far-future dates.
        millis = (floored - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), millis

    return MOMENT.map(spell)


TIMESTAMPS = _timestamp_pairs()

KIND_PAIRS: dict[str, st.SearchStrategy[Pair]] = {
    "guid": st.uuids().flatmap(
        lambda u: st.sampled_from([(str(u), str(u)), (str(u).upper(), str(u))])
    ),
    "int": LONG.flatmap(lambda n: st.sampled_from([(n, n), (str(n), n)])),
    "string": st.one_of(TEXT.map(lambda s: (s, s)), LONG.map(lambda n: (n, str(n)))),
    "phone": st.integers(0, 10**15).flatmap(
        lambda n: st.sampled_from([(n, str(n)), (str(n), str(n))])
    ),
    "postal": st.one_of(
        TEXT.map(lambda s: (s, s)), st.integers(0, 99999).map(lambda n: (n, str(n)))
    ),
    "money": MONEY.flatmap(lambda d: st.sampled_from([(str(d), d), (format(d, "f"), d)])),
    "bool": st.sampled_from(
        [(True, True), (False, False), ("true", True), ("0", False), (1, True)]
    ),
    "flag": st.sampled_from([(True, True), ("False", False), ("1", True), (0, False)]),
    "timestamp": TIMESTAMPS,
}
NULLS: dict[str, st.SearchStrategy[Pair]] = {
    kind: st.sampled_from(
        [(None, None), ("", "" if kind in {"string", "phone", "postal"} else None)]
    )
    for kind in KIND_PAIRS
}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | LONG | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


TRACKING = frozenset({"RowThumbprint", "RowInserted", "RowUpdated", "RowEvent"})
ROW_EVENTS = st.sampled_from(["Added", "Updated", "Deleted", "deleted"])
ROW_UPDATED = st.one_of(st.just(""), TIMESTAMPS.map(lambda p: p[0]))


def rows(
    spec: EntitySpec,
) -> st.SearchStrategy[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(raw row, expected row record without _extra, unknown columns) for one entity.

    Strategies are built once here, not inside the draw: hypothesis validates every new one.
    """
    known = spec.field_names | TRACKING
    unknown_columns = st.dictionaries(
        TEXT.filter(lambda n: n not in known), JSON_VALUES, max_size=3
    )
    return _rows(spec, unknown_columns)


@st.composite
def _rows(
    draw: st.DrawFn, spec: EntitySpec, unknown_columns: st.SearchStrategy[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    raw: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for field in spec.fields:
        if field.name == spec.key_field:
            value, want = draw(KIND_PAIRS[field.kind])
        else:
            choice = draw(st.integers(0, 3))
            if choice == 0:  # absent
                expected[field.name] = None
                continue
            pairs = NULLS[field.kind] if choice == 1 else KIND_PAIRS[field.kind]
            value, want = draw(pairs)
        raw[field.name] = value
        expected[field.name] = want
    unknown = draw(unknown_columns)
    raw.update(unknown)
    raw["RowThumbprint"] = str(draw(st.uuids()))
    raw["RowEvent"] = draw(ROW_EVENTS)
    raw["RowInserted"] = draw(TIMESTAMPS)[0]
    raw["RowUpdated"] = draw(ROW_UPDATED)
    return raw, expected, unknown


@pytest.mark.parametrize("name", sorted(ENTITIES))
def test_map_encode_decode_loses_nothing(name: str) -> None:
    spec = ENTITIES[name]
    mapper = RowMapper(spec, source_name="s", version="1")
    codec = CODECS[name]

    # 30 rows per entity: every kind appears in many fields of each row, so each kind is
    # exercised hundreds of times per run while the test stays well under a second.
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rows(spec))
    def check(case: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]) -> None:
        raw, expected, unknown = case
        event = mapper.map(raw, *WINDOW, NOW)
        decoded = codec.decode(codec.encode(event.record))
        assert decoded == event.record
        row = decoded["before"] if event.op == "d" else decoded["after"]
        assert {k: v for k, v in row.items() if k != "_extra"} == expected
        assert event.unknown_fields == tuple(unknown)
        assert {k: orjson.loads(v) for k, v in row["_extra"].items()} == unknown
        assert decoded["source"]["row_thumbprint"] == raw["RowThumbprint"]
        assert decoded["source"]["row_event"] == raw["RowEvent"]

    check()
