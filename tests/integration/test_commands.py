"""The operator commands against a real broker and a real publisher process: status, tail,
reset (refused while a publisher holds the identity, fencing it with --force), several sources
sharing a topic without colliding, and the README's demo command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from publisher.admin import read_checkpoints
from publisher.simulator.settings import SimulatorSettings
from tests.integration.harness import (
    SECRET_ENV,
    PublisherProcess,
    RunningSimulator,
    event_multiset,
    load,
    published,
    start_simulator,
    truth_multiset,
    wait_for_watermarks,
    write_config,
)
from tests.kafka_helpers import random_name

pytestmark = pytest.mark.integration

ENTITIES = ["Customers", "Discussions"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "publisher", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **SECRET_ENV},
        check=False,
    )


@pytest.fixture
def history() -> tuple[RunningSimulator, datetime, datetime]:
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(hours=3)
    sim = start_simulator(
        SimulatorSettings(seed=5, default_rows=400, history_start=start, history_end=end)
    )
    yield sim, start, end
    sim.server.stop()


def test_status_tail_and_reset(
    kafka_bootstrap: str, tmp_path: Path, history: tuple[RunningSimulator, datetime, datetime]
) -> None:
    sim, start, end = history
    path = write_config(
        tmp_path / "p.toml",
        bootstrap=kafka_bootstrap,
        simulator_url=sim.url,
        prefix=random_name("cmd"),
        start_from=start,
        entities=ENTITIES,
    )
    config = load(path)
    proc = PublisherProcess(path, tmp_path / "p.log").start()
    try:
        wait_for_watermarks(config, end, timeout=90)

        # reset is refused while the publisher holds the identity
        refused = cli("reset", "Customers", "--to", start.isoformat(), "--config", str(path))
        assert refused.returncode == 1
        assert "a publisher is running as" in refused.stderr
        assert proc.alive()

        # status: one entry per stream, watermark committed, rows counted
        status = cli("status", "--json", "--config", str(path))
        assert status.returncode == 0, status.stderr
        rows = {r["stream"]: r for r in orjson.loads(status.stdout)}
        assert set(rows) == {"retailer/Customers", "retailer/Discussions"}
        truth = truth_multiset(sim, config, start, {s: end for s in rows})
        for stream, row in rows.items():
            assert row["state"] == "running"
            assert datetime.fromisoformat(row["watermark"]) >= end
            entity = stream.split("/")[1]
            assert row["rows_published"] == sum(n for k, n in truth.items() if k[0] == entity)
        table = cli("status", "--config", str(path)).stdout
        assert table.splitlines()[0].split() == [
            "STREAM",
            "STATE",
            "WATERMARK",
            "LAG",
            "ROWS",
            "LAST",
            "ERROR",
        ]

        # tail: every committed Customers event, decoded
        tail = cli("tail", "Customers", "--no-follow", "--config", str(path))
        assert tail.returncode == 0, tail.stderr
        lines = [orjson.loads(line) for line in tail.stdout.splitlines()]
        customers = [e for e in published(config) if e.entity == "Customers"]
        assert len(lines) == len(customers)
        assert Counter(line["op"] for line in lines) == Counter(e.op for e in customers)
        assert {line["source"]["entity"] for line in lines} == {"Customers"}

        # reset --force fences the running publisher, which exits 3 with a clear message
        forced = cli(
            "reset", "Customers", "--to", start.isoformat(), "--force", "--config", str(path)
        )
        assert forced.returncode == 0, forced.stderr
        assert proc.wait(60) == 3
        assert "fenced: another publisher instance started with transactional.id" in proc.log()
    finally:
        if proc.alive():
            proc.kill9()
    checkpoints = read_checkpoints(config)
    assert checkpoints["retailer/Customers"].watermark == start
    assert checkpoints["retailer/Discussions"].watermark >= end  # untouched


def test_sources_sharing_a_topic_never_collide_on_keys_or_watermarks(
    kafka_bootstrap: str, tmp_path: Path, history: tuple[RunningSimulator, datetime, datetime]
) -> None:
    # Two sources serving the very same IDs (as two RQ databases do): keys must differ.
    sim, start, end = history
    prefix = random_name("multi")
    path = write_config(
        tmp_path / "p.toml",
        bootstrap=kafka_bootstrap,
        simulator_url=sim.url,
        prefix=prefix,
        start_from=start,
        entities=["Discussions"],
        publisher={"topic_template": f"{prefix}.{{entity}}", "key_template": "{source}:{id}"},
    )
    text = path.read_text()
    source_b = text[text.index("[[sources]]") :].replace('name = "retailer"', 'name = "other"')
    path.write_text(text + "\n" + source_b)
    config = load(path)
    assert config.topic_for("retailer", "Discussions") == config.topic_for("other", "Discussions")
    proc = PublisherProcess(path, tmp_path / "p.log").start()
    try:
        marks = wait_for_watermarks(config, end, timeout=90)
    finally:
        assert proc.terminate() == 0
    assert set(marks) == {"retailer/Discussions", "other/Discussions"}
    events = published(config)
    truth = truth_multiset(sim, load(path), start, marks)  # per source, summed
    assert (
        event_multiset(e.__class__(**{**e.__dict__, "key": e.key.split(":", 1)[1]}) for e in events)
        == truth
    )
    by_source = Counter(e.key.split(":", 1)[0] for e in events)
    assert by_source["retailer"] == by_source["other"] == sum(truth.values()) // 2
    assert len({e.key for e in events}) == 2 * len({e.key.split(":", 1)[1] for e in events})


@pytest.mark.slow
def test_demo_command_runs_the_embedded_default(tmp_path: Path) -> None:
    """The README's first command: broker + simulator + publisher, events printed, clean exit."""
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "publisher", "demo", "--duration", "25", "--rows", "100"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    events = [
        line
        for line in lines
        if line.split()[:1]
        and line.split()[0]
        in ("Customers", "AccountsReceivable", "Activities", "Discussions", "FollowUps")
    ]
    assert len(events) >= 5 * 100  # the whole history of all five entities at least
    assert {line.split()[0] for line in events} == {
        "Customers",
        "AccountsReceivable",
        "Activities",
        "Discussions",
        "FollowUps",
    }
    assert lines[-1] == f"{len(events)} events printed; publisher exited with 0"
    assert time.monotonic() - began < 240
