"""The local broker the tests and the demo use: restartable, and never left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from publisher.localkafka import LocalKafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def broker_pids(data_dir: str) -> list[int]:
    """PIDs of broker processes whose command line names this broker's data directory."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        if "kafka.Kafka" in cmdline and data_dir in cmdline:
            pids.append(int(proc.name))
    return pids


def test_start_and_stop_twice_in_a_row_leaves_nothing() -> None:
    for _ in range(2):
        broker = LocalKafka().start()
        data_dir = str(broker.data_dir)
        assert broker_pids(data_dir)
        broker.stop()
        assert broker_pids(data_dir) == []
        assert not Path(data_dir).exists()


def test_a_killed_owner_takes_its_broker_with_it(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from publisher.localkafka import LocalKafka\n"
        "k = LocalKafka().start()\n"
        "print(k.data_dir, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert owner.stdout is not None
    data_dir = owner.stdout.readline().strip()
    assert data_dir and broker_pids(data_dir), "the owner's broker did not start"
    owner.send_signal(signal.SIGKILL)  # no atexit, no finally: only the parent-death signal
    owner.wait(10)
    owner.stdout.close()
    deadline = time.monotonic() + 15
    while broker_pids(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert broker_pids(data_dir) == []
