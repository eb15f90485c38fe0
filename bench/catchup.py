"""One end-to-end catch-up: a real ``python -m publisher run`` process (or a supervisor and its
shard processes) publishes a simulator history from its start to its end.

The clock starts when the process is spawned (imports, topic creation and
``init_transactions`` included) and stops when a read_committed consumer of the checkpoint
topic has seen every stream's watermark reach the history end: then every row is committed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from bench.checkpoints import CheckpointFollower
from bench.procstat import (
    TreeWatcher,
    Usage,
    children,
    cpu_seconds,
    group_seconds,
    machine_busy_seconds,
    thread_ticks,
)
from bench.workload import (
    SECRET_ENV,
    PublisherSetup,
    SimulatorProcess,
    Workload,
    publisher_config,
    to_toml,
)
from publisher.checkpoint import stream_id


@dataclass(frozen=True)
class CatchUp:
    """What one catch-up run measured."""

    workload: str
    shards: int
    rows: int  # rows published (the checkpoints' rows_published, duplicates excluded)
    seconds: float  # process start -> every watermark at the history end
    startup_seconds: float  # process start -> first checkpoint committed
    processes: tuple[Usage, ...]  # the publisher's processes (supervisor and shards)
    simulator_cpu_seconds: float
    #: CPU seconds the rest of the machine used meanwhile (other users: noise). The broker is
    #: counted as ours when the bench started it.
    others_cpu_seconds: float
    #: (rows committed, largest peak RSS so far in KiB), sampled during the run.
    rss_trace: tuple[tuple[int, int], ...] = ()
    #: The broker's CPU seconds during the run by thread group (JIT, requests, ...), when the
    #: bench started it.
    broker_cpu: tuple[tuple[str, float], ...] = ()
    decode_processes: int = 0
    #: Which repetition of the same run this is (1, 2, ...), when the bench repeats it; 0 when
    #: it runs once.
    attempt: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds

    @property
    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds for p in self.processes)

    @property
    def cpu_seconds_per_100k(self) -> float:
        return self.cpu_seconds * 100_000 / max(1, self.rows)

    @property
    def publishing(self) -> tuple[Usage, ...]:
        """The processes that publish: the shards, or the only process."""
        shards = tuple(p for p in self.processes if "--shard" in p.command)
        return shards or self.processes[:1]

    @property
    def helpers(self) -> tuple[Usage, ...]:
        """multiprocessing's processes: decode workers and their resource tracker."""
        return tuple(p for p in self.processes if "multiprocessing" in p.command)

    @property
    def supervisor(self) -> tuple[Usage, ...]:
        """The shards' supervisor, if any."""
        return tuple(p for p in self.processes if p not in self.publishing + self.helpers)

    @property
    def label(self) -> str:
        out = f"{self.workload}, {self.shards} shard{'s' if self.shards > 1 else ''}"
        if self.decode_processes:
            out += f", {self.decode_processes} decode processes"
        if self.attempt:
            out += f" #{self.attempt}"
        return out

    @property
    def peak_rss_mib(self) -> float:
        """The largest peak resident set of any publishing process."""
        return max(p.peak_rss_mib for p in self.publishing)


def catch_up(
    bootstrap: str,
    workload: Workload,
    setup: PublisherSetup,
    simulator: SimulatorProcess,
    workdir: Path,
    *,
    ours: list[int],
    broker_pid: int | None = None,
    timeout: float = 1800,
    wrapper: Sequence[str] = (),
) -> CatchUp:
    """Run the publisher on ``workload`` until it has caught up; stop it; return the figures.

    ``ours`` are the other processes of the benchmark (itself, the broker it started): their
    CPU time is not counted as other users' load. ``broker_pid``: the broker's threads are
    measured too. ``wrapper`` is a command the publisher
    runs under (a profiler); it is stopped through the publisher.
    """
    doc = publisher_config(workload, setup, bootstrap=bootstrap, simulator_url=simulator.url)
    tag = f"{workload.name}-{setup.shards}shard"
    config_path = workdir / f"{tag}.toml"
    config_path.write_text(to_toml(doc), encoding="utf-8")
    log_path = workdir / f"{tag}.log"
    streams = [stream_id("bench", e) for e in workload.entities]
    follower = CheckpointFollower(bootstrap, doc["publisher"]["checkpoint_topic"]).start()
    sim_before = simulator.usage()
    busy_before = machine_busy_seconds()
    ours_before = cpu_seconds(ours)
    broker_before = thread_ticks(broker_pid) if broker_pid else {}
    began = time.monotonic()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "publisher", "run", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ | SECRET_ENV,
        )
    watcher = TreeWatcher(proc.pid, progress=lambda: follower.progress().rows_published())
    watcher.start()
    try:
        done = follower.wait_until(
            streams, workload.history_end, timeout, alive=lambda: proc.poll() is None
        )
        processes = watcher.stop()
        sim_after = simulator.usage()
        busy = machine_busy_seconds() - busy_before
        ours_used = cpu_seconds(ours) - ours_before
        broker_after = thread_ticks(broker_pid) if broker_pid else {}
        progress = follower.progress()
    except BaseException as exc:
        proc.kill()
        proc.wait()
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{exc}; publisher log {log_path}:\n{tail}") from exc
    finally:
        follower.stop()
        # SIGTERM: finish the open transaction and exit 0 (a wrapper exits with its child).
        for pid in children(proc.pid) if wrapper else [proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        code = proc.wait(120)
    _delete_topics(bootstrap, doc, workload)
    if code != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"publisher exited with {code}; log {log_path}:\n{tail}")
    sim_cpu = 0.0
    if sim_before is not None and sim_after is not None:
        sim_cpu = sim_after.cpu_seconds - sim_before.cpu_seconds
    publisher_cpu = sum(p.cpu_seconds for p in processes)
    return CatchUp(
        workload=workload.name,
        shards=setup.shards,
        decode_processes=setup.decode_processes,
        rows=progress.rows_published(),
        seconds=done - began,
        startup_seconds=(progress.first_seen or done) - began,
        processes=tuple(processes),
        simulator_cpu_seconds=sim_cpu,
        others_cpu_seconds=max(0.0, busy - ours_used - sim_cpu - publisher_cpu),
        rss_trace=tuple(watcher.trace),
        broker_cpu=tuple(sorted(_used(broker_before, broker_after).items())),
    )


def _used(
    before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]
) -> dict[str, float]:
    """CPU seconds by thread group between two :func:`thread_ticks` readings (a thread that
    started meanwhile counts from zero)."""
    return group_seconds(
        {
            tid: (group, ticks - before.get(tid, (group, 0))[1])
            for tid, (group, ticks) in after.items()
        }
    )


def _delete_topics(bootstrap: str, doc: dict[str, Any], workload: Workload) -> None:
    """Drop the run's topics so that later runs share the broker with nothing else."""
    p = doc["publisher"]
    topics = [p["topic_template"].format(source="bench", entity=e) for e in workload.entities]
    topics += [p["checkpoint_topic"], p["dead_letter_topic"]]
    for fut in AdminClient({"bootstrap.servers": bootstrap}).delete_topics(topics).values():
        with contextlib.suppress(KafkaException):
            fut.result(30)
