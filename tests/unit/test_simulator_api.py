"""The Deltas endpoint through the in-process transport: parameters, filters, errors, settings."""

from __future__ import annotations

import gzip
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from publisher.simulator import ManualClock, Simulator, SimulatorSettings
from publisher.simulator.testing import login, window
from publisher.timefmt import format_request_date, parse_timestamp

START = datetime(2024, 2, 1, tzinfo=UTC)
END = datetime(2024, 2, 2, tzinfo=UTC)
BASE: dict[str, Any] = {
    "default_rows": 2000,
    "profiles": 32,
    "history_start": START,
    "history_end": END,
}


class Api:
    """A logged-in client on a fresh simulator."""

    def __init__(self, **overrides: Any) -> None:
        self.settings = SimulatorSettings(**BASE | overrides)
        self.sim = Simulator(self.settings, ManualClock(END))
        self.client = httpx.Client(transport=self.sim.transport(), base_url="http://dc.test")
        self.auth = login(self.client, self.settings)

    def get(self, entity: str, params: dict[str, str], **kw: Any) -> httpx.Response:
        headers = self.auth | kw.pop("headers", {})
        return self.client.get(self.sim.deltas_path(entity), params=params, headers=headers, **kw)

    def rows(self, entity: str, start: datetime, stop: datetime, **extra: str) -> list[Any]:
        response = self.get(entity, window(start, stop, self.settings) | extra)
        assert response.status_code == 200, response.text
        rows: list[Any] = response.json()
        return rows

    def truth(self, entity: str, start: datetime = START, stop: datetime = END) -> list[Any]:
        return [orjson.loads(r) for r in self.sim.changes(entity, start, stop)]


@pytest.fixture(scope="module")
def api() -> Api:
    return Api()


def thumbprints(rows: list[Any]) -> list[str]:
    return [r["RowThumbprint"] for r in rows]


def test_a_window_returns_exactly_the_ground_truth_rows(api: Api) -> None:
    stop = START + timedelta(hours=3)
    assert api.rows("Customers", START, stop) == api.truth("Customers", START, stop)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"StopDate": "2024-02-01T01:00:00.000"}, "StartDate is required."),
        ({"StartDate": "2024-02-01T00:00:00.000"}, "StopDate is required."),
        ({"StartDate": "", "StopDate": "2024-02-01T01:00:00.000"}, "StartDate is required."),
        ({"StartDate": "yesterday", "StopDate": "2024-02-01T01:00:00.000"}, "not a valid date"),
        ({"StartDate": "2024-02-30T00:00:00.000", "StopDate": "2024-03-01T00:00:00"}, "valid"),
        (
            {"StartDate": "2024-02-01T02:00:00.000", "StopDate": "2024-02-01T01:00:00.000"},
            "earlier",
        ),
    ],
)
def test_bad_dates_are_400_with_the_dataconnect_error_body(
    api: Api, params: dict[str, str], message: str
) -> None:
    response = api.get("Customers", params)
    assert response.status_code == 400
    body = response.json()
    assert body["Error"] is True
    assert message in body["Message"]


def test_equal_start_and_stop_is_an_empty_window(api: Api) -> None:
    assert api.rows("Customers", START + timedelta(hours=1), START + timedelta(hours=1)) == []


@pytest.mark.parametrize(
    "path", ["/deltas/Nope", "/deltas", "/deltas/Customers/extra", "/api/Customers", "/"]
)
def test_unknown_paths_are_404(api: Api, path: str) -> None:
    response = api.client.get(path, params=window(START, END, api.settings), headers=api.auth)
    assert response.status_code == 404
    assert response.json()["Error"] is True


def test_entity_names_in_the_path_ignore_case(api: Api) -> None:
    params = window(START, START + timedelta(hours=1), api.settings)
    lower = api.client.get("/deltas/customers", params=params, headers=api.auth)
    assert lower.status_code == 200
    assert lower.json() == api.rows("Customers", START, START + timedelta(hours=1))


def test_other_methods_are_405(api: Api) -> None:
    response = api.client.delete("/deltas/Customers", headers=api.auth)
    assert response.status_code == 405


def test_post_form_works_and_url_parameters_win(api: Api) -> None:
    stop = START + timedelta(hours=2)
    expected = api.rows("Customers", START, stop)
    form = window(START, stop, api.settings)
    posted = api.client.post("/deltas/Customers", data=form, headers=api.auth)
    assert posted.json() == expected
    wrong_body = window(START, END, api.settings)
    mixed = api.client.post(
        "/deltas/Customers",
        params={"StopDate": form["StopDate"]},
        data=wrong_body,
        headers=api.auth,
    )
    assert mixed.json() == expected


def stores_of(api: Api, location_type: str, ids: list[int]) -> set[int]:
    info = api.client.get("/_simulator/info").json()
    field = {"Store": "id", "District": "district", "Region": "region", "Channel": "channel"}
    if location_type == "Company" or ids == [-1]:
        return {s["id"] for s in info["stores"]}
    return {s["id"] for s in info["stores"] if s[field[location_type]] in ids}


@pytest.mark.parametrize(
    ("location_type", "ids"),
    [
        ("Store", [33484]),
        ("Store", [33485, 33490, 33507]),
        ("District", [101]),
        ("Region", [10, 12]),
        ("Channel", [3]),
        ("Company", [1]),
        ("Store", [-1]),
    ],
)
def test_location_filters_select_rows_of_the_stores_under_the_ids(
    api: Api, location_type: str, ids: list[int]
) -> None:
    wanted = stores_of(api, location_type, ids)
    stop = START + timedelta(hours=6)
    for entity, field in (("Customers", "StoreLocationID"), ("FollowUps", "LocationID")):
        got = api.rows(
            entity,
            START,
            stop,
            LocationType=location_type,
            LocationTypeIDs=",".join(map(str, ids)),
        )
        expected = [r for r in api.truth(entity, START, stop) if r[field] in wanted]
        assert got == expected
        assert got


def test_unknown_location_ids_select_nothing(api: Api) -> None:
    rows = api.rows("Customers", START, END, LocationType="Store", LocationTypeIDs="999")
    assert rows == []


@pytest.mark.parametrize(
    "params",
    [
        {"LocationType": "Planet", "LocationTypeIDs": "1"},
        {"LocationType": "Store", "LocationTypeIDs": "abc"},
        {"LocationType": "Store", "LocationTypeIDs": "1;2"},
        {"LocationTypeIDs": "33484"},
    ],
)
def test_malformed_location_filters_are_400(api: Api, params: dict[str, str]) -> None:
    response = api.get("Customers", window(START, END, api.settings) | params)
    assert response.status_code == 400


def test_language_code_is_only_an_activities_parameter(api: Api) -> None:
    base = window(START, START + timedelta(hours=1), api.settings)
    assert api.get("Activities", base | {"LanguageCode": "fr-ca"}).status_code == 200
    assert api.get("Activities", base | {"LanguageCode": "not a code"}).status_code == 400
    refused = api.get("Customers", base | {"LanguageCode": "en-us"})
    assert refused.status_code == 400
    assert "LanguageCode" in refused.json()["Message"]
    assert api.get("Discussions", base | {"LocationType": "Store"}).status_code == 400
    lenient = Api(strict_params=False)
    assert lenient.get("Customers", base | {"LanguageCode": "en-us", "x": "1"}).status_code == 200


def test_gzip_when_asked_unless_disabled(api: Api) -> None:
    params = window(START, START + timedelta(hours=1), api.settings)
    zipped = api.get("Customers", params, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    plain = api.get("Customers", params, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert zipped.json() == plain.json()
    raw = api.sim.handle(
        "GET", "/deltas/Customers", params, api.auth | {"accept-encoding": "gzip"}, b""
    )
    assert gzip.decompress(raw.body) == plain.content
    off = Api(gzip=False)
    assert (
        "content-encoding"
        not in off.get("Customers", params, headers={"Accept-Encoding": "gzip"}).headers
    )


def test_stop_bound_inclusivity_is_a_setting() -> None:
    exclusive, inclusive = Api(), Api(stop_inclusive=True, start_inclusive=False)
    row = exclusive.truth("Customers")[500]
    at = parse_timestamp(row["RowUpdated"] or row["RowInserted"])
    assert at is not None
    before = exclusive.rows("Customers", at - timedelta(minutes=5), at)
    assert row not in before
    assert row in exclusive.rows("Customers", at, at + timedelta(minutes=5))
    assert row in inclusive.rows("Customers", at - timedelta(minutes=5), at)
    assert row not in inclusive.rows("Customers", at, at + timedelta(minutes=5))


def test_request_dates_are_read_in_the_configured_zone() -> None:
    zone = ZoneInfo("America/Edmonton")
    local = Api(zone="America/Edmonton")
    stop = START + timedelta(hours=2)
    params = {
        "StartDate": format_request_date(START, zone),
        "StopDate": format_request_date(stop, zone),
    }
    assert local.get("Customers", params).json() == local.truth("Customers", START, stop)
    utc_reading = {
        k: format_request_date(v, UTC) for k, v in (("StartDate", START), ("StopDate", stop))
    }
    assert local.get("Customers", utc_reading).json() != local.truth("Customers", START, stop)


def test_shuffled_order_is_a_permutation_of_change_time_order() -> None:
    ordered = Api().rows("Customers", START, START + timedelta(hours=4))
    shuffled = Api(order="shuffled").rows("Customers", START, START + timedelta(hours=4))
    assert shuffled != ordered
    assert sorted(thumbprints(shuffled)) == sorted(thumbprints(ordered))


def test_413_threshold_in_exact_mode() -> None:
    probe = Api()
    stop = START + timedelta(hours=3)
    count = len(probe.truth("Customers", START, stop))
    at_limit = Api(max_rows=count, limit_mode="exact")
    assert at_limit.get("Customers", window(START, stop, at_limit.settings)).status_code == 200
    over = Api(max_rows=count - 1, limit_mode="exact")
    response = over.get("Customers", window(START, stop, over.settings))
    assert response.status_code == 413
    assert f"{count} rows" in response.json()["Message"]


def test_413_in_estimate_mode_refuses_big_windows_and_halves_pass() -> None:
    api = Api(max_rows=1200)  # about 2000 rows in the day
    assert api.get("Customers", window(START, END, api.settings)).status_code == 413
    middle = START + (END - START) / 2
    assert api.get("Customers", window(START, middle, api.settings)).status_code == 200
    assert api.get("Customers", window(middle, END, api.settings)).status_code == 200


def test_denied_entities_and_locations_are_403() -> None:
    api = Api(denied_entities=frozenset({"Customers"}), allowed_location_ids=frozenset({101}))
    params = window(START, START + timedelta(hours=6), api.settings)
    assert api.get("Customers", params).status_code == 403
    allowed = stores_of(api, "District", [101])
    assert (
        api.get(
            "FollowUps", params | {"LocationType": "Region", "LocationTypeIDs": "10"}
        ).status_code
        == 403
    )
    assert (
        api.get(
            "FollowUps", params | {"LocationType": "Store", "LocationTypeIDs": "33484"}
        ).status_code
        == 403
    )
    inside = sorted(allowed)[0]
    ok = api.get("FollowUps", params | {"LocationType": "Store", "LocationTypeIDs": str(inside)})
    assert ok.status_code == 200
    everything = api.get("FollowUps", params).json()
    assert everything and {r["LocationID"] for r in everything} <= allowed
    assert api.get("Discussions", params).status_code == 200


def test_deltas_path_is_a_template() -> None:
    api = Api(deltas_path="/api/v1/Deltas/{entity}/Changes")
    params = window(START, START + timedelta(hours=1), api.settings)
    ok = api.client.get("/api/v1/Deltas/Customers/Changes", params=params, headers=api.auth)
    assert ok.status_code == 200
    assert api.client.get("/deltas/Customers", params=params, headers=api.auth).status_code == 404


def test_stats_count_requests_rows_and_statuses(api: Api) -> None:
    fresh = Api()
    rows = fresh.rows("Customers", START, START + timedelta(hours=1))
    fresh.get("Customers", {})
    stats = fresh.client.get("/_simulator/stats").json()
    assert stats["rows_served"] == {"Customers": len(rows)}
    assert stats["requests_by_status"] == {"200": 2, "400": 1}  # token + data, then the 400
    assert stats["in_flight"] == 0


def test_prefetch_renders_the_following_blocks_without_changing_any_row() -> None:
    api, plain = Api(prefetch_blocks=6, block_size=16), Api(block_size=16)
    hour = timedelta(hours=1)
    first = api.rows("Customers", START, START + hour)
    assert first == plain.rows("Customers", START, START + hour)
    without = plain.sim.dataset.cache_bytes
    for _ in range(500):  # the background thread renders the blocks after the window
        if api.sim.dataset.cache_bytes > without:
            break
        threading.Event().wait(0.01)
    assert api.sim.dataset.cache_bytes > without
    following = api.rows("Customers", START + hour, START + 2 * hour)
    assert following == api.truth("Customers", START + hour, START + 2 * hour)
    assert following == plain.rows("Customers", START + hour, START + 2 * hour)
