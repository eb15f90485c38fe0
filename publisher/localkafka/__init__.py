"""A real single-node Apache Kafka broker (KRaft) started from Maven artifacts, no Docker.

Used by the integration tests and by ``dataconnect-publisher demo``; production deployments
point the publisher at their own cluster. ``fetch_jars`` runs Maven once (its local repository
caches the artifacts, and the copied jars are kept under the cache directory, so later starts
need no network). ``LocalKafka`` formats a fresh data directory, starts ``kafka.Kafka`` in its
own process group, waits until a transactional producer can initialise, and on ``stop`` sends
SIGTERM, then SIGKILL after a grace period, and removes the data directory.

The broker dies with the process that started it even on ``kill -9`` of that process: Linux's
parent-death signal is set on the child before ``exec``.

The JVM runs with the C1 compiler only (``JVM_OPTIONS``). A broker lives for one test run or
one demo, and in its first minutes the C2 compiler's threads take most of its CPU: on a
2-core machine, 4.6-6.2 of 9.2-14.1 broker CPU seconds during a 300k-row catch-up, CPU the
publisher beside it then lacks. With C1 only the broker used 4.8-7.1 s for the same runs, and
its request threads no more than with C2 (3.0 against 2.9-4.8 s).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from publisher.localproc import (
    ManagedProcess,
    cache_root,
    free_port,
    run_maven,
    wait_for_signal,
)

HERE = Path(__file__).resolve().parent
KAFKA_VERSION = "4.1.2"
#: Options every broker and tool JVM gets (see the module docstring for the C1-only choice).
JVM_OPTIONS = ("-XX:+UseG1GC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched or started; the message says why."""


def cache_dir() -> Path:
    """Where the broker jars are kept: ``$DCP_KAFKA_LIBS`` or the user's cache directory."""
    env = os.environ.get("DCP_KAFKA_LIBS")
    return Path(env) if env else cache_root() / f"kafka-{KAFKA_VERSION}"


def fetch_jars(quiet: bool = True) -> Path:
    """Make sure the broker jars are present; run Maven if not. Returns the jar directory."""
    target = cache_dir()
    marker = target / ".complete"
    if marker.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    run_maven(
        HERE / "pom.xml",
        ["dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={target}"],
        quiet=quiet,
        error=LocalKafkaError,
    )
    marker.write_text(KAFKA_VERSION, encoding="utf-8")
    return target


def _cluster_id() -> str:
    # 16 random bytes, URL-safe base64 without padding, not starting with '-'.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    """The single-node KRaft settings that make transactions work on one broker."""
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir / "data"}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
transaction.abort.timed.out.transaction.cleanup.interval.ms=5000
log.cleaner.backoff.ms=1000
"""


class LocalKafka:
    """One broker process. ``start()`` returns once transactions work; ``stop()`` cleans up."""

    def __init__(
        self,
        *,
        port: int = 0,
        heap: str = "1g",
        startup_timeout: float = 120.0,
        java: str | None = None,
        keep_data: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.controller_port = free_port()
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.java = java or shutil.which("java") or "java"
        self.keep_data = keep_data
        self.data_dir: Path | None = None
        self._process: ManagedProcess | None = None
        self.started_in: float | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The broker's process while it runs."""
        return None if self._process is None else self._process.proc

    @property
    def log_file(self) -> Path | None:
        return None if self.data_dir is None else self.data_dir / "logs" / "server.log"

    def _java(self, libs: Path, main: str, *args: str, log_dir: Path) -> list[str]:
        return [
            self.java,
            "-Xms256m",
            f"-Xmx{self.heap}",
            *JVM_OPTIONS,
            f"-Dkafka.logs.dir={log_dir}",
            f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def start(self) -> LocalKafka:
        """Format a fresh data directory and start the broker; wait until it takes transactions."""
        libs = fetch_jars()
        began = time.monotonic()
        self.data_dir = Path(tempfile.mkdtemp(prefix="dcp-kafka-"))
        log_dir = self.data_dir / "logs"
        log_dir.mkdir()
        props = self.data_dir / "server.properties"
        props.write_text(server_properties(self.data_dir, self.port, self.controller_port))
        fmt = subprocess.run(  # noqa: S603
            self._java(
                libs,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
                "-c",
                str(props),
                log_dir=log_dir,
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise LocalKafkaError(f"formatting the broker storage failed: {fmt.stderr[-2000:]}")
        self._spawn(libs, props)
        try:
            self._wait_ready(began + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def _spawn(self, libs: Path, props: Path) -> None:
        assert self.data_dir is not None  # noqa: S101 - set by start() before any spawn
        log_dir = self.data_dir / "logs"
        self._process = ManagedProcess(
            self._java(libs, "kafka.Kafka", str(props), log_dir=log_dir),
            log_path=log_dir / "stderr.log",
        )

    def _wait_ready(self, deadline: float) -> None:
        # Readiness is proven from a client: metadata answers, then a transactional producer
        # initialises (the transaction coordinator and its state topic are up).
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while True:
            code = None if self._process is None else self._process.exit_code
            if code is not None:
                raise LocalKafkaError(
                    f"broker exited with {code}; see {self.log_file}: {self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise LocalKafkaError(f"broker not ready in time; see {self.log_file}")
            try:
                admin.list_topics(timeout=2)
                break
            except KafkaException:
                time.sleep(0.2)
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "transactional.id": f"dcp-readiness-{uuid.uuid4()}",
                "log_level": 0,
            }
        )
        remaining = max(1.0, deadline - time.monotonic())
        try:
            producer.init_transactions(remaining)
        except KafkaException as exc:
            raise LocalKafkaError(f"broker up but transactions not ready: {exc}") from exc

    def _log_tail(self) -> str:
        path = self.log_file
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")[-2000:]

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the broker's process group, SIGKILL after ``grace`` seconds, remove data."""
        if self._process is not None:
            self._process.stop(grace)
            self._process = None
        if self.data_dir is not None and not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def kill(self) -> None:
        """SIGKILL the broker (for fault tests), keeping its data for a restart."""
        if self._process is not None:
            self._process.kill()
            self._process = None

    def restart(self) -> None:
        """Start the broker again on the same ports and data (after ``kill`` or a stop with
        ``keep_data``), waiting until transactions work."""
        if self.data_dir is None:
            raise LocalKafkaError("no data directory to restart from")
        self._spawn(fetch_jars(), self.data_dir / "server.properties")
        self._wait_ready(time.monotonic() + self.startup_timeout)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m publisher.localkafka [fetch]``: fetch jars, or run a broker until Ctrl-C."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="dataconnect-publisher kafka")
    parser.add_argument("action", nargs="?", default="run", choices=["run", "fetch"])
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args(argv)
    if args.action == "fetch":
        path = fetch_jars(quiet=False)
        sys.stdout.write(f"Kafka {KAFKA_VERSION} jars in {path}\n")
        return 0
    broker = LocalKafka(port=args.port).start()
    sys.stdout.write(
        f"Kafka {KAFKA_VERSION} ready at {broker.bootstrap} in {broker.started_in:.1f}s; "
        "Ctrl-C stops it\n"
    )
    sys.stdout.flush()
    try:
        wait_for_signal()
    finally:
        broker.stop()
    return 0
