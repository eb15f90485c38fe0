"""PublisherMetrics, read back the way Prometheus reads it: scraped over HTTP and parsed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from publisher.health import HealthServer
from publisher.metrics import PublisherMetrics

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry, clock: FakeClock) -> PublisherMetrics:
    return PublisherMetrics(registry, clock=clock)


@pytest.fixture
def scrape(registry: CollectorRegistry) -> Iterator[object]:
    with (
        HealthServer(registry, port=0) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):

        def get() -> Samples:
            response = client.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            return parse(response.text)

        yield get


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def test_committed_window_is_visible_in_a_real_scrape(metrics, clock, scrape) -> None:
    metrics.add_entity("prod", "Customers", watermark=T0 - timedelta(minutes=5))
    metrics.rows_fetched("prod", "Customers", 7)
    clock.advance(seconds=30)
    metrics.window_committed(
        "prod",
        "Customers",
        rows=7,
        by_op={"c": 3, "u": 2, "d": 1},
        duplicates=1,
        dead_letters_by_reason={"bad_guid": 1},
        watermark=T0,
        window_seconds=300,
        change_times_ms=[ms(T0 - timedelta(seconds=2))] * 6,
    )
    s = scrape()
    stream = {"source": "prod", "entity": "Customers"}
    assert value(s, "dataconnect_publisher_rows_fetched_total", **stream) == 7
    published = {
        op: value(s, "dataconnect_publisher_events_published_total", **stream, op=op)
        for op in ("c", "u", "d")
    }
    assert published == {"c": 3, "u": 2, "d": 1}
    assert value(s, "dataconnect_publisher_duplicates_suppressed_total", **stream) == 1
    assert value(s, "dataconnect_publisher_dead_letters_total", **stream, reason="bad_guid") == 1
    assert value(s, "dataconnect_publisher_watermark_timestamp_seconds", **stream) == (
        T0.timestamp()
    )
    assert value(s, "dataconnect_publisher_last_commit_timestamp_seconds", **stream) == (
        clock.now.timestamp()
    )
    assert value(s, "dataconnect_publisher_window_span_seconds_sum", **stream) == 300
    assert value(s, "dataconnect_publisher_window_rows_sum", **stream) == 7
    # six rows changed 2 s before the watermark, committed 30 s after it: 32 s each
    assert value(s, "dataconnect_publisher_event_lag_seconds_count", **stream) == 6
    assert value(s, "dataconnect_publisher_event_lag_seconds_sum", **stream) == 6 * 32
    assert value(s, "dataconnect_publisher_event_lag_seconds_bucket", **stream, le="30.0") == 0
    assert value(s, "dataconnect_publisher_event_lag_seconds_bucket", **stream, le="60.0") == 6


def test_lag_grows_with_the_clock_while_nothing_commits(metrics, clock, scrape) -> None:
    metrics.add_entity("prod", "Customers")
    metrics.window_committed(
        "prod",
        "Customers",
        rows=0,
        by_op={},
        duplicates=0,
        dead_letters_by_reason={},
        watermark=T0 - timedelta(seconds=60),
        window_seconds=60,
        change_times_ms=[],
    )
    lag = "dataconnect_publisher_watermark_lag_seconds"
    stream = {"source": "prod", "entity": "Customers"}
    assert value(scrape(), lag, **stream) == 60
    clock.advance(minutes=10)
    assert value(scrape(), lag, **stream) == 660
    clock.advance(hours=2)
    assert value(scrape(), lag, **stream) == 660 + 7200
    # an (idle) empty window commits and the lag falls back
    metrics.window_committed(
        "prod",
        "Customers",
        rows=0,
        by_op={},
        duplicates=0,
        dead_letters_by_reason={},
        watermark=clock.now - timedelta(seconds=5),
        window_seconds=7800,
        change_times_ms=[],
    )
    assert value(scrape(), lag, **stream) == 5


def test_checkpoint_watermark_starts_the_lag_before_the_first_commit(
    metrics, clock, scrape
) -> None:
    metrics.add_entity("prod", "FollowUps", watermark=T0 - timedelta(hours=1))
    clock.advance(minutes=1)
    s = scrape()
    stream = {"source": "prod", "entity": "FollowUps"}
    assert value(s, "dataconnect_publisher_watermark_lag_seconds", **stream) == 3660
    assert (
        "dataconnect_publisher_last_commit_timestamp_seconds",
        frozenset(stream.items()),
    ) not in s
    # series exist at zero from the start, so rate() sees the first event
    assert value(s, "dataconnect_publisher_events_published_total", **stream, op="d") == 0
    assert value(s, "dataconnect_publisher_window_splits_total", **stream) == 0
    assert metrics.last_commit_times() == {("prod", "FollowUps"): None}


def test_event_lag_spans_seconds_to_days_and_future_rows_are_counted(
    metrics, clock, scrape
) -> None:
    changes = [clock.now - timedelta(seconds=0.05), clock.now - timedelta(days=2)]
    changes.append(clock.now + timedelta(hours=1))  # e.g. a wrong source time zone
    metrics.window_committed(
        "prod",
        "Activities",
        rows=3,
        by_op={"u": 3},
        duplicates=0,
        dead_letters_by_reason={},
        watermark=clock.now,
        window_seconds=60,
        change_times_ms=[ms(t) for t in changes],
        commit_time=clock.now,
    )
    s = scrape()
    stream = {"source": "prod", "entity": "Activities"}
    bucket = "dataconnect_publisher_event_lag_seconds_bucket"
    assert value(s, bucket, **stream, le="0.1") == 2  # 0.05 s and the clamped future row
    assert value(s, bucket, **stream, le="86400.0") == 2
    assert value(s, bucket, **stream, le="259200.0") == 3  # two days
    assert value(s, "dataconnect_publisher_future_change_times_total", **stream) == 1


def test_http_statuses_retries_splits_and_tokens(metrics, scrape) -> None:
    for status, seconds in ((200, 0.2), (429, 0.01), (429, 0.01), ("timeout", 30.0), (413, 1)):
        metrics.http_request("rc", "Customers", status, seconds)
    metrics.retry("rc", "Customers", "timeout", 1.5)
    metrics.retry("rc", "Customers", "timeout", 3.0)
    metrics.window_split("rc", "Customers")
    metrics.token_refresh("rc", "refresh_token")
    metrics.token_refresh("rc", "password", outcome="failed")
    s = scrape()
    stream = {"source": "rc", "entity": "Customers"}
    by_status = {
        dict(labels)["status"]: v
        for (name, labels), v in s.items()
        if name == "dataconnect_publisher_http_requests_total"
    }
    assert by_status == {"200": 1, "429": 2, "timeout": 1, "413": 1}
    assert value(s, "dataconnect_publisher_throttled_total", **stream) == 2
    assert value(s, "dataconnect_publisher_http_request_duration_seconds_count", **stream) == 5
    assert value(s, "dataconnect_publisher_retries_total", **stream, reason="timeout") == 2
    assert value(
        s, "dataconnect_publisher_retry_backoff_seconds_total", **stream, reason="timeout"
    ) == pytest.approx(4.5)
    assert value(s, "dataconnect_publisher_window_splits_total", **stream) == 1
    refreshes = "dataconnect_publisher_token_refreshes_total"
    assert value(s, refreshes, source="rc", kind="refresh_token", outcome="ok") == 1
    assert value(s, refreshes, source="rc", kind="password", outcome="failed") == 1


def test_transactions_by_outcome(metrics, scrape) -> None:
    metrics.transaction("committed", 0.04)
    metrics.transaction("committed", 0.3)
    metrics.transaction("aborted", 2.0)
    s = scrape()
    total = "dataconnect_publisher_transactions_total"
    assert [value(s, total, outcome=o) for o in ("committed", "aborted", "failed")] == [2, 1, 0]
    hist = "dataconnect_publisher_transaction_duration_seconds_bucket"
    assert value(s, hist, outcome="committed", le="0.05") == 1
    assert value(s, hist, outcome="committed", le="0.5") == 2
    with pytest.raises(ValueError, match="outcome"):
        metrics.transaction("maybe", 1.0)


def test_entity_state_exposes_only_the_current_state_with_its_reason(metrics, scrape) -> None:
    metrics.add_entity("prod", "Activities")
    metrics.entity_state("prod", "Activities", "running")
    metrics.entity_state("prod", "Activities", "stopped", "access_denied")
    states = [
        dict(labels)
        for (name, labels), v in scrape().items()
        if name == "dataconnect_publisher_entity_state" and v == 1
    ]
    assert states == [
        {"source": "prod", "entity": "Activities", "state": "stopped", "reason": "access_denied"}
    ]
    assert list(metrics.states()) == [("prod", "Activities", "stopped", "access_denied")]


def test_build_info(metrics, scrape) -> None:
    metrics.build_info(version="1.2.3", python="3.11.9", librdkafka="2.6.1")
    labels = {"version": "1.2.3", "python": "3.11.9", "librdkafka": "2.6.1"}
    assert value(scrape(), "dataconnect_publisher_build_info", **labels) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.retry("prod", "Customers", "Authorization: Bearer abc.def", 1.0),
        lambda m: m.entity_state("prod", "Customers", "stopped", "403 Forbidden for /x"),
        lambda m: m.http_request("prod", "Customers", "connection reset by peer", 1.0),
        lambda m: m.window_committed(
            "prod",
            "Customers",
            rows=1,
            by_op={"c": 1},
            duplicates=0,
            dead_letters_by_reason={"value 'hunter2' is not a GUID": 1},
            watermark=T0,
            window_seconds=1,
            change_times_ms=[],
        ),
        lambda m: m.rows_fetched("prod source", "Customers", 1),
        lambda m: m.entity_state("prod", "Customers", "sleeping"),
        lambda m: m.add_entity("prod", "Customers", watermark=datetime(2024, 1, 1)),  # noqa: DTZ001
    ],
)
def test_free_text_labels_and_naive_times_are_refused(metrics, call) -> None:
    with pytest.raises(ValueError):
        call(metrics)


def _exposed_names(metrics: PublisherMetrics, registry: CollectorRegistry) -> set[str]:
    """Every sample name, after one call of each method so that every family has samples."""
    metrics.add_entity("s", "E", watermark=T0)
    metrics.rows_fetched("s", "E", 1)
    metrics.unknown_fields("s", "E", 1)
    metrics.window_committed(
        "s",
        "E",
        rows=1,
        by_op={"c": 1},
        duplicates=1,
        dead_letters_by_reason={"r": 1},
        watermark=T0,
        window_seconds=1,
        change_times_ms=[ms(T0)],
        commit_time=T0,
    )
    metrics.http_request("s", "E", 429, 1)
    metrics.retry("s", "E", "r", 1)
    metrics.window_split("s", "E")
    metrics.token_refresh("s", "password")
    metrics.transaction("committed", 1)
    metrics.entity_state("s", "E", "running")
    metrics.build_info("v", "p", "l")
    return {s.name for family in registry.collect() for s in family.samples}


def test_dashboard_and_alerts_query_only_metrics_that_exist(metrics, registry) -> None:
    exposed = _exposed_names(metrics, registry)
    for path in ("deploy/grafana/dataconnect-publisher.json", "deploy/prometheus/alerts.yml"):
        used = set(re.findall(r"dataconnect_publisher_[a-z_]+", (ROOT / path).read_text()))
        assert used, path
        assert used <= exposed, f"{path} queries unknown metrics: {sorted(used - exposed)}"


def test_every_metric_is_documented(metrics, registry) -> None:
    _exposed_names(metrics, registry)
    doc = (ROOT / "docs/METRICS.md").read_text()
    families = {f.name for f in registry.collect()}
    # counters are documented with their _total sample name, info metrics with _info
    documented = set(re.findall(r"`(dataconnect_publisher_[a-z_]+)`", doc))
    missing = {f for f in families if not {f, f + "_total", f + "_info"} & documented}
    assert not missing, f"docs/METRICS.md lacks {sorted(missing)}"


def test_dashboard_covers_the_promised_panels() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dataconnect-publisher.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for needle in (
        "watermark_lag_seconds",
        "events_published_total",
        "dead_letters_total",
        "http_requests_total",
        "retries_total",
        "throttled_total",
        "window_splits_total",
        "transactions_total",
        "transaction_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, source, entity) "
        "(rate(dataconnect_publisher_event_lag_seconds_bucket",
    ):
        assert needle in exprs, needle
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool not installed")


@needs_promtool
def test_alert_rules_pass_promtool() -> None:
    for args in (
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["test", "rules", "deploy/prometheus/alerts_test.yml"],
        ["check", "config", "deploy/prometheus/prometheus.yml"],
    ):
        result = subprocess.run(
            [str(promtool), *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dataconnect-publisher.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    # promtool parses rule expressions: wrap each query in a recording rule
    rules = [
        {
            "record": f"dashboard:query{i}",
            "expr": e.replace("$__rate_interval", "5m")
            .replace("$source", ".*")
            .replace("$entity", ".*"),
        }
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout


@settings(max_examples=200, deadline=None)
@given(
    windows=st.lists(
        st.lists(st.integers(min_value=-(10**9), max_value=10**6), max_size=40), max_size=4
    )
)
def test_event_lag_histogram_equals_one_observation_per_row(windows: list[list[int]]) -> None:
    # The lag histogram is fed a window at a time; it must expose what a prometheus_client
    # Histogram fed one observe() per row exposes (offsets are ms before/after the commit).
    from prometheus_client import Histogram

    from publisher.metrics import EVENT_LAG_BUCKETS

    commit_ms = ms(T0)
    ours, reference = CollectorRegistry(), CollectorRegistry()
    metrics = PublisherMetrics(ours, clock=lambda: T0)
    naive = Histogram("lag", "", registry=reference, buckets=EVENT_LAG_BUCKETS)
    metrics.add_entity("s", "e")  # the series exist at zero before the first window
    for offsets in windows:
        metrics.window_committed(
            "s", "e", rows=len(offsets), by_op={}, duplicates=0, dead_letters_by_reason={},
            watermark=T0, window_seconds=1, commit_time=T0,
            change_times_ms=[commit_ms - o for o in offsets],
        )  # fmt: skip
        for o in offsets:
            naive.observe(max(0.0, o / 1000.0))

    def samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
        return {
            f"{s.name.rsplit('_', 1)[-1]}{s.labels.get('le', '')}": s.value
            for family in registry.collect()
            if family.name == name
            for s in family.samples
            if not s.name.endswith("_created")
        }

    got = samples(ours, "dataconnect_publisher_event_lag_seconds")
    want = samples(reference, "lag")
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k
