"""Bad configuration and hostile endpoints through the real CLI (``python -m publisher run``):
each problem gives one clear message and the documented exit code (README: 0 clean, 1 fatal,
2 configuration), never a traceback, and never a secret in the output."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from publisher.simulator.app import Simulator
from publisher.simulator.server import SimulatorServer
from publisher.simulator.settings import SimulatorSettings
from tests.integration.harness import (
    SECRET_ENV,
    FreezableClock,
    PublisherProcess,
    RunningSimulator,
    assert_matches_truth,
    load,
    minutes_ago,
    wait_for_watermarks,
    write_config,
)
from tests.kafka_helpers import random_name

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EXIT_FATAL = 1
EXIT_CONFIG = 2


def free_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_cli(
    config: Path, *, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m publisher run -c config``, to completion, stdout and stderr together."""
    return subprocess.run(
        [sys.executable, "-m", "publisher", "run", "-c", str(config)],
        env={**os.environ, **SECRET_ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_no_secret_and_no_traceback(output: str) -> None:
    assert "Traceback" not in output, output[-3000:]
    for secret in SECRET_ENV.values():
        assert secret not in output


def base_config(tmp_path: Path, **kwargs: object) -> Path:
    """A valid config whose Kafka and DataConnect are never reached by a config error."""
    args: dict[str, object] = {
        "bootstrap": f"127.0.0.1:{free_port()}",
        "simulator_url": f"http://127.0.0.1:{free_port()}",
        "prefix": random_name("cfg"),
        "start_from": minutes_ago(10),
        "entities": ["Customers"],
    }
    args.update(kwargs)
    return write_config(tmp_path / "publisher.toml", **args)  # type: ignore[arg-type]


def edit(path: Path, pattern: str, replacement: str) -> Path:
    text, n = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.M)
    assert n == 1, f"{pattern!r} not in the config"
    path.write_text(text)
    return path


# Each case: how to break a valid config, and the line the operator must see.
CONFIG_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "not TOML": (
        lambda p: edit(p, r"^\[windows\]$", "[windows"),
        r"not valid TOML",
    ),
    "missing transactional_id": (
        lambda p: edit(p, r"^transactional_id = .*$", ""),
        r"^config error: publisher\.transactional_id: Field required$",
    ),
    "no sources": (
        lambda p: edit(p, r"^\[\[sources\]\][\s\S]*", ""),
        r"^config error: sources: Field required$",
    ),
    "min window above max window": (
        lambda p: edit(p, r"^min_window_seconds = .*$", "min_window_seconds = 7200"),
        r"min_window_seconds: larger than max_window_seconds",
    ),
    "start_from without a zone": (
        lambda p: edit(p, r'^start_from = "([^"+]*)\+00:00"$', r'start_from = "\1"'),
        r"start_from: give a time zone",
    ),
    "unknown entity": (
        lambda p: edit(p, r'^entities = \["Customers"\]$', 'entities = ["Customers", "Nope"]'),
        r"sources\[0\]\.entities: unknown entity 'Nope'",
    ),
    "entity listed twice": (
        lambda p: edit(p, r'^entities = \["Customers"\]$', 'entities = ["Customers", "Customers"]'),
        r"entities: listed more than once",
    ),
    "unset environment variable": (
        lambda p: edit(p, r"\$\{DC_PASSWORD\}", "${DC_NOT_SET_ANYWHERE}"),
        r"environment variable DC_NOT_SET_ANYWHERE is not set",
    ),
    "unknown setting": (
        lambda p: edit(p, r"^\[windows\]$", "[windows]\novelap_seconds = 5"),
        r"windows\.ovelap_seconds: Extra inputs are not permitted",
    ),
    "key without id": (
        lambda p: edit(p, r"^\[publisher\]$", '[publisher]\nkey_template = "{source}"'),
        r"key_template: must contain \{id\}",
    ),
    "plain http to a non-loopback host": (
        lambda p: edit(p, r'^base_url = ".*"$', 'base_url = "http://dataconnect.example.com"'),
        r"base_url: plain http to a non-loopback host sends credentials in clear",
    ),
    "confluent wire format without a registry": (
        lambda p: edit(p, r"^\[publisher\]$", '[publisher]\nwire_format = "confluent"'),
        r"schema_registry_url: required for wire_format confluent",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_gives_one_clear_line_and_exit_2(tmp_path: Path, case: str) -> None:
    breaker, expected = CONFIG_CASES[case]
    config = breaker(base_config(tmp_path))
    began = time.monotonic()
    result = run_cli(config)
    assert result.returncode == EXIT_CONFIG, result.stdout
    assert re.search(expected, result.stdout, re.M), result.stdout
    # Nothing but configuration lines: the process stopped before connecting anywhere.
    lines = result.stdout.strip().splitlines()
    assert lines
    assert all(line.startswith("config error: ") for line in lines), result.stdout
    assert_no_secret_and_no_traceback(result.stdout)
    assert time.monotonic() - began < 30


def test_missing_config_file_and_bad_override_exit_2(tmp_path: Path) -> None:
    missing = run_cli(tmp_path / "nowhere.toml")
    assert missing.returncode == EXIT_CONFIG
    assert re.fullmatch(r"config error: .*nowhere\.toml: cannot read \(.+\)\n", missing.stdout)

    override = run_cli(base_config(tmp_path), env={"DCP_WINDOWS__OVERLAP_SECONDS": "ten"})
    assert override.returncode == EXIT_CONFIG
    assert override.stdout.startswith("config error: windows.overlap_seconds: "), override.stdout
    assert "ten" not in override.stdout  # values are never echoed: they may be secrets


def test_insecure_http_is_accepted_when_allowed(tmp_path: Path) -> None:
    """With ``allow_insecure_http`` the same URL passes validation: the process gets as far as
    Kafka (unreachable here, so exit 1 with the Kafka message, not a config error)."""
    config = base_config(
        tmp_path,
        source={"base_url": "http://dataconnect.example.com", "allow_insecure_http": True},
        kafka={"unavailable_deadline_seconds": 2},
    )
    result = run_cli(config)
    assert result.returncode == EXIT_FATAL, result.stdout
    assert "config error" not in result.stdout
    assert "Kafka unreachable" in result.stdout


def test_unreachable_kafka_exits_1_after_the_deadline_with_one_clear_line(
    tmp_path: Path,
) -> None:
    deadline = 4
    config = base_config(tmp_path, kafka={"unavailable_deadline_seconds": deadline})
    began = time.monotonic()
    result = run_cli(config)
    took = time.monotonic() - began
    assert result.returncode == EXIT_FATAL, result.stdout
    assert deadline <= took < deadline + 20, f"exited after {took:.1f}s"
    errors = [
        line
        for line in result.stdout.splitlines()
        if '"level":"ERROR"' in line and '"logger":"publisher.' in line
    ]
    assert len(errors) == 1, result.stdout[-3000:]
    assert f"Kafka unreachable for {deadline}s" in errors[0]
    assert_no_secret_and_no_traceback(result.stdout)


def test_refused_dataconnect_is_retried_without_crash_until_it_appears(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Connection refused: a clear warning per failed attempt, the process stays up and not
    ready, and once DataConnect listens it catches up to the ground truth."""
    port = free_port()
    start_from = minutes_ago(30)
    config_path = write_config(
        tmp_path / "publisher.toml",
        bootstrap=kafka_bootstrap,
        simulator_url=f"http://127.0.0.1:{port}",
        prefix=random_name("refused"),
        start_from=start_from,
        entities=["Customers", "Discussions"],
        metrics={"staleness_seconds": 2},
    )
    config = load(config_path)
    proc = PublisherProcess(config_path, tmp_path / "publisher.log").start()
    server: SimulatorServer | None = None
    try:
        health = proc.health_url()
        proc.wait_for_log(r"connect_error \(ConnectError: .*[Cc]onnection refused", 30)
        time.sleep(3)  # several retry rounds, and past the staleness limit
        assert proc.alive(), proc.log()[-3000:]
        readyz = httpx.get(f"{health}/readyz")
        assert readyz.status_code == 503, readyz.text
        assert "no commit since start" in readyz.text

        clock = FreezableClock()
        settings = SimulatorSettings(seed=5, default_rows=300, history_start=start_from)
        simulator = Simulator(settings, clock)
        server = SimulatorServer(simulator, port=port).start()
        sim = RunningSimulator(simulator, server, clock)
        frozen = clock.freeze()
        marks = wait_for_watermarks(config, frozen, timeout=60)
        assert_ready(health, timeout=30)
        assert proc.terminate() == 0, proc.log()[-3000:]
        events = assert_matches_truth(sim, config, start_from, marks)
        assert len(events) >= 2 * 250
        assert "Traceback" not in proc.log()
    finally:
        if proc.alive():
            proc.kill9()
        if server is not None:
            server.stop()


def assert_ready(health: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        r = httpx.get(f"{health}/readyz")
        if r.status_code == 200:
            return
        body = r.text
        time.sleep(0.3)
    raise AssertionError(f"/readyz not 200 within {timeout}s: {body}")


# -- TLS -----------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Records every request that got through the TLS handshake; answers 503."""

    def do_POST(self) -> None:
        server = self.server
        assert isinstance(server, TLSServer)
        length = int(self.headers.get("Content-Length") or 0)
        server.requests.append((self.command, self.path, self.rfile.read(length)))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.requests: list[tuple[str, str, bytes]] = []
        self.handshake_failures = 0

    def handle_error(self, request: object, client_address: object) -> None:
        self.handshake_failures += 1  # the client hung up during the handshake

    def get_request(self) -> tuple[socket.socket, object]:
        try:
            return super().get_request()
        except ssl.SSLError:
            self.handshake_failures += 1
            raise

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TLSServer]:
    """HTTPS on 127.0.0.1 with a self-signed certificate made by the ``openssl`` CLI."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.fail(f"openssl could not make a certificate: {made.stderr.decode()[-500:]}")
    server = TLSServer(cert, key)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _tls_config(path: Path, bootstrap: str, url: str, **source: object) -> Path:
    return write_config(
        path,
        bootstrap=bootstrap,
        simulator_url=url,
        prefix=random_name("tls"),
        start_from=minutes_ago(10),
        entities=["Customers"],
        source={"max_attempts": 2, **source},
    )


def test_self_signed_certificate_is_refused_and_no_credentials_are_sent(
    kafka_bootstrap: str, tmp_path: Path, tls_server: TLSServer
) -> None:
    proc = PublisherProcess(
        _tls_config(tmp_path / "verify.toml", kafka_bootstrap, tls_server.url),
        tmp_path / "verify.log",
    ).start()
    try:
        proc.wait_for_log(r"CERTIFICATE_VERIFY_FAILED\] certificate verify failed", 30)
        time.sleep(1)
    finally:
        if proc.alive():
            proc.terminate()
    assert tls_server.handshake_failures > 0
    assert tls_server.requests == [], "a request (with credentials) passed an unverified TLS"
    assert_no_secret_and_no_traceback(proc.log())

    # Control: the same server with verification off does receive the token request, so the
    # silence above was the verification, not a broken test server.
    insecure = PublisherProcess(
        _tls_config(tmp_path / "noverify.toml", kafka_bootstrap, tls_server.url, verify_tls=False),
        tmp_path / "noverify.log",
    ).start()
    try:
        deadline = time.monotonic() + 30
        while not tls_server.requests and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        insecure.terminate()
    assert tls_server.requests, insecure.log()[-2000:]
    assert tls_server.requests[0][:2] == ("POST", "/v1/oauth2/token")


def test_certificate_error_stops_with_one_clear_message_and_exit_1(
    kafka_bootstrap: str, tmp_path: Path, tls_server: TLSServer
) -> None:
    proc = PublisherProcess(
        _tls_config(tmp_path / "verify.toml", kafka_bootstrap, tls_server.url),
        tmp_path / "verify.log",
    ).start()
    try:
        code = proc.wait(12)  # the first token request fails at once
    except subprocess.TimeoutExpired:
        proc.terminate()
        code = None
    assert code == EXIT_FATAL
    mentions = [line for line in proc.log().splitlines() if "certificate verify failed" in line]
    assert 1 <= len(mentions) <= 2, proc.log()[-3000:]
    assert tls_server.requests == []
