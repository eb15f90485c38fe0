"""The workloads the benchmark runs: a simulator history, the simulator process serving it, and
the publisher configuration that catches up on it.

A :class:`Workload` is a pure description (entities and their history sizes, the history's
time span). The same description builds the simulator process's options and an in-process
:class:`~publisher.simulator.app.Simulator`, so the encode ceiling measures exactly the rows
the end-to-end run fetches.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.procstat import Usage, read_usage
from publisher.simulator.app import Simulator
from publisher.simulator.settings import SimulatorSettings

SEED = 7
#: The simulator's default credentials, given to the publisher through its environment.
SECRET_ENV = {"DC_CLIENT_SECRET": "simulator-secret", "DC_PASSWORD": "simulator-password"}
#: Rendered-row cache per row version (JSON plus its pre-compressed copy), with headroom.
_CACHE_BYTES_PER_ROW = 2600


@dataclass(frozen=True)
class Workload:
    """Entities (in the order the publisher config lists them) with their history sizes."""

    name: str
    rows: Mapping[str, int]
    history_end: datetime
    span: timedelta = timedelta(days=10)

    @property
    def history_start(self) -> datetime:
        return self.history_end - self.span

    @property
    def entities(self) -> list[str]:
        return list(self.rows)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def window_seconds(self, window_rows: int) -> float:
        """The window length that holds about ``window_rows`` rows of the densest entity
        (rows are spread evenly over the span)."""
        densest = max(self.rows.values())
        return max(1.0, self.span.total_seconds() * window_rows / densest)

    def settings(self, **overrides: Any) -> SimulatorSettings:
        """In-process simulator settings equal to :meth:`simulator_args`."""
        base: dict[str, Any] = {
            "seed": SEED,
            "default_rows": 0,
            "rows": dict(self.rows),
            "history_start": self.history_start,
            "history_end": self.history_end,
        }
        return SimulatorSettings(**(base | overrides))

    def simulator(self) -> Simulator:
        """The same history in this process (for the ceilings), clock at the history end."""
        end = self.history_end
        return Simulator(self.settings(), lambda: end)

    def simulator_args(self, *, max_rows: int) -> list[str]:
        cache_mb = math.ceil(self.total_rows * _CACHE_BYTES_PER_ROW / 2**20) + 64
        args = ["--seed", str(SEED), "--rows", "0"]
        for entity, n in self.rows.items():
            args += ["--entity-rows", f"{entity}={n}"]
        return [
            *args,
            "--history-start", self.history_start.isoformat(),
            "--history-end", self.history_end.isoformat(),
            "--max-rows", str(max_rows),
            "--cache-mb", str(cache_mb),
        ]  # fmt: skip


def history_end_now() -> datetime:
    """A history that ended two hours ago, on a whole minute: settled, and nothing after it."""
    return (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)


class SimulatorProcess:
    """The DataConnect simulator in its own process (its own GIL and core)."""

    def __init__(self, args: Sequence[str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 600) -> SimulatorProcess:
        """Start it and wait for its URL (after it pre-renders, when asked to)."""
        command = [sys.executable, "-m", "publisher.simulator", "--port", "0", *self.args]
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )
        assert self.proc.stdout is not None  # noqa: S101 - stdout=PIPE above
        line = self.proc.stdout.readline()  # blocks until it listens (or dies)
        if not line.startswith("DataConnect simulator listening on "):
            self.stop()
            raise RuntimeError(f"simulator did not start ({line!r}); see {self.log_path}")
        self.url = line.rsplit(" ", 1)[1].strip()
        return self

    def usage(self) -> Usage | None:
        return None if self.proc is None else read_usage(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass
class PublisherSetup:
    """What the benchmark's publisher config says beyond the workload."""

    shards: int = 1
    window_rows: int = 20_000
    max_windows_per_transaction: int = 8
    prefetch_windows: int = 2
    decode_processes: int = 0
    overlap_seconds: float = 300.0
    settle_delay_seconds: float = 30.0
    poll_interval_seconds: float = 10.0
    accept_gzip: bool = True
    producer: dict[str, Any] = field(default_factory=dict)
    log_level: str = "INFO"


def publisher_config(
    workload: Workload,
    setup: PublisherSetup,
    *,
    bootstrap: str,
    simulator_url: str,
    start_from: datetime | None = None,
) -> dict[str, Any]:
    """The publisher's config document, with topic names and identity of its own."""
    prefix = f"bench-{workload.name}-{uuid.uuid4().hex[:8]}"
    window = workload.window_seconds(setup.window_rows)
    doc: dict[str, Any] = {
        "publisher": {
            "transactional_id": prefix,
            "shards": setup.shards,
            "topic_template": f"{prefix}.{{source}}.{{entity}}",
            "checkpoint_topic": f"{prefix}.checkpoints",
            "dead_letter_topic": f"{prefix}.deadletter",
            "max_windows_per_transaction": setup.max_windows_per_transaction,
            "prefetch_windows": setup.prefetch_windows,
            "decode_processes": setup.decode_processes,
        },
        "kafka": {"bootstrap_servers": bootstrap, "topic_partitions": 3},
        "windows": {
            "start_from": (start_from or workload.history_start).isoformat(),
            "overlap_seconds": setup.overlap_seconds,
            "settle_delay_seconds": setup.settle_delay_seconds,
            "poll_interval_seconds": setup.poll_interval_seconds,
            "initial_window_seconds": window,
            "max_window_seconds": window,
            "min_window_seconds": 1.0,
            # Windows hold up to ~window_rows rows of the densest entity: neither shrink nor grow.
            "target_rows": max(1, setup.window_rows // 2),
        },
        "metrics": {"port": 0},
        "logging": {"level": setup.log_level, "format": "json"},
        "sources": [
            {
                "name": "bench",
                "base_url": simulator_url,
                "token_url": f"{simulator_url}/v1/oauth2/token",
                "client_id": "simulator",
                "client_secret": "${DC_CLIENT_SECRET}",
                "username": "simulator",
                "password": "${DC_PASSWORD}",
                "entities": workload.entities,
                "accept_gzip": setup.accept_gzip,
            }
        ],
    }
    if setup.producer:
        doc["kafka"]["producer"] = dict(setup.producer)
    return doc


def to_toml(doc: Mapping[str, Any]) -> str:
    """TOML text of a config document: top-level tables, arrays of tables, inline tables."""
    lines: list[str] = []
    for name, value in doc.items():
        tables = value if isinstance(value, list) else [value]
        for table in tables:
            lines.append(f"[[{name}]]" if isinstance(value, list) else f"[{name}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
