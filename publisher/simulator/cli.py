"""``dataconnect-publisher simulate``: run the DataConnect simulator on a real port.

Prints the URL it listens on (and the token URL), then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import orjson
from pydantic import SecretStr

from publisher.errors import ConfigError
from publisher.simulator.app import TOKEN_PATH, Simulator
from publisher.simulator.faults import FaultRule, FaultSettings
from publisher.simulator.server import SimulatorServer
from publisher.simulator.settings import BAD_ROW_KINDS, SimulatorSettings, TreeShape
from publisher.timefmt import parse_timestamp


@dataclass(frozen=True, slots=True)
class CliConfig:
    """Everything the command line decided."""

    settings: SimulatorSettings
    faults: FaultSettings
    host: str
    port: int
    prerender: bool


def build_parser() -> argparse.ArgumentParser:
    """The option parser (also used to print ``--help``)."""
    p = argparse.ArgumentParser(
        prog="dataconnect-publisher simulate",
        description="Serve a deterministic DataConnect Deltas simulator (test double, demo, "
        "benchmark source). Admin endpoints live under /_simulator/.",
    )
    d = SimulatorSettings()
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    g.add_argument("--deltas-path", default=d.deltas_path, help="URL template with {entity}")
    g.add_argument("--schemas-dir", type=Path, help="entity declarations (*.avsc)")
    g = p.add_argument_group("data")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--rows", type=int, default=d.default_rows, help="history versions per entity")
    g.add_argument(
        "--entity-rows",
        action="append",
        default=[],
        metavar="ENTITY=N",
        help="history versions of one entity (repeatable), e.g. Customers=1000000",
    )
    g.add_argument("--history-start", help="ISO time (default: history end minus 7 days)")
    g.add_argument("--history-end", help="ISO time (default: now at start-up)")
    g.add_argument("--block-size", type=int, default=d.block_size)
    g.add_argument("--live", action="store_true", help="keep adding versions as time passes")
    g.add_argument("--rate", type=float, default=d.rate, help="live versions/second/entity")
    g.add_argument("--late-fraction", type=float, default=d.late_fraction)
    g.add_argument("--late-delay", type=float, default=d.late_delay, help="seconds")
    g.add_argument("--bad-row-rate", type=float, default=d.bad_row_rate)
    g.add_argument(
        "--bad-row-kinds", default=",".join(BAD_ROW_KINDS), help="comma-separated subset"
    )
    g.add_argument("--page-timestamps", action="store_true", help="always .fffZ timestamps")
    g.add_argument("--deleted-rows", choices=("full", "key_only"), default=d.deleted_rows)
    g.add_argument(
        "--tree", default="3,2,4,2", help="regions,districts/region,stores/district,channels"
    )
    g.add_argument("--cache-mb", type=int, default=d.cache_mb)
    g.add_argument("--prerender", action="store_true", help="render the history at start-up")
    g.add_argument(
        "--prefetch-blocks",
        type=int,
        default=64,
        help="render up to this many blocks after each served window in the background (0: off)",
    )
    g = p.add_argument_group("request semantics (unknown in the real service)")
    g.add_argument("--zone", default=d.zone, help="zone of request dates and zone-less times")
    g.add_argument("--start-exclusive", action="store_true")
    g.add_argument("--stop-inclusive", action="store_true")
    g.add_argument("--shuffle", action="store_true", help="rows in random order")
    g.add_argument("--lenient-params", action="store_true", help="ignore unknown parameters")
    g.add_argument("--no-gzip", action="store_true")
    g.add_argument("--gzip-level", type=int, default=d.gzip_level)
    g = p.add_argument_group("limits and access")
    g.add_argument("--max-rows", type=int, default=d.max_rows, help="413 above this many rows")
    g.add_argument("--limit-mode", choices=("estimate", "exact"), default=d.limit_mode)
    g.add_argument("--max-in-flight", type=int, default=d.max_in_flight, help="429 above this")
    g.add_argument("--token-ttl", type=int, default=d.token_ttl, help="seconds")
    g.add_argument("--refresh-ttl", type=int, default=d.refresh_ttl, help="seconds")
    g.add_argument("--client-id", default=d.client_id)
    g.add_argument("--client-secret", default=d.client_secret.get_secret_value())
    g.add_argument("--username", default=d.username)
    g.add_argument("--password", default=d.password.get_secret_value())
    g.add_argument("--deny-entity", action="append", default=[], help="403 for it (repeatable)")
    g.add_argument(
        "--allow-location",
        action="append",
        type=int,
        default=[],
        help="restrict the user to this location id and below (repeatable)",
    )
    g = p.add_argument_group("faults (change at runtime: POST /_simulator/faults)")
    g.add_argument("--fault-seed", type=int, default=0)
    g.add_argument("--error-rate", type=float, default=0.0)
    g.add_argument("--error-status", type=int, default=503)
    g.add_argument("--retry-after", type=int, help="Retry-After seconds on injected errors")
    g.add_argument("--slow-rate", type=float, default=0.0)
    g.add_argument("--slow-delay", type=float, default=2.0, help="seconds")
    g.add_argument("--drop-rate", type=float, default=0.0)
    g.add_argument("--drop-mid-body-rate", type=float, default=0.0)
    g.add_argument("--truncate-rate", type=float, default=0.0)
    g.add_argument("--malformed-rate", type=float, default=0.0)
    g.add_argument("--faults-file", type=Path, help="JSON {seed, rules} as for /_simulator/faults")
    return p


def parse_args(argv: list[str]) -> CliConfig:
    """Turn arguments into settings; raise ConfigError listing every bad value."""
    a = build_parser().parse_args(argv)
    problems: list[str] = []
    rows: dict[str, int] = {}
    for item in a.entity_rows:
        name, _, count = item.partition("=")
        if not count.strip().isdigit():
            problems.append(f"--entity-rows: expected ENTITY=N, got {item!r}")
            continue
        rows[name.strip()] = int(count)
    tree = TreeShape()
    parts = a.tree.split(",")
    if len(parts) == 4 and all(p.strip().isdigit() for p in parts):
        tree = TreeShape(*(int(p) for p in parts))
    else:
        problems.append(f"--tree: expected four integers like 3,2,4,2, got {a.tree!r}")
    history: dict[str, datetime | None] = {}
    for name in ("history_start", "history_end"):
        text = getattr(a, name)
        try:
            history[name] = parse_timestamp(text, UTC) if text else None
        except ValueError as exc:
            history[name] = None
            problems.append(f"--{name.replace('_', '-')}: {exc}")
    faults = _faults(a, problems)
    try:
        settings = _settings(a, rows, tree, history)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return CliConfig(settings, faults, a.host, a.port, a.prerender)


def _settings(
    a: argparse.Namespace,
    rows: dict[str, int],
    tree: TreeShape,
    history: dict[str, datetime | None],
) -> SimulatorSettings:
    return SimulatorSettings(
        seed=a.seed,
        default_rows=a.rows,
        rows=rows,
        history_start=history["history_start"],
        history_end=history["history_end"],
        block_size=a.block_size,
        live=a.live,
        rate=a.rate,
        late_fraction=a.late_fraction,
        late_delay=a.late_delay,
        varied_timestamps=not a.page_timestamps,
        zone=a.zone,
        start_inclusive=not a.start_exclusive,
        stop_inclusive=a.stop_inclusive,
        order="shuffled" if a.shuffle else "change_time",
        deleted_rows=a.deleted_rows,
        strict_params=not a.lenient_params,
        deltas_path=a.deltas_path,
        gzip=not a.no_gzip,
        gzip_level=a.gzip_level,
        max_rows=a.max_rows,
        limit_mode=a.limit_mode,
        max_in_flight=a.max_in_flight,
        token_ttl=a.token_ttl,
        refresh_ttl=a.refresh_ttl,
        client_id=a.client_id,
        client_secret=SecretStr(a.client_secret),
        username=a.username,
        password=SecretStr(a.password),
        denied_entities=frozenset(a.deny_entity),
        allowed_location_ids=frozenset(a.allow_location) if a.allow_location else None,
        tree=tree,
        bad_row_rate=a.bad_row_rate,
        bad_row_kinds=tuple(k.strip() for k in a.bad_row_kinds.split(",") if k.strip()),
        cache_mb=a.cache_mb,
        prefetch_blocks=a.prefetch_blocks,
        schemas_dir=a.schemas_dir,
    )


def _faults(a: argparse.Namespace, problems: list[str]) -> FaultSettings:
    if a.faults_file is not None:
        try:
            return FaultSettings.from_json(orjson.loads(a.faults_file.read_bytes()))
        except (OSError, ValueError) as exc:
            problems.append(f"--faults-file: {exc}")
            return FaultSettings()
    rules = []
    if a.error_rate:
        rules.append(
            FaultRule("error", rate=a.error_rate, status=a.error_status, retry_after=a.retry_after)
        )
    if a.slow_rate:
        rules.append(FaultRule("slow", rate=a.slow_rate, delay=a.slow_delay))
    for kind, rate in (
        ("drop", a.drop_rate),
        ("drop_mid_body", a.drop_mid_body_rate),
        ("truncate", a.truncate_rate),
        ("malformed", a.malformed_rate),
    ):
        if rate:
            rules.append(FaultRule(kind, rate=rate))  # type: ignore[arg-type]
    for i, rule in enumerate(rules):
        problems.extend(f"fault {rule.kind} #{i}: {p}" for p in rule.problems())
    return FaultSettings(seed=a.fault_seed, rules=tuple(rules))


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad options."""
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv)
        simulator = Simulator(config.settings, faults=config.faults)
    except (ConfigError, ValueError) as exc:
        sys.stderr.write(f"dataconnect-publisher simulate: {exc}\n")
        return 2
    server = SimulatorServer(simulator, config.host, config.port)
    try:
        server.start()
    except OSError as exc:
        sys.stderr.write(f"dataconnect-publisher simulate: cannot listen: {exc}\n")
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if config.prerender:
            level = simulator.settings.gzip_level if simulator.settings.gzip else None
            rows = simulator.dataset.prerender(level)
            sys.stderr.write(f"pre-rendered {rows} row versions\n")
        sys.stdout.write(
            f"DataConnect simulator listening on {server.url}\n"
            f"token URL {server.url}{TOKEN_PATH}\n"
            f"deltas    {server.url}{simulator.settings.deltas_path}\n"
        )
        sys.stdout.flush()
        while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
            pass
    finally:
        server.stop()
    return 0
