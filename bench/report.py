"""The benchmark's results, the targets they are judged against, and how they are printed.

Pure: takes measured figures, returns text. Every target is a ratio of figures measured in the
same run (or an absolute bound on memory and latency), so a slower or busier machine moves
both sides together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from statistics import median

from bench.catchup import CatchUp
from bench.ceilings import EncodeCeiling, ProducerCeiling, mixed_rate
from bench.latency import Latency
from bench.machine import Machine
from bench.naive import Naive
from bench.procstat import peak_at
from bench.workload import PublisherSetup

RSS_LIMIT_MIB = 256.0
#: "The same at 100k and 1M": the 1M peak may exceed the 100k peak by at most this factor.
RSS_GROWTH_LIMIT = 1.10


@dataclass(frozen=True)
class Check:
    """One target: a measured value against a bound."""

    name: str
    value: float | None  # None: not measured in this mode
    bound: float
    unit: str
    at_most: bool  # True: value must be <= bound; False: >= bound
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.bound if self.at_most else self.value >= self.bound

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]

    def value_text(self) -> str:
        return "-" if self.value is None else _num(self.value, self.unit)

    def target_text(self) -> str:
        return f"{'<=' if self.at_most else '>='} {_num(self.bound, self.unit)}"


def _num(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:,.0f} {unit}".strip()


@dataclass
class Results:
    """Everything one benchmark run measured."""

    mode: str
    command: str
    started: datetime
    machine: Machine
    broker: str
    setup: PublisherSetup
    live_setup: PublisherSetup
    encode: dict[str, EncodeCeiling]
    mixed_rows: dict[str, int]
    producer: ProducerCeiling
    naive: list[Naive]  # each repetition
    customers: list[CatchUp]  # smallest backlog first; a repeated run once per repetition
    mixed: dict[int, list[CatchUp]]  # by shard count; one per repetition, in turns
    latency: Latency
    load_at_end: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: The Customers parse + map + encode ceiling measured again right after the Customers
    #: end-to-end runs (rows/s): the machine's speed drifts between minutes.
    customers_ceiling_after: float | None = None
    #: The largest Customers backlog again, with decode processes (not a target: the
    #: targets are for the default settings).
    decode: CatchUp | None = None

    @property
    def runs(self) -> list[CatchUp]:
        """Every end-to-end catch-up, in the order of the tables (and mostly of the run)."""
        mixed = [c for pair in zip(*self.mixed.values(), strict=True) for c in pair]
        return [*self.customers, *([self.decode] if self.decode else []), *mixed]

    @property
    def customers_ceiling(self) -> float:
        """The Customers ceiling the end-to-end runs are judged against: the higher of the
        measurements before and after them (the stricter)."""
        return max(self.encode["Customers"].full, self.customers_ceiling_after or 0.0)

    @property
    def big_runs(self) -> list[CatchUp]:
        """The runs of the largest Customers backlog."""
        return [c for c in self.customers if c.rows == self.customers[-1].rows]

    @property
    def small_runs(self) -> list[CatchUp]:
        """The runs of the smallest Customers backlog."""
        return [c for c in self.customers if c.rows == self.customers[0].rows]

    @property
    def customers_big(self) -> CatchUp:
        """The run of the largest Customers backlog with the median rows/s."""
        return median_run(self.big_runs)

    @property
    def customers_rate(self) -> float:
        """Median rows/s of the largest Customers backlog's runs."""
        return float(median(c.rows_per_second for c in self.big_runs))

    @property
    def naive_rate(self) -> float:
        return float(median(n.rate for n in self.naive))

    @property
    def shard_ratios(self) -> list[tuple[CatchUp, CatchUp]]:
        """(1 process, 2 shards) runs of the mixed workload, pair by pair."""
        return list(zip(self.mixed.get(1, []), self.mixed.get(2, []), strict=False))

    @property
    def mixed_ceiling(self) -> float:
        return mixed_rate({e: c.full for e, c in self.encode.items()}, self.mixed_rows)


def median_run(runs: Sequence[CatchUp]) -> CatchUp:
    """The run with the median rows/s (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda c: c.rows_per_second)
    return ordered[(len(ordered) - 1) // 2]


def _rates(runs: Sequence[CatchUp]) -> str:
    """Rows/s of ``runs``: ``median of 3: 12,694 (12,100, 12,694, 14,000)``, or just
    ``12,694`` for one run."""
    if len(runs) == 1:
        return f"{runs[0].rows_per_second:,.0f}"
    each = ", ".join(f"{c.rows_per_second:,.0f}" for c in runs)
    return f"median of {len(runs)}: {median(c.rows_per_second for c in runs):,.0f} ({each})"


def checks(r: Results) -> list[Check]:
    """The targets of the issue, each as a ratio or bound measured in this run. A run that
    is repeated counts by its median."""
    cu = r.encode["Customers"]
    big = r.big_runs
    rate = r.customers_rate
    out = [
        Check(
            f"end-to-end Customers ({big[0].rows:,} rows, 1 process) / encode ceiling",
            rate / r.customers_ceiling,
            0.80,
            "x",
            at_most=False,
            detail=f"{_rates(big)} / {r.customers_ceiling:,.0f} rows/s",
        ),
        Check(
            "avrofast encode / plain fastavro.schemaless_writer"
            + ("" if cu.identical else " (BYTES DIFFER)"),
            cu.encode_speedup if cu.identical else 0.0,
            2.0,
            "x",
            at_most=False,
            detail=f"{cu.encode:,.0f} / {cu.fastavro:,.0f} rows/s, byte-identical: "
            f"{'yes' if cu.identical else 'NO'}",
        ),
    ]
    # Each 2-shard run against the 1-process run just before it: the median of those ratios.
    pairs = r.shard_ratios
    ratios = [two.rows_per_second / one.rows_per_second for one, two in pairs]
    pair_text = ", ".join(
        f"{two.rows_per_second:,.0f} / {one.rows_per_second:,.0f}" for one, two in pairs
    )
    out.append(
        Check(
            "mixed workload: 2 shards / 1 process",
            float(median(ratios)) if ratios else None,
            1.7,
            "x",
            at_most=False,
            detail=""
            if not pairs
            else f"{pair_text} rows/s"
            if len(pairs) == 1
            else f"median of {len(pairs)} pairs ({', '.join(f'{x:.2f}x' for x in ratios)}): "
            f"{pair_text} rows/s",
        )
    )
    naive = ", ".join(f"{n.rate:,.0f}" for n in r.naive)
    out.append(
        Check(
            "end-to-end Customers / naive script",
            rate / r.naive_rate,
            10.0,
            "x",
            at_most=False,
            detail=f"{rate:,.0f} / {r.naive_rate:,.0f} rows/s"
            + (f" (medians; naive runs {naive})" if len(r.naive) > 1 else ""),
        )
    )
    runs = [*r.customers, *(c for shards in r.mixed.values() for c in shards)]
    worst = max(runs, key=lambda c: c.peak_rss_mib)
    out.append(
        Check(
            "peak RSS of any publishing process (all runs)",
            worst.peak_rss_mib,
            RSS_LIMIT_MIB,
            "MiB",
            at_most=True,
            detail=f"in the {_run_name(worst)} run",
        )
    )
    small = r.small_runs
    two_sizes = big[0].rows != small[0].rows
    big_rss = float(median(c.peak_rss_mib for c in big))
    small_rss = float(median(c.peak_rss_mib for c in small))
    growth = big_rss / small_rss if two_sizes else None
    out.append(
        Check(
            f"peak RSS at {big[0].rows:,} rows / at {small[0].rows:,} rows (Customers)"
            if two_sizes
            else "peak RSS with a 1M-row backlog / with 100k (full mode only)",
            growth,
            RSS_GROWTH_LIMIT,
            "x",
            at_most=True,
            detail=""
            if not two_sizes
            else f"{big_rss:.0f} / {small_rss:.0f} MiB"
            + (
                ""
                if len(big) == len(small) == 1
                else f" (medians; runs {_mibs(big)} / {_mibs(small)})"
            ),
        )
    )
    lat = r.latency
    out.append(
        Check(
            "live p99 latency beyond the settle delay",
            lat.p99_beyond_settle,
            lat.poll_interval + 1.0,
            "s",
            at_most=True,
            detail=f"p99 {lat.p99:.2f} s - settle {lat.settle_delay:g} s; "
            f"poll interval {lat.poll_interval:g} s",
        )
    )
    return out


def _mibs(runs: Sequence[CatchUp]) -> str:
    return ", ".join(f"{c.peak_rss_mib:.0f}" for c in runs)


def plateau(c: CatchUp) -> str:
    """Peak RSS by the time 10%, 50% and all of the rows were committed: flat means memory
    does not grow with the backlog."""
    marks = []
    for share in (0.1, 0.5, 1.0):
        peak = peak_at(list(c.rss_trace), int(c.rows * share))
        marks.append("-" if peak is None else f"{peak / 1024:.0f}")
    return f"{' / '.join(marks)} MiB after 10% / 50% / 100% of the {c.rows:,} rows"


def _run_name(c: CatchUp) -> str:
    return f"{c.workload} {c.rows:,}-row {c.shards}-shard"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return out


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _target_rows(r: Results) -> list[list[str]]:
    return [[c.name, c.value_text(), c.target_text(), c.verdict, c.detail] for c in checks(r)]


def _run_rows(r: Results) -> list[list[str]]:
    rows = []
    ceilings = {"customers": r.customers_ceiling, "mixed": r.mixed_ceiling}
    for c in r.runs:
        ceiling = ceilings.get(c.workload.split("-")[0], 0.0)
        rss = ", ".join(f"{p.peak_rss_mib:.0f}" for p in c.publishing)
        if c.supervisor:
            rss += f" (supervisor {max(p.peak_rss_mib for p in c.supervisor):.0f})"
        workers = [p for p in c.helpers if p.peak_rss_mib > 0]
        if c.decode_processes and workers:
            rss += f" (decode processes {', '.join(f'{p.peak_rss_mib:.0f}' for p in workers)})"
        rows.append(
            [
                c.label,
                f"{c.rows:,}",
                f"{c.seconds:.1f}",
                f"{c.rows_per_second:,.0f}",
                f"{c.rows_per_second / ceiling:.0%}" if ceiling else "-",
                f"{c.cpu_seconds_per_100k:.1f}",
                rss,
                f"{c.startup_seconds:.1f}",
                f"{c.simulator_cpu_seconds / c.seconds:.0%}",
                f"{c.others_cpu_seconds / c.seconds:.2f}",
            ]
        )
    return rows


_RUN_HEADER = [
    "run",
    "rows",
    "seconds",
    "rows/s",
    "of ceiling",
    "CPU s/100k",
    "peak RSS MiB",
    "1st commit s",
    "simulator CPU",
    "others' cores",
]


#: Thread groups of the publisher and the broker (bench.procstat.thread_group), in table order.
_PUBLISHER_GROUPS = ("fetch", "main", "librdkafka", "other")
_BROKER_GROUPS = ("requests", "JIT", "GC", "other")


def cpu_rows(r: Results) -> list[list[str]]:
    """Microseconds of CPU per published row, by where they were spent."""
    ceilings = {"customers": r.customers_ceiling, "mixed": r.mixed_ceiling}
    rows = []
    for c in r.runs:
        per_row = 1e6 / max(1, c.rows)
        mine: dict[str, float] = {}
        for p in c.publishing:
            for group, seconds in p.thread_seconds.items():
                key = group if group in _PUBLISHER_GROUPS else "other"
                mine[key] = mine.get(key, 0.0) + seconds
        supervisor = sum(p.cpu_seconds for p in c.supervisor)
        helpers = sum(p.cpu_seconds for p in c.helpers)
        broker = dict(c.broker_cpu)
        broker_other = sum(v for k, v in broker.items() if k not in _BROKER_GROUPS[:3])
        ceiling = ceilings.get(c.workload.split("-")[0], 0.0)
        rows.append(
            [
                c.label,
                *(f"{mine.get(g, 0.0) * per_row:.1f}" for g in _PUBLISHER_GROUPS),
                f"{helpers * per_row:.1f}",
                f"{(c.cpu_seconds - supervisor) * per_row:.1f}",
                f"{1e6 / ceiling:.1f}" if ceiling else "-",
                *(f"{broker.get(g, 0.0) * per_row:.1f}" for g in _BROKER_GROUPS[:3]),
                f"{broker_other * per_row:.1f}" if broker else "-",
                f"{c.simulator_cpu_seconds * per_row:.1f}",
            ]
        )
    return rows


_CPU_HEADER = [
    "run",
    "fetch threads",
    "main thread",
    "librdkafka",
    "other threads",
    "decode processes",
    "publisher",
    "ceiling",
    "broker requests",
    "broker JIT",
    "broker GC",
    "broker other",
    "simulator",
]


def _encode_rows(r: Results) -> list[list[str]]:
    return [
        [
            e,
            f"{c.rows:,}",
            f"{c.json_bytes_per_row:.0f} / {c.avro_bytes_per_row:.0f}",
            f"{c.parse:,.0f}",
            f"{c.map:,.0f}",
            f"{c.encode:,.0f}",
            f"{c.fastavro:,.0f}",
            f"{c.encode_speedup:.1f}x{'' if c.identical else ' (bytes differ!)'}",
            f"{c.full:,.0f}",
        ]
        for e, c in r.encode.items()
    ]


_ENCODE_HEADER = [
    "entity",
    "rows",
    "B JSON / Avro",
    "parse/s",
    "map/s",
    "avrofast/s",
    "fastavro/s",
    "speed-up",
    "parse+map+encode/s",
]


def text_report(r: Results) -> str:
    """The table printed at the end of a run."""
    lines = [f"dataconnect-publisher benchmark ({r.mode}), {r.started:%Y-%m-%d %H:%M %Z}", ""]
    lines += _table(["target", "value", "target", "verdict", "detail"], _target_rows(r))
    lines += ["", *_table(_RUN_HEADER, _run_rows(r)), ""]
    lines += ["CPU microseconds per row:", *_table(_CPU_HEADER, cpu_rows(r)), ""]
    lines += _table(_ENCODE_HEADER, _encode_rows(r))
    p, lat = r.producer, r.latency
    lines += [
        "",
        f"producer ceiling: {p.rate:,.0f} msg/s ({p.megabytes_per_second:.1f} MB/s of values, "
        f"{p.messages // p.transactions:,} per transaction)",
        f"naive script: {r.naive_rate:,.0f} rows/s over {r.naive[0].rows:,} rows"
        + (f" (median of {len(r.naive)} runs)" if len(r.naive) > 1 else ""),
        f"peak RSS of the {r.customers_big.label} run: {plateau(r.customers_big)}",
        *(
            [
                f"with {r.decode.decode_processes} decode processes: "
                f"{r.decode.rows_per_second:,.0f} rows/s, "
                f"{r.decode.rows_per_second / r.customers_rate:.2f}x the default "
                f"({r.customers_rate:,.0f}), "
                f"{r.decode.rows_per_second / r.customers_ceiling:.2f}x the encode ceiling"
            ]
            if r.decode
            else []
        ),
        f"live: p50 {lat.p50:.2f} s, p99 {lat.p99:.2f} s, max {lat.max:.2f} s over "
        f"{lat.samples:,} rows (simulator made {lat.expected:,} visible); poll interval "
        f"{lat.poll_interval:g} s, settle delay {lat.settle_delay:g} s",
        f"load average: {r.machine.load_at_start} at start, {r.load_at_end} at end",
    ]
    return "\n".join(lines) + "\n"


def markdown_report(r: Results) -> str:
    """docs/BENCHMARKS.md."""
    s, ls = r.setup, r.live_setup
    cu = r.encode["Customers"]
    big = r.customers_big
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m bench` (`make bench`); do not edit by hand. Every figure below "
        "was measured in one run, against a real Kafka broker and the DataConnect simulator "
        "running as its own process.",
        "",
        f"- date: {r.started:%Y-%m-%d %H:%M %Z}; mode: **{r.mode}**; took {r.seconds / 60:.1f} min",
        f"- command: `{r.command}`",
        *(f"- {line}" for line in r.machine.lines()),
        f"- load average when the run ended: {r.load_at_end}",
        f"- broker: {r.broker}",
        "",
        "## Targets",
        "",
        *_md_table(["target", "value", "target", "verdict", "detail"], _target_rows(r)),
        "",
        "## End to end",
        "",
        "A real `python -m publisher run` process (with `publisher.shards = 2`: a supervisor and "
        "two shard processes) catches up a history from `start_from`, the history start. The "
        "clock runs from spawning the process (imports, topic creation and `init_transactions` "
        "included) until a read_committed consumer of the checkpoint topic sees every stream's "
        "watermark at the history end. rows/s = rows published / that time. The run with "
        "*decode processes* repeats the largest Customers backlog with "
        "`publisher.decode_processes` set (parse, map and encode in worker processes, so one "
        "entity can use both cores); it is not one of the targets, which are for the default "
        "settings.",
        *_repeats_text(r),
        "",
        *_md_table(_RUN_HEADER, _run_rows(r)),
        "",
        "- *of ceiling*: against the parse + map + encode ceiling of the same rows (for the mixed "
        "workload, the ceilings of its entities weighted by their rows).",
        "- *CPU s/100k*: user + system CPU of all the publisher's processes (librdkafka's "
        "threads included) per 100,000 rows.",
        "- *peak RSS*: `VmHWM` of each publishing process, read from `/proc/<pid>/status`. "
        f"During the {big.label} run (the median one) it was {plateau(big)}.",
        "- *simulator CPU*: the simulator's CPU time over the run's wall time (it serves "
        "pre-rendered rows; well below one core means it was not the bottleneck).",
        "- *others' cores*: CPU the rest of the machine used meanwhile, in cores (busy CPU from "
        "`/proc/stat` minus the bench, broker, simulator and publisher). Above 0.1 the machine "
        "was not quiet and the figures are pessimistic.",
        "",
        f"Workloads: Customers only ({', '.join(f'{c.rows:,}' for c in r.customers)} row "
        f"versions) and a mixed five-entity workload "
        f"({', '.join(f'{e} {n:,}' for e, n in r.mixed_rows.items())}), each history spread "
        "over 10 days; entities listed in that order, so with 2 shards the first, third and "
        "fifth go to shard 0 and the others to shard 1.",
        "",
        "Publisher settings: windows of about "
        f"{s.window_rows:,} rows of the densest entity (`initial_window_seconds` = "
        "`max_window_seconds` sized for it), `max_windows_per_transaction` = "
        f"{s.max_windows_per_transaction}, `prefetch_windows` = {s.prefetch_windows}, "
        f"overlap {s.overlap_seconds:g} s, gzip "
        f"{'on' if s.accept_gzip else 'off'}, producer settings: the defaults of "
        f"`publisher.runner.producer_conf`{_producer_text(s)}.",
        "",
        "## Where the CPU goes",
        "",
        "CPU microseconds per published row in each end-to-end run, by thread, read from "
        "`/proc/<pid>/task/*/stat` (the publisher names its threads for the OS).",
        "",
        *_md_table(_CPU_HEADER, cpu_rows(r)),
        "",
        "- *fetch threads* (`dcp-fetch`): download (gzip inflate included), parse, map, "
        "Avro-encode, digests and headers. *main thread*: produce, commit, checkpoints, "
        "metrics. *other threads*: presence, health endpoint, Python's own. *decode "
        "processes*: with `publisher.decode_processes`, the worker processes that parse, map "
        "and encode instead of the fetch threads.",
        "- *publisher*: all the publisher's processes' CPU per row, decode processes included "
        "(the supervisor of the 2-shard run not included). *ceiling*: the same rows' parse + "
        "map + encode in a tight loop on one core, per row. A publisher process runs its "
        "Python threads one at a time (the GIL), so without decode processes its rows/s are "
        "bounded by about 1e6 / (fetch + main) per process.",
        "- *broker*: the broker's CPU during the run, by its thread names (request and "
        "network threads, the JVM's JIT compiler and garbage collector threads, the rest); "
        "`-` when the broker was not started by the bench. It shares the machine's cores with "
        "the publisher.",
        "",
        "## Ceilings",
        "",
        f"**Encode** (one core, no I/O, best of 3 passes; rows of the same histories, parsed as "
        f"JSON arrays of {s.window_rows:,} rows):",
        "",
        *_md_table(_ENCODE_HEADER, _encode_rows(r)),
        "",
        "avrofast is the publisher's compiled encoder (`publisher.avrofast`, via "
        "`EntityCodec.encode`); every body it wrote was compared with "
        "`fastavro.schemaless_writer`'s bytes for the same record.",
        "",
        f"**Producer**: a bare confluent-kafka transactional producer with the publisher's "
        f"settings sent {r.producer.messages:,} pre-encoded Customers messages (same keys, "
        f"values and headers) to a 3-partition topic, {s.window_rows:,} per transaction: "
        f"**{r.producer.rate:,.0f} msg/s** ({r.producer.megabytes_per_second:.1f} MB/s of "
        f"values). The end-to-end Customers runs reached "
        f"{r.customers_rate / r.producer.rate:.0%} of it (median).",
        "",
        f"**Naive script** (`bench/naive.py`: httpx, stdlib json, fastavro per row, one produce "
        f"and one flush per row): **{r.naive_rate:,.0f} rows/s** over {r.naive[0].rows:,} "
        f"Customers rows"
        + (
            f" (median of {len(r.naive)} runs: {', '.join(f'{n.rate:,.0f}' for n in r.naive)})"
            if len(r.naive) > 1
            else ""
        )
        + ".",
        "",
        "## Live latency",
        "",
        f"The simulator adds {r.latency.rate:g} row versions per second to each of "
        f"{r.latency.entities} entities (none late); the publisher polls every "
        f"{ls.poll_interval_seconds:g} s with a settle delay of {ls.settle_delay_seconds:g} s "
        f"and an overlap of {ls.overlap_seconds:g} s. Latency = a read_committed consumer's "
        "receive time minus the row's change time (when it became visible), for every row that "
        f"changed during {r.latency.seconds:g} s after catch-up:",
        "",
        *_md_table(
            ["rows", "p50", "p99", "max", "p99 - settle delay", "target"],
            [
                [
                    f"{r.latency.samples:,} (simulator: {r.latency.expected:,})",
                    f"{r.latency.p50:.2f} s",
                    f"{r.latency.p99:.2f} s",
                    f"{r.latency.max:.2f} s",
                    f"{r.latency.p99_beyond_settle:.2f} s",
                    f"<= poll interval + 1 s = {r.latency.poll_interval + 1:g} s",
                ]
            ],
        ),
        "",
        "A row waits for the settle delay, then for the next poll (up to one interval), then "
        "for its fetch and commit: p99 - settle delay is bounded by the poll interval plus the "
        "publisher's own time.",
        "",
        "## Noise",
        "",
        f"Wall-clock figures depend on what else the machine runs. Load average "
        f"{r.machine.load_at_start} at the start and {r.load_at_end} at the end; the *others' "
        "cores* column shows how much CPU other users took during each end-to-end run. The "
        "encode ceiling is a best-of-3 and so is less affected than single end-to-end runs. "
        f"Customers encode ceiling this run: {cu.full:,.0f} rows/s at the start"
        + (
            ""
            if r.customers_ceiling_after is None
            else f", {r.customers_ceiling_after:,.0f} rows/s again right after the Customers "
            "end-to-end runs (the Customers ratios use the higher)"
        )
        + ".",
        *(f"- {note}" for note in r.notes),
        "",
        "## Profiling",
        "",
        "`python -m bench.profile --rows 300000` runs one Customers catch-up the same way under "
        "py-spy (`pip install py-spy`), sampling only the thread that holds the GIL, and prints "
        "the functions with the largest share of the samples.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make setup   # virtualenv + Kafka jars",
        "make bench   # full: about 15 minutes; writes this file",
        ".venv/bin/python -m bench --quick   # about 3 minutes, 100k-row backlog",
        "```",
        "",
        "Set `KAFKA_BOOTSTRAP_SERVERS` to use an existing broker instead of starting one.",
        "",
    ]
    return "\n".join(lines)


def _repeats_text(r: Results) -> list[str]:
    """How repeated runs count, when the bench repeated any."""
    if not any(c.attempt for c in r.runs):
        return []
    return [
        "",
        "Runs marked *#1*, *#2*, ... are the same run repeated, one after another (the mixed "
        "workload's 1-process and 2-shard runs in turns, so that each pair ran in the same "
        "minutes). On a shared 2-core machine one run can be 15% off either way; the targets "
        "take the median run (for the 2-shard target, the median of the pairs' ratios), and "
        "their detail lists every run.",
    ]


def _producer_text(s: PublisherSetup) -> str:
    if not s.producer:
        return ""
    return " with " + ", ".join(f"`{k}={v}`" for k, v in s.producer.items())
