"""Fencing: a second publisher with the same transactional.id takes over; the first exits 3 with
a clear "fenced" message, and the output stays exactly-once across the hand-over."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from publisher.simulator.settings import SimulatorSettings
from tests.integration.harness import (
    PublisherProcess,
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

EXIT_FENCED = 3
FENCED_LINE = (
    r"fenced: another publisher instance started with transactional\.id '(?P<id>[^']+)'; "
    r"this instance stops so that only one publishes"
)


def test_second_instance_fences_the_first_and_output_stays_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    start_from = minutes_ago(60)
    sim = start_simulator(
        SimulatorSettings(
            seed=9,
            default_rows=600,
            history_start=start_from,
            live=True,
            rate=10.0,
            late_fraction=0.2,
            late_delay=3.0,
        )
    )
    started: list[PublisherProcess] = []
    try:
        config_path = write_config(
            tmp_path / "publisher.toml",
            bootstrap=kafka_bootstrap,
            simulator_url=sim.url,
            prefix=random_name("fence"),
            start_from=start_from,
            entities=["Customers", "Activities", "FollowUps"],
            windows={"initial_window_seconds": 300, "target_rows": 100},
        )
        config = load(config_path)
        txn_id = config.publisher.transactional_id
        current = PublisherProcess(config_path, tmp_path / "instance-0.log").start()
        started.append(current)
        handovers = soak(2, 10)
        for i in range(1, handovers + 1):
            # The current instance is publishing (its watermark moved in this life) ...
            wait_for_watermarks(config, minutes_ago(0), timeout=60)
            # ... when a new one starts with the same identity.
            successor = PublisherProcess(config_path, tmp_path / f"instance-{i}.log").start()
            started.append(successor)
            assert current.wait(60) == EXIT_FENCED, current.log()[-3000:]
            fenced = re.findall(FENCED_LINE, current.log())
            assert fenced == [txn_id], current.log()[-3000:]
            assert "Traceback" not in current.log()
            assert successor.alive(), successor.log()[-3000:]
            current = successor

        frozen = sim.clock.freeze()
        marks = wait_for_watermarks(config, frozen, timeout=90)
        assert current.terminate() == 0, current.log()[-3000:]
        events = assert_matches_truth(sim, config, start_from, marks)
        assert len(events) > 3 * 600
        report("fencing", handovers=handovers, exit_3=handovers, row_versions_checked=len(events))
    finally:
        for proc in started:
            if proc.alive():
                proc.kill9()
        sim.server.stop()
