"""RowMapper.map is Python source generated per entity, with inline fast paths (values of the
right type, ``""``, the common timestamp layouts). Here it must give exactly what a plain
reading of the module doc's rules gives (:func:`reference_map`, built on the public converter
functions): the same event, key order included, or the same rejection with the same detail,
for any row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from publisher import CONNECTOR_NAME
from publisher.entities import TRACKING_FIELDS, EntitySpec, load_entities
from publisher.errors import RowRejected
from publisher.mapping import ChangeEvent, RowMapper, converters_for
from publisher.timefmt import timestamp_millis

ENTITIES = load_entities()
ZONES: list[tzinfo] = [
    UTC,
    ZoneInfo("UTC"),  # not the UTC singleton: the zone-aware branch of the inline parser
    ZoneInfo("America/Regina"),
    ZoneInfo("Europe/London"),
    timezone(timedelta(hours=5, minutes=30)),
]
WINDOW = (1_700_000_000_000, 1_700_000_900_000)
NOW = 1_700_001_000_000


# --- the reference: the module doc's rules, one step at a time --------------------------------


def json_type(raw: Any) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "boolean"
    if isinstance(raw, int | float):
        return "number"
    names: dict[type, str] = {str: "string", dict: "object", list: "array"}
    return names[type(raw)]


def tracking_time(row: dict[str, Any], name: str, zone: tzinfo) -> int | None:
    raw = row.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise RowRejected("bad_timestamp", f"{name} is a JSON {json_type(raw)}")
    try:
        return timestamp_millis(raw, zone)
    except ValueError as exc:
        raise RowRejected("bad_timestamp", f"{name}: {exc}") from None


def json_text(name: str, raw: Any) -> str:
    try:
        return orjson.dumps(raw).decode()
    except TypeError as exc:
        raise RowRejected("bad_value", f"{name}: {exc}") from None


def reference_map(
    spec: EntitySpec, row: Any, zone: tzinfo, *, deleted_carries_row: bool
) -> ChangeEvent:
    if not isinstance(row, dict):
        raise RowRejected("not_an_object", f"row is a JSON {json_type(row)}, not an object")
    key_field = spec.key_field
    if row.get(key_field) in (None, ""):
        raise RowRejected("missing_key", f"{key_field} is missing or empty")
    thumbprint = row.get("RowThumbprint")
    if thumbprint is None or thumbprint == "":
        raise RowRejected("missing_thumbprint", "RowThumbprint is missing or empty")
    if not isinstance(thumbprint, str):
        raise RowRejected("bad_value", "RowThumbprint: expected a string")
    row_event = row.get("RowEvent")
    if not isinstance(row_event, str):
        raise RowRejected("unknown_row_event", f"RowEvent is {json_type(row_event)}")
    op = {"added": "c", "updated": "u", "deleted": "d"}.get(row_event.lower())
    if op is None:
        raise RowRejected("unknown_row_event", f"RowEvent {row_event[:40]!r} is not known")
    inserted = tracking_time(row, "RowInserted", zone)
    updated = tracking_time(row, "RowUpdated", zone)

    convert = converters_for(zone)
    kinds = {f.name: f.kind for f in spec.fields}
    value: dict[str, Any] = dict.fromkeys(kinds)
    unknown = [n for n in row if n not in kinds and n not in TRACKING_FIELDS]
    if op == "d" and not deleted_carries_row:
        # Only the key is converted; every other column is kept as JSON text.
        try:
            value[key_field] = convert[kinds[key_field]](row[key_field])
        except ValueError as exc:
            raise RowRejected("bad_value", f"{key_field}: {exc}") from None
        kept = [n for n in row if n not in TRACKING_FIELDS and n != key_field]
        value["_extra"] = {n: json_text(n, row[n]) for n in kept}
    else:
        extra = {n: json_text(n, row[n]) for n in unknown}
        # Typed fields first, then plain strings: the first bad one is named.
        order = sorted(spec.fields, key=lambda f: f.kind == "string")
        for f in order:
            try:
                value[f.name] = convert[f.kind](row.get(f.name))
            except (ValueError, TypeError) as exc:
                raise RowRejected("bad_value", f"{f.name}: {exc}") from None
        value["_extra"] = extra
    key = value[key_field]
    if key is None or key == "":
        raise RowRejected("missing_key", f"{key_field} is empty")
    record = {
        "before": value if op == "d" else None,
        "after": None if op == "d" else value,
        "source": {
            "connector": CONNECTOR_NAME,
            "version": "v9",
            "source": "store-9",
            "entity": spec.name,
            "row_thumbprint": thumbprint,
            "row_inserted": inserted,
            "row_updated": updated,
            "row_event": row_event,
            "window_start": WINDOW[0],
            "window_stop": WINDOW[1],
        },
        "op": op,
        "ts_ms": NOW,
    }
    change_ms = next(t for t in (updated, inserted, WINDOW[1]) if t is not None)
    key_text = {True: "true", False: "false"}[key] if isinstance(key, bool) else str(key)
    return ChangeEvent(key_text, thumbprint, op, record, change_ms, tuple(unknown))


# --- generated rows -----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=4,
)
NAIVE_MIN = datetime(1, 1, 2)  # noqa: DTZ001 - hypothesis takes naive bounds
NAIVE_MAX = datetime(9999, 12, 30)  # noqa: DTZ001
#: Spellings around the inline parser's layouts: what it takes, and near misses that only the
#: full parser may decide (it accepts some, e.g. other digits, and rejects others).
ODD_TIMESTAMPS = [
    "2024-05-01T12:00:00.123Z",
    "2024-05-01T12:00:00.123",
    "2024-05-01T12:00:00Z",
    "2024-05-01T12:00:00",
    "2024-05-01T12:00",
    "2024-05-01 12:00:00.123Z",
    "2024-05-01T12:00:00.1234567Z",
    "2024-05-01T12:00:00.123+02:00",
    "2024-05-01T12:00:00.123-0530",
    "2024-05-01T12:00:00,123Z",
    "2024-W18-3T12:00:00.123Z",
    "20240501T120000.123Z",
    "2024-05-01T12:00:00.123z",
    "2024-05-01t12:00:00.123Z",
    " 2024-05-01T12:00:00.123Z",
    "2024-05-01T12:00:00.123Z ",
    "2024-13-01T12:00:00.123Z",
    "2024-02-30T12:00:00.123Z",
    "2024-05-01T24:00:00.123Z",
    "2024-05-01T12:60:00.123Z",
    "2024-05-01T12:00:60.123Z",
    "2024-05-01T12:00:00.12aZ",
    "2024-05-01T12:00:00.Z",
    "2024-05-01T12:00:00.123ZZ",
    "2024-05-01T12:00:00.123+2",
    "\u0662\u0660\u0662\u0664-05-01T12:00:00.123Z",  # Arabic-Indic digits
    "2024-05-01T12:00:00.\uff11\uff12\uff13Z",  # fullwidth digits
    "0001-01-01T00:00:00.000+01:00",
    "9999-12-31T23:59:59.999-01:00",
    "1969-12-31T23:59:59.9995Z",
    "2024-03-31T01:30:00.000",  # Europe/London: a wall time that does not exist
    "2024-10-27T01:30:00.000",  # ... and one that exists twice
]


@st.composite
def timestamp_texts(draw: st.DrawFn, *, damaged: bool = True) -> str:
    moment = draw(st.datetimes(NAIVE_MIN, NAIVE_MAX))
    text = f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S")  # %Y: no zero padding
    digits = draw(st.integers(0, 7))
    if digits:
        text += "." + f"{moment.microsecond:06d}5"[:digits]
    text += draw(st.sampled_from(["Z", "", "", "+02:00", "-05:30", "+0100"]))
    if damaged and draw(st.integers(0, 5)) == 0:  # one character replaced
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from("0-:.TZ +9a")) + text[at + 1 :]
    return text


timestamps = timestamp_texts() | st.sampled_from(ODD_TIMESTAMPS)
guid_texts = (
    st.uuids().map(str)
    | st.uuids().map(lambda u: str(u).upper())
    | st.sampled_from(
        [
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
            "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
            "0f8fad5bd9cb469fa16570867728950e",
            "0f8fad5b-d9cb-469f-a165-70867728950g",
            "0f8fad5b-d9cb-469f-a16570867728950e-",
            "0f8fad5b_d9cb_469f_a165_70867728950e",
            "0f8fad5b-d9cb-469f-a165-70867728950",
        ]
    )
)
#: Values of every kind in every column, and the edges of each kind's inline test.
any_value = st.one_of(
    st.sampled_from([None, "", 0, 1, 2, -1, True, False, 42.0, 0.5, "42", "-7", "x", " 1"]),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 1e300]),
    st.sampled_from(["true", "FALSE", "1", "0", "yes", "1.5", "1e3", " 12.50 ", "NaN"]),
    json_values,
    timestamps,
    guid_texts,
)
valid_timestamps = timestamp_texts(damaged=False)
#: Values a field of each kind takes without a rejection (besides null and "").
valid_values: dict[str, st.SearchStrategy[Any]] = {
    "guid": guid_texts.filter(lambda g: len(g) != 36 or g.count("-") == 4),
    "int": st.integers(-(2**63), 2**63 - 1)
    | st.integers(-(10**6), 10**6).map(str)
    | st.integers(-(2**53), 2**53).map(float),
    "string": st.text(max_size=12) | st.integers() | st.floats(allow_nan=False),
    "phone": st.text(max_size=12) | st.integers(0, 10**12) | st.floats(0, 1e12),
    "postal": st.text(max_size=8) | st.integers(0, 99999),
    "money": st.floats(-1e12, 1e12) | st.integers(-(10**12), 10**12) | st.just(" 12.50 "),
    "bool": st.sampled_from([True, False, 0, 1, "true", "FALSE", "1", "0"]),
    "flag": st.sampled_from([True, False, "True", "false"]),
    "timestamp": valid_timestamps,
}
tracking_values = {
    "RowThumbprint": st.uuids().map(str),
    "RowEvent": st.sampled_from(["Added", "Updated", "Deleted", "added", "DELETED"]),
    "RowInserted": st.sampled_from([None, ""]) | valid_timestamps,
    "RowUpdated": st.sampled_from([None, ""]) | valid_timestamps,
}
odd_tracking_values = {
    "RowThumbprint": st.sampled_from([None, "", 7, "t-1"]),
    "RowEvent": st.just("Gone") | json_scalars,
    "RowInserted": timestamps | json_scalars,
    "RowUpdated": timestamps | json_scalars,
}
unknown_names = st.sampled_from(["_extra", "Brand", "rowevent", ""]) | st.text(max_size=6)


@st.composite
def rows(draw: st.DrawFn) -> tuple[EntitySpec, Any]:
    """A row of a random entity. Half the rows are sound (every value fits its kind, the
    tracking columns are well formed); in the others any column may hold anything."""
    spec = ENTITIES[draw(st.sampled_from(sorted(ENTITIES)))]
    if draw(st.integers(0, 30)) == 0:
        return spec, draw(json_values)  # maybe not even an object
    sound = draw(st.booleans())
    row: dict[str, Any] = {}
    everything = draw(st.booleans())  # DataConnect's usual shape: every column there
    for f in spec.fields:
        if everything or draw(st.integers(0, 3)) > 0:
            odd = not sound and draw(st.integers(0, 4)) == 0
            fits = valid_values[f.kind]
            if f.name != spec.key_field or not sound:
                fits = st.sampled_from([None, ""]) | fits
            row[f.name] = draw(any_value if odd else fits)
    for name, values in tracking_values.items():
        if sound or draw(st.integers(0, 6)) > 0:
            odd = not sound and draw(st.integers(0, 3)) == 0
            row[name] = draw(odd_tracking_values[name] if odd else values)
    if draw(st.integers(0, 2)) == 0:
        row.update(draw(st.dictionaries(unknown_names, json_values, max_size=3)))
    if draw(st.booleans()):
        order = draw(st.permutations(list(row)))
        row = {k: row[k] for k in order}
    return spec, row


@cache
def mapper(entity: str, zone: tzinfo, deleted_carries_row: bool) -> RowMapper:
    return RowMapper(
        ENTITIES[entity],
        source_name="store-9",
        version="v9",
        zone=zone,
        deleted_carries_row=deleted_carries_row,
    )


def outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """What a call gives, comparable: the event with its record's key order, or the error."""
    try:
        event = fn(*args, **kwargs)
    except RowRejected as exc:
        return ("rejected", exc.reason, exc.detail)
    record = event.record
    value = record["after"] if record["after"] is not None else record["before"]
    return ("event", tuple(event), list(value), list(record), list(record["source"]))


def check(spec: EntitySpec, row: Any, zone: tzinfo, deleted_carries_row: bool) -> None:
    fast = mapper(spec.name, zone, deleted_carries_row).map
    got = outcome(fast, row, *WINDOW, NOW)
    want = outcome(reference_map, spec, row, zone, deleted_carries_row=deleted_carries_row)
    assert got == want


@settings(max_examples=400, deadline=None)
@given(drawn=rows(), zone=st.sampled_from(ZONES), deleted_carries_row=st.booleans())
def test_map_gives_what_the_plain_rules_give(
    drawn: tuple[EntitySpec, Any], zone: tzinfo, deleted_carries_row: bool
) -> None:
    spec, row = drawn
    check(spec, row, zone, deleted_carries_row)


def customers_row(**changes: Any) -> dict[str, Any]:
    """A complete Customers row, every column present, the shape DataConnect usually sends."""
    spec = ENTITIES["Customers"]
    samples = {"guid": str(uuid.UUID(int=7)), "int": 5, "flag": True, "timestamp": ""}
    row = {f.name: samples.get(f.kind, "text") for f in spec.fields}
    row |= {
        "RowThumbprint": "t",
        "RowInserted": "2024-05-01T12:00:00.123Z",
        "RowUpdated": "",
        "RowEvent": "Added",
    }
    return row | changes


@settings(max_examples=200, deadline=None)
@given(
    column=st.sampled_from([f.name for f in ENTITIES["Customers"].fields] + ["RowInserted"]),
    raw=any_value,
    zone=st.sampled_from(ZONES),
)
@example(column="DateOfLastMarketingCampaign", raw="2024-W18-3T12:00:00.123Z", zone=UTC)
@example(column="RowUpdated", raw="2024-05-01T12:00:00,123Z", zone=UTC)
@example(column="LegacyCustomerID", raw=2**63, zone=UTC)
@example(column="CustomerID", raw="0f8fad5b-d9cb-469f-a165-70867728950g", zone=UTC)
def test_one_changed_column_of_a_complete_row(column: str, raw: Any, zone: tzinfo) -> None:
    # A complete row takes the mapper's quickest path; one odd value must still be handled
    # exactly as the rules say.
    check(ENTITIES["Customers"], customers_row(**{column: raw}), zone, True)


@pytest.mark.parametrize("text", ODD_TIMESTAMPS)
@pytest.mark.parametrize("zone", ZONES, ids=str)
def test_every_odd_timestamp_in_every_zone(text: str, zone: tzinfo) -> None:
    row = customers_row(EmailSetDate=text, RowUpdated=text)
    check(ENTITIES["Customers"], row, zone, True)
