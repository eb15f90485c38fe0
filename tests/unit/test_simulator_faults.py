"""Injected faults through the in-process transport: schedules, rates, broken bodies, 429."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from publisher.simulator import FaultRule, FaultSettings, ManualClock, Simulator, SimulatorSettings
from publisher.simulator.testing import login, password_form, window

START = datetime(2024, 2, 1, tzinfo=UTC)
END = datetime(2024, 2, 2, tzinfo=UTC)
SETTINGS = SimulatorSettings(default_rows=500, profiles=16, history_start=START, history_end=END)
WINDOW = window(START, START + timedelta(hours=2), SETTINGS)


class Rig:
    """A logged-in client on a simulator with fault rules; sleeping is recorded, not done."""

    def __init__(
        self,
        *rules: FaultRule,
        seed: int = 0,
        sleep: Callable[[float], None] | None = None,
        **settings: Any,
    ) -> None:
        self.slept: list[float] = []
        self.sim = Simulator(
            replace(SETTINGS, **settings),
            ManualClock(END),
            faults=FaultSettings(seed, rules),
            sleep=sleep or self.slept.append,
        )
        self.client = httpx.Client(transport=self.sim.transport(), base_url="http://dc.test")
        self.auth = login(self.client, self.sim.settings)

    def get(self, entity: str = "Customers") -> httpx.Response:
        return self.client.get(f"/deltas/{entity}", params=WINDOW, headers=self.auth)

    def statuses(self, n: int, entity: str = "Customers") -> list[int]:
        return [self.get(entity).status_code for _ in range(n)]


def test_the_next_n_requests_fail_then_service_resumes() -> None:
    rig = Rig(FaultRule("error", status=503, count=2, retry_after=3))
    first = rig.get()
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "3"
    assert first.json() == {"Error": True, "Message": "The service is unavailable."}
    assert rig.statuses(3) == [503, 200, 200]


def test_a_rule_for_one_entity_leaves_the_others_alone() -> None:
    rig = Rig(FaultRule("error", status=500, entity="Activities"))
    assert rig.statuses(2, "Activities") == [500, 500]
    assert rig.statuses(2, "Customers") == [200, 200]


def test_rate_rules_are_reproducible_for_a_seed() -> None:
    rule = FaultRule("error", rate=0.3, status=500)
    runs = [Rig(rule, seed=seed).statuses(40) for seed in (11, 11, 12)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert 3 <= runs[0].count(500) <= 25


def test_dropped_connection_raises_like_a_real_socket() -> None:
    rig = Rig(FaultRule("drop", count=1))
    with pytest.raises(httpx.RemoteProtocolError):
        rig.get()
    assert rig.get().status_code == 200


def test_drop_mid_body_fails_while_reading() -> None:
    rig = Rig(FaultRule("drop_mid_body", count=1))
    with pytest.raises(httpx.RemoteProtocolError):
        rig.get()
    with rig.client.stream("GET", "/deltas/Customers", params=WINDOW, headers=rig.auth) as r:
        assert r.status_code == 200
        r.read()


@pytest.mark.parametrize("kind", ["truncate", "malformed"])
def test_broken_bodies_are_complete_http_200_with_bad_json(kind: str) -> None:
    rig = Rig(FaultRule(kind, count=1))  # type: ignore[arg-type]
    broken = rig.get()
    assert broken.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(broken.content)
    assert isinstance(rig.get().json(), list)


def test_slow_responses_wait_and_then_answer() -> None:
    rig = Rig(FaultRule("slow", delay=2.5, count=1), FaultRule("error", count=1, rate=1.0))
    assert rig.get().status_code == 503  # slow combines with the error
    assert rig.slept == [2.5]
    assert rig.get().status_code == 200


def test_token_endpoint_faults() -> None:
    rig = Rig()
    rig.client.post(
        "/_simulator/faults", json={"rules": [{"kind": "error", "endpoint": "token", "count": 1}]}
    )
    assert rig.client.post("/v1/oauth2/token", data=password_form(SETTINGS)).status_code == 503
    assert rig.client.post("/v1/oauth2/token", data=password_form(SETTINGS)).status_code == 200
    assert rig.get().status_code == 200


def test_faults_are_read_and_replaced_at_runtime() -> None:
    rig = Rig()
    new = {"seed": 3, "rules": [{"kind": "error", "status": 500, "count": 2}]}
    assert rig.client.post("/_simulator/faults", json=new).status_code == 200
    assert rig.statuses(1) == [500]
    state = rig.client.get("/_simulator/faults").json()
    assert state["seed"] == 3
    assert state["rules"][0]["count"] == 1  # one firing left
    stats = rig.client.get("/_simulator/stats").json()
    assert stats["faults_injected"] == {"error": 1}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"rules": [{"kind": "explode"}]}',
        b'{"rules": [{"kind": "error", "rate": 2}]}',
        b'{"rules": [{"kind": "error", "rate": "often"}]}',
        b'{"rules": [{"kind": "error", "retry_after": 1.5}]}',
        b'{"rules": [{"kind": "error", "count": true}]}',
        b'{"rules": [{"kind": "error", "colour": "red"}]}',
        b'{"rules": {}, "seed": 1}',
        b'{"rulez": []}',
    ],
)
def test_invalid_fault_settings_are_400_and_change_nothing(body: bytes) -> None:
    rig = Rig(FaultRule("error", count=5))
    response = rig.client.post("/_simulator/faults", content=body)
    assert response.status_code == 400
    assert rig.client.get("/_simulator/faults").json()["rules"][0]["count"] == 5


def test_more_than_max_in_flight_requests_get_429() -> None:
    # Each slow request "sleeps" by sending the next request, so while the third request
    # arrives the first two are still in flight.
    answers: list[httpx.Response] = []
    rig = Rig(
        FaultRule("slow", delay=1, count=2),
        max_in_flight=2,
        sleep=lambda _: answers.append(rig.get()),
    )
    assert rig.get().status_code == 200
    assert [r.status_code for r in answers] == [429, 200]
    assert answers[0].json() == {
        "Error": True,
        "Message": "Rate Limiting Applied. 2 active requests are already in progress.",
    }
    stats = rig.client.get("/_simulator/stats").json()
    assert stats["peak_in_flight"] == 2
    assert stats["in_flight"] == 0
    assert rig.get().status_code == 200  # finished requests free their slots
