"""A real schema registry with the Confluent REST API, started from Maven artifacts, no Docker.

Apicurio Registry 2.6 (a Quarkus application) publishes its runnable distribution on Maven's
default repository as ``io.apicurio:apicurio-registry-app:<version>:tar.gz:all``: a runner jar
and its ``lib/`` directory. It runs on Java 17 (the 3.x line needs Java 21) and serves the
Confluent-compatible API under ``/apis/ccompat/v7``, with in-memory (H2) storage by default.

Used by the integration tests of the ``confluent`` wire format; production deployments point
the publisher at their own registry. ``fetch_dist`` runs Maven once (the unpacked distribution
is kept under the cache directory). ``LocalRegistry`` starts the registry on a free loopback
port in its own process group, with Linux's parent-death signal set so it dies with the
process that started it even on ``kill -9``, and waits until the API answers.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from publisher.localproc import (
    ManagedProcess,
    cache_root,
    free_port,
    run_maven,
    wait_for_signal,
)

HERE = Path(__file__).resolve().parent
APICURIO_VERSION = "2.6.13.Final"
RUNNER_JAR = f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
#: Where the Confluent-compatible API lives below the registry's root URL.
CCOMPAT_PATH = "/apis/ccompat/v7"


class LocalRegistryError(RuntimeError):
    """The local registry could not be fetched or started; the message says why."""


def cache_dir() -> Path:
    """Where the distribution is kept: ``$DCP_REGISTRY_DIST`` or the user's cache directory."""
    env = os.environ.get("DCP_REGISTRY_DIST")
    return Path(env) if env else cache_root() / f"apicurio-registry-{APICURIO_VERSION}"


def fetch_dist(quiet: bool = True) -> Path:
    """Make sure the unpacked distribution is present; run Maven if not. Returns its directory."""
    target = cache_dir()
    if (target / RUNNER_JAR).exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    run_maven(
        HERE / "pom.xml",
        ["dependency:unpack", f"-Dregistry.dir={target}"],
        quiet=quiet,
        error=LocalRegistryError,
    )
    if not (target / RUNNER_JAR).exists():
        raise LocalRegistryError(f"mvn ran but {RUNNER_JAR} is not in {target}")
    return target


class LocalRegistry:
    """One registry process. ``start()`` returns once the API answers; ``stop()`` cleans up."""

    def __init__(
        self,
        *,
        port: int = 0,
        heap: str = "384m",
        startup_timeout: float = 120.0,
        java: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.java = java or shutil.which("java") or "java"
        self.work_dir: Path | None = None
        self._process: ManagedProcess | None = None
        self.started_in: float | None = None

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base URL of the Confluent-compatible API: the publisher's schema_registry_url."""
        return self.root_url + CCOMPAT_PATH

    @property
    def log_file(self) -> Path | None:
        return None if self.work_dir is None else self.work_dir / "registry.log"

    def command(self, dist: Path) -> list[str]:
        """The java command line: in-memory storage, loopback only, small pools, fast start."""
        assert self.work_dir is not None  # noqa: S101 - set by start() before this is called
        return [
            self.java,
            "-Xms64m",
            f"-Xmx{self.heap}",
            # A short-lived test service: the C1 compiler and serial GC start fastest.
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Djava.io.tmpdir={self.work_dir}",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.datasource.jdbc.initial-size=1",
            "-Dquarkus.datasource.jdbc.min-size=1",
            "-jar",
            str(dist / RUNNER_JAR),
        ]

    def start(self) -> LocalRegistry:
        """Start the registry with empty in-memory storage; wait until its API answers."""
        dist = fetch_dist()
        began = time.monotonic()
        self.work_dir = Path(tempfile.mkdtemp(prefix="dcp-registry-"))
        self._process = ManagedProcess(
            self.command(dist), log_path=self.work_dir / "registry.log", cwd=self.work_dir
        )
        try:
            self._wait_ready(began + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def _wait_ready(self, deadline: float) -> None:
        # Ready means the Confluent API itself answers, not only the health endpoint.
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = None if self._process is None else self._process.exit_code
                if code is not None:
                    raise LocalRegistryError(
                        f"registry exited with {code}; see {self.log_file}: {self._log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise LocalRegistryError(f"registry not ready in time; see {self.log_file}")
                try:
                    if client.get(f"{self.url}/subjects").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)

    def _log_tail(self) -> str:
        path = self.log_file
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")[-2000:]

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the registry's process group, SIGKILL after ``grace`` seconds, clean up."""
        if self._process is not None:
            self._process.stop(grace)
            self._process = None
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m publisher.localregistry [fetch]``: fetch it, or run one until Ctrl-C."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m publisher.localregistry")
    parser.add_argument("action", nargs="?", default="run", choices=["run", "fetch"])
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    if args.action == "fetch":
        path = fetch_dist(quiet=False)
        sys.stdout.write(f"Apicurio Registry {APICURIO_VERSION} in {path}\n")
        return 0
    registry = LocalRegistry(port=args.port).start()
    sys.stdout.write(
        f"Apicurio Registry {APICURIO_VERSION} ready in {registry.started_in:.1f}s; "
        f"schema_registry_url = {registry.url!r}; Ctrl-C stops it\n"
    )
    sys.stdout.flush()
    try:
        wait_for_signal()
    finally:
        registry.stop()
    return 0
