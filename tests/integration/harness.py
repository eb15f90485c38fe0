"""End-to-end harness: the simulator over real sockets, the publisher as a real process, and a
read_committed view of what reached Kafka, compared with the simulator's ground truth."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from publisher.admin import read_checkpoints
from publisher.codec import SchemaResolver
from publisher.config import Config, load_config
from publisher.kafka import read_to_end
from publisher.simulator.app import Simulator
from publisher.simulator.server import SimulatorServer
from publisher.simulator.settings import SimulatorSettings

ALL_ENTITIES = ["Customers", "AccountsReceivable", "Activities", "Discussions", "FollowUps"]
SECRET_ENV = {"DC_CLIENT_SECRET": "simulator-secret", "DC_PASSWORD": "simulator-password"}
#: ``SOAK=1`` (``make soak``) selects the long form of the fault suite.
SOAK = os.environ.get("SOAK") == "1"


def soak(ci: int, long: int) -> int:
    """``ci`` in a normal run, ``long`` under ``SOAK=1`` (cycles, seconds of outage...)."""
    return long if SOAK else ci


def report(test: str, **figures: object) -> None:
    """One ``FIGURES`` line on stdout (``pytest -s`` shows it): what a fault test tried and
    checked, for docs/RELIABILITY.md."""
    shown = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"FIGURES {test}: {shown}")  # noqa: T201 - the point of it


class FreezableClock:
    """DataConnect's "now": the real time until frozen (then no new row becomes visible)."""

    def __init__(self) -> None:
        self._frozen: datetime | None = None
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._frozen or datetime.now(UTC)

    def freeze(self) -> datetime:
        with self._lock:
            # The exact instant: truncating would move DataConnect's clock back and hide rows
            # that were already visible (and published).
            self._frozen = datetime.now(UTC)
            return self._frozen


@dataclass
class RunningSimulator:
    simulator: Simulator
    server: SimulatorServer
    clock: FreezableClock

    @property
    def url(self) -> str:
        return self.server.url

    def truth(self, entity: str, start: datetime, stop: datetime) -> list[dict[str, Any]]:
        """Every visible row version with change time in [start, stop), parsed."""
        return [orjson.loads(r) for r in self.simulator.changes(entity, start, stop)]

    def set_faults(self, rules: list[dict[str, Any]], seed: int = 0) -> None:
        """Replace the fault rules through the admin API (``POST /_simulator/faults``)."""
        r = httpx.post(f"{self.url}/_simulator/faults", json={"seed": seed, "rules": rules})
        r.raise_for_status()

    def stats(self) -> dict[str, Any]:
        """``GET /_simulator/stats``: requests by status, faults injected, requests in flight."""
        r = httpx.get(f"{self.url}/_simulator/stats")
        r.raise_for_status()
        stats: dict[str, Any] = r.json()
        return stats

    def status_count(self, status: int) -> int:
        """Requests the simulator answered with ``status`` so far."""
        return int(self.stats()["requests_by_status"].get(str(status), 0))

    def expire_tokens(self, mode: str) -> None:
        """``expire`` every access token (refresh still works) or ``revoke`` every token."""
        r = httpx.post(f"{self.url}/_simulator/tokens/expire", params={"mode": mode})
        r.raise_for_status()


def start_simulator(settings: SimulatorSettings) -> RunningSimulator:
    clock = FreezableClock()
    simulator = Simulator(settings, clock)
    server = SimulatorServer(simulator).start()
    return RunningSimulator(simulator, server, clock)


def huge_row_simulator(
    *, seed: int, rows: int, start: datetime, chars: int, rate: float, live_rate: float = 0.0
) -> RunningSimulator:
    """A simulator whose bad rows (``rate`` of them) each carry a string of ``chars`` random
    base64 characters: records that no compression shrinks below their size. ``live_rate``:
    new row versions per second after the history (none when 0)."""
    return start_simulator(
        SimulatorSettings(
            seed=seed,
            default_rows=rows,
            history_start=start,
            bad_row_rate=rate,
            bad_row_kinds=("huge_string",),
            huge_string_chars=chars,
            **({"live": True, "rate": live_rate} if live_rate else {}),
        )
    )


def canonical(row: Any) -> bytes:
    """A row's JSON with sorted keys: equal rows, equal bytes."""
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


def split_huge(truth: list[dict[str, Any]], chars: int) -> tuple[Counter[str], list[bytes]]:
    """The thumbprints of the rows without a ``chars``-long string, and the sorted canonical
    JSON of those with one (see :func:`huge_row_simulator`)."""
    fits: Counter[str] = Counter()
    huge = []
    for row in truth:
        if any(isinstance(v, str) and len(v) == chars for v in row.values()):
            huge.append(canonical(row))
        else:
            fits[row["RowThumbprint"]] += 1
    assert huge, "the simulator made no huge row"
    return fits, sorted(huge)


def write_config(
    path: Path,
    *,
    bootstrap: str,
    simulator_url: str,
    prefix: str,
    start_from: datetime,
    entities: Iterable[str] = ALL_ENTITIES,
    windows: dict[str, Any] | None = None,
    kafka: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    publisher: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """A publisher TOML config with per-test topic names and identity."""
    w = {
        "start_from": start_from.isoformat(),
        "overlap_seconds": 10,
        "settle_delay_seconds": 1,
        "poll_interval_seconds": 0.5,
        "initial_window_seconds": 1800,
        "max_window_seconds": 3600,
        "min_window_seconds": 0.5,
        **(windows or {}),
    }
    k = {"bootstrap_servers": bootstrap, "topic_partitions": 3, **(kafka or {})}
    p = {
        "transactional_id": f"{prefix}-txn",
        "topic_template": f"{prefix}.{{source}}.{{entity}}",
        "checkpoint_topic": f"{prefix}.checkpoints",
        "dead_letter_topic": f"{prefix}.deadletter",
        **(publisher or {}),
    }
    s = {
        "name": "retailer",
        "base_url": simulator_url,
        "token_url": f"{simulator_url}/v1/oauth2/token",
        "client_id": "simulator",
        "client_secret": "${DC_CLIENT_SECRET}",
        "username": "simulator",
        "password": "${DC_PASSWORD}",
        "entities": list(entities),
        "max_attempts": 4,
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.5,
        **(source or {}),
    }
    lines = ["[publisher]", *_toml(p), "[kafka]", *_toml(k), "[windows]", *_toml(w)]
    m = {"port": 0, **(metrics or {})}
    lines += ["[metrics]", *_toml(m), "[logging]", 'format = "json"', "[[sources]]", *_toml(s)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(table: dict[str, Any]) -> Iterator[str]:
    for key, value in table.items():
        if isinstance(value, dict):
            inner = ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items())
            yield f"{key} = {{ {inner} }}"
        else:
            yield f"{key} = {_toml_value(value)}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def load(path: Path) -> Config:
    return load_config(path, env=SECRET_ENV)


class PublisherProcess:
    """``python -m publisher run`` as a child process, its output in a log file."""

    def __init__(
        self,
        config_path: Path,
        log_path: Path,
        *extra: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.extra = extra
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PublisherProcess:
        env = {**os.environ, **SECRET_ENV, **self.env}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "publisher",
                    "run",
                    "--config",
                    str(self.config_path),
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float, *, after: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in the log after character ``after``; fails if the
        process exits or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            found = regex.search(self.log(), after)
            if found:
                return found
            if not self.alive():
                raise AssertionError(f"publisher exited before {pattern!r}:\n{self.log()[-3000:]}")
            time.sleep(0.02)
        raise TimeoutError(f"no {pattern!r} in the log within {timeout}s:\n{self.log()[-3000:]}")

    def health_url(self, timeout: float = 30) -> str:
        """Base URL of the process's /metrics, /healthz and /readyz (from its start-up log)."""
        return self.wait_for_log(r"health endpoint listening on (http://[0-9.:]+)", timeout)[1]


def wait_for_watermarks(
    config: Config,
    target: datetime,
    timeout: float,
    streams: Iterable[str] | None = None,
) -> dict[str, datetime]:
    """Wait until every configured stream's (or only ``streams``') committed watermark
    reaches ``target``."""
    deadline = time.monotonic() + timeout
    marks: dict[str, datetime] = {}
    wanted = list(streams or (f"{s.name}/{e}" for s in config.sources for e in s.entities))
    while time.monotonic() < deadline:
        checkpoints = read_checkpoints(config)
        marks = {sid: cp.watermark for sid, cp in checkpoints.items()}
        if all(sid in marks and marks[sid] >= target for sid in wanted):
            return marks
        time.sleep(0.5)
    raise TimeoutError(f"watermarks did not reach {target.isoformat()}: {marks}")


@dataclass(frozen=True)
class Published:
    entity: str
    key: str
    thumbprint: str
    op: str
    partition: int
    offset: int
    change_ms: int
    window_stop: int


def published(config: Config) -> list[Published]:
    """Every event a read_committed consumer sees on the configured entity topics."""
    topics = sorted({config.topic_for(s.name, e) for s in config.sources for e in s.entities})
    resolver = SchemaResolver.for_entities(config.entity_specs().values())
    out = []
    conf = {"bootstrap.servers": config.kafka.bootstrap_servers, "group.id": "harness"}
    for msg in read_to_end(conf, topics, timeout=120):
        if msg.value() is None:
            continue  # tombstone
        entity, event = resolver.decode(msg.value() or b"")
        src = event["source"]
        out.append(
            Published(
                entity=entity,
                key=(msg.key() or b"").decode(),
                thumbprint=src["row_thumbprint"],
                op=event["op"],
                partition=msg.partition(),
                offset=msg.offset(),
                change_ms=src["row_updated"] or src["row_inserted"] or src["window_stop"],
                window_stop=src["window_stop"],
            )
        )
    return out


def dead_letters(config: Config) -> list[dict[str, Any]]:
    conf = {"bootstrap.servers": config.kafka.bootstrap_servers, "group.id": "harness"}
    return [
        orjson.loads(m.value() or b"null")
        for m in read_to_end(conf, [config.publisher.dead_letter_topic], timeout=60)
    ]


def truth_multiset(
    sim: RunningSimulator, config: Config, start: datetime, stops: dict[str, datetime]
) -> Counter[tuple[str, str, str]]:
    """(entity, key, RowThumbprint) of every row version the simulator holds in
    [start, committed watermark) of each stream."""
    specs = config.entity_specs()
    truth: Counter[tuple[str, str, str]] = Counter()
    for source in config.sources:
        for entity in source.entities:
            stop = stops[f"{source.name}/{entity}"]
            key_field = specs[entity].key_field
            for row in sim.truth(entity, start, stop):
                truth[(entity, str(row[key_field]).lower(), row["RowThumbprint"])] += 1
    return truth


def event_multiset(events: Iterable[Published]) -> Counter[tuple[str, str, str]]:
    return Counter((e.entity, e.key.lower(), e.thumbprint) for e in events)


def assert_matches_truth(
    sim: RunningSimulator, config: Config, start: datetime, stops: dict[str, datetime]
) -> list[Published]:
    """The read_committed view equals the ground truth up to each stream's committed watermark
    (nothing lost, nothing twice) with per-key order intact; returns the events."""
    events = published(config)
    truth = truth_multiset(sim, config, start, stops)
    got = event_multiset(events)
    missing, extra = truth - got, got - truth
    assert not missing, f"{sum(missing.values())} row versions lost, e.g. {list(missing)[:3]}"
    assert not extra, f"{sum(extra.values())} duplicated/unknown, e.g. {list(extra)[:3]}"
    assert_per_key_order(events)
    return events


def decoded_events(config: Config) -> list[tuple[str, dict[str, Any]]]:
    """(entity, decoded change event) of every record a read_committed consumer sees."""
    topics = sorted({config.topic_for(s.name, e) for s in config.sources for e in s.entities})
    resolver = SchemaResolver.for_entities(config.entity_specs().values())
    conf = {"bootstrap.servers": config.kafka.bootstrap_servers, "group.id": "harness"}
    return [
        resolver.decode(m.value() or b"")
        for m in read_to_end(conf, topics, timeout=120)
        if m.value() is not None
    ]


def published_thumbprints(config: Config) -> Counter[str]:
    """The row thumbprint of every event a read_committed consumer sees, counted."""
    return Counter(event["source"]["row_thumbprint"] for _e, event in decoded_events(config))


def assert_huge_rows_dead_lettered(
    sim: RunningSimulator, config: Config, start: datetime, stop: datetime, chars: int
) -> tuple[int, list[dict[str, Any]]]:
    """Every Customers row version in [start, stop) reached Kafka once: those with a
    ``chars``-long string as a ``too_large`` dead letter holding their JSON whole, the others
    as events. Returns the number of rows and the dead letters."""
    truth = sim.truth("Customers", start, stop)
    fits, huge = split_huge(truth, chars)
    letters = dead_letters(config)
    assert {d["reason"] for d in letters} == {"too_large"}
    assert sorted(canonical(orjson.loads(d["row"])) for d in letters) == huge
    assert published_thumbprints(config) == fits
    return len(truth), letters


def assert_per_key_order(events: list[Published]) -> None:
    """Per key: one partition; windows in order; change times in order within a window."""
    by_key: dict[tuple[str, str], list[Published]] = {}
    for e in sorted(events, key=lambda e: (e.partition, e.offset)):
        by_key.setdefault((e.entity, e.key), []).append(e)
    for key, seq in by_key.items():
        assert len({e.partition for e in seq}) == 1, f"{key} spread over partitions"
        for a, b in itertools.pairwise(seq):
            assert a.window_stop <= b.window_stop, f"{key}: windows out of order"
            if a.window_stop == b.window_stop:
                assert a.change_ms <= b.change_ms, f"{key}: versions out of change-time order"


def minutes_ago(n: float) -> datetime:
    return (datetime.now(UTC) - timedelta(minutes=n)).replace(microsecond=0)
