"""The real-socket adapter: a threaded HTTP/1.1 keep-alive server around :class:`Simulator`.

One thread per connection (stdlib ``ThreadingHTTPServer``). Responses always carry
``Content-Length``, so connections stay open between requests. ``drop`` faults close the
socket without a response; ``drop_mid_body`` sends the headers and half the body first.

A bug in the simulator answers 500 with DataConnect's error body and is logged with its
traceback, as a real server would; a client that hangs up mid-answer (which the publisher's
tests do on purpose) is not an error and prints nothing.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import cast
from urllib.parse import parse_qsl, urlsplit

from publisher.simulator.app import Simulator
from publisher.simulator.responses import SimResponse, error_response

log = logging.getLogger(__name__)

_IDLE_TIMEOUT = 60.0  # seconds an idle keep-alive connection is kept
#: What a client that goes away mid-request raises on the server's side of the socket.
_HUNG_UP = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """socketserver prints any error escaping a connection's thread to stderr; a peer
        that hung up is normal, anything else is logged."""
        if isinstance(sys.exc_info()[1], _HUNG_UP):
            return
        log.exception("simulator connection from %s failed", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DataConnectSimulator"
    timeout = _IDLE_TIMEOUT

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without NODELAY, Nagle's algorithm and
        # delayed ACKs would add ~40 ms to every small keep-alive response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = cast(_Server, self.server)
        with server.connections_lock:
            server.connections.add(self.connection)

    def finish(self) -> None:
        server = cast(_Server, self.server)
        with server.connections_lock:
            server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the peer went away; nothing left to flush
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a benchmark source must not spend its time logging requests."""

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query: dict[str, str] = {}
        for name, value in parse_qsl(url.query, keep_blank_values=True):
            query.setdefault(name, value)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        simulator = cast(_Server, self.server).simulator
        headers = {name: value for name, value in self.headers.items()}
        try:
            response = simulator.handle(self.command, url.path, query, headers, body)
        except Exception:  # the server's edge: a bug becomes a logged 500
            log.exception("simulator failed on %s %s", self.command, url.path)
            response = error_response(500, "An error has occurred.")
        self._send(response)

    def _send(self, response: SimResponse) -> None:
        if response.drop == "before":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        head = [f"HTTP/1.1 {response.status} {self.responses.get(response.status, ('',))[0]}"]
        head += [f"{k}: {v}" for k, v in response.headers.items()]
        head.append(f"Content-Length: {len(response.body)}")
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if response.drop == "mid_body":
            self.wfile.write(data + response.body[: len(response.body) // 2])
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if len(response.body) < 65536:
            self.wfile.write(data + response.body)  # one write: one packet for small answers
        else:
            self.wfile.write(data)
            self.wfile.write(response.body)

    do_GET = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_DELETE = _dispatch
    do_PATCH = _dispatch


class SimulatorServer:
    """Serves a :class:`Simulator` on a real socket until :meth:`stop`; a context manager."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` the server listens on (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the simulator server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def open_connections(self) -> int:
        """Client connections currently open (keep-alive ones included)."""
        if self._server is None:
            return 0
        with self._server.connections_lock:
            return len(self._server.connections)

    def start(self) -> SimulatorServer:
        """Bind and serve in a background thread."""
        if self._server is not None:
            return self
        self._server = _Server(self._address, self.simulator)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="dataconnect-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close open keep-alive connections, release the port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with server.connections_lock:
            for conn in list(server.connections):
                with contextlib.suppress(OSError):  # already closed by the peer
                    conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
