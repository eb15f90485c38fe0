"""The ``dataconnect-publisher`` command line.

Exit codes: 0 clean stop, 1 fatal error, 2 bad configuration or usage, 3 fenced by another
instance with the same transactional.id.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import orjson

from publisher.config import Config, load_config
from publisher.errors import EXIT_CONFIG, EXIT_FATAL, ConfigError, PublisherError
from publisher.logs import configure_logging

log = logging.getLogger("publisher")


def _load(args: argparse.Namespace) -> Config:
    config = load_config(Path(args.config))
    level = args.log_level or config.logging.level
    configure_logging(level, args.log_format or config.logging.format)
    return config


def _cmd_run(args: argparse.Namespace) -> int:
    from publisher.runner import Runner, Shard  # noqa: PLC0415 - keep `--help` fast

    config = _load(args)
    if args.shard or config.publisher.shards == 1:  # a publishing process, before any thread
        from publisher import malloc  # noqa: PLC0415

        log.debug("malloc settings: %s", malloc.tune() or "unchanged")
    if args.shard:
        index, _, count = args.shard.partition("/")
        return Runner(config, shard=Shard(int(index), int(count))).run()
    if config.publisher.shards > 1:
        return _supervise(args, config.publisher.shards)
    return Runner(config).run()


def _supervise(args: argparse.Namespace, count: int) -> int:
    """Run one child process per shard (each its own core and transactional.id).

    SIGTERM/SIGINT are forwarded, and the exit code is 0 once every child has stopped. Any
    child ending otherwise (an error, a signal, or a stop nobody asked the supervisor for)
    leaves its streams unpublished: the others are stopped and the supervisor exits with that
    child's code (EXIT_FATAL when it died by a signal or exited 0). Children die with the
    supervisor: if it is killed, they get SIGTERM and stop cleanly.
    """
    from publisher.localproc import die_with_parent  # noqa: PLC0415

    base = [sys.executable, "-m", "publisher", "run", "--config", args.config]
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop_all(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    # Before any child exists: a stop requested while they start must reach every one.
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for i in range(count):
        children.append(
            subprocess.Popen(  # noqa: S603 - our own module
                [*base, "--shard", f"{i}/{count}"],
                preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - prctl only
            )
        )
        if stopping:  # the signal came while this child was being started
            stop_all(signal.SIGTERM, None)
    failed = 0
    left = list(enumerate(children))
    while left:
        time.sleep(0.2)
        for i, child in list(left):
            code = child.poll()
            if code is None:
                continue
            left.remove((i, child))
            # A child the stop reached before it had installed its handler dies of the signal.
            if stopping and (code == 0 or -code in (signal.SIGTERM, signal.SIGINT)):
                continue
            if failed:
                continue
            failed = code if code > 0 else EXIT_FATAL
            why = "stopped without being asked to" if code == 0 else f"exited with {code}"
            log.error(
                "shard process %d (shard %d/%d) %s: stopping the others", child.pid, i, count, why
            )
            stop_all(signal.SIGTERM, None)
    return failed


def _cmd_status(args: argparse.Namespace) -> int:
    from publisher.admin import format_status, status  # noqa: PLC0415

    rows = status(_load(args))
    if args.json:
        sys.stdout.write(orjson.dumps([r.as_json() for r in rows]).decode() + "\n")
    else:
        sys.stdout.write(format_status(rows) + "\n")
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    from publisher.admin import tail  # noqa: PLC0415

    config = _load(args)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tail(
        config,
        args.entity,
        source=args.source,
        follow=not args.no_follow,
        max_events=args.max,
        out=sys.stdout,
        should_stop=lambda: stopping,
    )
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    from publisher.admin import reset  # noqa: PLC0415

    config = _load(args)
    try:
        to = datetime.fromisoformat(args.to)
    except ValueError:
        raise ConfigError([f"reset --to: not an ISO-8601 time: {args.to!r}"]) from None
    done = reset(config, args.entity, to, source=args.source, force=args.force)
    sys.stdout.write(f"reset {', '.join(done)} to {to.isoformat()}\n")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from publisher.simulator import main as simulator_main  # noqa: PLC0415

    return simulator_main(args.simulator_args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from publisher.demo import run_demo  # noqa: PLC0415

    configure_logging(args.log_level or "WARNING", args.log_format or "text")
    return run_demo(duration=args.duration, rows=args.rows, out=sys.stdout)


def _cmd_kafka(args: argparse.Namespace) -> int:
    from publisher.localkafka import main as kafka_main  # noqa: PLC0415

    return kafka_main([args.action, "--port", str(args.port)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dataconnect-publisher",
        description="Publish iQmetrix DataConnect deltas to Kafka as Avro change events, "
        "exactly once.",
    )
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", choices=["auto", "json", "text"])
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", required=True, help="TOML configuration file")
        return p

    run = with_config(sub.add_parser("run", help="publish every configured entity"))
    run.add_argument("--shard", help="run only shard I of N (I/N); set by the supervisor")
    run.set_defaults(func=_cmd_run)

    st = with_config(sub.add_parser("status", help="watermark, lag and last error per stream"))
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_cmd_status)

    tl = with_config(sub.add_parser("tail", help="print an entity's events as JSON lines"))
    tl.add_argument("entity")
    tl.add_argument("--source", help="only this source's topic")
    tl.add_argument("--no-follow", action="store_true", help="stop at the end of the topic")
    tl.add_argument("--max", type=int, help="stop after this many events")
    tl.set_defaults(func=_cmd_tail)

    rs = with_config(sub.add_parser("reset", help="move an entity's watermark"))
    rs.add_argument("entity")
    rs.add_argument("--to", required=True, help="ISO-8601 time with zone")
    rs.add_argument("--source", help="only this source")
    rs.add_argument("--force", action="store_true", help="fence a running publisher")
    rs.set_defaults(func=_cmd_reset)

    sim = sub.add_parser(
        "simulate",
        help="run the DataConnect simulator",
        add_help=False,
        description="Options after 'simulate' go to the simulator; see 'simulate --help'.",
    )
    sim.add_argument("simulator_args", nargs=argparse.REMAINDER)
    sim.set_defaults(func=_cmd_simulate)

    demo = sub.add_parser(
        "demo", help="local Kafka + simulator + publisher, with events printed as they commit"
    )
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--rows", type=int, default=2000, help="history rows per entity")
    demo.set_defaults(func=_cmd_demo)

    kafka = sub.add_parser("kafka", help="fetch or run the local single-node Kafka broker")
    kafka.add_argument("action", nargs="?", default="run", choices=["run", "fetch"])
    kafka.add_argument("--port", type=int, default=9092)
    kafka.set_defaults(func=_cmd_kafka)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["simulate"]:
        # Everything after 'simulate' belongs to the simulator's own parser (--help included).
        from publisher.simulator import main as simulator_main  # noqa: PLC0415

        return simulator_main(arguments[1:])
    args = build_parser().parse_args(arguments)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for line in exc.problems:
            sys.stderr.write(f"config error: {line}\n")
        return EXIT_CONFIG
    except PublisherError as exc:  # FatalError and anything else the commands raise on purpose
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FATAL
    except KeyboardInterrupt:
        return 130
    return code
