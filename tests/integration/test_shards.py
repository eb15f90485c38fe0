"""The shards supervisor (``publisher.shards = 2``) as a real process tree: a supervisor and two
shard children, each with its own transactional.id and metrics port, publishing against a real
broker and the simulator over sockets. SIGTERM stops the whole tree cleanly; kill -9 of one
child stops the tree with a non-zero exit; either way the read_committed view equals the
simulator's ground truth, also across the crash and a restart."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from publisher.config import Config
from publisher.errors import EXIT_FATAL
from publisher.simulator.settings import SimulatorSettings
from tests.integration.harness import (
    PublisherProcess,
    RunningSimulator,
    assert_matches_truth,
    load,
    minutes_ago,
    start_simulator,
    wait_for_watermarks,
    write_config,
)
from tests.kafka_helpers import random_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENTITIES = ["Customers", "Activities", "Discussions"]
#: Shard i of 2 owns the streams at positions i, i + 2, ... of the configured order.
OWNED = {
    0: {"retailer/Customers", "retailer/Discussions"},
    1: {"retailer/Activities"},
}
SHARDS = {"0/2": 0, "1/2": 1}
#: The publisher logs each committed window at DEBUG; the crash tests wait for that line.
DEBUG_ENV = {"DCP_LOGGING__LEVEL": "DEBUG"}
LIVE = {"live": True, "rate": 10.0, "late_fraction": 0.2, "late_delay": 3.0, "block_size": 64}
PUBLISHING_AS = re.compile(r'"message":"publishing as ([^:"]+): ([^"]*)"')


@dataclass
class Tree:
    """Everything one test started, so that a failed assertion leaves nothing running."""

    sim: RunningSimulator
    config: Config
    config_path: Path
    log: Path
    start_from: datetime
    metrics_port: int
    env: dict[str, str]
    supervisors: list[PublisherProcess] = field(default_factory=list)
    children: set[int] = field(default_factory=set)

    def supervise(self) -> tuple[PublisherProcess, dict[int, int]]:
        """Start the supervisor; returns it once both shard children run, with their pids by
        shard index."""
        sup = PublisherProcess(self.config_path, self.log, env=self.env).start()
        self.supervisors.append(sup)
        kids = wait_for_children(sup, timeout=30)
        self.children |= set(kids.values())
        return sup, kids


@contextmanager
def tree(
    kafka_bootstrap: str,
    tmp_path: Path,
    settings: dict[str, Any],
    windows: dict[str, Any],
    env: dict[str, str] | None = None,
) -> Iterator[Tree]:
    sim = start_simulator(SimulatorSettings(seed=7, **settings))
    try:
        port = free_port_pair()
        start_from = settings["history_start"]
        config_path = write_config(
            tmp_path / "publisher.toml",
            bootstrap=kafka_bootstrap,
            simulator_url=sim.url,
            prefix=random_name("shards"),
            start_from=start_from,
            entities=ENTITIES,
            windows=windows,
            publisher={"shards": 2},
            metrics={"port": port},
        )
        t = Tree(
            sim,
            load(config_path),
            config_path,
            tmp_path / "publisher.log",
            start_from,
            port,
            env or {},
        )
        try:
            yield t
        finally:
            for sup in t.supervisors:
                if sup.alive() and sup.proc is not None:
                    # SIGKILL cannot be forwarded: its children are killed one by one below.
                    t.children |= set(shard_children(sup.proc.pid).values())
                    sup.kill9()
            for pid in t.children:  # and orphans of a supervisor that failed to stop them
                if shard_running(pid):
                    os.kill(pid, signal.SIGKILL)
    finally:
        sim.server.stop()


def live_tree(kafka_bootstrap: str, tmp_path: Path) -> AbstractContextManager[Tree]:
    """A tree on a live simulator (300 rows of history, then live and late rows), with the
    DEBUG log that names each committed window."""
    return tree(
        kafka_bootstrap,
        tmp_path,
        settings={"default_rows": 300, "history_start": minutes_ago(90), **LIVE},
        windows={"initial_window_seconds": 900},
        env=DEBUG_ENV,
    )


def test_two_shards_split_the_streams_and_stop_together_on_sigterm(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(hours=2)
    rows = 300
    with tree(
        kafka_bootstrap,
        tmp_path,
        settings={"default_rows": rows, "history_start": start, "history_end": end},
        windows={"initial_window_seconds": 900},
    ) as t:
        sup, kids = t.supervise()
        prefix = t.config.publisher.transactional_id

        # Each child announces its transactional.id and the streams it owns.
        first = sup.wait_for_log(PUBLISHING_AS.pattern, 60)
        second = sup.wait_for_log(PUBLISHING_AS.pattern, 60, after=first.end())
        owners = {m[1]: {s.split("@")[0] for s in m[2].split(", ")} for m in (first, second)}
        assert owners == {f"{prefix}-0-of-2": OWNED[0], f"{prefix}-1-of-2": OWNED[1]}

        marks = wait_for_watermarks(t.config, end, timeout=90)

        # Shard i serves its metrics on port + i, with series for its own streams only.
        for index, streams in OWNED.items():
            served = watermarks_served(t.metrics_port + index)
            assert set(served) == streams, f"shard {index} on port {t.metrics_port + index}"
            assert all(w >= end for w in served.values()), served

        assert sup.terminate() == 0, sup.log()[-3000:]
        assert not [pid for pid in kids.values() if shard_running(pid)]
        assert len(re.findall(r'"message":"stopped cleanly after', sup.log())) == 2

        events = assert_matches_truth(t.sim, t.config, t.start_from, marks)
        assert len(events) == len(ENTITIES) * rows


def test_kill9_of_one_shard_stops_the_tree_and_a_restart_completes_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rows = 600
    with tree(
        kafka_bootstrap,
        tmp_path,
        settings={"default_rows": rows, "history_start": minutes_ago(90), **LIVE},
        windows={"initial_window_seconds": 300, "target_rows": 100},
        env=DEBUG_ENV,
    ) as t:
        sup, kids = t.supervise()
        # Shard 1 dies once it has committed something, while live rows keep arriving; the
        # window it works on (its transaction possibly open) is lost with it.
        sup.wait_for_log(r'"message":"committed retailer/Activities window', 60)
        victim, survivor = kids[1], kids[0]
        os.kill(victim, signal.SIGKILL)

        code = sup.wait(60)
        log = sup.log()
        assert code == EXIT_FATAL, log[-3000:]
        assert re.search(
            rf'"level":"ERROR".*"message":"shard process {victim} \(shard 1/2\) exited with -9',
            log,
        )
        assert not shard_running(survivor), "the supervisor left shard 0 running"
        assert not shard_running(victim)

        # The same config again: the restarted shard 1 aborts what the dead one left open.
        frozen = t.sim.clock.freeze()
        sup, kids = t.supervise()
        marks = wait_for_watermarks(t.config, frozen, timeout=120)
        assert sup.terminate() == 0, sup.log()[-3000:]
        assert not [pid for pid in kids.values() if shard_running(pid)]

        events = assert_matches_truth(t.sim, t.config, t.start_from, marks)
        assert len(events) > len(ENTITIES) * rows  # the history and live rows went through


def test_a_shard_that_stops_on_its_own_stops_the_tree(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Nobody asked the supervisor to stop, so shard 1's streams would go unpublished while
    # shard 0 runs on: the tree stops and says why.
    with live_tree(kafka_bootstrap, tmp_path) as t:
        sup, kids = t.supervise()
        # Once shard 1 commits it handles SIGTERM with a clean stop (exit 0).
        sup.wait_for_log(r'"message":"committed retailer/Activities window', 60)
        os.kill(kids[1], signal.SIGTERM)

        assert sup.wait(60) == EXIT_FATAL
        assert re.search(
            rf'"level":"ERROR".*"message":"shard process {kids[1]} \(shard 1/2\) stopped '
            "without being asked to: stopping the others",
            sup.log(),
        )
        assert not [pid for pid in kids.values() if shard_running(pid)]


def test_both_shards_killed_at_once_is_a_failure(kafka_bootstrap: str, tmp_path: Path) -> None:
    with live_tree(kafka_bootstrap, tmp_path) as t:
        sup, kids = t.supervise()
        sup.wait_for_log(PUBLISHING_AS.pattern, 60)
        for pid in kids.values():
            os.kill(pid, signal.SIGKILL)

        assert sup.wait(60) == EXIT_FATAL
        assert re.search(
            r'"level":"ERROR".*"message":"shard process \d+ .*exited with -9', sup.log()
        )


def test_sigterm_while_the_shards_start_is_a_clean_stop(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The children may not have installed their own handler yet: dying of the forwarded
    # SIGTERM is then what the stop looks like, not a failure.
    with tree(
        kafka_bootstrap,
        tmp_path,
        settings={"default_rows": 300, "history_start": minutes_ago(90)},
        windows={"initial_window_seconds": 900},
    ) as t:
        sup, kids = t.supervise()
        assert sup.terminate() == 0, sup.log()[-3000:]
        assert '"level":"ERROR"' not in sup.log()
        assert not [pid for pid in kids.values() if shard_running(pid)]


def test_killing_the_supervisor_stops_its_shards_cleanly(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with live_tree(kafka_bootstrap, tmp_path) as t:
        sup, kids = t.supervise()
        sup.wait_for_log(r'"message":"committed retailer/Activities window', 60)
        sup.kill9()  # no handler runs: the kernel's parent-death signal must stop them

        deadline = time.monotonic() + 60
        while any(shard_running(pid) for pid in kids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in kids.values() if shard_running(pid)]
        assert len(re.findall(r'"message":"stopped cleanly after', sup.log())) == 2


def wait_for_children(sup: PublisherProcess, timeout: float) -> dict[int, int]:
    """Pids of the supervisor's shard children by shard index, once both run."""
    assert sup.proc is not None
    deadline = time.monotonic() + timeout
    kids: dict[int, int] = {}
    while time.monotonic() < deadline:
        kids = {SHARDS[arg]: pid for arg, pid in shard_children(sup.proc.pid).items()}
        if set(kids) == {0, 1}:
            return kids
        if not sup.alive():
            raise AssertionError(f"supervisor exited:\n{sup.log()[-3000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"shard children after {timeout}s: {kids}\n{sup.log()[-3000:]}")


def shard_children(parent: int) -> dict[str, int]:
    """Live (not zombie) children of ``parent`` that run a shard, by their ``--shard`` value."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        found = _shard_process(int(entry.name))
        if found is not None and found[1] == parent:
            out[found[0]] = int(entry.name)
    return out


def shard_running(pid: int) -> bool:
    """Whether ``pid`` is still a live shard process (whoever its parent is now)."""
    return _shard_process(pid) is not None


def _shard_process(pid: int) -> tuple[str, int] | None:
    """(``--shard`` value, parent pid) of a live shard process, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # gone
        return None
    # The command name in parentheses may hold spaces; state and ppid follow the last ')'.
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    if state == "Z" or b"--shard" not in argv:
        return None
    return argv[argv.index(b"--shard") + 1].decode(), int(ppid)


def watermarks_served(port: int) -> dict[str, datetime]:
    """The committed watermark per stream that the /metrics endpoint on ``port`` exposes."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "dataconnect_publisher_watermark_timestamp_seconds":
            for sample in family.samples:
                stream = f"{sample.labels['source']}/{sample.labels['entity']}"
                out[stream] = datetime.fromtimestamp(sample.value, UTC)
    return out


def free_port_pair() -> int:
    """A port P such that P and P + 1 are both free on 127.0.0.1 right now."""
    for _ in range(100):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as b,
        ):
            a.bind(("127.0.0.1", 0))
            port: int = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two consecutive free ports")
