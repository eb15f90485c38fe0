"""What /proc says about a process tree: peak resident memory and CPU seconds.

Peak memory is ``VmHWM`` (the high-water mark of the resident set, kept by the kernel for the
life of the process), so sampling it now and then still sees a peak that lasted a millisecond.
CPU time is ``utime + stime`` from ``/proc/<pid>/stat``. Both are read for the root process and
every descendant, so a supervisor and its shard processes are all counted.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def status_kib(text: str, field: str) -> int | None:
    """The value in KiB of a ``/proc/<pid>/status`` line such as ``VmHWM:  123 kB``."""
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name == field:
            return int(rest.split()[0])
    return None


def stat_cpu_ticks(text: str) -> int:
    """``utime + stime`` (clock ticks) from the text of ``/proc/<pid>/stat``.

    The command name (field 2) may contain spaces and parentheses, so fields are counted from
    the last ``)``: utime and stime are fields 14 and 15 of the line.
    """
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads' children)."""
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def thread_group(pid: int, tid: int, name: str) -> str:
    """Which part of a process a thread is, by its OS name: ``main`` (the process's first
    thread), ``fetch`` (the publisher's dcp-fetch threads), ``librdkafka`` (rdk:*), ``JIT``
    and ``GC`` (a JVM's compiler and collector threads), ``requests`` (Kafka's request
    handling and network threads), else ``other``."""
    if tid == pid:
        return "main"
    if name.startswith("dcp-fetch"):
        return "fetch"
    if name.startswith("rdk:"):
        return "librdkafka"
    if "CompilerThre" in name:
        return "JIT"
    if name.startswith(("GC Thread", "G1 ")):
        return "GC"
    if name.startswith(("data-plane-kafk", "kafka-network-t", "executor-")):
        return "requests"
    return "other"


def thread_ticks(pid: int) -> dict[int, tuple[str, int]]:
    """CPU ticks of each live thread of ``pid``: tid -> (group, ticks)."""
    out: dict[int, tuple[str, int]] = {}
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        tid = int(task.name)
        out[tid] = (thread_group(pid, tid, name), stat_cpu_ticks(text))
    return out


def group_seconds(threads: dict[int, tuple[str, int]]) -> dict[str, float]:
    """CPU seconds by thread group, from :func:`thread_ticks` values."""
    out: dict[str, float] = {}
    for group, ticks in threads.values():
        out[group] = out.get(group, 0.0) + ticks / CLOCK_TICKS
    return out


@dataclass
class Usage:
    """What was seen of one process."""

    pid: int
    command: str
    peak_rss_kib: int = 0
    cpu_ticks: int = 0
    #: Latest CPU ticks of each thread seen (tid -> (group, ticks)); threads that ended
    #: keep their last sample.
    threads: dict[int, tuple[str, int]] = field(default_factory=dict)

    @property
    def thread_seconds(self) -> dict[str, float]:
        """CPU seconds by thread group (see :func:`thread_group`)."""
        return group_seconds(self.threads)

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_kib / 1024

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_ticks / CLOCK_TICKS


def read_usage(pid: int) -> Usage | None:
    """One process's VmHWM and CPU ticks now, or None if it is gone."""
    base = PROC / str(pid)
    try:
        status = (base / "status").read_text()
        stat = (base / "stat").read_text()
        command = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return None
    return Usage(pid, command, status_kib(status, "VmHWM") or 0, stat_cpu_ticks(stat))


class TreeWatcher:
    """Samples a process tree on a thread; keeps each process's peak RSS and latest CPU time.

    Call :meth:`sample` once more just before stopping the processes: processes that exit
    take their counters with them.
    """

    def __init__(
        self, root: int, interval: float = 0.25, progress: Callable[[], int] | None = None
    ) -> None:
        self.root = root
        self.interval = interval
        self.usage: dict[int, Usage] = {}
        self._progress = progress
        #: (progress, largest peak RSS of any process in KiB) at each sample, when
        #: ``progress`` (e.g. rows committed so far) is given: shows whether memory plateaus.
        self.trace: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="procstat", daemon=True)

    def start(self) -> TreeWatcher:
        self._thread.start()
        return self

    def sample(self) -> None:
        done = None if self._progress is None else self._progress()
        for pid in tree(self.root):
            now = read_usage(pid)
            if now is None:
                continue
            with self._lock:
                seen = self.usage.setdefault(pid, Usage(pid, now.command))
                seen.command = now.command or seen.command
                seen.peak_rss_kib = max(seen.peak_rss_kib, now.peak_rss_kib)
                seen.cpu_ticks = max(seen.cpu_ticks, now.cpu_ticks)
                seen.threads.update(thread_ticks(pid))
        if done is not None:
            with self._lock:
                peak = max((u.peak_rss_kib for u in self.usage.values()), default=0)
                self.trace.append((done, peak))

    def stop(self) -> list[Usage]:
        """Stop sampling (after a last sample) and return what was seen, by pid."""
        self.sample()
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            return sorted(self.usage.values(), key=lambda u: u.pid)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


def busy_ticks(stat_text: str) -> int:
    """Clock ticks all CPUs spent busy (not idle, not waiting for I/O), from ``/proc/stat``."""
    fields = [int(x) for x in stat_text.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores)."""
    return busy_ticks((PROC / "stat").read_text()) / CLOCK_TICKS


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by these processes (not their children)."""
    total = 0
    for pid in pids:
        usage = read_usage(pid)
        if usage is not None:
            total += usage.cpu_ticks
    return total / CLOCK_TICKS


def peak_at(trace: list[tuple[int, int]], done: int) -> int | None:
    """The peak RSS (KiB) seen by the time progress first reached ``done``, from a
    :attr:`TreeWatcher.trace`; None if it never did."""
    for progress, peak in trace:
        if progress >= done:
            return peak
    return None
