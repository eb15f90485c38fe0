"""The benchmark's pure helpers: /proc parsing, percentiles, the config it writes, and how its
figures are judged against the targets."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import fastavro
import orjson
import pytest

from bench.catchup import CatchUp
from bench.ceilings import EncodeCeiling, ProducerCeiling, chunks, mixed_rate
from bench.latency import Latency, percentile
from bench.machine import Machine, cpu_model, mem_total_gib, revision
from bench.naive import Naive, naive_value
from bench.procstat import (
    CLOCK_TICKS,
    Usage,
    busy_ticks,
    peak_at,
    stat_cpu_ticks,
    status_kib,
    thread_group,
)
from bench.profile import format_profile, read_raw
from bench.report import Results, checks, cpu_rows, markdown_report, plateau, text_report
from bench.workload import PublisherSetup, Workload, publisher_config, to_toml
from publisher.config import parse_config
from publisher.entities import load_entities

END = datetime(2024, 3, 1, tzinfo=UTC)


def test_status_and_stat_parsing() -> None:
    status = "Name:\tpython\nVmPeak:\t  900 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 1000 kB\n"
    assert status_kib(status, "VmHWM") == 204800
    assert status_kib(status, "VmSwap") is None
    # A command name with spaces and parentheses must not shift the fields.
    stat = "4242 (we (i) rd) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 1 0 100 0 0"
    assert stat_cpu_ticks(stat) == 281
    assert busy_ticks("cpu  100 5 50 1000 20 3 2 7 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n") == 167


def test_machine_parsing() -> None:
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n") == "AMD EPYC 7B13"
    assert cpu_model("processor\t: 0\n") == "unknown"
    assert mem_total_gib("MemTotal:       24684092 kB\nMemFree: 1 kB\n") == pytest.approx(
        23.54, 0.01
    )


def test_revision_names_the_commit_measured(tmp_path: Path) -> None:
    # The repository this test runs in (a clean clone in CI, a work tree with edits here).
    here = revision(Path(__file__).resolve().parent)
    assert re.fullmatch(r"[0-9a-f]{7,40}( \+ local changes)?", here), here
    assert revision(tmp_path) == "unknown"  # not a git checkout


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_the_benchmark_config_is_one_the_publisher_accepts() -> None:
    workload = Workload("mixed", {"Customers": 1000, "Discussions": 500}, END)
    setup = PublisherSetup(shards=2, window_rows=100, producer={"linger.ms": 5})
    doc = publisher_config(
        workload, setup, bootstrap="127.0.0.1:9", simulator_url="http://127.0.0.1:8"
    )
    env = {"DC_CLIENT_SECRET": "s", "DC_PASSWORD": "p"}
    config = parse_config(tomllib.loads(to_toml(doc)), env=env)
    assert config.publisher.shards == 2
    assert config.sources[0].entities == ["Customers", "Discussions"]
    assert config.windows.start_from == workload.history_start
    # 100 rows of the densest entity (1000 rows over 10 days): a tenth of a day.
    assert config.windows.initial_window_seconds == pytest.approx(86_400)
    assert config.kafka.producer == {"linger.ms": 5}
    assert config.sources[0].client_secret.get_secret_value() == "s"


def test_mixed_rate_is_total_rows_over_total_time() -> None:
    # 100 rows at 100/s (1 s) and 300 rows at 100/s (3 s): 400 rows in 4 s.
    assert mixed_rate({"a": 100.0, "b": 100.0}, {"a": 100, "b": 300}) == pytest.approx(100.0)
    assert mixed_rate({"a": 50.0, "b": 200.0}, {"a": 100, "b": 200}) == pytest.approx(100.0)


def test_chunks_are_json_arrays_of_the_rows() -> None:
    rows = [orjson.dumps({"n": i}) for i in range(5)]
    bodies = chunks(rows, 2)
    assert [len(orjson.loads(b)) for b in bodies] == [2, 2, 1]
    assert [r["n"] for b in bodies for r in orjson.loads(b)] == [0, 1, 2, 3, 4]


def test_the_naive_script_writes_records_fastavro_accepts() -> None:
    spec = load_entities()["Customers"]
    row = {f.name: "" for f in spec.fields} | {
        "CustomerID": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "LegacyCustomerID": 12,
        "DoNotEmail": True,
        "DateOfLastMarketingCampaign": "2024-01-01T10:00:00.1234567Z",
        "EmailSetDate": "2024-01-01T10:00:00",
    }
    value = naive_value(spec, row)
    assert value["DoNotCall"] is None and value["FirstName"] == ""
    record = {
        "before": None,
        "after": value,
        "source": {
            "connector": "c",
            "version": "1",
            "source": "s",
            "entity": "Customers",
            "row_thumbprint": "t",
            "row_inserted": None,
            "row_updated": None,
            "row_event": "Added",
            "window_start": 0,
            "window_stop": 1,
        },
        "op": "c",
        "ts_ms": 2,
    }
    fastavro.schemaless_writer(BytesIO(), fastavro.parse_schema(spec.schema), record)


def _catch_up(workload: str, shards: int, rows: int, seconds: float, *rss_mib: float) -> CatchUp:
    procs = [Usage(1, "python -m publisher run", int(rss_mib[0] * 1024), 100)]
    if shards > 1:
        procs = [Usage(1, "python -m publisher run", 50 * 1024, 10)] + [
            Usage(2 + i, f"python -m publisher run --shard {i}/2", int(r * 1024), 100)
            for i, r in enumerate(rss_mib)
        ]
    return CatchUp(workload, shards, rows, seconds, 1.0, tuple(procs), 1.0, 0.0)


def _results(*, customers: list[CatchUp], identical: bool = True) -> Results:
    encode = {
        e: EncodeCeiling(e, 1000, 1300.0, 450.0, 1e5, 4e4, 4e4, 1e4, rate, identical)
        for e, rate in (("Customers", 10_000.0), ("Discussions", 40_000.0))
    }
    machine = Machine(2, "cpu", 8.0, "6.1", "3.11", "2.6", "versions", "0.1 0.1 0.1")
    return Results(
        mode="full",
        command="python -m bench",
        started=END,
        machine=machine,
        broker="local",
        setup=PublisherSetup(),
        live_setup=PublisherSetup(poll_interval_seconds=2, settle_delay_seconds=5),
        encode=encode,
        mixed_rows={"Customers": 100_000, "Discussions": 100_000},
        producer=ProducerCeiling(100_000, 1.0, 20, 45_000_000),
        naive=[Naive(2000, 2.0)],
        customers=customers,
        mixed={
            1: [_catch_up("mixed", 1, 200_000, 20.0, 200)],
            2: [_catch_up("mixed", 2, 200_000, 11.0, 150, 160)],
        },
        latency=Latency(500, 500, 6.0, 7.5, 7.9, 2.0, 5.0, 5.0, 5, 60.0),
    )


def test_targets_are_judged_as_ratios_of_the_same_run() -> None:
    r = _results(
        customers=[
            _catch_up("customers-100k", 1, 100_000, 12.5, 180),
            _catch_up("customers-1000k", 1, 1_000_000, 125.0, 190),
        ]
    )
    by_name = {c.name.split(" (")[0].split(" at ")[0]: c for c in checks(r)}
    e2e = by_name["end-to-end Customers"]
    assert e2e.value == pytest.approx(0.8) and e2e.met  # 8,000 of 10,000 rows/s
    shards = by_name["mixed workload: 2 shards / 1 process"]
    assert shards.value == pytest.approx(20 / 11) and shards.met
    naive = by_name["end-to-end Customers / naive script"]
    assert naive.value == pytest.approx(8.0) and naive.met is False  # 8,000 vs 1,000 rows/s
    rss = by_name["peak RSS of any publishing process"]
    assert rss.value == pytest.approx(200) and rss.met  # the supervisor does not count
    growth = by_name["peak RSS"]
    assert growth.value == pytest.approx(190 / 180) and growth.met
    latency = by_name["live p99 latency beyond the settle delay"]
    assert latency.value == pytest.approx(2.5) and latency.met  # 7.5 - 5 <= 2 + 1
    text = text_report(r)
    assert "NOT met" in text and "8,000 / 10,000 rows/s" in text
    doc = markdown_report(r)
    assert doc.startswith("# Benchmarks") and "| end-to-end Customers" in doc


def test_differing_bytes_fail_the_encoder_target_and_quick_mode_skips_growth() -> None:
    r = _results(customers=[_catch_up("customers-100k", 1, 100_000, 12.5, 300)], identical=False)
    verdicts = {c.name: c.met for c in checks(r)}
    assert verdicts["avrofast encode / plain fastavro.schemaless_writer (BYTES DIFFER)"] is False
    assert verdicts["peak RSS of any publishing process (all runs)"] is False  # 300 MiB
    assert [m for n, m in verdicts.items() if n.startswith("peak RSS with")] == [None]


def test_workload_spreads_its_history_before_its_end() -> None:
    w = Workload("w", {"Customers": 10}, END, span=timedelta(days=2))
    assert w.history_start == END - timedelta(days=2)
    assert w.total_rows == 10
    assert "--entity-rows" in w.simulator_args(max_rows=5)


def test_peak_by_progress_shows_whether_memory_plateaus() -> None:
    trace = [(0, 50 * 1024), (50_000, 180 * 1024), (100_000, 200 * 1024), (1_000_000, 210 * 1024)]
    assert peak_at(trace, 100_000) == 200 * 1024
    assert peak_at(trace, 2_000_000) is None
    run = CatchUp("customers-1000k", 1, 1_000_000, 100.0, 1.0, (), 1.0, 0.0, tuple(trace))
    assert plateau(run) == "200 / 210 / 210 MiB after 10% / 50% / 100% of the 1,000,000 rows"


def test_profile_counts_own_and_inclusive_samples() -> None:
    raw = [
        "main (a.py:1);publish (b.py:2);encode (c.py:3) 6\n",
        "main (a.py:1);publish (b.py:2) 3\n",
        "thread (t.py:1);parse (p.py:9) 1\n",
        "garbage line\n",
    ]
    profile = read_raw(raw)
    assert profile.total == 10
    assert profile.own["encode (c.py:3)"] == 6 and profile.own["publish (b.py:2)"] == 3
    assert profile.inclusive["main (a.py:1)"] == 9 and profile.inclusive["parse (p.py:9)"] == 1
    assert "60.0%  encode (c.py:3)" in format_profile(profile, top=3)


@pytest.mark.parametrize(
    ("tid", "name", "group"),
    [
        (100, "python", "main"),
        (101, "dcp-fetch", "fetch"),
        (102, "rdk:broker1", "librdkafka"),
        (103, "C1 CompilerThre", "JIT"),
        (104, "GC Thread#0", "GC"),
        (105, "data-plane-kafk", "requests"),
        (106, "dcp-presence", "other"),
    ],
)
def test_threads_are_grouped_by_their_os_names(tid: int, name: str, group: str) -> None:
    assert thread_group(100, tid, name) == group


def test_cpu_per_row_by_thread_group_broker_and_simulator() -> None:
    c = _catch_up("customers-100k", 1, 100_000, 10.0, 150)
    tick = CLOCK_TICKS
    c.processes[0].threads.update(
        {1: ("main", 1 * tick), 2: ("fetch", 5 * tick), 3: ("fetch", 1 * tick), 4: ("rdk", 0)}
    )
    c = dataclasses.replace(c, broker_cpu=(("JIT", 0.5), ("requests", 1.0), ("timer", 0.2)))
    r = _results(customers=[c])
    row = cpu_rows(r)[0]
    # 6 s of fetch threads over 100,000 rows = 60 us/row; ceiling 10,000 rows/s = 100 us/row.
    assert row[:2] == ["customers-100k, 1 shard", "60.0"]
    assert row[2] == "10.0"  # main
    assert row[5] == "0.0"  # no decode processes
    assert row[7] == "100.0"  # ceiling
    assert row[8:12] == ["10.0", "5.0", "0.0", "2.0"]  # broker requests, JIT, GC, other
    assert row[12] == "10.0"  # simulator: 1 s
    assert "## Where the CPU goes" in markdown_report(r)


def test_the_customers_ratio_uses_the_higher_of_the_two_ceilings() -> None:
    # Ceiling 10,000 rows/s at the start; 12,500 right after the Customers runs: the machine
    # sped up, so 8,000 rows/s end to end is judged against 12,500 (0.64x), not 10,000.
    r = _results(customers=[_catch_up("customers-100k", 1, 100_000, 12.5, 180)])
    r.customers_ceiling_after = 12_500.0
    e2e = next(c for c in checks(r) if c.name.startswith("end-to-end Customers ("))
    assert e2e.value == pytest.approx(0.64) and e2e.met is False
    assert "12,500 rows/s again right after" in markdown_report(r)
    r.customers_ceiling_after = 5_000.0  # slower after: the start's 10,000 stays
    e2e = next(c for c in checks(r) if c.name.startswith("end-to-end Customers ("))
    assert e2e.value == pytest.approx(0.8)


def test_the_decode_run_is_reported_beside_the_targets_not_in_them() -> None:
    big = _catch_up("customers-1000k", 1, 1_000_000, 125.0, 190)
    procs = (
        Usage(1, "python -m publisher run", 150 * 1024, 500),
        Usage(2, "python -c from multiprocessing.spawn import spawn_main", 90 * 1024, 4000),
        Usage(3, "python -c from multiprocessing.spawn import spawn_main", 95 * 1024, 4000),
    )
    decode = dataclasses.replace(big, seconds=62.5, processes=procs, decode_processes=2)
    r = _results(customers=[_catch_up("customers-100k", 1, 100_000, 12.5, 180), big])
    r.decode = decode
    e2e = next(c for c in checks(r) if c.name.startswith("end-to-end Customers ("))
    assert e2e.value == pytest.approx(0.8)  # the default run's 8,000 rows/s, not 16,000
    text = text_report(r)
    assert "with 2 decode processes: 16,000 rows/s, 2.00x the default (8,000)" in text
    row = next(row for row in cpu_rows(r) if "decode" in row[0])
    assert row[0] == "customers-1000k, 1 shard, 2 decode processes"
    assert row[5] == f"{8000 / CLOCK_TICKS * 1e6 / 1_000_000:.1f}"  # both workers' CPU
    assert "150 (decode processes 90, 95)" in markdown_report(r)


def test_repeated_runs_count_by_their_median_and_every_run_is_listed() -> None:
    def nth(c: CatchUp, attempt: int) -> CatchUp:
        return dataclasses.replace(c, attempt=attempt)

    small = [
        nth(_catch_up("customers-100k", 1, 100_000, 10.0, mib), i + 1)
        for i, mib in enumerate((180, 150, 170))
    ]
    # 1,000,000 rows in 100 s (10,000/s), 125 s (8,000/s) and 200 s (5,000/s): median 8,000.
    big = [
        nth(_catch_up("customers-1000k", 1, 1_000_000, secs, mib), i + 1)
        for i, (secs, mib) in enumerate(((100.0, 200), (125.0, 180), (200.0, 175)))
    ]
    r = _results(customers=[*small, *big])
    r.naive = [Naive(2000, 2.0), Naive(2000, 1.0), Naive(2000, 4.0)]  # 1,000 / 2,000 / 500 rows/s
    # Pairs (1 process, 2 shards): 20 / 11 s = 1.82x, 20 / 14 s = 1.43x, 20 / 12 s = 1.67x.
    r.mixed = {
        1: [nth(_catch_up("mixed", 1, 200_000, 20.0, 200), i) for i in (1, 2, 3)],
        2: [
            nth(_catch_up("mixed", 2, 200_000, s, 150, 160), i)
            for i, s in ((1, 11.0), (2, 14.0), (3, 12.0))
        ],
    }
    by_name = {c.name.split(" (")[0].split(" at ")[0]: c for c in checks(r)}
    e2e = by_name["end-to-end Customers"]
    assert e2e.value == pytest.approx(0.8)  # the median run's 8,000 of 10,000 rows/s
    assert e2e.detail == "median of 3: 8,000 (10,000, 8,000, 5,000) / 10,000 rows/s"
    shards = by_name["mixed workload: 2 shards / 1 process"]
    assert shards.value == pytest.approx(20 / 12) and shards.met is False  # the median pair
    assert shards.detail.startswith("median of 3 pairs (1.82x, 1.43x, 1.67x): 18,182 / 10,000")
    naive = by_name["end-to-end Customers / naive script"]
    assert naive.value == pytest.approx(8.0)  # 8,000 / the median naive run's 1,000 rows/s
    growth = by_name["peak RSS"]
    assert growth.value == pytest.approx(180 / 170)  # median of each size's peaks
    assert growth.detail == "180 / 170 MiB (medians; runs 200, 180, 175 / 180, 150, 170)"
    assert by_name["peak RSS of any publishing process"].value == pytest.approx(200)
    labels = [row[0] for row in cpu_rows(r)]
    assert labels[:4] == [
        "customers-100k, 1 shard #1",
        "customers-100k, 1 shard #2",
        "customers-100k, 1 shard #3",
        "customers-1000k, 1 shard #1",
    ]
    assert labels[6:8] == ["mixed, 1 shard #1", "mixed, 2 shards #1"]  # in turns, as run
    doc = markdown_report(r)
    assert "the targets take the median run" in doc
    assert "customers-1000k, 1 shard #2 run (the median one)" in doc
    assert "(median of 3 runs: 1,000, 2,000, 500)" in doc
