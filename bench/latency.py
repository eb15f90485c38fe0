"""Live-mode latency: from a row becoming visible in the simulator to its commit.

The simulator runs live (new row versions every second, none late), the publisher polls it, and
a read_committed consumer notes when each event arrives. A non-late row becomes visible at its
change time, so the latency of an event is its arrival time minus its change time
(``RowUpdated``, else ``RowInserted``). Only rows that changed after the publisher had caught up
with the history are counted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.checkpoints import CheckpointFollower
from bench.workload import (
    SECRET_ENV,
    PublisherSetup,
    SimulatorProcess,
    Workload,
    publisher_config,
    to_toml,
)
from publisher.checkpoint import stream_id
from publisher.codec import SchemaResolver
from publisher.entities import EntitySpec


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Latency:
    samples: int
    expected: int  # rows the simulator made visible in the interval (its ground truth)
    p50: float
    p99: float
    max: float
    poll_interval: float
    settle_delay: float
    rate: float  # live versions per second per entity
    entities: int
    seconds: float  # rows that changed during this many seconds were measured

    @property
    def p99_beyond_settle(self) -> float:
        return self.p99 - self.settle_delay


class _Arrivals:
    """A read_committed consumer on the entity topics noting (arrival - change) per event."""

    def __init__(self, bootstrap: str, topics: list[str], specs: list[EntitySpec]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.resolver = SchemaResolver.for_entities(specs)
        # Only rows that changed in [since_ms, until_ms) count.
        self.since_ms = 2**62
        self.until_ms = 2**62
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arrivals", daemon=True)

    def start(self) -> _Arrivals:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while not self._stop.is_set():
            meta = admin.list_topics(timeout=10)
            if all(t in meta.topics for t in self.topics):
                break
            time.sleep(0.1)
        meta = admin.list_topics(timeout=10)
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "bench-latency",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 20,
            }
        )
        consumer.assign(
            [
                TopicPartition(t, p, OFFSET_BEGINNING)
                for t in self.topics
                for p in meta.topics[t].partitions
            ]
        )
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(1000, 0.2):
                    arrived_ms = time.time() * 1000
                    value = msg.value()
                    if msg.error() is not None or value is None:
                        continue
                    _entity, event = self.resolver.decode(value)
                    src = event["source"]
                    changed_ms = src["row_updated"] or src["row_inserted"]
                    if changed_ms is not None and self.since_ms <= changed_ms < self.until_ms:
                        self.latencies.append((arrived_ms - changed_ms) / 1000)
        finally:
            consumer.close()


def _truth_count(url: str, entities: list[str], since_ms: int, until_ms: int) -> int:
    """How many row versions changed in [since_ms, until_ms), from the simulator's admin API."""
    start = datetime.fromtimestamp(since_ms / 1000, UTC).isoformat()
    stop = datetime.fromtimestamp(until_ms / 1000, UTC).isoformat()
    total = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for entity in entities:
            response = client.get(
                "/_simulator/changes", params={"entity": entity, "start": start, "stop": stop}
            )
            response.raise_for_status()
            total += len(response.json())
    return total


def live_latency(
    bootstrap: str,
    specs: dict[str, EntitySpec],
    workdir: Path,
    *,
    entities: list[str],
    rate: float,
    seconds: float,
    setup: PublisherSetup,
) -> Latency:
    """Run simulator (live) and publisher for ``seconds`` after catch-up; return latencies."""
    end = datetime.now(UTC).replace(microsecond=0)
    workload = Workload("live", dict.fromkeys(entities, 500), end, span=timedelta(hours=1))
    args = [
        *workload.simulator_args(max_rows=100_000),
        "--live", "--rate", str(rate), "--late-fraction", "0",
    ]  # fmt: skip
    with SimulatorProcess(args, workdir / "live-simulator.log") as sim:
        doc = publisher_config(workload, setup, bootstrap=bootstrap, simulator_url=sim.url)
        config_path = workdir / "live.toml"
        config_path.write_text(to_toml(doc), encoding="utf-8")
        template = doc["publisher"]["topic_template"]
        topics = [template.format(source="bench", entity=e) for e in entities]
        arrivals = _Arrivals(bootstrap, topics, [specs[e] for e in entities]).start()
        follower = CheckpointFollower(bootstrap, doc["publisher"]["checkpoint_topic"]).start()
        log_path = workdir / "live-publisher.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "publisher", "run", "--config", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ | SECRET_ENV,
            )
        try:
            # Caught up once every watermark is past the moment the simulator started.
            streams = [stream_id("bench", e) for e in entities]
            follower.wait_until(streams, end, 300, alive=lambda: proc.poll() is None)
            since = int(time.time() * 1000)
            arrivals.since_ms = since
            arrivals.until_ms = since + int(seconds * 1000)
            # Rows that changed near the end are still on their way: wait for them too.
            drain = setup.settle_delay_seconds + setup.poll_interval_seconds + 5
            time.sleep(seconds + drain)
            if proc.poll() is not None:
                raise RuntimeError(f"live publisher exited early; see {log_path}")
            expected = _truth_count(sim.url, entities, since, since + int(seconds * 1000))
        finally:
            follower.stop()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
            arrivals.stop()
        if code != 0:
            raise RuntimeError(f"live publisher exited with {code}; see {log_path}")
    values = arrivals.latencies
    return Latency(
        samples=len(values),
        expected=expected,
        p50=percentile(values, 50),
        p99=percentile(values, 99),
        max=max(values),
        poll_interval=setup.poll_interval_seconds,
        settle_delay=setup.settle_delay_seconds,
        rate=rate,
        entities=len(entities),
        seconds=seconds,
    )
