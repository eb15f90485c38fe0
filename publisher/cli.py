"""The ``dataconnect-publisher`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_kafka(args: argparse.Namespace) -> int:
    from publisher.localkafka import main as kafka_main  # noqa: PLC0415 - keep startup light

    return kafka_main([args.action, "--port", str(args.port)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dataconnect-publisher",
        description="Publish iQmetrix DataConnect deltas to Kafka as Avro change events, "
        "exactly once.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    kafka = sub.add_parser("kafka", help="fetch or run the local single-node Kafka broker")
    kafka.add_argument("action", nargs="?", default="run", choices=["run", "fetch"])
    kafka.add_argument("--port", type=int, default=9092)
    kafka.set_defaults(func=_cmd_kafka)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    code: int = args.func(args)
    return code
