"""Credentials and bearer tokens never show, whatever goes wrong: not in the JSON or text logs,
not on stdout, not in /metrics, /readyz or ``status --json``, not in a crash traceback, not in
a repr. The secrets are distinctive and full of characters that URL-encoding and JSON-escaping
change; each carries a random-looking core that any spelling of it (raw, encoded, escaped, cut
short) still contains, so the checks look for the cores and for every token the simulator
issued."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest
from pydantic import SecretStr

from publisher.admin import read_checkpoints
from publisher.config import load_config
from publisher.logs import configure_logging
from publisher.runner import EXIT_CONFIG, EXIT_FATAL, EXIT_OK, Runner, http_settings
from publisher.simulator.settings import SimulatorSettings
from tests.integration.harness import RunningSimulator, start_simulator
from tests.kafka_helpers import random_name

pytestmark = [pytest.mark.integration]

CLIENT_SECRET = "cs!Zq81Vx/+=&%?"
PASSWORD = "pw \u00c4#Kt57Hm&/=+'\""
WRONG_PASSWORD = "wr \u00dc#Jb63Pn&/=+"
#: What any spelling of each secret contains.
CORES = {"client_secret": "Zq81Vx", "password": "Kt57Hm", "wrong password": "Jb63Pn"}
ENV = {"DC_CLIENT_SECRET": CLIENT_SECRET, "DC_PASSWORD": PASSWORD, "DC_WRONG": WRONG_PASSWORD}


def assert_clean(where: str, text: str, tokens: list[str], *, may_be_empty: bool = False) -> None:
    """No secret core and no issued token (nor its first 16 characters) in ``text``."""
    assert text or may_be_empty, f"{where}: nothing captured, so nothing was checked"
    for name, core in CORES.items():
        assert core not in text, f"{where} leaks the {name}: ...{_around(text, core)}..."
    for token in tokens:
        assert token[:16] not in text, f"{where} leaks a bearer token: {_around(text, token[:16])}"


def _around(text: str, needle: str) -> str:
    i = text.index(needle)
    return text[max(0, i - 80) : i + 80]


# -- the pieces --------------------------------------------------------------------------------


class EchoingTokenEndpoint:
    """A token endpoint that fails and echoes the request back (form body raw and decoded,
    headers), as a misconfigured proxy or a debug error page does. ``url(500)`` answers 500
    (retried), ``url(400)`` an OAuth2 ``invalid_client`` (the stream stops)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status = int(self.path.split("/")[1])
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                echo = f"echo {body.decode()} {dict(parse_qsl(body.decode()))} {dict(self.headers)}"
                code = "server_error" if status >= 500 else "invalid_client"
                out = orjson.dumps({"error": code, "error_description": echo, "Message": echo})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, status: int) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{status}/v1/oauth2/token"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningSimulator, list[str]]]:
    """The simulator with our credentials, and the list of every token it issues."""
    sim = start_simulator(
        SimulatorSettings(
            seed=9,
            default_rows=60,
            history_start=datetime.now(UTC) - timedelta(hours=2),
            client_secret=SecretStr(CLIENT_SECRET),
            password=SecretStr(PASSWORD),
        )
    )
    issued: list[str] = []
    store = sim.simulator.tokens
    issue = store._issue

    def recording() -> Any:
        grant = issue()
        issued.extend([grant.access_token, grant.refresh_token])
        return grant

    monkeypatch.setattr(store, "_issue", recording)
    try:
        yield sim, issued
    finally:
        sim.server.stop()


def source_toml(name: str, entity: str, base_url: str, token_url: str, password_env: str) -> str:
    return f"""
[[sources]]
name = "{name}"
base_url = "{base_url}"
token_url = "{token_url}"
client_id = "simulator"
client_secret = "${{DC_CLIENT_SECRET}}"
username = "simulator"
password = "${{{password_env}}}"
entities = ["{entity}"]
max_attempts = 4
retry_base_seconds = 0.05
retry_max_seconds = 0.3
"""


def write_config(path: Path, bootstrap: str, sources: str) -> Path:
    prefix = random_name("secrets")
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0).isoformat()
    path.write_text(
        f"""
[publisher]
transactional_id = "{prefix}-txn"
topic_template = "{prefix}.{{source}}.{{entity}}"
checkpoint_topic = "{prefix}.checkpoints"
dead_letter_topic = "{prefix}.deadletter"
[kafka]
bootstrap_servers = "{bootstrap}"
topic_partitions = 1
[windows]
start_from = "{start}"
overlap_seconds = 10
settle_delay_seconds = 1
poll_interval_seconds = 0.5
initial_window_seconds = 3600
max_window_seconds = 7200
[metrics]
port = 0
[logging]
format = "json"
level = "DEBUG"
{sources}""",
        encoding="utf-8",
    )
    return path


def publisher_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "publisher", *args]


def wait_for(what: str, predicate: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}; output so far:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


# -- a running publisher whose sources fail in every way a credential can leak --------------


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_failing_credentials_and_tokens_never_leak(
    kafka_bootstrap: str,
    tmp_path: Path,
    simulator: tuple[RunningSimulator, list[str]],
    log_format: str,
) -> None:
    sim, issued = simulator
    # Every Discussions request answers 401, even with a brand-new token: a 401 loop.
    httpx.post(
        f"{sim.url}/_simulator/faults",
        json={"rules": [{"kind": "error", "status": 401, "entity": "Discussions"}]},
    ).raise_for_status()
    echo = EchoingTokenEndpoint()
    token_url = f"{sim.url}/v1/oauth2/token"
    config_path = write_config(
        tmp_path / "publisher.toml",
        kafka_bootstrap,
        source_toml("good", "Customers", sim.url, token_url, "DC_PASSWORD")
        + source_toml("badpass", "AccountsReceivable", sim.url, token_url, "DC_WRONG")
        + source_toml("echo500", "Activities", sim.url, echo.url(500), "DC_PASSWORD")
        + source_toml("echo400", "FollowUps", sim.url, echo.url(400), "DC_PASSWORD")
        + source_toml("loop401", "Discussions", sim.url, token_url, "DC_PASSWORD"),
    )
    config = load_config(config_path, env=ENV)
    env = {**os.environ, **ENV, "DCP_LOGGING__FORMAT": log_format}
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            publisher_cmd("run", "--config", str(config_path)), stdout=out, stderr=err, env=env
        )
    try:
        wait_for("health endpoint", lambda: "listening on" in err_path.read_text(), 60, err_path)
        match = re.search(
            r"health endpoint listening on (http://[0-9.]+:\d+)", err_path.read_text()
        )
        assert match is not None
        base = match.group(1)

        def settled() -> bool:
            metrics = httpx.get(f"{base}/metrics").text
            checkpoints = read_checkpoints(config)
            echoed = checkpoints.get("echo500/Activities")
            return (
                'source="badpass",state="stopped"' in metrics
                and 'source="echo400",state="stopped"' in metrics
                and 'source="loop401",state="stopped"' in metrics
                and 'last_commit_timestamp_seconds{entity="Customers",source="good"}' in metrics
                and echoed is not None
                and echoed.last_error is not None
            )

        wait_for("every failure to show", settled, 60, err_path)
        metrics = httpx.get(f"{base}/metrics").text
        ready = httpx.get(f"{base}/readyz")
        status = subprocess.run(
            publisher_cmd("status", "--json", "--config", str(config_path)),
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        proc.terminate()
        code = proc.wait(60)
        echo.stop()
    stdout, stderr = out_path.read_text(), err_path.read_text()

    # The failures really happened and were reported (else nothing below would mean much).
    assert code == EXIT_OK, stderr[-3000:]
    assert "check username and password" in stderr  # the wrong password
    assert "HTTP 500 server_error: echo grant_type=password" in stderr  # the echoed request
    assert "HTTP 401" in stderr  # the 401 loop
    assert len(issued) >= 4  # good and loop401 got tokens (loop401 a second one after a 401)
    assert ready.status_code == 503
    checks = {c["name"]: c for c in ready.json()["checks"]}
    assert not checks["token_valid"]["ok"]
    assert "badpass" in checks["token_valid"]["detail"]
    assert "loop401/Discussions" in checks["token_valid"]["detail"]
    assert status.returncode == 0, status.stderr.decode()
    rows = {r["stream"]: r for r in orjson.loads(status.stdout)}
    assert rows["badpass/AccountsReceivable"]["state"] == "stopped"
    assert "HTTP 500" in rows["echo500/Activities"]["last_error"]

    assert_clean(f"{log_format} run: stderr", stderr, issued)
    assert_clean(f"{log_format} run: /metrics", metrics, issued)
    assert_clean(f"{log_format} run: stdout", stdout, issued, may_be_empty=True)
    assert_clean("status stderr", status.stderr.decode(), issued, may_be_empty=True)
    # Error messages quote what the token endpoint answered: an echoed form body carries the
    # secrets URL-encoded (a dict repr with escaped quotes), and those messages reach /readyz
    # (a stopped stream's reason) and the checkpoint's last_error (status). This once leaked.
    for where, text in [("/readyz", ready.text), ("status --json", status.stdout.decode())]:
        assert_clean(f"{log_format} run: {where}", text, issued)


# -- bad configuration -------------------------------------------------------------------------

BAD_CONFIGS = {
    "invalid values": f"""
[publisher]
transactional_id = "cfg"
[windows]
start_from = "2024-01-01T00:00:00Z"
[[sources]]
name = "cfg"
base_url = "ftp://nowhere"
client_id = "c"
client_secret = {orjson.dumps(CLIENT_SECRET).decode()}
username = "u"
password = {orjson.dumps(PASSWORD).decode()}
pasword = {orjson.dumps(PASSWORD).decode()}
max_in_flight = {orjson.dumps(WRONG_PASSWORD).decode()}
entities = ["Customers"]
""",
    "wrong types": f"""
[publisher]
transactional_id = "cfg"
[windows]
start_from = "2024-01-01T00:00:00Z"
[[sources]]
name = "cfg"
client_id = "c"
client_secret = {{ value = {orjson.dumps(CLIENT_SECRET).decode()} }}
username = "u"
password = [{orjson.dumps(PASSWORD).decode()}]
entities = ["Customers"]
""",
    "not TOML": f"""
[publisher]
transactional_id = "cfg"
[[sources]]
client_secret = {orjson.dumps(CLIENT_SECRET).decode()}
password = {orjson.dumps(PASSWORD).decode()[:-1]}
""",
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("command", ["run", "status"])
def test_a_bad_configuration_is_reported_without_its_secrets(
    tmp_path: Path, case: str, command: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_CONFIGS[case], encoding="utf-8")
    result = subprocess.run(
        publisher_cmd("--log-format", "json", command, "--config", str(path)),
        capture_output=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("DCP_")},
    )
    stderr = result.stderr.decode()
    assert result.returncode == EXIT_CONFIG, stderr
    assert "config error: " in stderr
    assert_clean(f"{case}: stderr", stderr, [])
    assert_clean(f"{case}: stdout", result.stdout.decode(), [], may_be_empty=True)


# -- a crash -----------------------------------------------------------------------------------


class ExplodingTransport(httpx.BaseTransport):
    """Passes requests to the simulator until one matches ``fails``, then raises what a bug
    would: an unexpected exception whose message quotes the request, headers and body."""

    def __init__(self, fails: Callable[[httpx.Request], bool]) -> None:
        self._inner = httpx.HTTPTransport()
        self._fails = fails

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._fails(request):
            raise RuntimeError(
                f"bug while sending {request.method} {request.url}: "
                f"headers={dict(request.headers)} body={request.read()!r}"
            )
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _is_token_request(request: httpx.Request) -> bool:
    return request.url.path.endswith("/oauth2/token")


def _is_data_request(request: httpx.Request) -> bool:
    return request.url.path.startswith("/deltas/")


@pytest.mark.parametrize(
    "case",
    [(d, f) for d in ("token request", "data request") for f in ("json", "text")],
    ids=lambda c: f"{c[0].replace(' ', '-')}-{c[1]}",
)
def test_a_crash_traceback_is_logged_scrubbed_and_exits_1(
    kafka_bootstrap: str,
    tmp_path: Path,
    simulator: tuple[RunningSimulator, list[str]],
    capfd: pytest.CaptureFixture[str],
    case: tuple[str, str],
) -> None:
    during, log_format = case
    sim, issued = simulator
    token_url = f"{sim.url}/v1/oauth2/token"
    config = load_config(
        write_config(
            tmp_path / "publisher.toml",
            kafka_bootstrap,
            source_toml("crash", "Customers", sim.url, token_url, "DC_PASSWORD"),
        ),
        env=ENV,
    )
    fails = _is_token_request if during == "token request" else _is_data_request
    logs = io.StringIO()
    level = logging.getLogger().level
    handler = configure_logging("INFO", "json" if log_format == "json" else "text", stream=logs)
    runner = Runner(config, transport=ExplodingTransport(fails), install_signals=False)
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(runner.run()))
    try:
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), "the publisher did not stop on the crash"
    finally:
        runner.stop()
        worker.join(10)
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(level)
    captured = capfd.readouterr()
    text = logs.getvalue()

    assert codes == [EXIT_FATAL]
    assert "crashed on an unexpected error" in text
    assert "Traceback (most recent call last)" in text and "RuntimeError: bug while sending" in text
    if during == "data request":
        assert issued, "the simulator issued no token: the data request was never sent"
    assert_clean(f"{log_format} crash in a {during}: logs", text, issued)
    assert_clean("stdout+stderr", captured.out + captured.err, issued, may_be_empty=True)
    # What a debugger or an error report would print of the objects holding the secrets.
    for obj in (config, *config.sources, *(http_settings(s) for s in config.sources)):
        assert_clean(f"repr of {type(obj).__name__}", repr(obj), issued)
