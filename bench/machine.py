"""A description of the machine the figures were measured on."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import confluent_kafka
import fastavro
import isal
import orjson


def cpu_model(cpuinfo: str) -> str:
    """The ``model name`` line of ``/proc/cpuinfo`` (first CPU), or ``unknown``."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            return value.strip()
    return "unknown"


def mem_total_gib(meminfo: str) -> float:
    """``MemTotal`` of ``/proc/meminfo`` in GiB."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return 0.0


@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    memory_gib: float
    kernel: str
    python: str
    librdkafka: str
    versions: str
    load_at_start: str
    revision: str = "unknown"

    def lines(self) -> list[str]:
        return [
            f"CPUs (nproc): {self.cpus}; CPU: {self.cpu_model}; memory: {self.memory_gib:.1f} GiB",
            f"Linux {self.kernel}; Python {self.python}; librdkafka {self.librdkafka}; "
            f"{self.versions}",
            f"source: commit {self.revision}",
            f"load average when the run started: {self.load_at_start}",
        ]


def describe() -> Machine:
    proc = Path("/proc")
    return Machine(
        cpus=len(os.sched_getaffinity(0)),
        cpu_model=cpu_model((proc / "cpuinfo").read_text()),
        memory_gib=mem_total_gib((proc / "meminfo").read_text()),
        kernel=platform.release(),
        python=platform.python_version(),
        librdkafka=confluent_kafka.libversion()[0],
        versions=(
            f"confluent-kafka {confluent_kafka.__version__}, fastavro {fastavro.__version__}, "
            f"orjson {orjson.__version__}, isal {isal.__version__}"
        ),
        load_at_start=load_average(),
        revision=revision(Path(__file__).resolve().parent.parent),
    )


def revision(checkout: Path) -> str:
    """The checkout's commit (short hash), ``+ local changes`` when its files differ from it;
    ``unknown`` outside a git checkout."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(checkout), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} + local changes" if changed else head


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
