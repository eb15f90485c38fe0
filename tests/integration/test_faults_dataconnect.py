"""DataConnect misbehaving under a running publisher: 429 storms, 5xx bursts, timeouts, dropped
connections, broken bodies, 413 on large windows, expired and revoked tokens, one entity
denied. Every test checks that the fault really fired (simulator stats, publisher log) and
that the read_committed view still equals the simulator's ground truth."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from publisher.config import Config
from publisher.simulator.settings import SimulatorSettings
from tests.integration.harness import (
    SECRET_ENV,
    Published,
    PublisherProcess,
    RunningSimulator,
    assert_matches_truth,
    load,
    minutes_ago,
    report,
    soak,
    start_simulator,
    wait_for_watermarks,
    write_config,
)
from tests.kafka_helpers import random_name

pytestmark = [pytest.mark.integration, pytest.mark.faults]

ENTITIES = ["Customers", "Activities", "Discussions"]
ROWS = soak(200, 2000)


@dataclass
class Run:
    sim: RunningSimulator
    config: Config
    proc: PublisherProcess
    start_from: datetime

    def finish(self, streams: list[str] | None = None) -> list[Published]:
        """Stop DataConnect's clock, let the publisher catch up, stop it cleanly (exit 0) and
        compare the read_committed view with the ground truth. Streams not in ``streams``
        must have published nothing."""
        frozen = self.sim.clock.freeze()
        marks = wait_for_watermarks(self.config, frozen, timeout=soak(90, 600), streams=streams)
        assert self.proc.alive(), self.proc.log()[-3000:]
        assert self.proc.terminate() == 0, self.proc.log()[-3000:]
        all_streams = [f"{s.name}/{e}" for s in self.config.sources for e in s.entities]
        stops = {sid: marks.get(sid, self.start_from) for sid in all_streams}
        if streams is not None:
            stops = {
                sid: (stop if sid in streams else self.start_from) for sid, stop in stops.items()
            }
        events = assert_matches_truth(self.sim, self.config, self.start_from, stops)
        assert len(events) >= 0.8 * ROWS * len(streams or all_streams)  # the history went through
        assert "Traceback" not in self.proc.log()
        return events


@contextmanager
def publishing(
    kafka_bootstrap: str,
    tmp_path: Path,
    *,
    rules: list[dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    entities: list[str] = ENTITIES,
) -> Iterator[Run]:
    """A simulator with ``rules`` installed before a publisher process starts against it."""
    start_from = minutes_ago(30)
    sim = start_simulator(
        SimulatorSettings(seed=21, default_rows=ROWS, history_start=start_from, **(settings or {}))
    )
    proc: PublisherProcess | None = None
    try:
        if rules:
            sim.set_faults(rules, seed=7)
        config_path = write_config(
            tmp_path / "publisher.toml",
            bootstrap=kafka_bootstrap,
            simulator_url=sim.url,
            prefix=random_name("dcfault"),
            start_from=start_from,
            entities=entities,
            windows={"initial_window_seconds": 600},
            source=source,
        )
        proc = PublisherProcess(config_path, tmp_path / "publisher.log").start()
        yield Run(sim, load(config_path), proc, start_from)
    finally:
        if proc is not None and proc.alive():
            proc.kill9()
        sim.server.stop()


def warnings_matching(log: str, pattern: str) -> int:
    return sum(
        1 for line in log.splitlines() if '"level":"WARNING"' in line and re.search(pattern, line)
    )


@dataclass(frozen=True)
class Case:
    rules: list[dict[str, Any]]
    check: Callable[[dict[str, Any], str], None]
    settings: dict[str, Any] | None = None
    source: dict[str, Any] | None = None


def _storm(stats: dict[str, Any], log: str) -> None:
    assert stats["faults_injected"].get("error") == 16, stats
    assert stats["requests_by_status"].get("429", 0) >= 16, stats  # plus the in-flight limit's
    assert warnings_matching(log, r"HTTP 429") >= 16


def _bursts(stats: dict[str, Any], log: str) -> None:
    assert stats["requests_by_status"].get("500", 0) == 8, stats
    assert stats["requests_by_status"].get("503", 0) == 8, stats
    assert warnings_matching(log, r"HTTP 50[03]") >= 16


def _timeouts(stats: dict[str, Any], log: str) -> None:
    assert stats["faults_injected"].get("slow") == 4, stats
    assert warnings_matching(log, r": timeout \(ReadTimeout") >= 4


def _drops(stats: dict[str, Any], log: str) -> None:
    assert stats["faults_injected"].get("drop") == 4, stats
    assert stats["faults_injected"].get("drop_mid_body") == 4, stats
    assert warnings_matching(log, r"connection_dropped") >= 8


def _bodies(stats: dict[str, Any], log: str) -> None:
    assert stats["faults_injected"].get("truncate") == 4, stats
    assert stats["faults_injected"].get("malformed") == 4, stats
    assert warnings_matching(log, r"unreadable answer \(not JSON") >= 8


CASES: dict[str, Case] = {
    # A limit of 2 requests in flight for 3 streams, and the first 16 answers refused outright.
    "429 storm": Case(
        rules=[{"kind": "error", "status": 429, "count": 16}],
        settings={"max_in_flight": 2},
        check=_storm,
    ),
    "500 and 503 bursts": Case(
        rules=[
            {"kind": "error", "status": 500, "count": 8},
            {"kind": "error", "status": 503, "count": 8, "retry_after": 1},
        ],
        check=_bursts,
    ),
    # Answers slower than the publisher's read timeout.
    "timeouts": Case(
        rules=[{"kind": "slow", "delay": 2.5, "count": 4}],
        source={"read_timeout_seconds": 1.0},
        check=_timeouts,
    ),
    "dropped connections": Case(
        rules=[{"kind": "drop", "count": 4}, {"kind": "drop_mid_body", "count": 4}],
        check=_drops,
    ),
    "truncated and malformed JSON": Case(
        rules=[{"kind": "truncate", "count": 4}, {"kind": "malformed", "count": 4}],
        check=_bodies,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_transient_faults_are_retried_and_nothing_is_lost(
    kafka_bootstrap: str, tmp_path: Path, name: str
) -> None:
    case = CASES[name]
    with publishing(
        kafka_bootstrap, tmp_path, rules=case.rules, settings=case.settings, source=case.source
    ) as run:
        events = run.finish()
        stats = run.sim.stats()
        case.check(stats, run.proc.log())
        report(f"dataconnect {name}", **injected(stats), row_versions_checked=len(events))


def test_413_splits_windows_until_they_fit(kafka_bootstrap: str, tmp_path: Path) -> None:
    max_rows = 40
    with publishing(
        kafka_bootstrap, tmp_path, settings={"max_rows": max_rows, "limit_mode": "exact"}
    ) as run:
        events = run.finish()
        assert run.sim.status_count(413) >= len(ENTITIES), run.sim.stats()
        report("dataconnect 413", **injected(run.sim.stats()), row_versions_checked=len(events))
    # Every window that was published was one DataConnect accepted: at most max_rows rows.
    per_window = Counter((e.entity, e.window_stop) for e in events)
    assert max(per_window.values()) <= max_rows


def test_expired_and_revoked_tokens_mid_run(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Expiry: the next request gets 401 and a refreshed token. Revocation: the refresh token is
    refused too (400 invalid_grant) and the password grant logs in again. Data keeps flowing."""
    cycles = soak(1, 5)
    with publishing(
        kafka_bootstrap, tmp_path, settings={"live": True, "rate": 5.0}, entities=ENTITIES[:2]
    ) as run:
        sim = run.sim
        wait_for_watermarks(run.config, minutes_ago(1), timeout=60)
        for _ in range(cycles):
            unauthorized, refused = sim.status_count(401), sim.status_count(400)
            sim.expire_tokens("expire")
            _wait_for_more(sim, 401, than=unauthorized)  # the next request is refused ...
            wait_for_watermarks(run.config, minutes_ago(0), timeout=30)  # ... data flows again
            sim.expire_tokens("revoke")
            _wait_for_more(sim, 400, than=refused)  # the token endpoint refuses the refresh
            wait_for_watermarks(run.config, minutes_ago(0), timeout=30)
        events = run.finish()
        report(
            "dataconnect tokens",
            cycles=cycles,
            **injected(sim.stats()),
            row_versions_checked=len(events),
        )
        grants = re.findall(r"new access token \((\w+) grant", run.proc.log())
        assert grants.count("password") == 1 + cycles, grants  # start, then after each revoke
        assert grants.count("refresh_token") >= cycles, grants  # after each expiry
        assert sim.stats()["token_requests"] >= 1 + 3 * cycles


def test_denied_entity_stops_alone_and_the_others_reach_ground_truth(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with publishing(
        kafka_bootstrap, tmp_path, settings={"denied_entities": frozenset({"Discussions"})}
    ) as run:
        running = ["retailer/Customers", "retailer/Activities"]
        wait_for_watermarks(run.config, minutes_ago(0.5), timeout=60, streams=running)
        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "publisher",
                "status",
                "-c",
                str(run.proc.config_path),
                "--json",
            ],
            env={**os.environ, **SECRET_ENV},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        rows = {r["stream"]: r for r in orjson.loads(status.stdout)}
        denied = rows["retailer/Discussions"]
        assert denied["state"] == "stopped", denied
        assert "HTTP 403" in denied["last_error"]
        assert "does not have access to Discussions" in denied["last_error"]
        assert all(rows[s]["state"] == "running" and rows[s]["last_error"] is None for s in running)
        events = run.finish(streams=running)
        assert run.sim.status_count(403) >= 1
        report("dataconnect 403", **injected(run.sim.stats()), row_versions_checked=len(events))
    assert {e.entity for e in events} == {"Customers", "Activities"}


def injected(stats: dict[str, Any]) -> dict[str, int]:
    """Error answers and injected faults the simulator counted, by status or kind."""
    out = {f"http_{k}": v for k, v in stats["requests_by_status"].items() if k >= "400"}
    out.update(stats["faults_injected"])
    return out


def _wait_for_more(sim: RunningSimulator, status: int, than: int, timeout: float = 30) -> None:
    """Wait until the simulator has answered ``status`` more than ``than`` times."""
    deadline = time.monotonic() + timeout
    while sim.status_count(status) <= than:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no further HTTP {status} within {timeout}s")
        time.sleep(0.1)
