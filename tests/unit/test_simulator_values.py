"""Row values: the vendor page's field names and JSON types, exact timestamps, real-looking data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.entities import TRACKING_FIELDS, load_entities
from publisher.simulator import ManualClock, Simulator, SimulatorSettings
from publisher.simulator.testing import kind_matches
from publisher.simulator.timestamps import TimestampFormatter
from publisher.simulator.values import CITIES
from publisher.timefmt import parse_timestamp, to_millis

START = datetime(2024, 2, 1, tzinfo=UTC)
END = datetime(2024, 2, 2, tzinfo=UTC)
ENTITIES = load_entities()


def rows(entity: str, **overrides: Any) -> list[dict[str, Any]]:
    base: dict[str, Any] = {
        "default_rows": 800,
        "profiles": 128,
        "history_start": START,
        "history_end": END,
    }
    settings = SimulatorSettings(**base | overrides)
    sim = Simulator(settings, ManualClock(END))
    return [orjson.loads(r) for r in sim.changes(entity, START, END)]


@pytest.mark.parametrize("entity", sorted(ENTITIES))
def test_rows_have_exactly_the_declared_fields_with_the_page_json_types(entity: str) -> None:
    spec = ENTITIES[entity]
    expected = [f.name for f in spec.fields] + list(TRACKING_FIELDS)
    for row in rows(entity):
        assert list(row) == expected
        for f in spec.fields:
            assert kind_matches(f.kind, row[f.name]), (f.name, f.kind, row[f.name])


def test_value_spellings_match_the_vendor_page_examples() -> None:
    customers = rows("Customers")
    assert any(r["DoNotEmail"] == "" for r in customers)  # flags shown as ""
    assert any(isinstance(r["DoNotEmail"], bool) for r in customers)
    assert any(r["EmailSetDate"] == "" for r in customers)  # empty dates are ""
    assert any(r["FirstName"] == "" for r in customers)
    receivables = rows("AccountsReceivable")
    assert any(r["BillingPostalOrZipCode"] == 0 for r in receivables)  # the page's number 0
    assert any(isinstance(r["BillingPostalOrZipCode"], str) for r in receivables)
    assert any(isinstance(r["CreditLimit"], int) for r in receivables)  # 10000
    assert any(isinstance(r["Balance"], float) for r in receivables)  # 12.5
    activities = rows("Activities")
    numbers = [r["ContactNumber"] for r in activities]
    assert all(isinstance(n, int) and 10**9 <= n < 10**10 for n in numbers)  # 10 digits
    assert any(n > 2**32 for n in numbers)  # 5555555555 does not fit 32 bits
    assert any(r["DescriptionID"] == -1 for r in activities)


def test_values_look_real() -> None:
    customers = [r for r in rows("Customers") if r["RowEvent"] == "Added"]
    for r in customers:
        assert r["City"] in CITIES
        if r["Email"]:
            assert r["Email"].endswith("@example.com")
            assert r["Email"].startswith(r["FirstName"].lower().replace("'", "")[:3] or "")
    names = {(r["FirstName"], r["LastName"]) for r in customers}
    assert len(names) > 100
    legacy = [r["LegacyCustomerID"] for r in customers]
    assert len(set(legacy)) == len(legacy)


def test_timestamps_come_in_several_exact_shapes() -> None:
    found = rows("Customers") + rows("Activities")
    texts = [r["RowInserted"] for r in found] + [r["RowUpdated"] for r in found if r["RowUpdated"]]
    assert any(t.endswith("Z") for t in texts) and any(not t.endswith("Z") for t in texts)
    digits = {len(t.rstrip("Z").partition(".")[2]) for t in texts}
    assert {0, 3, 7} <= digits
    plain = rows("Customers", varied_timestamps=False)
    assert all(r["RowInserted"].endswith("Z") and len(r["RowInserted"]) == 24 for r in plain)


def test_zoneless_timestamps_are_local_to_the_configured_zone() -> None:
    utc_rows = rows("Discussions")
    local_rows = rows("Discussions", zone="America/Edmonton")
    zone = ZoneInfo("America/Edmonton")
    pairs = list(zip(utc_rows, local_rows, strict=True))
    assert any(not b["RowInserted"].endswith("Z") for _, b in pairs)
    for a, b in pairs:
        assert parse_timestamp(a["RowInserted"]) == parse_timestamp(b["RowInserted"], zone)


@given(st.integers(0, 4_102_444_800_000), st.integers(0, 99))
def test_every_shape_parses_back_to_the_same_millisecond(millis: int, draw: int) -> None:
    for zone in ("UTC", "America/St_Johns"):
        formatter = TimestampFormatter(ZoneInfo(zone), varied=True)
        moment = parse_timestamp(formatter.format(millis, draw), ZoneInfo(zone))
        assert moment is not None
        assert to_millis(moment) == millis
