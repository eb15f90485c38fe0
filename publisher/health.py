"""The operability endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on one small HTTP server.

* ``/metrics``: the injected Prometheus registry, in the text format the scraper asks for
  (classic text or OpenMetrics, chosen from its ``Accept`` header).
* ``/healthz``: 200 while the process runs; a liveness probe, it checks nothing else, so a
  slow broker never gets the process restarted.
* ``/readyz``: 200 when every injected check passes, else 503; the JSON body lists each check
  with ``ok`` and a ``detail``. Checks are callables returning ``(ok, detail)``; they run on
  the request thread, so they must be cheap (read state the service keeps, do not dial out).

The server is a stdlib ``ThreadingHTTPServer`` in a daemon thread; port 0 picks a free port
(tests), and ``url`` tells which one.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from publisher.threadnames import name_this_thread

log = logging.getLogger(__name__)

#: A readiness check: ``(ok, detail)``; the detail is shown to whoever calls ``/readyz``.
Check = Callable[[], tuple[bool, str]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def run_checks(checks: Mapping[str, Check]) -> tuple[bool, list[dict[str, Any]]]:
    """Run every check; a check that raises counts as failed (and is logged), never as 500."""
    results: list[dict[str, Any]] = []
    for name, check in checks.items():
        try:
            ok, detail = check()
        except Exception as exc:  # a broken probe must read "not ready", not crash the server
            log.exception("readiness check %s raised", name)
            # Only the type: an exception message may hold what the caller must not see.
            ok, detail = False, f"check raised {type(exc).__name__}"
        results.append({"name": name, "ok": bool(ok), "detail": detail})
    return all(r["ok"] for r in results), results


def entities_fresh(
    last_commits: Callable[[], Mapping[tuple[str, str], datetime | None]],
    staleness: timedelta,
    clock: Callable[[], datetime] = _utc_now,
) -> Check:
    """A check that every (source, entity) committed within ``staleness``.

    ``last_commits`` returns the last commit time per stream, None when a stream has not
    committed yet in this process (``PublisherMetrics.last_commit_times`` fits). A stream
    without a commit is measured from when this check was made, so a fresh process is
    ready at once and turns unready only if a stream never manages a commit.
    """
    started = clock()
    limit = staleness.total_seconds()

    def check() -> tuple[bool, str]:
        now = clock()
        stale: list[str] = []
        commits = last_commits()
        for (source, entity), last in sorted(commits.items()):
            age = (now - (last or started)).total_seconds()
            if age > limit:
                since = "last commit" if last else "no commit since start"
                stale.append(f"{source}/{entity} ({since} {age:.0f}s ago)")
        if stale:
            return False, f"stale beyond {limit:.0f}s: " + ", ".join(stale)
        return True, f"{len(commits)} entities committed within {limit:.0f}s"

    return check


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, checks: Mapping[str, Check]
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.registry = registry
        self.checks = checks


class _Handler(BaseHTTPRequestHandler):
    server_version = "dataconnect-publisher"

    def do_GET(self) -> None:
        server = cast(_Server, self.server)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(HTTPStatus.OK, content_type, encoder(server.registry))
        elif path == "/healthz":
            self._send(HTTPStatus.OK, "text/plain; charset=utf-8", b"ok\n")
        elif path == "/readyz":
            ready, results = run_checks(server.checks)
            body = json.dumps({"ready": ready, "checks": results}).encode() + b"\n"
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, "application/json", body)
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes every 15 s would flood stderr; keep access lines at debug level.
        log.debug("health %s " + format, self.client_address[0], *args)


def _serve(server: _Server) -> None:
    name_this_thread("dcp-health")
    server.serve_forever(poll_interval=0.1)


class HealthServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` from a daemon thread.

    ``checks`` maps a check name to a callable returning ``(ok, detail)``. Use as a context
    manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        checks: Mapping[str, Check] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._registry = registry
        self._checks = dict(checks or {})
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``, with the port actually bound."""
        if self._server is None:
            raise RuntimeError("health server is not started")
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def start(self) -> None:
        """Bind the socket and serve in a daemon thread; raises OSError if the port is taken."""
        if self._server is not None:
            raise RuntimeError("health server already started")
        self._server = _Server((self._host, self._port), self._registry, self._checks)
        self._thread = threading.Thread(
            target=_serve, args=(self._server,), name="health-server", daemon=True
        )
        self._thread.start()
        log.info("health endpoint listening on %s", self.url)

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
