"""The hot-path shortcuts give exactly what the plain rules give: epoch milliseconds straight
from the text, and the mapper's skip of values that already have the right type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.entities import load_entities
from publisher.errors import RowRejected
from publisher.mapping import RowMapper
from publisher.timefmt import parse_timestamp, timestamp_millis, to_millis

ZONES = [UTC, ZoneInfo("America/Regina"), ZoneInfo("Europe/London"), timezone(-timedelta(hours=3))]
NAIVE_MIN = datetime(1900, 1, 1)  # noqa: DTZ001 - hypothesis needs naive bounds
NAIVE_MAX = datetime(2100, 1, 1)  # noqa: DTZ001
SPELLINGS = [
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%fZ",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S.%f+02:00",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
]


@given(
    moment=st.datetimes(min_value=NAIVE_MIN, max_value=NAIVE_MAX),
    spelling=st.sampled_from(SPELLINGS),
    digits=st.integers(0, 7),
    zone=st.sampled_from(ZONES),
)
def test_timestamp_millis_is_to_millis_of_the_parsed_time(
    moment: datetime, spelling: str, digits: int, zone: Any
) -> None:
    text = moment.strftime(spelling)
    if "%f" in spelling:  # 0 to 7 fractional digits, as DataConnect sends them
        fraction = moment.strftime("%f") + "3"
        head, _, tail = text.partition(moment.strftime(".%f"))
        text = head + ("." + fraction[:digits] if digits else "") + tail
    parsed = parse_timestamp(text, zone)
    assert parsed is not None
    assert timestamp_millis(text, zone) == to_millis(parsed)


@pytest.mark.parametrize(
    "text", ["2024-13-01T00:00:00", "2024-01-01T25:00:00Z", "yesterday", "2024-01-01T00:00:00+2"]
)
def test_timestamp_millis_refuses_what_parse_timestamp_refuses(text: str) -> None:
    with pytest.raises(ValueError) as plain:
        parse_timestamp(text)
    with pytest.raises(ValueError) as fast:
        timestamp_millis(text)
    assert str(fast.value) == str(plain.value)
    assert timestamp_millis("") is None


def test_to_millis_floors_before_the_epoch() -> None:
    assert to_millis(datetime(1969, 12, 31, 23, 59, 59, 999_999, UTC)) == -1
    assert to_millis(datetime(1970, 1, 1, 0, 0, 0, 1_999, UTC)) == 1


MAPPER = RowMapper(load_entities()["Customers"], source_name="s", version="v")


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "CustomerID": "0F8FAD5B-D9CB-469F-A165-70867728950E",
        "RowThumbprint": "t1",
        "RowInserted": "2024-01-01T00:00:00Z",
        "RowUpdated": "",
        "RowEvent": "Added",
    }
    row.update(changes)
    return row


def _after(row: dict[str, Any]) -> dict[str, Any]:
    record = MAPPER.map(row, 0, 1, 2).record
    after: dict[str, Any] = record["after"]
    return after


def test_values_of_the_right_type_pass_unchanged_and_others_convert() -> None:
    after = _after(
        _row(LegacyCustomerID=2**63 - 1, DoNotEmail=True, DoNotCall="", Title=5, Notes=None)
    )
    assert after["LegacyCustomerID"] == 2**63 - 1
    assert after["DoNotEmail"] is True and after["DoNotCall"] is None
    assert after["Title"] == "5" and after["Notes"] is None
    assert after["CustomerID"] == "0f8fad5b-d9cb-469f-a165-70867728950e"


def test_a_json_integer_out_of_range_is_still_rejected() -> None:
    with pytest.raises(RowRejected) as exc:
        MAPPER.map(_row(LegacyCustomerID=2**63), 0, 1, 2)
    assert exc.value.detail == "LegacyCustomerID: integer does not fit in 64 bits"


def test_with_two_bad_values_the_first_in_schema_order_is_named() -> None:
    # LegacyCustomerID (an int) is the schema's second field, DoNotEmail (a flag) comes later.
    with pytest.raises(RowRejected) as exc:
        MAPPER.map(_row(DoNotEmail="maybe", LegacyCustomerID="x"), 0, 1, 2)
    assert exc.value.detail.startswith("LegacyCustomerID:")
    with pytest.raises(RowRejected) as exc:
        MAPPER.map(_row(DoNotEmail="maybe", Title=[1]), 0, 1, 2)
    assert exc.value.detail.startswith("DoNotEmail:")  # typed fields before plain strings


def test_unknown_columns_are_found_however_many_known_ones_are_missing() -> None:
    row = _row(Brand="X")  # few known columns, one unknown: the widths differ anyway
    event = MAPPER.map(row, 0, 1, 2)
    assert event.unknown_fields == ("Brand",)
    full = {f.name: None for f in load_entities()["Customers"].fields} | _row()
    assert MAPPER.map(full, 0, 1, 2).unknown_fields == ()
    assert MAPPER.map(full | {"_extra": 1}, 0, 1, 2).unknown_fields == ("_extra",)
