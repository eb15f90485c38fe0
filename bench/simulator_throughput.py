"""How many Customers rows per second one simulator process serves over real sockets.

Starts ``python -m publisher.simulator`` as its own process (so client and server do not share
a GIL), then fetches the whole history in windows of about ``--window-rows`` rows with one
keep-alive httpx client: a cold pass (rows generated on demand), a warm pass (rows served from
the block cache), the same warm pass with a minimal socket client (httpx itself is the limit on
two shared cores), and two gzip passes (the first deflates each block once, the second
stitches the cached deflate streams). Prints rows/s and MB/s per pass. The client only reads
bytes (no JSON parsing), so the figures are the server's.

    .venv/bin/python bench/simulator_throughput.py --rows 200000
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx

from publisher.simulator import SimulatorSettings
from publisher.simulator.testing import login, window

HISTORY_END = datetime(2024, 3, 1, tzinfo=UTC)
HISTORY_START = HISTORY_END - timedelta(days=30)


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable, "-m", "publisher.simulator", "--port", "0", "--rows", "0",
        "--entity-rows", f"Customers={args.rows}",
        "--history-start", HISTORY_START.isoformat(), "--history-end", HISTORY_END.isoformat(),
        "--max-rows", str(10 * args.window_rows), "--cache-mb", str(args.cache_mb),
        "--gzip-level", str(args.gzip_level),
    ]  # fmt: skip
    if args.prerender:
        command.append("--prerender")
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"}
    )
    if proc.stdout is None:
        raise SystemExit("no stdout pipe")
    line = proc.stdout.readline()
    if not line.startswith("DataConnect simulator listening on "):
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1].strip()


def one_pass(
    client: httpx.Client, auth: dict[str, str], windows: int, gzip: bool
) -> tuple[int, int, float]:
    """Fetch every window once; return (rows, bytes on the wire, seconds)."""
    settings = SimulatorSettings()
    span = (HISTORY_END - HISTORY_START) / windows
    headers = auth | {"Accept-Encoding": "gzip" if gzip else "identity"}
    before = client.get("/_simulator/stats").json()["rows_served_total"]
    wire = 0
    started = time.perf_counter()
    for i in range(windows):
        params = window(HISTORY_START + i * span, HISTORY_START + (i + 1) * span, settings)
        with client.stream("GET", "/deltas/Customers", params=params, headers=headers) as r:
            if r.status_code != 200:
                raise SystemExit(f"window {i}: HTTP {r.status_code} {r.read()[:200]!r}")
            for chunk in r.iter_raw():  # no re-chunking: as few copies as httpx allows
                wire += len(chunk)
    elapsed = time.perf_counter() - started
    rows = client.get("/_simulator/stats").json()["rows_served_total"] - before
    return rows, wire, elapsed


def raw_pass(url: str, auth: dict[str, str], windows: int) -> tuple[int, int, float]:
    """Like :func:`one_pass` (plain JSON) with a minimal keep-alive socket client: the
    server's own ceiling, without httpx's per-chunk overhead on the shared CPUs."""
    settings = SimulatorSettings()
    host, port = url.removeprefix("http://").split(":")
    span = (HISTORY_END - HISTORY_START) / windows
    buffer = memoryview(bytearray(1 << 20))
    wire = 0
    with httpx.Client(base_url=url) as client:
        before = client.get("/_simulator/stats").json()["rows_served_total"]
    started = time.perf_counter()
    with socket.create_connection((host, int(port))) as sock:
        for i in range(windows):
            query = urlencode(
                window(HISTORY_START + i * span, HISTORY_START + (i + 1) * span, settings)
            )
            sock.sendall(
                f"GET /deltas/Customers?{query} HTTP/1.1\r\nHost: bench\r\n"
                f"Authorization: {auth['Authorization']}\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            head, _, body = head.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            got = len(body)
            while got < length:
                got += sock.recv_into(buffer[: min(len(buffer), length - got)])
            wire += length
    elapsed = time.perf_counter() - started
    with httpx.Client(base_url=url) as client:
        rows = client.get("/_simulator/stats").json()["rows_served_total"] - before
    return rows, wire, elapsed


def report(name: str, rows: int, wire: int, elapsed: float) -> None:
    """One line of figures."""
    rate = rows / elapsed
    print(
        f"{name:>16}: {rows:>9} rows in {elapsed:6.2f} s = {rate:>9,.0f} rows/s, "
        f"{wire / elapsed / 1e6:7.1f} MB/s on the wire ({wire / rows:.0f} B/row)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="Customers history versions")
    parser.add_argument("--window-rows", type=int, default=10_000)
    parser.add_argument("--cache-mb", type=int, default=4096, help="big enough to hold all rows")
    parser.add_argument("--gzip-level", type=int, default=1)
    parser.add_argument("--prerender", action="store_true", help="render before serving")
    args = parser.parse_args()
    windows = max(1, args.rows // args.window_rows)
    proc, url = start_server(args)
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            auth = login(client, SimulatorSettings())
            print(f"simulator {url}: {args.rows} Customers versions, {windows} windows")
            passes = (
                ("cold", False),  # rows generated and rendered on demand
                ("warm", False),  # rows from the block cache
                ("gzip 1st", True),  # each block deflated once here
                ("gzip warm", True),  # pre-deflated blocks stitched together
            )
            for name, gzip in passes:
                report(f"{name} (httpx)", *one_pass(client, auth, windows, gzip))
                if name == "warm":
                    report("warm (socket)", *raw_pass(url, auth, windows))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
