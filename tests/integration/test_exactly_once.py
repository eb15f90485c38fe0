"""Exactly once, end to end: simulator with late rows, several versions per key, ties and all
three operations; the publisher killed with SIGKILL at random moments and restarted; the
read_committed view must equal the simulator's ground truth, with per-key order intact."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from publisher.simulator.settings import SimulatorSettings
from tests.integration.harness import (
    PublisherProcess,
    assert_per_key_order,
    event_multiset,
    load,
    minutes_ago,
    published,
    start_simulator,
    truth_multiset,
    wait_for_watermarks,
    write_config,
)
from tests.kafka_helpers import random_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill9_at_random_moments_loses_and_duplicates_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("EOS_SEED", time.time_ns() % 2**32))
    print(f"kill moments seeded with EOS_SEED={seed}")  # noqa: T201 - shown on failure
    rng = random.Random(seed)
    start_from = minutes_ago(90)
    sim = start_simulator(
        SimulatorSettings(
            seed=11,
            default_rows=1500,
            history_start=start_from,
            live=True,
            rate=15.0,  # new versions per second per entity while the test runs
            late_fraction=0.2,
            late_delay=3.0,  # below the 10 s overlap: every late row must still be caught
            block_size=64,
        )
    )
    try:
        config_path = write_config(
            tmp_path / "publisher.toml",
            bootstrap=kafka_bootstrap,
            simulator_url=sim.url,
            prefix=random_name("eos"),
            start_from=start_from,
            windows={"initial_window_seconds": 300, "target_rows": 200},
        )
        config = load(config_path)
        log = tmp_path / "publisher.log"
        kills = 0
        for _ in range(6):
            proc = PublisherProcess(config_path, log).start()
            time.sleep(rng.uniform(1.0, 5.0))  # start-up, mid-fetch, mid-transaction, idle
            if not proc.alive():
                pytest.fail(f"publisher died on its own:\n{proc.log()[-3000:]}")
            proc.kill9()
            kills += 1
        # End live traffic, let a fresh process catch up past it, then stop it gracefully.
        frozen = sim.clock.freeze()
        proc = PublisherProcess(config_path, log).start()
        marks = wait_for_watermarks(config, frozen, timeout=120)
        assert proc.terminate() == 0, proc.log()[-3000:]

        events = published(config)
        truth = truth_multiset(sim, config, start_from, marks)
        got = event_multiset(events)
        missing = truth - got
        extra = got - truth
        assert not missing, f"{sum(missing.values())} row versions lost, e.g. {list(missing)[:3]}"
        assert not extra, f"{sum(extra.values())} duplicated/unknown, e.g. {list(extra)[:3]}"
        assert kills >= 5
        assert len(truth) > 5 * 1500  # the history plus live rows really went through
        assert {e.op for e in events} == {"c", "u", "d"}
        assert_per_key_order(events)
    finally:
        sim.server.stop()
