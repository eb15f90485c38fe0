"""Operable in production, end to end: the publisher (an in-process Runner) against the simulator
over real sockets and a real broker; its /metrics scraped over HTTP must agree with what a
read_committed consumer and the checkpoint topic say, and during a DataConnect outage the lag
must grow and /readyz must turn 503, then both recover when the outage ends."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from publisher.admin import read_checkpoints
from publisher.config import Config, load_config
from publisher.runner import EXIT_OK, Runner
from publisher.simulator.settings import SimulatorSettings
from publisher.timefmt import floor_millis
from tests.integration.harness import (
    SECRET_ENV,
    published,
    start_simulator,
    wait_for_watermarks,
    write_config,
)
from tests.kafka_helpers import random_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENTITIES = ["Customers", "FollowUps"]
SOURCE = "retailer"
STALENESS = 4.0  # seconds without a commit before /readyz turns 503
SETTLE = 1.0  # the harness's settle delay


class SteerableClock:
    """The publisher's clock: real time, or frozen at one instant so that no new window is
    planned and the metrics can be compared with Kafka on a still picture."""

    def __init__(self) -> None:
        self._frozen: datetime | None = None
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._frozen or datetime.now(UTC)

    def freeze(self) -> datetime:
        with self._lock:
            self._frozen = datetime.now(UTC)
            return self._frozen

    def thaw(self) -> None:
        with self._lock:
            self._frozen = None


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str) -> Samples:
    """Every sample of the real /metrics endpoint, parsed by prometheus_client's parser."""
    response = httpx.get(f"{base}/metrics", timeout=5)
    assert response.status_code == 200
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; KeyError when the series does not exist."""
    return samples[(f"dataconnect_publisher_{name}", frozenset(labels.items()))]


def count(samples: Samples, name: str, **labels: str) -> float:
    """A counter labelled by a status or reason: absent until it first happens, i.e. 0."""
    return samples.get((f"dataconnect_publisher_{name}", frozenset(labels.items())), 0.0)


def readyz(base: str) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{base}/readyz", timeout=5)
    return response.status_code, response.json()


def wait_for(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def lag(base: str, entity: str) -> float:
    return value(scrape(base), "watermark_lag_seconds", source=SOURCE, entity=entity)


def set_faults(sim_url: str, rules: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{sim_url}/_simulator/faults", json={"seed": 0, "rules": rules})
    assert response.status_code == 200, response.text


def test_metrics_match_kafka_and_an_outage_shows_in_lag_and_readiness(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start_from = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    sim = start_simulator(
        SimulatorSettings(seed=5, default_rows=400, history_start=start_from, block_size=32)
    )
    history_end = datetime.now(UTC)  # the simulator's history ends before this instant
    try:
        path = write_config(
            tmp_path / "publisher.toml",
            bootstrap=kafka_bootstrap,
            simulator_url=sim.url,
            prefix=random_name("ops"),
            start_from=start_from,
            entities=ENTITIES,
        )
        env = {
            **SECRET_ENV,
            "DCP_METRICS__STALENESS_SECONDS": str(STALENESS),
            "DCP_LOGGING__PROGRESS_INTERVAL_SECONDS": "0.5",
        }
        config = load_config(path, env=env)
        clock = SteerableClock()
        caplog.set_level(logging.INFO)
        assert config.logging.progress_interval_seconds == 0.5
        runner = Runner(config, install_signals=False, clock=clock)
        codes: list[int] = []
        worker = threading.Thread(target=lambda: codes.append(runner.run()), name="runner")
        worker.start()
        try:
            wait_for("health endpoint", lambda: runner.health is not None, 60)
            assert runner.health is not None
            base = runner.health.url
            _metrics_match_kafka(config, base, clock, history_end)
            _outage_shows_in_lag_and_readiness(sim.url, base, clock)
        finally:
            runner.stop()
            worker.join(60)
        assert codes == [EXIT_OK]
        # Catch-up progress went to the log: one "caught up" line per stream, with its totals.
        caught_up = [r.getMessage() for r in caplog.records if r.name == "publisher.progress"]
        for entity in ENTITIES:
            assert any(m.startswith(f"caught up {SOURCE}/{entity}: ") for m in caught_up), caught_up
        print("\n".join(caught_up))  # noqa: T201 - figures for whoever reads -s output
    finally:
        sim.server.stop()


def _metrics_match_kafka(config: Config, base: str, clock: SteerableClock, end: datetime) -> None:
    wait_for_watermarks(config, end, timeout=90)  # every history row is committed
    frozen = clock.freeze()
    expected_mark = floor_millis(frozen - timedelta(seconds=SETTLE))
    # The last window before the freeze ends at frozen - settle; after it nothing moves.
    wait_for(
        "last window before the freeze",
        lambda: all(cp.watermark == expected_mark for cp in read_checkpoints(config).values()),
        30,
    )
    events = published(config)
    by_op = Counter((e.entity, e.op) for e in events)
    checkpoints = read_checkpoints(config)
    samples = scrape(base)

    assert sum(by_op.values()) == len(ENTITIES) * 400  # the history really went through
    for entity in ENTITIES:
        labels = {"source": SOURCE, "entity": entity}
        for op in ("c", "u", "d"):
            counted = value(samples, "events_published_total", **labels, op=op)
            assert counted == by_op[(entity, op)], (entity, op)
        in_kafka = sum(n for (e, _), n in by_op.items() if e == entity)
        assert value(samples, "rows_fetched_total", **labels) >= in_kafka
        watermark = checkpoints[f"{SOURCE}/{entity}"].watermark
        assert value(samples, "watermark_timestamp_seconds", **labels) == pytest.approx(
            watermark.timestamp(), abs=1e-3
        )
        # The lag is computed at scrape time from the (frozen) clock: exactly the settle delay.
        assert value(samples, "watermark_lag_seconds", **labels) == pytest.approx(SETTLE, abs=1e-3)
        assert value(samples, "entity_state", **labels, state="running", reason="") == 1.0
    assert value(samples, "transactions_total", outcome="committed") > 0
    assert value(samples, "transactions_total", outcome="failed") == 0
    print(f"\nevents by (entity, op): {dict(by_op)}")  # noqa: T201


def _outage_shows_in_lag_and_readiness(sim_url: str, base: str, clock: SteerableClock) -> None:
    clock.thaw()
    wait_for("ready after the freeze", lambda: readyz(base)[0] == 200, 30)
    status, body = readyz(base)
    assert status == 200 and all(c["ok"] for c in body["checks"]), body
    assert {c["name"] for c in body["checks"]} >= {"kafka", "token_valid", "entities_fresh"}

    set_faults(sim_url, [{"kind": "error", "status": 503}])  # every data request, forever
    began = time.monotonic()
    labels = {"source": SOURCE, "entity": "Customers"}
    # A fetch sent before the fault may still commit; once Customers got a 503, none can.
    wait_for(
        "a 503",
        lambda: count(scrape(base), "http_requests_total", **labels, status="503") > 0,
        30,
    )
    lags: list[tuple[float, float]] = []
    while True:
        lags.append((time.monotonic(), lag(base, "Customers")))
        status, body = readyz(base)
        if status == 503 and len(lags) >= 4:
            break
        assert time.monotonic() - began < 30, f"/readyz stayed {status}: {body}"
        time.sleep(0.5)
    unready_after = time.monotonic() - began
    # The lag keeps growing while nothing commits, sample after sample, at the clock's pace.
    assert all(b > a for (_, a), (_, b) in itertools.pairwise(lags)), lags
    (t0, first), (t1, peak) = lags[0], lags[-1]
    assert peak - first == pytest.approx(t1 - t0, abs=0.5), lags
    failing = {c["name"]: c["detail"] for c in body["checks"] if not c["ok"]}
    assert list(failing) == ["entities_fresh"], body  # the source is down, not our token
    assert f"stale beyond {STALENESS:.0f}s" in failing["entities_fresh"]
    assert count(scrape(base), "retries_total", **labels, reason="503") > 0

    set_faults(sim_url, [])
    cleared = time.monotonic()
    wait_for("lag falls after the outage", lambda: lag(base, "Customers") < peak, 30)
    wait_for("ready after the outage", lambda: readyz(base)[0] == 200, 30)
    recovered_after = time.monotonic() - cleared
    after = lag(base, "Customers")
    print(  # noqa: T201
        f"outage: lag {', '.join(f'{x:.1f}' for _, x in lags)} s; /readyz 503 after "
        f"{unready_after:.1f} s; back to 200 {recovered_after:.1f} s after clearing; "
        f"lag then {after:.1f} s"
    )
    assert after < peak
