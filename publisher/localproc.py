"""What the local services started from Maven artifacts (the Kafka broker, the schema registry)
share: Maven fetches into a cache directory, free loopback ports, and a child process that
cannot outlive us.

The child runs in its own process group (so ``stop`` reaches everything it started) with
Linux's parent-death signal set before ``exec``, so it dies with the process that started it
even on ``kill -9``. ``stop`` sends SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

_PR_SET_PDEATHSIG = 1


def cache_root() -> Path:
    """The user's cache directory for downloaded service artifacts."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "dataconnect-publisher"


def run_maven(pom: Path, args: Sequence[str], *, quiet: bool, error: type[Exception]) -> None:
    """Run Maven on ``pom`` with Maven's default repository; raise ``error`` on failure."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise error("Maven (mvn) is not on PATH: it is needed to fetch the service's artifacts")
    cmd = [mvn, *(["-q"] if quiet else []), "-B", "-f", str(pom), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        tail = proc.stdout[-4000:] + proc.stderr[-2000:]
        raise error(f"mvn failed ({proc.returncode}):\n{tail}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def die_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send the child ``signum`` when its parent dies
    (even by SIGKILL)."""

    def preexec() -> None:  # runs in the child between fork and exec
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum)

    return preexec


class ManagedProcess:
    """One child process with its output appended to ``log_path``."""

    def __init__(self, cmd: Sequence[str], *, log_path: Path, cwd: Path | None = None) -> None:
        self.log_path = log_path
        self._log: BinaryIO | None = log_path.open("ab")
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603
            list(cmd),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - prctl only, no locks taken
        )
        atexit.register(self.stop)

    @property
    def exit_code(self) -> int | None:
        """None while running."""
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, chars: int = 2000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the process group at once (fault tests)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        atexit.unregister(self.stop)


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (the ``run`` mode of the local service commands)."""
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
