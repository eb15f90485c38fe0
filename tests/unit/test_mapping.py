"""Row -> change event: every conversion rule, every reject reason, the envelope's shape."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_UP, Decimal, localcontext
from typing import Any

import orjson
import pytest

from publisher.entities import EntitySpec, load_entities
from publisher.errors import RowRejected
from publisher.mapping import (
    ChangeEvent,
    RowMapper,
    convert_bool,
    convert_digits,
    convert_guid,
    convert_int,
    convert_money,
    convert_string,
    timestamp_converter,
)

GUID = "0F8FAD5B-D9CB-469F-A165-70867728950E"
THUMB = "7C9E6679-7425-40DE-944B-E07FC1F90AE7"
WINDOW = (1_556_150_400_000, 1_556_154_000_000)
NOW = 1_556_160_000_000
ENTITIES = load_entities()


def ms(utc_wall_time: str) -> int:
    """Epoch ms of ``"YYYY-MM-DD HH:MM:SS[.fff]"`` in UTC, computed without the code under test."""
    moment = datetime.fromisoformat(utc_wall_time + "+00:00")
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def customer_row(**changes: Any) -> dict[str, Any]:
    """A Customers row shaped like the vendor page's example, with ``changes`` applied."""
    row: dict[str, Any] = {
        "CustomerID": GUID,
        "LegacyCustomerID": 1234,
        "FirstName": "Jane",
        "LastName": "Doe",
        "ZipPostal": 90210,
        "DefaultPhone": 5555555555,
        "DoNotEmail": "",
        "DoNotCall": True,
        "DateOfLastMarketingCampaign": "2019-04-25T06:19:12.343Z",
        "EmailSetDate": "",
        "StoreLocationID": "42",
        "RowThumbprint": THUMB,
        "RowInserted": "2019-04-25T06:19:12.343Z",
        "RowUpdated": "",
        "RowEvent": "Added",
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not _ABSENT}


_ABSENT: Any = object()


def mapper(name: str = "Customers", **kwargs: Any) -> RowMapper:
    return RowMapper(ENTITIES[name], source_name="store-a", version="1.2.3", **kwargs)


def mapped(row: Any, name: str = "Customers", **kwargs: Any) -> ChangeEvent:
    return mapper(name, **kwargs).map(row, *WINDOW, NOW)


def rejected(row: Any, name: str = "Customers", **kwargs: Any) -> RowRejected:
    with pytest.raises(RowRejected) as info:
        mapped(row, name, **kwargs)
    return info.value


# --- conversion rules, one kind at a time -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (GUID, GUID.lower()),
        (GUID.lower(), GUID.lower()),
        ("{" + GUID + "}", GUID.lower()),
        (GUID.replace("-", ""), GUID.lower()),
        ("", None),
        (None, None),
    ],
)
def test_guid_is_kept_as_canonical_lowercase_text(raw: Any, expected: str | None) -> None:
    assert convert_guid(raw) == expected


@pytest.mark.parametrize("raw", ["not-a-guid", GUID[:-1], GUID + "0", 5, True, {"a": 1}])
def test_guid_rejects_non_guids(raw: Any) -> None:
    with pytest.raises(ValueError, match=r"GUID|hexadecimal"):
        convert_guid(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (42, 42),
        (-1, -1),
        ("42", 42),
        ("-7", -7),
        ("+3", 3),
        (42.0, 42),
        (2**63 - 1, 2**63 - 1),
        (-(2**63), -(2**63)),
        ("", None),
        (None, None),
    ],
)
def test_int_accepts_integers_and_integer_text(raw: Any, expected: int | None) -> None:
    assert convert_int(raw) == expected


@pytest.mark.parametrize(
    "raw", [True, False, "4.2", 4.5, " 42", "1_000", "\u0663", "x", 2**63, -(2**63) - 1, [1]]
)
def test_int_rejects_booleans_fractions_and_non_numbers(raw: Any) -> None:
    with pytest.raises(ValueError, match="integer"):
        convert_int(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jane", "Jane"),
        ("", ""),
        (None, None),
        (5555555555, "5555555555"),
        (0, "0"),
        (1.5, "1.5"),
        ("tab\there\x00nul", "tab\there\x00nul"),
    ],
)
def test_string_keeps_text_and_writes_numbers_as_json_text(raw: Any, expected: Any) -> None:
    assert convert_string(raw) == expected


@pytest.mark.parametrize("raw", [True, {"a": 1}, [1, 2]])
def test_string_rejects_booleans_objects_and_arrays(raw: Any) -> None:
    with pytest.raises(ValueError, match="string"):
        convert_string(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (5555555555, "5555555555"),
        (0, "0"),
        (5555555555.0, "5555555555"),
        ("0123", "0123"),
        ("K1A 0B1", "K1A 0B1"),
        ("", ""),
        (None, None),
    ],
)
def test_phone_and_postal_are_text(raw: Any, expected: Any) -> None:
    assert convert_digits(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (12.5, "12.5000"),
        (0.1, "0.1000"),  # through repr, not the binary 0.1000000000000000055...
        (1.1, "1.1000"),
        ("0.1", "0.1000"),
        (7, "7.0000"),
        ("-0.5", "-0.5000"),
        (" 3.25 ", "3.2500"),
        ("1e3", "1000.0000"),
        ("1.00005", "1.0000"),  # half-even: down to the even digit
        ("1.00015", "1.0002"),  # half-even: up to the even digit
        ("-2.00025", "-2.0002"),
        ("999999999999999.9999", "999999999999999.9999"),
        # Floats at a rounding boundary: read as the JSON text they came from, the binary
        # value (1.00005 is 1.0000500000000001055...) would round the other way.
        (1.00005, "1.0000"),
        (0.00025, "0.0002"),
        (123.45675, "123.4568"),
        ("", None),
        (None, None),
    ],
)
def test_money_is_a_decimal_with_four_places(raw: Any, expected: str | None) -> None:
    got = convert_money(raw)
    if expected is None:
        assert got is None
    else:
        assert isinstance(got, Decimal)
        assert str(got) == expected
        assert got.as_tuple().exponent == -4


def test_money_rounding_does_not_depend_on_the_thread_decimal_context() -> None:
    with localcontext(rounding=ROUND_UP, prec=5):
        assert str(convert_money("1.00005")) == "1.0000"
        assert str(convert_money("123456789012345.6789")) == "123456789012345.6789"


@pytest.mark.parametrize(
    "raw",
    [
        "1000000000000000",  # 16 digits before the point
        10**15,
        "999999999999999.99995",  # rounds up to 16 digits before the point
        1e300,
        "NaN",
        "Infinity",
        "1_000",
        "12,50",
        "abc",
        True,
        [1],
    ],
)
def test_money_rejects_too_many_digits_and_non_numbers(raw: Any) -> None:
    with pytest.raises(ValueError, match="amount"):
        convert_money(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("1", True),
        ("0", False),
        (1, True),
        (0, False),
        ("", None),
        (None, None),
    ],
)
def test_bool_and_flag_spellings(raw: Any, expected: bool | None) -> None:
    assert convert_bool(raw) is expected


@pytest.mark.parametrize("raw", [2, -1, 1.0, "yes", "Y", [True], {"a": 1}])
def test_bool_rejects_other_values(raw: Any) -> None:
    with pytest.raises(ValueError, match="boolean"):
        convert_bool(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2019-04-25T06:19:12.343Z", ms("2019-04-25 06:19:12.343")),
        ("2019-04-25T06:19:12.3439999", ms("2019-04-25 06:19:12.343")),  # floored
        ("2019-04-25T06:19:12", ms("2019-04-25 06:19:12")),
        ("2019-04-25T06:19:12+02:00", ms("2019-04-25 04:19:12")),
        ("1900-01-01T00:00:00", ms("1900-01-01 00:00:00")),
        ("", None),
        (None, None),
    ],
)
def test_timestamp_becomes_epoch_millis(raw: Any, expected: int | None) -> None:
    assert timestamp_converter(UTC)(raw) == expected


def test_zoneless_timestamps_are_read_in_the_source_zone() -> None:
    eastern = timezone(timedelta(hours=-5))
    convert = timestamp_converter(eastern)
    assert convert("2019-04-25T06:19:12") == ms("2019-04-25 11:19:12")
    assert convert("2019-04-25T06:19:12Z") == ms("2019-04-25 06:19:12")


@pytest.mark.parametrize(
    "raw", ["yesterday", "2019-13-01T00:00:00", "2019-04-25", 1556173152, True]
)
def test_timestamp_rejects_unreadable_values(raw: Any) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        timestamp_converter(UTC)(raw)


# --- the envelope ----------------------------------------------------------------------------


def test_added_row_becomes_a_create_event_with_the_row_in_after() -> None:
    event = mapped(customer_row())
    after = event.record["after"]
    assert event.op == "c"
    assert event.record["op"] == "c"
    assert event.record["before"] is None
    assert event.key == GUID.lower()
    assert event.thumbprint == THUMB
    assert after["CustomerID"] == GUID.lower()
    assert after["LegacyCustomerID"] == 1234
    assert after["FirstName"] == "Jane"
    assert after["ZipPostal"] == "90210"
    assert after["DefaultPhone"] == "5555555555"
    assert after["DoNotEmail"] is None
    assert after["DoNotCall"] is True
    assert after["DateOfLastMarketingCampaign"] == ms("2019-04-25 06:19:12.343")
    assert after["EmailSetDate"] is None
    assert after["StoreLocationID"] == 42
    assert after["Email"] is None  # absent from the row
    assert after["_extra"] == {}
    assert event.unknown_fields == ()
    # The row record holds exactly the schema's fields: tracking columns went to source.
    assert set(after) == {f.name for f in ENTITIES["Customers"].fields} | {"_extra"}


def test_source_block_and_timestamps() -> None:
    event = mapped(customer_row(RowUpdated="2019-04-26T00:00:00.5Z", RowEvent="UPDATED"))
    assert event.record["source"] == {
        "connector": "dataconnect-publisher",
        "version": "1.2.3",
        "source": "store-a",
        "entity": "Customers",
        "row_thumbprint": THUMB,
        "row_inserted": ms("2019-04-25 06:19:12.343"),
        "row_updated": ms("2019-04-26 00:00:00.500"),
        "row_event": "UPDATED",
        "window_start": WINDOW[0],
        "window_stop": WINDOW[1],
    }
    assert event.record["ts_ms"] == NOW


@pytest.mark.parametrize(
    ("inserted", "updated", "expected"),
    [
        ("2019-04-25T06:19:12.343Z", "2019-04-26T00:00:00Z", ms("2019-04-26 00:00:00")),
        ("2019-04-25T06:19:12.343Z", "", ms("2019-04-25 06:19:12.343")),
        ("2019-04-25T06:19:12.343Z", _ABSENT, ms("2019-04-25 06:19:12.343")),
        ("", "", WINDOW[1]),
        (_ABSENT, _ABSENT, WINDOW[1]),
    ],
)
def test_change_time_is_updated_else_inserted_else_window_stop(
    inserted: Any, updated: Any, expected: int
) -> None:
    event = mapped(customer_row(RowInserted=inserted, RowUpdated=updated))
    assert event.change_ms == expected


@pytest.mark.parametrize(
    ("row_event", "op"),
    [("Added", "c"), ("Updated", "u"), ("Deleted", "d"), ("added", "c"), ("DELETED", "d")],
)
def test_row_event_maps_to_op_case_insensitively(row_event: str, op: str) -> None:
    event = mapped(customer_row(RowEvent=row_event))
    assert (event.op, event.record["op"]) == (op, op)
    assert event.record["source"]["row_event"] == row_event


def test_updated_row_carries_only_the_new_version() -> None:
    event = mapped(customer_row(RowEvent="Updated", FirstName="Janet"))
    assert event.record["before"] is None
    assert event.record["after"]["FirstName"] == "Janet"


def test_deleted_row_goes_to_before() -> None:
    event = mapped(customer_row(RowEvent="Deleted"))
    assert event.record["after"] is None
    assert event.record["before"]["FirstName"] == "Jane"
    assert event.record["before"]["LegacyCustomerID"] == 1234


def test_key_only_delete_has_only_the_key_set() -> None:
    row = {"CustomerID": GUID, "RowThumbprint": THUMB, "RowEvent": "Deleted", "RowInserted": ""}
    event = mapped(row)
    before = event.record["before"]
    assert before["CustomerID"] == GUID.lower()
    assert {k: v for k, v in before.items() if v not in (None, {})} == {"CustomerID": GUID.lower()}
    assert event.change_ms == WINDOW[1]


def test_delete_placeholders_are_kept_raw_when_deletes_carry_only_the_key() -> None:
    row = customer_row(RowEvent="Deleted", LegacyCustomerID="n/a", Brand="X")
    with pytest.raises(RowRejected):  # a full-row delete would convert, and this is bad
        mapped(row)
    event = mapped(row, deleted_carries_row=False)
    before = event.record["before"]
    assert before["CustomerID"] == GUID.lower()
    assert before["LegacyCustomerID"] is None and before["FirstName"] is None
    assert before["_extra"]["LegacyCustomerID"] == '"n/a"'
    assert before["_extra"]["FirstName"] == '"Jane"'
    assert before["_extra"]["Brand"] == '"X"'
    assert "RowThumbprint" not in before["_extra"] and "CustomerID" not in before["_extra"]
    assert event.unknown_fields == ("Brand",)
    # Added rows are unaffected by the setting.
    assert mapped(customer_row(), deleted_carries_row=False).record["after"]["FirstName"] == "Jane"


def test_int_key_is_decimal_text() -> None:
    row = {
        "AccountsReceivableID": "0042",
        "CreditLimit": 1500.25,
        "Balance": "-12.345",
        "PORequired": "1",
        "BillingPostalOrZipCode": 0,
        "RowThumbprint": THUMB,
        "RowInserted": "2019-04-25T06:19:12",
        "RowUpdated": "",
        "RowEvent": "Added",
    }
    event = mapped(row, "AccountsReceivable")
    after = event.record["after"]
    assert event.key == "42"
    assert after["AccountsReceivableID"] == 42
    assert after["CreditLimit"] == Decimal("1500.2500")
    assert after["Balance"] == Decimal("-12.3450")
    assert after["PORequired"] is True
    assert after["BillingPostalOrZipCode"] == "0"


def test_unknown_fields_are_kept_as_json_text_in_row_order() -> None:
    row = customer_row(Zeta={"nested": [1, 2.5, None]}, Alpha="x", Beta=None, Gamma=7)
    event = mapped(row)
    extra = event.record["after"]["_extra"]
    assert event.unknown_fields == ("Zeta", "Alpha", "Beta", "Gamma")
    assert extra == {
        "Zeta": '{"nested":[1,2.5,null]}',
        "Alpha": '"x"',
        "Beta": "null",
        "Gamma": "7",
    }
    for name, text in extra.items():
        assert orjson.loads(text) == row[name]
    assert "Zeta" not in event.record["after"]


def test_a_column_named_extra_is_kept_inside_the_map() -> None:
    event = mapped(customer_row(_extra="surprise"))
    assert event.record["after"]["_extra"] == {"_extra": '"surprise"'}
    assert event.unknown_fields == ("_extra",)


def test_huge_strings_and_control_characters_are_kept() -> None:
    text = "x" * 100_000 + "\x00\x1b\r\n\u2028"
    assert mapped(customer_row(Notes=text)).record["after"]["Notes"] == text


def test_map_leaves_the_input_row_alone_and_events_share_no_state() -> None:
    row = customer_row(Extra1=[1])
    before = copy.deepcopy(row)
    m = mapper()
    first = m.map(row, *WINDOW, NOW)
    second = m.map(row, *WINDOW, NOW)
    assert row == before
    first.record["after"]["_extra"]["mutated"] = "1"
    first.record["after"]["FirstName"] = "changed"
    assert second.record["after"]["_extra"] == {"Extra1": "[1]"}
    assert second.record["after"]["FirstName"] == "Jane"
    assert m.map(customer_row(), *WINDOW, NOW).record["after"]["_extra"] == {}


# --- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize("row", [[1, 2], "row", None, 5])
def test_not_an_object(row: Any) -> None:
    assert rejected(row).reason == "not_an_object"


@pytest.mark.parametrize("key", [_ABSENT, None, ""])
def test_missing_key(key: Any) -> None:
    err = rejected(customer_row(CustomerID=key))
    assert err.reason == "missing_key"
    assert "CustomerID" in err.detail


@pytest.mark.parametrize("thumb", [_ABSENT, None, ""])
def test_missing_thumbprint(thumb: Any) -> None:
    assert rejected(customer_row(RowThumbprint=thumb)).reason == "missing_thumbprint"


@pytest.mark.parametrize("event", [_ABSENT, None, "", "Merged", "Add", 1, True])
def test_unknown_row_event_is_rejected_never_guessed(event: Any) -> None:
    assert rejected(customer_row(RowEvent=event)).reason == "unknown_row_event"


@pytest.mark.parametrize(
    "changes",
    [
        {"RowInserted": "yesterday"},
        {"RowUpdated": "2019-02-30T00:00:00"},
        {"RowInserted": 1556173152343},
    ],
)
def test_bad_tracking_timestamp(changes: dict[str, Any]) -> None:
    err = rejected(customer_row(**changes))
    assert err.reason == "bad_timestamp"
    assert next(iter(changes)) in err.detail


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("CustomerID", "jane@example.com"),
        ("LegacyCustomerID", "jane@example.com"),
        ("FirstName", {"jane@example.com": 1}),
        ("DoNotCall", "jane@example.com"),
        ("EmailSetDate", "jane@example.com"),
        ("StoreLocationID", True),
    ],
)
def test_bad_value_names_the_field_but_never_echoes_the_value(field: str, raw: Any) -> None:
    err = rejected(customer_row(**{field: raw}))
    assert err.reason == "bad_value"
    assert err.detail.startswith(field + ":")
    assert "jane" not in str(err)


def test_bad_money_value() -> None:
    row = {
        "AccountsReceivableID": 1,
        "Balance": "12,50",
        "RowThumbprint": THUMB,
        "RowEvent": "Added",
    }
    err = rejected(row, "AccountsReceivable")
    assert (err.reason, err.detail.split(":")[0]) == ("bad_value", "Balance")


def test_non_string_thumbprint_is_a_bad_value() -> None:
    err = rejected(customer_row(RowThumbprint=12))
    assert (err.reason, err.detail.split(":")[0]) == ("bad_value", "RowThumbprint")


def test_rejections_are_checked_in_a_fixed_order() -> None:
    everything_wrong = customer_row(
        CustomerID="", RowThumbprint="", RowEvent="Merged", RowInserted="x", FirstName=True
    )
    assert rejected(everything_wrong).reason == "missing_key"
    assert rejected({**everything_wrong, "CustomerID": GUID}).reason == "missing_thumbprint"
    no_event = {**everything_wrong, "CustomerID": GUID, "RowThumbprint": THUMB}
    assert rejected(no_event).reason == "unknown_row_event"
    assert rejected({**no_event, "RowEvent": "Added"}).reason == "bad_timestamp"
    bad_field = {**no_event, "RowEvent": "Added", "RowInserted": ""}
    assert rejected(bad_field).reason == "bad_value"


def test_every_entity_declaration_builds_a_mapper() -> None:
    for spec in ENTITIES.values():
        assert isinstance(spec, EntitySpec)
        key_kind = next(f.kind for f in spec.fields if f.name == spec.key_field)
        key_raw: Any = GUID if key_kind == "guid" else 7
        row = {spec.key_field: key_raw, "RowThumbprint": THUMB, "RowEvent": "Added"}
        event = mapped(row, spec.name)
        assert event.key == (GUID.lower() if key_kind == "guid" else "7")
        assert event.record["source"]["entity"] == spec.name
