"""The service loop: fetch windows, publish them with their checkpoints in one transaction.

One process is one shard: one transactional producer (one ``transactional.id``) and the
(source, entity) streams assigned to it. Per stream, at most one window is being fetched and at
most one is waiting to be published, so memory is bounded by two windows per stream whatever
the backlog. Fetches run on worker threads (HTTP waits release the GIL); mapping, encoding and
producing run on the loop's thread.

A window's events and the stream's new checkpoint go into one Kafka transaction. Only after
``commit`` returns does the in-memory committed state move to the window's end (its watermark).
If the transaction aborts, every stream in it goes back to its committed checkpoint and any
window fetched ahead of it is dropped and fetched again: read_committed consumers never see the
aborted records, and the replay publishes them once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

import orjson

from publisher import CONNECTOR_NAME, __version__
from publisher.checkpoint import Checkpoint, row_digest, stream_id
from publisher.codec import EntityCodec, dead_letter_value
from publisher.config import Config, SourceConfig, utc_now
from publisher.dataconnect.client import DeltasClient
from publisher.entities import EntitySpec
from publisher.errors import (
    EntityStopped,
    FatalError,
    RetryableError,
    RowRejected,
    WindowTooLarge,
)
from publisher.kafka import TransactionAborted, TransactionalSink
from publisher.mapping import RowMapper
from publisher.metrics import PublisherMetrics
from publisher.timefmt import to_millis
from publisher.windows import Window, WindowSizer, plan_window, split_window

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class WindowStillTooLarge(EntityStopped):
    """413 even for the smallest window allowed: an operator must lower min_window."""

    code = "window_too_large"


@dataclass(slots=True)
class Fetched:
    """A window DataConnect answered, waiting to be published."""

    window: Window
    rows: list[dict[str, Any]]
    generation: int
    splits: int
    seconds: float


@dataclass(slots=True)
class FetchFailed:
    """A window that could not be fetched; ``error`` says whether to stop or retry later."""

    window: Window
    error: Exception
    generation: int
    splits: int


@dataclass(eq=False)
class Stream:
    """One (source, entity) pair and everything the loop keeps about it."""

    source: SourceConfig
    entity: EntitySpec
    topic: str
    client: DeltasClient
    mapper: RowMapper
    codec: EntityCodec
    sizer: WindowSizer
    committed: Checkpoint
    headers_base: tuple[tuple[str, bytes], ...]
    key_prefix: str
    key_suffix: str
    # -- loop state --
    next_from: datetime = field(init=False)  # watermark the next window is planned from
    fetching: Future[Fetched | FetchFailed] | None = None
    ready: Fetched | None = None
    generation: int = 0
    not_before: float = 0.0  # monotonic time before which no new fetch starts
    last_fetch_started: float = float("-inf")
    stopped: str | None = None
    status_dirty: bool = False  # a state/error change to commit in the next transaction

    def __post_init__(self) -> None:
        self.next_from = self.committed.watermark

    @property
    def id(self) -> str:
        return self.committed.stream

    def reset_to_committed(self) -> None:
        """Forget everything planned after the committed checkpoint (after an abort)."""
        self.generation += 1
        self.fetching = None
        self.ready = None
        self.next_from = self.committed.watermark


@dataclass(slots=True)
class WindowResult:
    rows: int = 0
    by_op: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    unknown_fields: int = 0
    change_times_ms: list[int] = field(default_factory=list)


class Publisher:
    """Runs the streams of one shard until ``stop()`` or a fatal error."""

    def __init__(
        self,
        config: Config,
        streams: Sequence[Stream],
        sink: TransactionalSink,
        metrics: PublisherMetrics,
        *,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        on_commit: Callable[[Sequence[Stream]], None] | None = None,
    ) -> None:
        self.config = config
        self.streams = list(streams)
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.monotonic = monotonic
        self.on_commit = on_commit
        w = config.windows
        self.overlap = timedelta(seconds=w.overlap_seconds)
        self.settle = timedelta(seconds=w.settle_delay_seconds)
        self.min_window = timedelta(seconds=w.min_window_seconds)
        self.poll_interval = w.poll_interval_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(self.streams)), thread_name_prefix="fetch"
        )
        self.transactions_committed = 0

    # -- control -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish the transaction in progress and return (signal-safe)."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Publish until stopped. Raises FatalError subclasses when the process must exit."""
        try:
            while not self._stop.is_set():
                if all(s.stopped for s in self.streams):
                    raise FatalError(
                        "every stream is stopped: "
                        + "; ".join(f"{s.id}: {s.stopped}" for s in self.streams)
                    )
                self._start_fetches()
                batch = self._take_ready()
                in_batch = {id(s) for s, _ in batch}
                dirty = [s for s in self.streams if s.status_dirty and id(s) not in in_batch]
                if batch or dirty:
                    self._start_fetches()  # the next windows download while these commit
                    self._publish(batch, dirty)
                else:
                    self._wait()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- fetching --------------------------------------------------------------------------
    def _start_fetches(self) -> None:
        now = self.clock()
        mono = self.monotonic()
        for s in self.streams:
            if s.stopped or s.fetching is not None or s.ready is not None or mono < s.not_before:
                continue
            window = plan_window(
                s.next_from,
                now,
                origin=s.committed.origin,
                overlap=self.overlap,
                settle_delay=self.settle,
                size=s.sizer.size,
            )
            if window is None:
                continue
            # Caught up: poll at the configured interval rather than in a tight loop.
            caught_up = window.new_span < s.sizer.size
            if caught_up and mono - s.last_fetch_started < self.poll_interval:
                continue
            s.last_fetch_started = mono
            s.next_from = window.stop  # the window's end is fixed now
            fut = self._pool.submit(self._fetch, s, window, s.generation)
            fut.add_done_callback(lambda _f: self._wake.set())
            s.fetching = fut

    def _fetch(self, s: Stream, window: Window, generation: int) -> Fetched | FetchFailed:
        """Runs on a worker thread. Splits the window on 413 until DataConnect accepts it."""
        splits = 0
        began = time.monotonic()
        while True:
            try:
                rows = s.client.fetch(s.entity, window.start, window.stop)
                return Fetched(window, rows, generation, splits, time.monotonic() - began)
            except WindowTooLarge as exc:
                smaller = split_window(window, self.min_window)
                if smaller is None:
                    error = WindowStillTooLarge(
                        f"{s.id}: DataConnect refuses even a {self.min_window} window as too "
                        f"large (413): {exc}"
                    )
                    return FetchFailed(window, error, generation, splits)
                window = smaller
                splits += 1
            except (RetryableError, EntityStopped) as exc:
                return FetchFailed(window, exc, generation, splits)

    def _take_ready(self) -> list[tuple[Stream, Fetched]]:
        """Move finished fetches to ``ready`` and return the streams to publish now."""
        for s in self.streams:
            fut = s.fetching
            if fut is None or not fut.done():
                continue
            s.fetching = None
            result = fut.result()
            if result.generation != s.generation:
                continue  # fetched before an abort: stale
            for _ in range(result.splits):
                self.metrics.window_split(s.source.name, s.entity.name)
            if result.splits:
                s.sizer.accepted_after_split(result.window.new_span)
            if isinstance(result, FetchFailed):
                self._fetch_failed(s, result)
                continue
            s.next_from = result.window.stop
            s.ready = result
        limit = self.config.publisher.max_windows_per_transaction
        batch: list[tuple[Stream, Fetched]] = []
        for s in self.streams:
            if s.ready is not None and len(batch) < limit:
                batch.append((s, s.ready))
                s.ready = None  # frees the slot: the next window may be fetched meanwhile
        return batch

    def _fetch_failed(self, s: Stream, failed: FetchFailed) -> None:
        s.next_from = s.committed.watermark
        s.committed.last_error = str(failed.error)
        s.status_dirty = True
        if isinstance(failed.error, EntityStopped):
            s.stopped = str(failed.error)
            s.committed.state = "stopped"
            self.metrics.entity_state(s.source.name, s.entity.name, "stopped", failed.error.code)
            log.error("stream %s stopped: %s", s.id, failed.error)
            return
        # Retries are exhausted for now: keep the watermark, try again after a pause. The lag
        # metric keeps growing meanwhile, which is what alerts watch.
        if "timeout" in str(failed.error).lower():
            s.sizer.too_large(failed.window.new_span)
        s.not_before = self.monotonic() + self.poll_interval
        log.warning("stream %s: %s; trying again in %.0fs", s.id, failed.error, self.poll_interval)

    def _wait(self) -> None:
        self._wake.wait(timeout=min(1.0, self.poll_interval))
        self._wake.clear()

    # -- publishing ------------------------------------------------------------------------
    def _publish(self, batch: list[tuple[Stream, Fetched]], dirty: list[Stream]) -> None:
        began = self.monotonic()
        pending: list[tuple[Stream, Checkpoint, Fetched, WindowResult]] = []
        try:
            self.sink.begin()
            for s, fetched in batch:
                work = s.committed.copy()
                result = self._publish_window(s, fetched, work)
                fetched.rows = []  # produced: free the rows now, not after the whole batch
                pending.append((s, work, fetched, result))
            for s in dirty:  # state changes (stopped, last error) without a window
                work = s.committed.copy()
                work.updated_at = self.clock()
                self.sink.produce(
                    self.config.publisher.checkpoint_topic, s.id.encode(), work.encode()
                )
            self.sink.commit()
        except TransactionAborted as exc:
            self.metrics.transaction("aborted", self.monotonic() - began)
            log.warning("transaction aborted, replaying from the last checkpoint: %s", exc)
            for s, _ in batch:
                s.reset_to_committed()
            return
        except FatalError:
            self.metrics.transaction("failed", self.monotonic() - began)
            raise
        seconds = self.monotonic() - began
        self.metrics.transaction("committed", seconds)
        self.transactions_committed += 1
        committed_at = self.clock()
        for s in dirty:
            s.status_dirty = False
        for s, work, fetched, result in pending:
            s.committed = work
            s.status_dirty = False
            s.sizer.observed(fetched.window.new_span, result.rows)
            self.metrics.window_committed(
                s.source.name,
                s.entity.name,
                rows=result.rows,
                by_op=result.by_op,
                duplicates=result.duplicates,
                dead_letters_by_reason=result.dead,
                watermark=work.watermark,
                window_seconds=(fetched.window.stop - fetched.window.start).total_seconds(),
                change_times_ms=result.change_times_ms,
                commit_time=committed_at,
            )
            log.debug(
                "committed %s window [%s, %s): %d rows, %d published, %d duplicates, %d dead",
                s.id,
                fetched.window.start.isoformat(),
                fetched.window.stop.isoformat(),
                result.rows,
                sum(result.by_op.values()),
                result.duplicates,
                sum(result.dead.values()),
            )
        if self.on_commit is not None:
            self.on_commit([p[0] for p in pending])

    def _publish_window(self, s: Stream, fetched: Fetched, work: Checkpoint) -> WindowResult:
        """Produce one window's events, dead letters and checkpoint into the open transaction."""
        window = fetched.window
        start_ms, stop_ms = window.start_ms, window.stop_ms
        now_ms = to_millis(self.clock())
        result = WindowResult(rows=len(fetched.rows))
        self.metrics.rows_fetched(s.source.name, s.entity.name, len(fetched.rows))
        # Map and encode in one pass, keeping only what producing needs: each record dies
        # young instead of living for the whole window (memory, and garbage-collector work).
        # A row an earlier window already published (the overlap) is not encoded at all.
        seen = work.seen
        map_row, encode = s.mapper.map, s.codec.encode
        prepared: list[tuple[int, int, str, str, str, int, bytes | RowRejected | None]] = []
        rejected: list[tuple[Any, RowRejected]] = []
        for row in fetched.rows:
            try:
                ev = map_row(row, start_ms, stop_ms, now_ms)
            except RowRejected as exc:
                rejected.append((row, exc))
                continue
            digest = row_digest(ev.key, ev.thumbprint)
            value: bytes | RowRejected | None = None
            if digest not in seen:
                try:
                    value = encode(ev.record)
                except RowRejected as exc:
                    value = exc
            unknown = len(ev.unknown_fields)
            prepared.append((ev.change_ms, digest, ev.key, ev.thumbprint, ev.op, unknown, value))
        # Versions of one key are published in change-time order; the source's order breaks
        # ties (sort() is stable), whatever order the response had.
        prepared.sort(key=_change_ms)
        produce = self.sink.produce
        topic = s.topic
        tombstones = self.config.publisher.tombstones
        for change_ms, digest, key_text, thumbprint, op, unknown, value in prepared:
            if digest in seen or value is None:  # None: seen before this window
                result.duplicates += 1
                continue
            if isinstance(value, RowRejected):  # the encoder refused the record
                rejected.append((_raw_row(key_text, thumbprint, fetched, s), value))
                seen.add(digest, stop_ms)
                continue
            key = f"{s.key_prefix}{key_text}{s.key_suffix}".encode()
            headers: list[tuple[str, str | bytes | None]] = [
                *s.headers_base,
                ("dc-op", op.encode()),
                ("idempotency-key", f"{s.id}/{key_text}/{thumbprint}".encode()),
            ]
            produce(topic, key, value, headers)
            if tombstones and op == "d":
                produce(topic, key, None, headers)
            seen.add(digest, stop_ms)
            result.by_op[op] += 1
            result.change_times_ms.append(change_ms)
            result.unknown_fields += unknown
        for row, why in rejected:
            raw = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
            # Bad rows re-read in the overlap are dead-lettered once, like good ones.
            digest = row_digest("\x00dead-letter", raw.decode("utf-8", "replace"))
            if digest in seen:
                result.duplicates += 1
                continue
            seen.add(digest, stop_ms)
            produce(
                self.config.publisher.dead_letter_topic,
                s.id.encode(),
                dead_letter_value(
                    s.source.name,
                    s.entity.name,
                    raw,
                    reason=why.reason,
                    detail=why.detail,
                    window_start_ms=start_ms,
                    window_stop_ms=stop_ms,
                ),
                [*s.headers_base, ("dc-reason", why.reason.encode())],
            )
            result.dead[why.reason] += 1
            log.warning("dead-lettered a %s row of %s: %s", why.reason, s.id, why.detail)
        if result.unknown_fields:
            self.metrics.unknown_fields(s.source.name, s.entity.name, result.unknown_fields)
        # The checkpoint: the watermark moves to the window's fixed end, and the overlap set
        # forgets what no later window can return. Committed with the events, or not at all.
        work.watermark = window.stop
        next_start = max(window.stop - self.overlap, work.origin)
        seen.prune(to_millis(next_start))
        work.rows_published += sum(result.by_op.values())
        work.window_size_seconds = s.sizer.size.total_seconds()
        work.last_error = None
        work.state = "running"
        work.updated_at = self.clock()
        work.publisher_version = __version__
        produce(self.config.publisher.checkpoint_topic, s.id.encode(), work.encode())
        return result


#: Sort key of a prepared event: its change time.
_change_ms = itemgetter(0)


def _raw_row(key: str, thumbprint: str, fetched: Fetched, s: Stream) -> Any:
    """The source row of an event whose encoding failed (found by key and thumbprint)."""
    key_field = s.entity.key_field
    for row in fetched.rows:
        if row.get("RowThumbprint") == thumbprint and str(row.get(key_field)).lower() == (
            key.lower()
        ):
            return row
    return {"key": key, "RowThumbprint": thumbprint}


def key_affixes(template: str, source: str, entity: str) -> tuple[str, str]:
    """Split the key template around ``{id}`` once, so each key is two concatenations."""
    before, _, after = template.partition("{id}")
    return before.format(source=source, entity=entity), after.format(source=source, entity=entity)


def base_headers(source: str, entity: str) -> tuple[tuple[str, bytes], ...]:
    return (
        ("dc-connector", CONNECTOR_NAME.encode()),
        ("dc-source", source.encode()),
        ("dc-entity", entity.encode()),
    )


def new_checkpoint(source: str, entity: str, start_from: datetime) -> Checkpoint:
    """The checkpoint of a stream that has never committed."""
    return Checkpoint(stream=stream_id(source, entity), watermark=start_from, origin=start_from)


def describe(streams: Iterable[Stream]) -> str:
    return ", ".join(f"{s.id}@{s.committed.watermark.isoformat()}" for s in streams)
