"""Prometheus metrics of the publisher, registered on a registry the caller passes in.

Every name starts with ``dataconnect_publisher_`` and uses Prometheus base units (seconds,
bytes) and suffixes (``_total``, ``_seconds``, ``_timestamp_seconds``). Per-stream metrics
carry the labels ``source`` (the configured DataConnect source) and ``entity``; every other
label is a short machine code (an HTTP status, a reason code), never free text, so a label
can neither leak a secret nor explode cardinality. Codes are checked and a bad one raises
``ValueError``: that is a programming error, caught by tests, not a runtime condition.

Choices worth knowing (docs/METRICS.md has the full table):

* Unknown fields are counted per (source, entity), not per field name: a source that starts
  sending a new column on every row would otherwise mint one series per column name, and the
  names themselves belong in the log line the mapper writes.
* Events, duplicates and dead letters are counted when their transaction commits
  (:meth:`PublisherMetrics.window_committed`), so they match what a read_committed consumer
  sees; rows are counted when fetched, so replays after an abort show up as fetched > published.
* The watermark lag is computed at scrape time from the last committed watermark and the
  injected clock: it keeps growing while an entity is stuck, with no commit needed to update it.
* Transactions are process-level (``transaction()``): one producer may put several windows in
  one transaction, so they carry no source/entity labels; call it for every outcome.
* A 429 answer passed to :meth:`PublisherMetrics.http_request` also counts in
  ``throttled_total``: one call per request, no second call to forget.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

PREFIX = "dataconnect_publisher"

#: Operations of a Debezium-style change event; pre-created so ``rate()`` sees a zero first.
OPS = ("c", "u", "d")
TRANSACTION_OUTCOMES = ("committed", "aborted", "failed")
ENTITY_STATES = ("starting", "running", "stopped")

HTTP_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TXN_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WINDOW_SPAN_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0, 604800.0)
WINDOW_ROWS_BUCKETS = (0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0)
#: From a tenth of a second to a week: a healthy stream sits at seconds to minutes, a
#: backfill or a stuck entity at hours to days, and both must land in a real bucket.
EVENT_LAG_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0, 259200.0, 604800.0,
)  # fmt: skip

_CODE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _code(kind: str, value: str) -> str:
    """Return ``value`` if it is a short lowercase code; label values are never free text."""
    if not _CODE.fullmatch(value):
        raise ValueError(f"metric label {kind} must be a short lowercase code, got {value!r}")
    return value


def _name(kind: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"metric label {kind} must be an identifier, got {value!r}")
    return value


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


@dataclass(slots=True)
class _Stream:
    """What the scrape-time collector knows about one (source, entity)."""

    watermark: datetime | None = None
    last_commit: datetime | None = None
    state: str = "starting"
    reason: str = ""


class _StreamCollector:
    """Emits watermark, lag, last commit and state, computing the lag when scraped."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._streams: dict[tuple[str, str], _Stream] = {}

    def stream(self, source: str, entity: str) -> _Stream:
        """The record of one stream, created on first use; call with the lock held."""
        return self._streams.setdefault((source, entity), _Stream())

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def snapshot(self) -> dict[tuple[str, str], _Stream]:
        with self._lock:
            return {
                key: _Stream(s.watermark, s.last_commit, s.state, s.reason)
                for key, s in self._streams.items()
            }

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        labels = ["source", "entity"]
        return (
            GaugeMetricFamily(
                f"{PREFIX}_watermark_timestamp_seconds",
                "Watermark of the last committed window (its end), Unix time.",
                labels=labels,
            ),
            GaugeMetricFamily(
                f"{PREFIX}_watermark_lag_seconds",
                "Now minus the committed watermark, computed at scrape time.",
                labels=labels,
            ),
            GaugeMetricFamily(
                f"{PREFIX}_last_commit_timestamp_seconds",
                "When a transaction last committed a window of this stream, Unix time.",
                labels=labels,
            ),
            GaugeMetricFamily(
                f"{PREFIX}_entity_state",
                "1 for the current state of the stream; reason is a code, empty when running.",
                labels=[*labels, "state", "reason"],
            ),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        watermark, lag, last_commit, state = self._families()
        now = self._clock()
        for (source, entity), s in sorted(self.snapshot().items()):
            key = [source, entity]
            if s.watermark is not None:
                watermark.add_metric(key, s.watermark.timestamp())
                # Clamped at zero: a watermark ahead of our clock is skew, not negative lag.
                lag.add_metric(key, max(0.0, (now - s.watermark).total_seconds()))
            if s.last_commit is not None:
                last_commit.add_metric(key, s.last_commit.timestamp())
            state.add_metric([*key, s.state, s.reason], 1.0)
        return (watermark, lag, last_commit, state)


@dataclass(slots=True)
class _LagSeries:
    cumulative: list[int]  # rows with a lag at most each bound
    count: int = 0
    sum_ms: int = 0


class _LagHistogram:
    """``event_lag_seconds``, fed one committed window at a time.

    A prometheus_client Histogram takes a lock and loops over its 20 buckets in Python for
    every ``observe``: about 2% of the publisher's CPU at one observation per row. A window's
    lags are a sort and one bisection per bucket instead; the exposition is the same.
    """

    def __init__(self, name: str, doc: str, buckets: Sequence[float]) -> None:
        self._name = name
        self._doc = doc
        self._bounds = tuple(float(b) for b in buckets)
        # The exposition's own spelling of bounds (le="60.0"), as prometheus_client's Histogram.
        go = cast("Callable[[float], str]", floatToGoString)  # untyped in prometheus_client
        self._labels = [go(b) for b in self._bounds]
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _LagSeries] = {}

    def add(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._series.setdefault(key, _LagSeries([0] * len(self._bounds)))

    def observe_window(
        self, key: tuple[str, str], commit_ms: int, change_times_ms: Sequence[int]
    ) -> int:
        """Record ``commit_ms - t`` for each change time ``t`` (clamped at zero); returns how
        many were in the future. Integer milliseconds throughout, so the sum is exact."""
        times = sorted(change_times_ms)
        n = len(times)
        past = bisect_right(times, commit_ms)  # t <= commit_ms: a lag of zero or more
        # lag <= bound  <=>  t >= commit_ms - 1000 * bound  (future rows count as lag 0)
        within = [n - bisect_left(times, commit_ms - 1000.0 * b) for b in self._bounds]
        lag_sum_ms = past * commit_ms - sum(times[:past])
        with self._lock:
            series = self._series.setdefault(key, _LagSeries([0] * len(self._bounds)))
            series.cumulative = [a + b for a, b in zip(series.cumulative, within, strict=True)]
            series.count += n
            series.sum_ms += lag_sum_ms
        return n - past

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self._name, self._doc, labels=["source", "entity"])]

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self._name, self._doc, labels=["source", "entity"])
        with self._lock:
            series = sorted((k, _LagSeries(list(v.cumulative), v.count, v.sum_ms))
                            for k, v in self._series.items())  # fmt: skip
        for key, s in series:
            buckets = [*zip(self._labels, s.cumulative, strict=True), ("+Inf", s.count)]
            family.add_metric(list(key), buckets, s.sum_ms / 1000.0)
        return [family]


class PublisherMetrics:
    """All publisher metrics on one registry; the service calls the small methods below.

    ``clock`` returns the current timezone-aware time; it drives the scrape-time lag and is
    the default commit time.
    """

    def __init__(self, registry: CollectorRegistry, clock: Clock = _utc_now) -> None:
        self._clock = clock
        stream = ["source", "entity"]

        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
        ) -> Histogram:
            return Histogram(f"{PREFIX}_{name}", doc, labels, registry=registry, buckets=buckets)

        self._rows_fetched = counter(
            "rows_fetched_total", "Rows received from DataConnect (replays included).", stream
        )
        self._events = counter(
            "events_published_total",
            "Change events committed to Kafka, by Debezium op (c, u, d).",
            [*stream, "op"],
        )
        self._duplicates = counter(
            "duplicates_suppressed_total",
            "Rows dropped because the window overlap had already published them.",
            stream,
        )
        self._dead_letters = counter(
            "dead_letters_total",
            "Rows committed to the dead-letter topic, by reason.",
            [*stream, "reason"],
        )
        self._unknown_fields = counter(
            "unknown_fields_total",
            "Values of fields the entity schema does not declare (kept in _extra).",
            stream,
        )
        self._http_requests = counter(
            "http_requests_total",
            "DataConnect HTTP requests by status code or error kind (timeout, connect_error).",
            [*stream, "status"],
        )
        self._http_seconds = histogram(
            "http_request_duration_seconds",
            "Duration of DataConnect HTTP requests, failures included.",
            stream,
            HTTP_SECONDS_BUCKETS,
        )
        self._throttled = counter(
            "throttled_total", "DataConnect 429 answers (too many requests in flight).", stream
        )
        self._retries = counter(
            "retries_total",
            "Requests retried after a transient failure, by reason.",
            [*stream, "reason"],
        )
        self._backoff = counter(
            "retry_backoff_seconds_total",
            "Seconds slept before retries, by reason.",
            [*stream, "reason"],
        )
        self._splits = counter(
            "window_splits_total", "Windows split in two after a 413 (too many rows).", stream
        )
        self._token_refreshes = counter(
            "token_refreshes_total",
            "Token endpoint calls by grant kind (password, refresh_token) and outcome.",
            ["source", "kind", "outcome"],
        )
        self._transactions = counter(
            "transactions_total",
            "Kafka transactions by outcome (committed, aborted, failed).",
            ["outcome"],
        )
        self._txn_seconds = histogram(
            "transaction_duration_seconds",
            "From begin_transaction to commit or abort, by outcome.",
            ["outcome"],
            TXN_SECONDS_BUCKETS,
        )
        self._window_span = histogram(
            "window_span_seconds",
            "Span (end minus start) of committed windows.",
            stream,
            WINDOW_SPAN_BUCKETS,
        )
        self._window_rows = histogram(
            "window_rows", "Rows in each committed window.", stream, WINDOW_ROWS_BUCKETS
        )
        self._event_lag = _LagHistogram(
            f"{PREFIX}_event_lag_seconds",
            "From a row's change time at the source to the commit of its event.",
            EVENT_LAG_BUCKETS,
        )
        registry.register(self._event_lag)
        self._future_rows = counter(
            "future_change_times_total",
            "Rows whose change time was after their commit: clock skew or a wrong source zone.",
            stream,
        )
        self._build = Info(f"{PREFIX}_build", "Versions this process runs.", registry=registry)
        for outcome in TRANSACTION_OUTCOMES:
            self._transactions.labels(outcome)
            self._txn_seconds.labels(outcome)
        self._streams = _StreamCollector(clock)
        registry.register(self._streams)

    # -- start-up ------------------------------------------------------------------------

    def add_entity(self, source: str, entity: str, watermark: datetime | None = None) -> None:
        """Declare a stream at start-up, with the watermark loaded from its checkpoint.

        Creates its series at zero (so the first increase is visible to ``rate()``) and
        starts the lag clock from the checkpoint, before the first commit of this process.
        """
        key = (_name("source", source), _name("entity", entity))
        for counter in (
            self._rows_fetched,
            self._duplicates,
            self._unknown_fields,
            self._throttled,
            self._splits,
            self._future_rows,
        ):
            counter.labels(*key)
        for op in OPS:
            self._events.labels(*key, op)
        for hist in (self._http_seconds, self._window_span, self._window_rows):
            hist.labels(*key)
        self._event_lag.add(key)
        with self._streams.lock:
            s = self._streams.stream(*key)
            if watermark is not None:
                s.watermark = _aware("watermark", watermark)

    def build_info(self, version: str, python: str, librdkafka: str) -> None:
        """Publish ``dataconnect_publisher_build_info{version, python, librdkafka} 1``."""
        self._build.info({"version": version, "python": python, "librdkafka": librdkafka})

    # -- per window ----------------------------------------------------------------------

    def rows_fetched(self, source: str, entity: str, n: int) -> None:
        """Count rows received from DataConnect, before dedup and mapping."""
        self._rows_fetched.labels(_name("source", source), _name("entity", entity)).inc(n)

    def unknown_fields(self, source: str, entity: str, n: int) -> None:
        """Count ``n`` values of undeclared fields (log the field names, not here)."""
        self._unknown_fields.labels(_name("source", source), _name("entity", entity)).inc(n)

    def window_committed(
        self,
        source: str,
        entity: str,
        *,
        rows: int,
        by_op: Mapping[str, int],
        duplicates: int,
        dead_letters_by_reason: Mapping[str, int],
        watermark: datetime,
        window_seconds: float,
        change_times_ms: Sequence[int],
        commit_time: datetime | None = None,
    ) -> None:
        """Record a window whose transaction committed: events, watermark, lags.

        ``rows`` is the number of rows in the window, ``by_op`` the events published per
        Debezium op, ``watermark`` the window's end (now the committed watermark),
        ``change_times_ms`` the change time of each published row (Unix milliseconds) and
        ``commit_time`` when the commit returned (defaults to the clock).
        """
        key = (_name("source", source), _name("entity", entity))
        committed = self._clock() if commit_time is None else _aware("commit_time", commit_time)
        for op, n in by_op.items():
            self._events.labels(*key, _code("op", op)).inc(n)
        if duplicates:
            self._duplicates.labels(*key).inc(duplicates)
        for reason, n in dead_letters_by_reason.items():
            self._dead_letters.labels(*key, _code("reason", reason)).inc(n)
        self._window_span.labels(*key).observe(window_seconds)
        self._window_rows.labels(*key).observe(rows)
        commit_ms = round(committed.timestamp() * 1000.0)
        future = self._event_lag.observe_window(key, commit_ms, change_times_ms)
        if future:
            self._future_rows.labels(*key).inc(future)
        with self._streams.lock:
            s = self._streams.stream(*key)
            s.watermark = _aware("watermark", watermark)
            s.last_commit = committed

    def window_split(self, source: str, entity: str) -> None:
        """Count one window split in two after a 413."""
        self._splits.labels(_name("source", source), _name("entity", entity)).inc()

    # -- HTTP ----------------------------------------------------------------------------

    def http_request(self, source: str, entity: str, status: int | str, seconds: float) -> None:
        """Record one DataConnect request: its status code or error kind and its duration.

        ``status`` is an HTTP status code or a short error code such as ``timeout`` or
        ``connect_error`` when no response came back. A 429 also counts as throttled.
        """
        key = (_name("source", source), _name("entity", entity))
        code = _code("status", str(status))
        self._http_requests.labels(*key, code).inc()
        self._http_seconds.labels(*key).observe(seconds)
        if code == "429":
            self._throttled.labels(*key).inc()

    def retry(self, source: str, entity: str, reason: str, delay: float) -> None:
        """Count a retry and the back-off seconds slept before it."""
        key = (_name("source", source), _name("entity", entity), _code("reason", reason))
        self._retries.labels(*key).inc()
        self._backoff.labels(*key).inc(delay)

    def token_refresh(self, source: str, kind: str, outcome: str = "ok") -> None:
        """Count a token endpoint call by grant kind (``password``, ``refresh_token``)."""
        self._token_refreshes.labels(
            _name("source", source), _code("kind", kind), _code("outcome", outcome)
        ).inc()

    # -- Kafka and state -----------------------------------------------------------------

    def transaction(self, outcome: str, seconds: float) -> None:
        """Record a finished transaction: ``committed``, ``aborted`` or ``failed``."""
        if outcome not in TRANSACTION_OUTCOMES:
            raise ValueError(f"transaction outcome must be one of {TRANSACTION_OUTCOMES}")
        self._transactions.labels(outcome).inc()
        self._txn_seconds.labels(outcome).observe(seconds)

    def entity_state(self, source: str, entity: str, state: str, reason: str = "") -> None:
        """Set a stream's state (starting, running, stopped) with a reason code."""
        if state not in ENTITY_STATES:
            raise ValueError(f"entity state must be one of {ENTITY_STATES}")
        key = (_name("source", source), _name("entity", entity))
        code = _code("reason", reason) if reason else ""
        with self._streams.lock:
            s = self._streams.stream(*key)
            s.state, s.reason = state, code

    def last_commit_times(self) -> dict[tuple[str, str], datetime | None]:
        """Last commit time of every known stream (None: none yet in this process)."""
        return {k: s.last_commit for k, s in self._streams.snapshot().items()}

    def states(self) -> Iterator[tuple[str, str, str, str]]:
        """(source, entity, state, reason) of every known stream."""
        for (source, entity), s in sorted(self._streams.snapshot().items()):
            yield source, entity, s.state, s.reason
