"""Broker trouble on a dedicated broker (never the session one): stopped or killed for a while
and restarted on the same ports with its data, the publisher waits, retries, resumes and loses
nothing; a broker that never comes back makes the publisher unready, then exit 1 after
``kafka.unavailable_deadline_seconds`` instead of hanging."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from publisher.localkafka import LocalKafka
from publisher.simulator.settings import SimulatorSettings
from tests.integration.harness import (
    SOAK,
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

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

EXIT_FATAL = 1
EXIT_FENCED = 3


@pytest.fixture(scope="module")
def dedicated_broker() -> Iterator[LocalKafka]:
    """A broker of this module's own, with its data kept across kill/restart."""
    if not (shutil.which("java") and shutil.which("mvn")):
        pytest.skip("needs Java and Maven for a broker this module may kill")
    broker = LocalKafka(keep_data=True, heap="512m").start()
    try:
        yield broker
    finally:
        broker.keep_data = False
        broker.stop()


@pytest.fixture
def broker(dedicated_broker: LocalKafka) -> LocalKafka:
    """The dedicated broker, running (a previous test may have left it down)."""
    if dedicated_broker.proc is None:
        dedicated_broker.restart()
    return dedicated_broker


@pytest.fixture
def live_sim() -> Iterator[RunningSimulator]:
    sim = start_simulator(
        SimulatorSettings(
            seed=13,
            default_rows=500,
            history_start=minutes_ago(60),
            live=True,
            rate=10.0,
            late_fraction=0.2,
            late_delay=3.0,
        )
    )
    try:
        yield sim
    finally:
        sim.server.stop()


def readyz(health: str) -> tuple[int, str]:
    try:
        r = httpx.get(f"{health}/readyz", timeout=5)
    except httpx.TransportError as exc:
        return 0, type(exc).__name__
    return r.status_code, r.text


def wait_readyz(health: str, status: int, timeout: float, contains: str = "") -> str:
    deadline = time.monotonic() + timeout
    seen = (0, "")
    while time.monotonic() < deadline:
        seen = readyz(health)
        if seen[0] == status and contains in seen[1]:
            return seen[1]
        time.sleep(0.5)
    raise AssertionError(f"/readyz never answered {status} within {timeout}s; last: {seen}")


def test_broker_outage_publisher_waits_retries_and_resumes(
    broker: LocalKafka, live_sim: RunningSimulator, tmp_path: Path
) -> None:
    start_from = minutes_ago(60)
    outages = soak(1, 4)
    outage_seconds = soak(15, 60)
    config_path = write_config(
        tmp_path / "publisher.toml",
        bootstrap=broker.bootstrap,
        simulator_url=live_sim.url,
        prefix=random_name("outage"),
        start_from=start_from,
        entities=["Customers", "Discussions", "FollowUps"],
        windows={"initial_window_seconds": 300, "target_rows": 100},
        # Both longer than any outage below: the publisher must wait, not give up. (A broker
        # back after more than the transaction timeout aborts the open transaction and
        # fences the producer: see the next test.)
        kafka={
            "unavailable_deadline_seconds": 600,
            "transaction_timeout_seconds": outage_seconds + 60,
        },
    )
    config = load(config_path)
    proc = PublisherProcess(config_path, tmp_path / "publisher.log").start()
    try:
        health = proc.health_url()
        for i in range(outages):
            wait_for_watermarks(config, minutes_ago(0), timeout=90)  # publishing before
            # CI: SIGKILL. Soak: alternately a graceful stop and a SIGKILL.
            if SOAK and i % 2:
                broker.stop()
            else:
                broker.kill()
            down_since = time.monotonic()
            body = wait_readyz(health, 503, timeout=outage_seconds)
            assert '"name": "kafka", "ok": false' in body, body
            time.sleep(max(0.0, outage_seconds - (time.monotonic() - down_since)))
            assert proc.alive(), proc.log()[-3000:]  # waited, did not give up or crash
            broker.restart()
            wait_readyz(health, 200, timeout=120)
        frozen = live_sim.clock.freeze()
        marks = wait_for_watermarks(config, frozen, timeout=180)
        assert proc.terminate() == 0, proc.log()[-3000:]
        events = assert_matches_truth(live_sim, config, start_from, marks)
        # Rows that became visible during the outage were published after it.
        assert max(e.window_stop for e in events) >= int(frozen.timestamp() * 1000) - 60_000
        assert len(events) > 3 * 500
        report(
            "broker outage",
            outages=outages,
            seconds_each=outage_seconds,
            row_versions_checked=len(events),
        )
    finally:
        if proc.alive():
            proc.kill9()


def test_an_outage_longer_than_the_transaction_timeout_loses_nothing_across_a_restart(
    broker: LocalKafka, tmp_path: Path
) -> None:
    # Back after more than transaction.timeout.ms, the broker aborts the transaction that was
    # open when it went away, and fences the producer to do so. The publisher then either
    # finds itself fenced (it exits 3 saying the transaction outlived its timeout, and a
    # restart resumes) or, when the broker aborted it before the publisher asked, starts a
    # new producer and goes on. Either way, every row once. A catch-up keeps a transaction
    # open nearly all the time, so the broker goes away in the middle of one.
    start_from = minutes_ago(60)
    timeout = 10
    sim = start_simulator(SimulatorSettings(seed=17, default_rows=60_000, history_start=start_from))
    try:
        config_path = write_config(
            tmp_path / "publisher.toml",
            bootstrap=broker.bootstrap,
            simulator_url=sim.url,
            prefix=random_name("txntimeout"),
            start_from=start_from,
            entities=["Customers", "Discussions"],
            windows={"initial_window_seconds": 30, "max_window_seconds": 30},
            kafka={"unavailable_deadline_seconds": 600, "transaction_timeout_seconds": timeout},
        )
        config = load(config_path)
        end = sim.clock.freeze()
        proc = PublisherProcess(config_path, tmp_path / "first.log").start()
        try:
            wait_for_watermarks(config, start_from + timedelta(minutes=1), timeout=90)
            broker.kill()
            time.sleep(3 * timeout)
            broker.restart()
            outcome = "went on"
            try:
                code = proc.wait(45)
            except subprocess.TimeoutExpired:
                pass
            else:
                outcome = "exited 3, restarted"
                assert code == EXIT_FENCED, proc.log()[-3000:]
                assert re.search(
                    r"was fenced while its transaction had been open for \d+s, longer than "
                    rf"transaction.timeout.ms \({timeout}s\)",
                    proc.log(),
                ), proc.log()[-3000:]
                assert "a restart resumes from the last committed checkpoint" in proc.log()
                proc = PublisherProcess(config_path, tmp_path / "second.log").start()
            marks = wait_for_watermarks(config, end, timeout=180)
            assert proc.terminate() == 0, proc.log()[-3000:]
        finally:
            if proc.alive():
                proc.kill9()
        events = assert_matches_truth(sim, config, start_from, marks)
        report("outage beyond the transaction timeout", outcome=outcome, rows=len(events))
    finally:
        sim.server.stop()


def test_broker_that_never_returns_unready_then_exit_1(
    broker: LocalKafka, live_sim: RunningSimulator, tmp_path: Path
) -> None:
    deadline = 12
    config_path = write_config(
        tmp_path / "publisher.toml",
        bootstrap=broker.bootstrap,
        simulator_url=live_sim.url,
        prefix=random_name("gone"),
        start_from=minutes_ago(60),
        entities=["Customers", "Discussions"],
        windows={"initial_window_seconds": 300, "target_rows": 100},
        kafka={"unavailable_deadline_seconds": deadline},
    )
    config = load(config_path)
    proc = PublisherProcess(config_path, tmp_path / "publisher.log").start()
    try:
        health = proc.health_url()
        wait_for_watermarks(config, minutes_ago(0), timeout=90)
        broker.kill()
        gone = time.monotonic()
        body = wait_readyz(health, 503, timeout=deadline)
        assert '"name": "kafka", "ok": false' in body, body
        try:
            code = proc.wait(deadline + 45)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {deadline + 45}s after Kafka went away: it hangs")
        took = time.monotonic() - gone
        assert code == EXIT_FATAL, proc.log()[-3000:]
        assert took >= deadline, f"gave up after {took:.1f}s, before the {deadline}s deadline"
        log = proc.log()
        assert re.search(rf'"level":"ERROR".*Kafka unreachable for {deadline}s', log), log[-3000:]
        assert "Traceback" not in log
        report("broker gone", deadline_s=deadline, exited_after_s=round(took, 1), exit_code=code)
    finally:
        if proc.alive():
            proc.kill9()
