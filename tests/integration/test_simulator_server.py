"""The simulator over real sockets: what a poller sees from a running DataConnect double."""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import orjson
import pytest

from publisher.simulator import (
    TOKEN_PATH,
    FaultRule,
    FaultSettings,
    ManualClock,
    Simulator,
    SimulatorServer,
    SimulatorSettings,
)
from publisher.simulator.testing import login, password_form, window

pytestmark = pytest.mark.integration

START = datetime(2024, 2, 1, tzinfo=UTC)
END = datetime(2024, 2, 2, tzinfo=UTC)
BASE: dict[str, Any] = {
    "default_rows": 3000,
    "profiles": 32,
    "history_start": START,
    "history_end": END,
}


class Live:
    """A running server, a clock to move, a logged-in keep-alive client."""

    def __init__(self, server: SimulatorServer, clock: ManualClock) -> None:
        self.server = server
        self.sim = server.simulator
        self.settings = self.sim.settings
        self.clock = clock
        self.client = httpx.Client(base_url=server.url, timeout=10)
        self.auth = login(self.client, self.settings)

    def get(self, entity: str, start: datetime, stop: datetime, **extra: str) -> httpx.Response:
        params = window(start, stop, self.settings) | extra
        return self.client.get(self.sim.deltas_path(entity), params=params, headers=self.auth)

    def truth(self, entity: str, start: datetime, stop: datetime) -> list[Any]:
        response = self.client.get(
            "/_simulator/changes",
            params={"entity": entity, "start": start.isoformat(), "stop": stop.isoformat()},
        )
        assert response.status_code == 200
        rows: list[Any] = response.json()
        return rows


@contextmanager
def running(faults: FaultSettings | None = None, **overrides: Any) -> Iterator[Live]:
    clock = ManualClock(overrides.pop("now", END))
    sim = Simulator(SimulatorSettings(**BASE | overrides), clock, faults=faults)
    with SimulatorServer(sim) as server:
        live = Live(server, clock)
        try:
            yield live
        finally:
            live.client.close()


def identity(rows: list[Any], entity: str = "Customers") -> Counter[tuple[str, Any, str]]:
    key = {"Customers": "CustomerID", "Activities": "ActivityID"}[entity]
    return Counter((entity, r.get(key), r["RowThumbprint"]) for r in rows)


def test_ground_truth_equals_the_union_of_polled_windows() -> None:
    with running(bad_row_rate=0.02) as live:
        truth = live.truth("Customers", START, END)
        polled: list[Any] = []
        step = timedelta(minutes=37)
        t = START
        while t < END:
            response = live.get("Customers", t, min(t + step, END))
            assert response.status_code == 200
            polled.extend(response.json())
            t += step
        assert identity(polled) == identity(truth)
        assert len(truth) > 2900
        assert any("CustomerID" not in r for r in truth), "bad rows are part of the truth"


def test_same_seed_serves_the_same_bytes() -> None:
    with running(seed=42) as a, running(seed=42) as b, running(seed=43) as c:
        stop = START + timedelta(hours=5)
        first = a.get("Activities", START, stop).content
        assert first == b.get("Activities", START, stop).content
        assert first != c.get("Activities", START, stop).content


def test_location_filter_over_the_wire() -> None:
    with running() as live:
        stop = START + timedelta(hours=8)
        rows = live.get("Customers", START, stop, LocationType="Region", LocationTypeIDs="11")
        assert rows.status_code == 200
        stores = {s["id"] for s in live.client.get("/_simulator/info").json()["stores"]
                  if s["region"] == 11}  # fmt: skip
        expected = [
            r for r in live.truth("Customers", START, stop) if r["StoreLocationID"] in stores
        ]
        assert rows.json() == expected
        assert expected


def test_every_error_path_answers_with_the_dataconnect_body() -> None:
    with running(max_rows=500, denied_entities=frozenset({"Discussions"})) as live:
        hour = START + timedelta(hours=1)
        cases = {
            400: live.client.get("/deltas/Customers", params={"StartDate": "x"}, headers=live.auth),
            401: live.client.get("/deltas/Customers", params=window(START, hour, live.settings)),
            403: live.get("Discussions", START, hour),
            404: live.client.get("/deltas/Nothing", headers=live.auth),
            405: live.client.put("/deltas/Customers", headers=live.auth),
            413: live.get("Customers", START, END),
        }
        for status, response in cases.items():
            assert response.status_code == status
            assert response.json()["Error"] is True
            assert response.json()["Message"]
        assert cases[401].headers["WWW-Authenticate"] == "Bearer"
        stats = live.client.get("/_simulator/stats").json()
        for status in cases:
            assert stats["requests_by_status"][str(status)] == 1


def test_413_threshold_is_exact_in_exact_mode() -> None:
    with running() as probe:
        stop = START + timedelta(hours=2)
        count = len(probe.get("Customers", START, stop).json())
    with running(max_rows=count, limit_mode="exact") as live:
        assert live.get("Customers", START, stop).status_code == 200
        assert live.get("Customers", START, stop + timedelta(minutes=30)).status_code == 413


def test_injected_server_errors_with_retry_after() -> None:
    faults = FaultSettings(0, (FaultRule("error", status=500, count=1, retry_after=7),))
    with running(faults) as live:
        failed = live.get("Customers", START, START + timedelta(hours=1))
        assert failed.status_code == 500
        assert failed.headers["Retry-After"] == "7"
        assert live.get("Customers", START, START + timedelta(hours=1)).status_code == 200


def test_token_expiry_refresh_and_revocation_over_the_wire() -> None:
    with running(token_ttl=60) as live:
        hour = START + timedelta(hours=1)
        assert live.get("Customers", START, hour).status_code == 200
        live.clock.advance(61)
        assert live.get("Customers", START, hour).status_code == 401
        live.auth = login(live.client, live.settings)
        assert live.get("Customers", START, hour).status_code == 200
        tokens = live.client.post(TOKEN_PATH, data=password_form(live.settings)).json()
        live.client.post("/_simulator/tokens/expire")
        live.auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert live.get("Customers", START, hour).status_code == 401
        refresh = {
            "grant_type": "refresh_token",
            "client_id": live.settings.client_id,
            "client_secret": live.settings.client_secret.get_secret_value(),
            "refresh_token": tokens["refresh_token"],
        }
        renewed = live.client.post(TOKEN_PATH, data=refresh)
        assert renewed.status_code == 200
        live.auth = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
        assert live.get("Customers", START, hour).status_code == 200
        live.client.post("/_simulator/tokens/expire", data={"mode": "revoke"})
        assert live.get("Customers", START, hour).status_code == 401
        again = live.client.post(
            TOKEN_PATH, data=refresh | {"refresh_token": renewed.json()["refresh_token"]}
        )
        assert again.json()["error"] == "invalid_grant"


def test_429_when_more_than_max_in_flight_requests_are_held() -> None:
    gate = threading.Event()

    def hold_until_open(_: float) -> None:
        gate.wait(10)  # a slow response stays in flight until the gate opens

    clock = ManualClock(END)
    sim = Simulator(
        SimulatorSettings(**BASE | {"max_in_flight": 3}),
        clock,
        faults=FaultSettings(0, (FaultRule("slow", delay=5, count=3),)),
        sleep=hold_until_open,
    )
    with SimulatorServer(sim) as server, httpx.Client(base_url=server.url, timeout=15) as client:
        auth = login(client, sim.settings)
        params = window(START, START + timedelta(hours=1), sim.settings)
        held: list[int] = []

        def hold() -> None:
            with httpx.Client(base_url=server.url, timeout=15) as own:
                held.append(own.get("/deltas/Customers", params=params, headers=auth).status_code)

        threads = [threading.Thread(target=hold) for _ in range(3)]
        for thread in threads:
            thread.start()
        for _ in range(200):
            if client.get("/_simulator/stats").json()["in_flight"] == 3:
                break
            threading.Event().wait(0.02)
        refused = client.get("/deltas/Customers", params=params, headers=auth)
        gate.set()
        for thread in threads:
            thread.join(10)
        assert refused.status_code == 429
        assert refused.json()["Message"] == (
            "Rate Limiting Applied. 3 active requests are already in progress."
        )
        assert held == [200, 200, 200]
        assert client.get("/deltas/Customers", params=params, headers=auth).status_code == 200


def test_late_rows_show_up_in_an_already_polled_window() -> None:
    with running(live=True, rate=20.0, late_fraction=0.3, late_delay=20.0, block_size=64) as live:
        live.clock.advance(60)
        first = live.get("Customers", END, END + timedelta(minutes=1)).json()
        live.clock.advance(30)
        second = live.get("Customers", END, END + timedelta(minutes=1)).json()
        assert identity(first) < identity(second)
        assert identity(second) == identity(
            live.truth("Customers", END, END + timedelta(minutes=1))
        )


def test_dropped_and_broken_responses_over_real_sockets() -> None:
    rules = (
        FaultRule("drop", count=1),
        FaultRule("drop_mid_body", count=1),
        FaultRule("truncate", count=1),
        FaultRule("malformed", count=1),
    )
    with running(FaultSettings(0, rules)) as live:
        hour = START + timedelta(hours=6)
        with pytest.raises(httpx.RemoteProtocolError):
            live.get("Customers", START, hour)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            live.get("Customers", START, hour)
        for _ in range(2):
            broken = live.get("Customers", START, hour)
            assert broken.status_code == 200
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(broken.content)
        assert live.get("Customers", START, hour).json() == live.truth("Customers", START, hour)


def test_gzip_and_keep_alive_over_real_sockets() -> None:
    with running() as live:
        hour = START + timedelta(hours=4)
        params = window(START, hour, live.settings)
        raw = httpx.get(
            f"{live.server.url}/deltas/Customers",
            params=params,
            headers=live.auth | {"Accept-Encoding": "gzip"},
        )
        assert raw.headers["content-encoding"] == "gzip"
        assert int(raw.headers["content-length"]) < len(raw.content) / 3  # it really compressed
        assert raw.json() == live.get("Customers", START, hour).json()
        posted = live.client.post("/deltas/Customers", data=params, headers=live.auth)
        assert posted.json() == raw.json()
        for _ in range(5):
            live.get("Customers", START, hour)
        # seven requests on the keep-alive client: one connection (once the one-off is gone)
        for _ in range(100):
            if live.server.open_connections == 1:
                break
            threading.Event().wait(0.01)
        assert live.server.open_connections == 1


def test_main_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "publisher.simulator", "--port", "0", "--rows", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("DataConnect simulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        assert httpx.get(f"{url}/_simulator/health").json()["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_windows_cut_anywhere_add_up_to_the_same_multiset() -> None:
    with running(seed=3) as live:
        whole = live.truth("Activities", START, END)
        cuts = sorted({START, END} | {START + timedelta(seconds=s) for s in (1, 3599, 3600, 40000)})
        pieces: list[Any] = []
        for lo, hi in pairwise(cuts):
            pieces.extend(live.get("Activities", lo, hi).json())
        assert identity(pieces, "Activities") == identity(whole, "Activities")


def test_a_bug_answers_500_and_is_logged_not_printed(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with running() as live:

        def broken(*_args: Any) -> Any:
            raise KeyError("a bug in the simulator")

        monkeypatch.setattr(live.sim, "handle", broken)
        with caplog.at_level(logging.ERROR, logger="publisher.simulator.server"):
            response = live.client.get("/anything")
        assert response.status_code == 500
        assert response.json() == {"Error": True, "Message": "An error has occurred."}
        failures = [r for r in caplog.records if r.name == "publisher.simulator.server"]
        assert [r.getMessage() for r in failures] == ["simulator failed on GET /anything"]
        assert failures[0].exc_info is not None  # the traceback goes to the log
    assert "Traceback" not in capfd.readouterr().err


def test_a_client_that_hangs_up_mid_answer_prints_nothing(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with running(default_rows=20_000) as live:
        params = window(START, END, live.settings)
        query = "&".join(f"{k}={v}" for k, v in params.items())
        host, port = live.server.url.removeprefix("http://").split(":")
        for _ in range(5):  # a big answer, and the client resets the socket before reading it
            sock = socket.create_connection((host, int(port)))
            request = (
                f"GET {live.sim.deltas_path('Customers')}?{query} HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: {live.auth['Authorization']}\r\n\r\n"
            )
            sock.sendall(request.encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # SO_LINGER 0: RST, not FIN
        assert live.get("Customers", START, START + timedelta(hours=1)).status_code == 200
        # The hung-up requests end (their threads fail to write) after rendering the answer.
        deadline = time.monotonic() + 30
        while live.server.open_connections > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.server.open_connections == 1  # the test's own keep-alive client
        time.sleep(0.5)  # an error would be printed right after its connection closed
    assert capfd.readouterr().err == ""
