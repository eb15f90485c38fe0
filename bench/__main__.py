"""``python -m bench [--quick]``: measure the publisher against the machine's own ceilings.

Starts a local Kafka broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` is set), then in one run:
the encode and producer ceilings, the naive baseline, end-to-end catch-ups (Customers alone;
a mixed five-entity workload with one process and with two shards), peak memory and CPU per
run, and live latency. Prints a table and writes docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.catchup import CatchUp, catch_up
from bench.ceilings import EncodeCeiling, Sample, encode_ceiling, producer_ceiling, workload_rows
from bench.latency import live_latency
from bench.machine import describe, load_average
from bench.naive import Naive, naive_baseline
from bench.report import Results, markdown_report, text_report
from bench.workload import PublisherSetup, SimulatorProcess, Workload, history_end_now
from publisher.entities import DEFAULT_SCHEMAS_DIR, load_entities
from publisher.localkafka import JVM_OPTIONS, KAFKA_VERSION, LocalKafka

ROOT = Path(__file__).resolve().parent.parent
#: Entity order of the mixed workload: with 2 shards, shard 0 gets the 1st, 3rd and 5th
#: (AccountsReceivable, FollowUps, Discussions), shard 1 Customers and Activities: about equal
#: CPU work each, by their encode ceilings.
MIXED = ["AccountsReceivable", "Customers", "FollowUps", "Activities", "Discussions"]


@dataclass(frozen=True)
class Mode:
    name: str
    customers_rows: tuple[int, ...]  # Customers-only backlogs, smallest first
    mixed_rows_per_entity: int
    encode_rows: int  # rows per entity for the encode ceiling
    producer_messages: int
    naive_rows: int
    live_seconds: float
    #: How many times each run that a target compares is repeated. The targets take the
    #: median: on a shared 2-core machine one run can be 15% off either way.
    rounds: int = 1


QUICK = Mode("quick", (100_000,), 40_000, 10_000, 100_000, 2_000, 20.0)
FULL = Mode("full", (100_000, 1_000_000), 200_000, 20_000, 500_000, 5_000, 60.0, rounds=3)

#: The catch-up settings the figures are for: windows of about 5,000 rows, the default
#: target_rows. Memory grows with the window (two per stream are held: one publishing, one
#: fetched ahead), by roughly 11 KiB per Customers row of window.
SETUP = PublisherSetup(window_rows=5_000)
#: Live mode: a short poll interval and settle delay, an overlap that covers late rows.
LIVE_SETUP = PublisherSetup(
    window_rows=5_000, overlap_seconds=60, settle_delay_seconds=5, poll_interval_seconds=2
)
LIVE_RATE = 5.0  # versions per second per entity
#: The extra run with parse, map and encode in worker processes: one per core.
DECODE_PROCESSES = 2


class Progress:
    def __init__(self) -> None:
        self.began = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def __call__(self, message: str) -> None:
        sys.stderr.write(f"[{self.elapsed():6.0f}s] {message}\n")
        sys.stderr.flush()


@contextlib.contextmanager
def kafka(say: Progress) -> Iterator[tuple[str, str, list[int]]]:
    """(bootstrap, description, broker pids) of the broker to use."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env, f"KAFKA_BOOTSTRAP_SERVERS={env} (its CPU counts as others')", []
        return
    say("starting a local Kafka broker")
    broker = LocalKafka().start()
    try:
        pid = broker.proc.pid if broker.proc is not None else 0
        what = (
            f"local single-node Kafka {KAFKA_VERSION} (KRaft), started by the bench; "
            f"JVM options {' '.join(JVM_OPTIONS)} (C1 compiler only: see publisher.localkafka)"
        )
        yield broker.bootstrap, what, [pid]
    finally:
        broker.stop()


def run(mode: Mode, command: str, workdir: Path) -> Results:
    say = Progress()
    started = datetime.now(UTC)
    machine = describe()
    specs = load_entities(DEFAULT_SCHEMAS_DIR)
    end = history_end_now()
    customers = [
        Workload(f"customers-{n // 1000}k", {"Customers": n}, end) for n in mode.customers_rows
    ]
    mixed = Workload("mixed", dict.fromkeys(MIXED, mode.mixed_rows_per_entity), end)
    say(f"mode {mode.name}; logs and configs in {workdir}")

    encode: dict[str, EncodeCeiling] = {}
    samples: dict[str, Sample] = {}
    ceiling_rows: list[bytes] = []
    for entity in MIXED:
        source = customers[-1] if entity == "Customers" else mixed
        rows = workload_rows(source, entity, mode.encode_rows)
        if entity == "Customers":
            ceiling_rows = rows
        say(f"encode ceiling: {entity} ({len(rows):,} rows)")
        encode[entity], samples[entity] = encode_ceiling(
            specs[entity], rows, window_rows=SETUP.window_rows
        )

    with kafka(say) as (bootstrap, broker, broker_pids):
        ours = [os.getpid(), *broker_pids]
        broker_pid = broker_pids[0] if broker_pids else None
        say(f"producer ceiling ({mode.producer_messages:,} messages)")
        producer = producer_ceiling(
            bootstrap,
            [samples["Customers"]],
            messages=mode.producer_messages,
            transaction_rows=SETUP.window_rows,
            producer_overrides=SETUP.producer,
        )
        runs: list[CatchUp] = []
        decode: CatchUp | None = None
        naive: list[Naive] = []
        for w in customers:
            say(f"simulator for {w.name} (pre-rendering {w.total_rows:,} rows)")
            with SimulatorProcess(_sim_args(w), workdir / f"{w.name}-simulator.log") as sim:
                for attempt in _attempts(mode) if not naive else ():
                    say(f"naive baseline ({mode.naive_rows:,} rows){_nth(attempt)}")
                    naive.append(
                        naive_baseline(
                            sim.url, bootstrap, w, spec=specs["Customers"], rows=mode.naive_rows
                        )
                    )
                for attempt in _attempts(mode):
                    say(f"end to end: {w.name}, 1 process{_nth(attempt)}")
                    run = catch_up(
                        bootstrap, w, SETUP, sim, workdir, ours=ours, broker_pid=broker_pid
                    )
                    runs.append(dataclasses.replace(run, attempt=attempt))
                    say(_run_line(runs[-1]))
                if w is customers[-1]:
                    say(f"end to end: {w.name}, 1 process, {DECODE_PROCESSES} decode processes")
                    decode = catch_up(
                        bootstrap,
                        w,
                        dataclasses.replace(SETUP, decode_processes=DECODE_PROCESSES),
                        sim,
                        workdir,
                        ours=ours,
                        broker_pid=broker_pid,
                    )
                    say(_run_line(decode))
        say("encode ceiling again: Customers (the machine's speed drifts)")
        again, _ = encode_ceiling(specs["Customers"], ceiling_rows, window_rows=SETUP.window_rows)
        mixed_runs: dict[int, list[CatchUp]] = {1: [], 2: []}
        say(f"simulator for {mixed.name} (pre-rendering {mixed.total_rows:,} rows)")
        with SimulatorProcess(_sim_args(mixed), workdir / "mixed-simulator.log") as sim:
            # One process, then two shards, in turns: each pair shares the machine's mood.
            for attempt in _attempts(mode):
                for shards in (1, 2):
                    say(f"end to end: mixed, {shards} shard(s){_nth(attempt)}")
                    setup = dataclasses.replace(SETUP, shards=shards)
                    run = catch_up(
                        bootstrap, mixed, setup, sim, workdir, ours=ours, broker_pid=broker_pid
                    )
                    mixed_runs[shards].append(dataclasses.replace(run, attempt=attempt))
                    say(_run_line(mixed_runs[shards][-1]))
        say(f"live latency ({mode.live_seconds:g} s)")
        latency = live_latency(
            bootstrap,
            specs,
            workdir,
            entities=MIXED,
            rate=LIVE_RATE,
            seconds=mode.live_seconds,
            setup=LIVE_SETUP,
        )
    return Results(
        mode=mode.name,
        command=command,
        started=started,
        machine=machine,
        broker=broker,
        setup=SETUP,
        live_setup=LIVE_SETUP,
        encode=encode,
        mixed_rows=dict(mixed.rows),
        producer=producer,
        naive=naive,
        customers=runs,
        mixed=mixed_runs,
        latency=latency,
        load_at_end=load_average(),
        customers_ceiling_after=again.full,
        decode=decode,
        seconds=say.elapsed(),
    )


def _attempts(mode: Mode) -> range:
    """Run numbers of a repeated run: 1..rounds, or just 0 when it runs once."""
    return range(1, mode.rounds + 1) if mode.rounds > 1 else range(1)


def _nth(attempt: int) -> str:
    return f", #{attempt}" if attempt else ""


def _sim_args(w: Workload) -> list[str]:
    return [*w.simulator_args(max_rows=1_000_000), "--prerender"]


def _run_line(c: CatchUp) -> str:
    return (
        f"  {c.rows:,} rows in {c.seconds:.1f} s = {c.rows_per_second:,.0f} rows/s; "
        f"peak RSS {', '.join(f'{p.peak_rss_mib:.0f}' for p in c.publishing)} MiB; "
        f"CPU {c.cpu_seconds_per_100k:.1f} s/100k rows"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="100k-row backlogs only, about 3 minutes"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "BENCHMARKS.md",
        help="where to write the Markdown report (default: docs/BENCHMARKS.md)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="repeat each compared run this many times; the targets take the median "
        "(default: 3 in full mode, 1 with --quick)",
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    workdir = Path(tempfile.mkdtemp(prefix="dcp-bench-"))
    mode = QUICK if args.quick else FULL
    if args.rounds is not None:
        mode = dataclasses.replace(mode, rounds=args.rounds)
    results = run(mode, command, workdir)
    sys.stdout.write(text_report(results))
    args.out.write_text(markdown_report(results), encoding="utf-8")
    sys.stdout.write(f"\nwrote {args.out}; logs in {workdir}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
