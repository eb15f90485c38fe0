"""The service loop: fetch windows, publish them with their checkpoints in one transaction.

One process is one shard: one transactional producer (one ``transactional.id``) and the
(source, entity) streams assigned to it. Per stream, at most ``prefetch_windows`` windows are
being fetched or waiting to be published, in order, and at most max(prefetch_windows, streams)
in the process, so memory is bounded by that many windows whatever the backlog. A window is
fetched, mapped and Avro-encoded on a worker thread (:mod:`publisher.prepare`); the loop's
thread only produces and commits. So while the loop waits for a commit (the GIL released),
the next windows download and encode. Downloads overlap, but one window at a time is parsed
and encoded (the decode gate): parsed rows, about three times their JSON size, are the bulky
form, so they exist for one window at a time in the process.

A window's events and the stream's new checkpoint go into one Kafka transaction. Only after
``commit`` returns does the in-memory committed state move to the window's end (its watermark).
If the transaction aborts, every stream in it goes back to its committed checkpoint and any
window fetched ahead of it is dropped and fetched again: read_committed consumers never see the
aborted records, and the replay publishes them once. A record the broker refused as too large
(an operator lowered a topic's max.message.bytes while the publisher ran) would abort every
replay the same way, so after an abort the topics' limits are read again, and the replay is
kept within them (:mod:`publisher.limits`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import orjson

from publisher import CONNECTOR_NAME, __version__
from publisher.checkpoint import Checkpoint, row_digest, stream_id
from publisher.codec import dead_letter_value
from publisher.config import Config, SourceConfig, utc_now
from publisher.dataconnect.client import Body, DeltasClient, read_rows
from publisher.decodepool import DecodePool
from publisher.entities import EntitySpec
from publisher.errors import (
    EntityStopped,
    FatalError,
    RetryableError,
    RowRejected,
    WindowTooLarge,
)
from publisher.kafka import TransactionAborted, TransactionalSink
from publisher.limits import Limits, changes
from publisher.metrics import PublisherMetrics
from publisher.prepare import Prepared, StreamShape, encode_late, header_bytes, prepare
from publisher.threadnames import name_this_thread
from publisher.timefmt import to_millis
from publisher.windows import Window, WindowSizer, plan_window, split_window

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class WindowDropped(RetryableError):
    """A window planned ahead that was dropped before it was encoded (never published)."""


class WindowStillTooLarge(EntityStopped):
    """413 even for the smallest window allowed: an operator must lower min_window."""

    code = "window_too_large"


#: After an aborted transaction the topics' limits are read again, at most this often: a
#: record the broker refused as too large aborts every replay until they are.
LIMITS_REREAD_SECONDS = 30.0

#: How a topic's room for one record is reckoned (publisher.limits), for messages.
_ROOM_RULE = (
    "the lower of its max.message.bytes and the producer's message.max.bytes, less batch framing"
)


class RecordDoesNotFit(EntityStopped):
    """A dead letter or a checkpoint larger than its topic takes. Neither can be shrunk
    without losing what it carries, so its stream stops until an operator raises the topic's
    max.message.bytes (the broker would refuse it, and every replay would carry it again)."""

    code = "record_too_large"


@dataclass(slots=True)
class Fetched:
    """A window DataConnect answered, mapped and encoded, waiting to be published."""

    window: Window
    prepared: Prepared
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
    #: Mapper, codec, key affixes and base headers: what the fetch threads prepare with.
    shape: StreamShape
    sizer: WindowSizer
    committed: Checkpoint
    # -- loop state --
    next_from: datetime = field(init=False)  # watermark the next window is planned from
    #: Windows being fetched or waiting to be published, oldest first (contiguous).
    pending: deque[Future[Fetched | FetchFailed]] = field(default_factory=deque)
    generation: int = 0
    #: (generation, digests) of the window prepared last: rows the next window need not
    #: encode (an overlap re-read). Written by fetch threads, replaced whole, never mutated.
    recent: tuple[int, frozenset[int]] = (0, frozenset())
    not_before: float = 0.0  # monotonic time before which no new fetch starts
    last_fetch_started: float = float("-inf")
    stopped: str | None = None
    status_dirty: bool = False  # a state/error change to commit in the next transaction

    def __post_init__(self) -> None:
        self.next_from = self.committed.watermark

    @property
    def id(self) -> str:
        return self.committed.stream

    def drop_pending(self) -> None:
        """Forget the windows in flight. Fetches still running see their generation is stale
        and skip encoding; a failure of any of them is still logged, once it is known."""
        self.generation += 1
        for fut in self.pending:
            fut.add_done_callback(self._log_dropped_failure)  # runs now if already done
        self.pending.clear()

    def _log_dropped_failure(self, fut: Future[Fetched | FetchFailed]) -> None:
        result = None if fut.cancelled() else fut.result()
        if isinstance(result, FetchFailed) and not isinstance(result.error, WindowDropped):
            log.warning("stream %s: %s (a window planned ahead, dropped)", self.id, result.error)

    def reset_to_committed(self) -> None:
        """Forget everything planned after the committed checkpoint (after an abort)."""
        self.drop_pending()
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
        decoder: DecodePool | None = None,
        limits: Limits | None = None,
        reread_limits: Callable[[], Limits | None] | None = None,
    ) -> None:
        """``decoder``: worker processes that parse, map and encode windows; without one the
        fetch threads do it. ``limits``: what each topic takes (:mod:`publisher.limits`), as
        the streams' shapes already have it; ``reread_limits`` reads them again from the
        cluster (None when it will not say), after an aborted transaction."""
        self.config = config
        self.limits = Limits() if limits is None else limits
        self.reread_limits = reread_limits
        self._limits_read_at: float | None = None  # monotonic time of the last re-read
        self.decoder = decoder
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
        self.prefetch = config.publisher.prefetch_windows
        # Windows in flight in the whole process: one per stream already keeps the network
        # and the encoder busy when there are several; more only costs memory and GIL churn.
        self.in_flight_limit = max(self.prefetch, len(self.streams))
        self._stop = threading.Event()
        self._wake = threading.Event()
        # Held while a fetched window is parsed, mapped and encoded: one window's parsed rows
        # at a time in the process (see DeltasClient.fetch_then); downloads overlap freely.
        # With decode processes, one window per process: their memory is their own.
        self._decode_gate: threading.Lock | threading.Semaphore = (
            threading.Lock() if decoder is None else threading.Semaphore(decoder.processes)
        )
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, self.in_flight_limit),
            thread_name_prefix="fetch",
            initializer=name_this_thread,
            initargs=("dcp-fetch",),
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
                    # Record why first (``status`` reads it from the checkpoints), as a
                    # stream stopped beside running ones has it recorded.
                    dirty = [s for s in self.streams if s.status_dirty]
                    if dirty:
                        self._publish([], dirty)
                    raise FatalError(
                        "every stream is stopped: "
                        + "; ".join(f"{s.id}: {s.stopped}" for s in self.streams)
                    )
                self._start_fetches()
                batch = self._take_ready()
                in_batch = {id(s) for s, _ in batch}
                dirty = [s for s in self.streams if s.status_dirty and id(s) not in in_batch]
                if batch or dirty:
                    self._start_fetches()  # the next windows download and encode meanwhile
                    self._publish(batch, dirty)
                else:
                    self._wait()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- fetching --------------------------------------------------------------------------
    def _start_fetches(self) -> None:
        now = self.clock()
        mono = self.monotonic()
        in_flight = sum(len(s.pending) for s in self.streams)
        # First one window per stream, then more for streams that can take them (fairness).
        for depth, s in ((d, s) for d in range(1, self.prefetch + 1) for s in self.streams):
            while (
                not s.stopped
                and len(s.pending) < depth
                and in_flight < self.in_flight_limit
                and mono >= s.not_before
            ):
                window = plan_window(
                    s.next_from,
                    now,
                    origin=s.committed.origin,
                    overlap=self.overlap,
                    settle_delay=self.settle,
                    size=s.sizer.size,
                )
                if window is None:
                    break
                # Caught up: poll at the configured interval rather than in a tight loop, and
                # one window at a time (fetching ahead only pays while catching up).
                caught_up = window.new_span < s.sizer.size
                if caught_up and (s.pending or mono - s.last_fetch_started < self.poll_interval):
                    break
                s.last_fetch_started = mono
                s.next_from = window.stop  # the window's end is fixed now
                fut = self._pool.submit(self._fetch, s, window, s.generation)
                fut.add_done_callback(lambda _f: self._wake.set())
                s.pending.append(fut)
                in_flight += 1

    def _fetch(self, s: Stream, window: Window, generation: int) -> Fetched | FetchFailed:
        """Runs on a worker thread: fetch (splitting the window on 413 until DataConnect
        accepts it), then map and encode the rows."""
        splits = 0
        began = time.monotonic()
        while True:
            try:
                then: Callable[[Any], Prepared | None]
                parse: Callable[[Body], Any]
                if self.decoder is None:
                    then, parse = partial(self._prepare, s, window, generation), read_rows
                else:
                    then = partial(self._decode_elsewhere, self.decoder, s, window, generation)
                    parse = _as_sent
                prepared = s.client.fetch_then(
                    s.entity, window.start, window.stop, then, gate=self._decode_gate, parse=parse
                )
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
            else:
                break
        if prepared is None:
            return FetchFailed(window, WindowDropped("dropped"), generation, splits)
        return Fetched(window, prepared, generation, splits, time.monotonic() - began)

    def _prepare(
        self, s: Stream, window: Window, generation: int, rows: list[Any]
    ) -> Prepared | None:
        """Map and encode a fetched window's rows (under the decode gate); None when the
        window was dropped while it downloaded: then it is not worth encoding."""
        if generation != s.generation:
            return None
        prepared = prepare(
            s.shape, window, rows, now_ms=to_millis(self.clock()), skip=self._skip(s, generation)
        )
        s.recent = (generation, prepared.digests())
        return prepared

    def _decode_elsewhere(
        self, decoder: DecodePool, s: Stream, window: Window, generation: int, body: Body
    ) -> Prepared | None:
        """:meth:`_prepare` in a decode process, from the body as downloaded."""
        if generation != s.generation:
            return None
        recipe = s.shape.recipe
        if recipe is None:
            raise FatalError(f"{s.id}: its stream shape has no recipe for a decode process")
        prepared = decoder.decode(
            recipe,
            window,
            body,
            now_ms=to_millis(self.clock()),
            skip=frozenset(self._skip(s, generation)),
        )
        s.recent = (generation, prepared.digests())
        return prepared

    @staticmethod
    def _skip(s: Stream, generation: int) -> Collection[int]:
        """Digests whose rows need no encoding: the committed checkpoint's, and those of the
        window prepared just before (the overlap). Only a hint: the loop decides against its
        own checkpoint."""
        seen_generation, recent = s.recent
        committed = s.committed.seen.entries  # never mutated once committed
        return recent.union(committed) if seen_generation == generation else committed

    def _take_ready(self) -> list[tuple[Stream, Fetched]]:
        """The oldest window of each stream, when it is ready, up to the transaction limit.

        Taking it frees its slot: the next window may be fetched meanwhile.
        """
        limit = self.config.publisher.max_windows_per_transaction
        batch: list[tuple[Stream, Fetched]] = []
        for s in self.streams:
            if len(batch) >= limit:
                break
            if not (s.pending and s.pending[0].done()):
                continue
            result = s.pending.popleft().result()  # one window per stream per transaction
            for _ in range(result.splits):
                self.metrics.window_split(s.source.name, s.entity.name)
            if result.splits:
                s.sizer.accepted_after_split(result.window.new_span)
            if isinstance(result, FetchFailed):
                # Everything planned after it assumed it: drop it all, plan again.
                s.drop_pending()
                self._fetch_failed(s, result)
                continue
            if result.splits:
                # A split window stops earlier than planned: later windows went from the
                # planned stop, so they are dropped and planned again from the real one.
                s.drop_pending()
                s.next_from = result.window.stop
            batch.append((s, result))
        return batch

    def _fetch_failed(self, s: Stream, failed: FetchFailed) -> None:
        s.next_from = s.committed.watermark
        if isinstance(failed.error, EntityStopped):
            self._stop_stream(s, failed.error)
            return
        s.committed.last_error = str(failed.error)
        s.status_dirty = True
        # Retries are exhausted for now: keep the watermark, try again after a pause. The lag
        # metric keeps growing meanwhile, which is what alerts watch.
        if "timeout" in str(failed.error).lower():
            s.sizer.too_large(failed.window.new_span)
        s.not_before = self.monotonic() + self.poll_interval
        log.warning("stream %s: %s; trying again in %.0fs", s.id, failed.error, self.poll_interval)

    def _stop_stream(self, s: Stream, error: EntityStopped) -> None:
        """Stop ``s`` until an operator acts; its state goes out with the next transaction."""
        s.next_from = s.committed.watermark
        s.committed.last_error = str(error)
        s.status_dirty = True
        s.stopped = str(error)
        s.committed.state = "stopped"
        self.metrics.entity_state(s.source.name, s.entity.name, "stopped", error.code)
        log.error("stream %s stopped: %s", s.id, error)

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
                try:
                    result = self._publish_window(s, fetched, work)
                except RecordDoesNotFit as exc:
                    # Raised before that record was produced, but the window's others are in
                    # the transaction: abort it, stop this stream, replay the others.
                    self.sink.abort()
                    self.metrics.transaction("aborted", self.monotonic() - began)
                    for other, _ in batch:
                        other.reset_to_committed()
                    self._stop_stream(s, exc)
                    return
                fetched.prepared.events.clear()  # produced: free them now, not after the batch
                pending.append((s, work, fetched, result))
            for s in dirty:  # state changes (stopped, last error) without a window
                work = s.committed.copy()
                work.updated_at = self.clock()
                key, value = s.id.encode(), work.encode()
                if len(key) + len(value) > self.limits.checkpoint_bytes:
                    # Its stream stopped on this very checkpoint: the state stays in the
                    # metrics and health checks, and the last committed checkpoint stands.
                    log.error(
                        "stream %s: its state cannot be recorded, its checkpoint (%s bytes) "
                        "is larger than topic %s takes",
                        s.id,
                        f"{len(key) + len(value):,}",
                        self.config.publisher.checkpoint_topic,
                    )
                    continue
                self.sink.produce(self.config.publisher.checkpoint_topic, key, value)
            self.sink.commit()
        except TransactionAborted as exc:
            self.metrics.transaction("aborted", self.monotonic() - began)
            log.warning("transaction aborted, replaying from the last checkpoint: %s", exc)
            for s, _ in batch:
                s.reset_to_committed()
            self._reread_limits()
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

    def _reread_limits(self) -> None:
        """Read the topics' limits again (after an abort), and keep the replay within them.

        The broker's refusal of a record too large reaches the loop only as an aborted
        transaction, its cause not always said (a batch refused mid-transaction makes later
        records fail with librdkafka's "Erroneous state"). So any abort may be one: the limits
        are read again, at most every LIMITS_REREAD_SECONDS. The windows of the aborted
        transaction were dropped, so their replay is prepared with the new limits.
        """
        now = self.monotonic()
        if self.reread_limits is None or (
            self._limits_read_at is not None and now - self._limits_read_at < LIMITS_REREAD_SECONDS
        ):
            return
        self._limits_read_at = now
        new = self.reread_limits()
        if new is None:  # the cluster would not say (logged): keep what is known
            return
        changed = changes(self.limits, new)
        if not changed:
            return
        log.warning("topic limits changed: %s", "; ".join(changed))
        for warning in new.warnings:
            if warning not in self.limits.warnings:
                log.warning("%s", warning)
        apply_limits(self.streams, new)
        if new.batch_bytes != self.limits.batch_bytes:
            self.sink.use_batch_size(new.batch_bytes)
        self.limits = new

    def _publish_window(self, s: Stream, fetched: Fetched, work: Checkpoint) -> WindowResult:
        """Produce one window's events, dead letters and checkpoint into the open transaction."""
        window = fetched.window
        prepared = fetched.prepared
        start_ms, stop_ms = window.start_ms, window.stop_ms
        result = WindowResult(rows=prepared.rows)
        self.metrics.rows_fetched(s.source.name, s.entity.name, prepared.rows)
        rejected = prepared.rejected
        seen = work.seen.entries  # the hot loop skips SeenSet's method calls
        produce = self.sink.produce
        topic = s.topic
        tombstones = self.config.publisher.tombstones
        by_op = result.by_op
        change_times = result.change_times_ms
        duplicates = unknown = 0
        for event in prepared.events:
            change_ms, digest, key, value, headers, op, unknown_fields, row = event
            if digest in seen:  # published by an earlier window (the overlap), or twice here
                duplicates += 1
                continue
            if value is None:  # not encoded: the window that had it did not commit after all
                try:
                    value = encode_late(s.shape, event, window, to_millis(self.clock()))
                except RowRejected as exc:
                    value = exc
            if not isinstance(value, bytes):  # the encoder refused the record
                rejected.append((row, value))
                seen[digest] = stop_ms
                continue
            produce(topic, key, value, headers)
            if tombstones and op == "d":
                produce(topic, key, None, headers)
            seen[digest] = stop_ms
            by_op[op] += 1
            change_times.append(change_ms)
            unknown += unknown_fields
        result.duplicates = duplicates
        result.unknown_fields = unknown
        dead_letters = self.config.publisher.dead_letter_topic
        for row, why in rejected:
            raw = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
            # Bad rows re-read in the overlap are dead-lettered once, like good ones.
            digest = row_digest("\x00dead-letter", raw.decode("utf-8", "replace"))
            if digest in seen:
                result.duplicates += 1
                continue
            key = s.id.encode()
            value = dead_letter_value(
                s.source.name,
                s.entity.name,
                raw,
                reason=why.reason,
                detail=why.detail,
                window_start_ms=start_ms,
                window_stop_ms=stop_ms,
            )
            extra: list[tuple[str, str | bytes | None]] = [
                *s.shape.headers_base,
                ("dc-reason", why.reason.encode()),
            ]
            size = len(key) + len(value) + header_bytes(extra)
            if size > self.limits.dead_letter_bytes:
                raise RecordDoesNotFit(
                    f"{s.id}: the dead letter of a {why.reason} row would be {size:,} bytes, "
                    f"over the {self.limits.dead_letter_bytes:,} topic {dead_letters} takes "
                    f"({_ROOM_RULE}); raise its max.message.bytes, then restart"
                )
            seen[digest] = stop_ms
            produce(dead_letters, key, value, extra)
            result.dead[why.reason] += 1
            log.warning("dead-lettered a %s row of %s: %s", why.reason, s.id, why.detail)
        if result.unknown_fields:
            self.metrics.unknown_fields(s.source.name, s.entity.name, result.unknown_fields)
        # The checkpoint: the watermark moves to the window's fixed end, and the overlap set
        # forgets what no later window can return. Committed with the events, or not at all.
        work.watermark = window.stop
        next_start = max(window.stop - self.overlap, work.origin)
        work.seen.prune(to_millis(next_start))
        work.rows_published += sum(result.by_op.values())
        work.window_size_seconds = s.sizer.size.total_seconds()
        work.last_error = None
        work.state = "running"
        work.updated_at = self.clock()
        work.publisher_version = __version__
        checkpoints, room = self.config.publisher.checkpoint_topic, self.limits.checkpoint_bytes
        key, value = s.id.encode(), work.encode()
        if len(key) + len(value) > room:
            raise RecordDoesNotFit(
                f"{s.id}: its checkpoint would be {len(key) + len(value):,} bytes (the digests "
                f"of the {len(work.seen.entries):,} rows its last windows published), over the "
                f"{room:,} topic {checkpoints} takes ({_ROOM_RULE}); raise its "
                f"max.message.bytes, then restart"
            )
        produce(checkpoints, key, value)
        return result


def apply_limits(streams: Iterable[Stream], limits: Limits) -> None:
    """Give each stream's shape (and the recipe decode processes build it from) its topic's
    record limit."""
    for s in streams:
        limit = limits.record_bytes.get(s.topic, s.shape.max_record_bytes)
        note = limits.record_notes.get(s.topic)
        if s.shape.recipe is None or (limit, note) == (
            s.shape.max_record_bytes,
            s.shape.record_limit_note,
        ):
            continue
        s.shape = replace(s.shape.recipe, max_record_bytes=limit, record_limit_note=note).build()


def key_affixes(template: str, source: str, entity: str) -> tuple[str, str]:
    """Split the key template around ``{id}`` once, so each key is two concatenations."""
    before, _, after = template.partition("{id}")
    return before.format(source=source, entity=entity), after.format(source=source, entity=entity)


def _as_sent(body: Body) -> Body:
    """The body as downloaded, still compressed: a decode process decodes and parses it."""
    return body


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
