"""``publisher.decode_processes``: windows parsed, mapped and encoded in worker processes.

kill -9 of the publisher takes its decode processes with it (the kernel's parent-death
signal), and a restart still gives a read_committed view equal to the ground truth; a clean
stop ends them too."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from publisher.simulator.settings import SimulatorSettings
from tests.integration.harness import (
    PublisherProcess,
    assert_matches_truth,
    load,
    minutes_ago,
    start_simulator,
    wait_for_watermarks,
    write_config,
)
from tests.kafka_helpers import random_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEBUG_ENV = {"DCP_LOGGING__LEVEL": "DEBUG"}


def multiprocessing_children(pid: int) -> dict[int, bytes]:
    """Live child processes of ``pid`` started by multiprocessing (the decode workers and its
    resource tracker), with their command lines."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if _worker(int(child)):
                found[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes()
    return found


def decode_workers(pid: int) -> list[int]:
    """The publisher's children: its decode workers must be among them (2), and all of them
    must end with it."""
    children = multiprocessing_children(pid)
    assert len([c for c in children.values() if b"spawn_main" in c]) == 2, children
    return list(children)


def _worker(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"multiprocessing" in argv


def wait_gone(pids: list[int], timeout: float = 30) -> list[int]:
    """The pids still alive (not zombies) after waiting up to ``timeout`` for them to end."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in pids if _worker(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def test_kill9_takes_the_decode_processes_along_and_a_restart_is_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    start_from = minutes_ago(90)
    sim = start_simulator(
        SimulatorSettings(
            seed=17,
            default_rows=600,
            history_start=start_from,
            live=True,
            rate=10.0,
            late_fraction=0.2,
            late_delay=3.0,
            block_size=64,
        )
    )
    try:
        config_path = write_config(
            tmp_path / "publisher.toml",
            bootstrap=kafka_bootstrap,
            simulator_url=sim.url,
            prefix=random_name("decode"),
            start_from=start_from,
            entities=["Customers", "Activities", "Discussions"],
            windows={"initial_window_seconds": 300, "target_rows": 100},
            publisher={"decode_processes": 2},
        )
        config = load(config_path)
        log = tmp_path / "publisher.log"
        proc = PublisherProcess(config_path, log, env=DEBUG_ENV).start()
        try:
            proc.wait_for_log(r'"message":"2 decode processes ready"', 60)
            proc.wait_for_log(r'"message":"committed retailer/Customers window', 60)
            assert proc.proc is not None
            workers = decode_workers(proc.proc.pid)
            proc.kill9()  # mid-catch-up: windows in the workers, a transaction maybe open
            assert wait_gone(workers) == [], "decode processes outlived a kill -9"
        finally:
            if proc.alive():
                proc.kill9()

        frozen = sim.clock.freeze()
        again = PublisherProcess(config_path, log, env=DEBUG_ENV).start()
        try:
            marks = wait_for_watermarks(config, frozen, timeout=120)
            assert again.proc is not None
            workers = decode_workers(again.proc.pid)
            assert again.terminate() == 0, again.log()[-3000:]
            assert wait_gone(workers) == [], "decode processes outlived a clean stop"
        finally:
            if again.alive():
                again.kill9()
        events = assert_matches_truth(sim, config, start_from, marks)
        assert len(events) > 3 * 600
    finally:
        sim.server.stop()
