"""Start-up and shut-down of one publisher process (one shard).

Order matters for exactly-once:

1. validate the configuration (done by the caller, before any connection);
2. create missing topics;
3. ``init_transactions``: this fences any older instance with the same ``transactional.id``
   and completes whatever transaction it left open, so the checkpoint topic's last stable
   offset can move past it;
4. read the checkpoints back with ``read_committed``: only what committed counts;
5. run the loop until SIGTERM/SIGINT (finish or abort the open transaction, exit 0) or a fatal
   error (exit non-zero with one clear line).
"""

from __future__ import annotations

import gc
import logging
import platform
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import Any

import confluent_kafka
import httpx
from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry

from publisher import __version__
from publisher.checkpoint import latest, stream_id
from publisher.config import Config, SourceConfig, utc_now
from publisher.dataconnect.client import DeltasClient
from publisher.dataconnect.hooks import ClientHooks
from publisher.dataconnect.settings import RetrySettings, SourceHTTPSettings
from publisher.decodepool import DecodePool
from publisher.entities import EntitySpec
from publisher.errors import (
    EXIT_CONFIG,
    EXIT_FATAL,
    EXIT_FENCED,
    EXIT_OK,
    ConfigError,
    FatalError,
    ProducerFenced,
)
from publisher.health import Check, HealthServer, entities_fresh
from publisher.kafka import (
    LIBRDKAFKA_LOG,
    TopicSpec,
    TransactionalSink,
    ensure_topics,
    read_to_end,
    topic_message_limits,
)
from publisher.limits import LARGE_MESSAGE_BYTES, Limits, plan_limits
from publisher.logs import register_secret
from publisher.metrics import PublisherMetrics
from publisher.prepare import ShapeRecipe
from publisher.progress import ProgressReporter, ProgressTracker
from publisher.registry import register_value_schemas
from publisher.service import (
    Publisher,
    Stream,
    apply_limits,
    base_headers,
    describe,
    key_affixes,
    new_checkpoint,
)
from publisher.threadnames import name_this_thread
from publisher.windows import WindowSizer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Shard:
    """Which part of the configured streams this process publishes."""

    index: int = 0
    count: int = 1

    def owns(self, position: int) -> bool:
        return position % self.count == self.index


def transactional_id(config: Config, shard: Shard) -> str:
    base = config.publisher.transactional_id
    return base if shard.count == 1 else f"{base}-{shard.index}-of-{shard.count}"


def presence_group(config: Config, shard: Shard) -> str:
    """The consumer group a running publisher joins so that ``reset`` can tell it runs."""
    return f"{transactional_id(config, shard)}.presence"


class Presence:
    """Membership of the shard's presence group while the publisher runs (for ``reset``)."""

    def __init__(self, config: Config, shard: Shard) -> None:
        self._consumer = Consumer(
            {
                **consumer_conf(config),
                "group.id": presence_group(config, shard),
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
            }
        )
        self._consumer.subscribe([config.publisher.checkpoint_topic])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="presence", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        name_this_thread("dcp-presence")
        while not self._stop.is_set():
            self._consumer.poll(0.5)  # keeps the membership alive; records are ignored

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def producer_conf(config: Config, txn_id: str, *, batch_bytes: int | None = None) -> dict[str, Any]:
    """Producer settings: ours first, the operator's raw librdkafka settings override them.
    ``batch_bytes``: a ``batch.size`` the topics need (:func:`publisher.limits.plan_limits`)."""
    return {
        "bootstrap.servers": config.kafka.bootstrap_servers,
        "transactional.id": txn_id,
        "enable.idempotence": True,
        "acks": "all",
        "transaction.timeout.ms": config.kafka.transaction_timeout_seconds * 1000,
        # The broker's cost is mostly per produce request (about 0.5 ms of broker CPU each):
        # at ~10k records/s, 100 ms batches need half the broker CPU of 20 ms ones. Commit
        # sends what is waiting at once, so this delays nothing a consumer can see.
        "linger.ms": 100,
        # Reports only for records that failed. Nothing reads the others (a failed record
        # fails commit_transaction, which is the check that counts), and librdkafka then frees
        # each record when the broker acknowledges it instead of keeping it, its value
        # included, until this process serves its report. Measured on the 2-core bench
        # machine, 7 interleaved pairs of 300k-row Customers catch-ups: faster in 6, a tie
        # in 1, median +5% rows/s.
        "delivery.report.only.error": True,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 200000,
        "message.max.bytes": LARGE_MESSAGE_BYTES,
        **({} if batch_bytes is None else {"batch.size": batch_bytes}),
        "client.id": f"dataconnect-publisher-{txn_id}",
        **config.kafka.producer,
    }


def consumer_conf(config: Config) -> dict[str, Any]:
    return {
        "bootstrap.servers": config.kafka.bootstrap_servers,
        "logger": LIBRDKAFKA_LOG,
        "group.id": f"{config.publisher.transactional_id}-checkpoint-reader",
        **config.kafka.consumer,
    }


def topic_specs(config: Config) -> list[TopicSpec]:
    k = config.kafka
    topics = {
        config.topic_for(s.name, e): TopicSpec(
            config.topic_for(s.name, e), k.topic_partitions, k.topic_replication, k.topic_config
        )
        for s in config.sources
        for e in s.entities
    }
    topics[config.publisher.checkpoint_topic] = TopicSpec(
        config.publisher.checkpoint_topic,
        1,
        k.topic_replication,
        {"cleanup.policy": "compact", "max.message.bytes": str(LARGE_MESSAGE_BYTES)},
    )
    # A dead letter carries its row's JSON whole: a row refused as too large for its entity's
    # topic still fits here (up to the producer's own message.max.bytes).
    topics[config.publisher.dead_letter_topic] = TopicSpec(
        config.publisher.dead_letter_topic,
        1,
        k.topic_replication,
        {"max.message.bytes": str(LARGE_MESSAGE_BYTES)},
    )
    return list(topics.values())


def read_limits(config: Config, streams: Sequence[Stream]) -> Limits:
    """The record limits of this shard's topics (:mod:`publisher.limits`), read from the
    cluster at start-up; what will be dead-lettered or stop a stream sooner than expected is
    logged."""
    topic_limits = _topic_limits(
        config,
        streams,
        deadline=30.0,
        otherwise="records are kept within the producer's message.max.bytes only",
    )
    limits = _plan_limits(config, streams, topic_limits)
    for warning in limits.warnings:
        log.warning("%s", warning)
    if limits.batch_bytes is not None:
        log.info("producer batch.size %d: the smallest topic takes no more", limits.batch_bytes)
    return limits


def reread_limits(config: Config, streams: Sequence[Stream]) -> Limits | None:
    """The limits read again while publishing (after an aborted transaction); None when the
    cluster will not say (then the limits in force stay). The loop waits for it, 10 s at
    most."""
    topic_limits = _topic_limits(
        config, streams, deadline=10.0, otherwise="the limits in force stay"
    )
    return None if topic_limits is None else _plan_limits(config, streams, topic_limits)


def _topic_limits(
    config: Config, streams: Sequence[Stream], *, deadline: float, otherwise: str
) -> dict[str, int] | None:
    p = config.publisher
    return topic_message_limits(
        {"bootstrap.servers": config.kafka.bootstrap_servers},
        [*sorted({s.topic for s in streams}), p.dead_letter_topic, p.checkpoint_topic],
        deadline=deadline,
        otherwise=otherwise,
    )


def _plan_limits(
    config: Config, streams: Sequence[Stream], topic_limits: dict[str, int] | None
) -> Limits:
    producer = config.kafka.producer
    return plan_limits(
        entity_topics=sorted({s.topic for s in streams}),
        dead_letter_topic=config.publisher.dead_letter_topic,
        checkpoint_topic=config.publisher.checkpoint_topic,
        topic_limits=topic_limits,
        max_record_bytes=config.publisher.max_record_bytes,
        producer_max_bytes=int(producer.get("message.max.bytes", LARGE_MESSAGE_BYTES)),
        batch_size_set="batch.size" in producer,
    )


def http_settings(source: SourceConfig) -> SourceHTTPSettings:
    return SourceHTTPSettings(
        name=source.name,
        base_url=source.base_url,
        token_url=source.token_url,
        client_id=source.client_id,
        client_secret=source.client_secret,
        username=source.username,
        password=source.password,
        path_template=source.path_template,
        paths=source.paths,
        date_format=source.date_format,
        source_timezone=source.zone,
        location_type=source.location_type,
        location_type_ids=source.location_type_ids if source.location_type else None,
        max_in_flight=source.max_in_flight,
        connect_timeout=source.connect_timeout_seconds,
        read_timeout=source.read_timeout_seconds,
        retry=RetrySettings(
            max_attempts=source.max_attempts,
            base_delay=source.retry_base_seconds,
            max_delay=source.retry_max_seconds,
        ),
        verify_tls=source.verify_tls,
        request_method=source.request_method,
        accept_gzip=source.accept_gzip,
    )


class TokenOutcomes:
    """The outcome of each source's last token request, for the ``token_valid`` readiness
    check, which reads it and never dials the token endpoint itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, tuple[str, str]] = {}

    def record(self, source: str, kind: str, outcome: str) -> None:
        """Note a token request's grant kind and outcome (``ok``/``rejected``/``unavailable``)."""
        with self._lock:
            self._last[source] = (kind, outcome)

    def check(self, states: Callable[[], Iterable[tuple[str, str, str, str]]]) -> Check:
        """Not ready while credentials or tokens are refused: a source whose last token
        request was rejected, or a stream stopped with ``auth_failed`` (DataConnect kept
        answering 401 even to a fresh token). ``states`` yields (source, entity, state,
        reason), as ``PublisherMetrics.states`` does."""

        def token_valid() -> tuple[bool, str]:
            with self._lock:
                last = dict(self._last)
            problems = [
                f"{source}: the token endpoint refused the {kind} grant"
                for source, (kind, outcome) in sorted(last.items())
                if outcome == "rejected"
            ]
            problems += [
                f"{source}/{entity}: stopped, credentials or token refused (auth_failed)"
                for source, entity, state, reason in states()
                if state == "stopped" and reason == "auth_failed"
            ]
            if problems:
                return False, "; ".join(problems)
            # "unavailable" is not a failure: the token in hand stays in use until it expires,
            # and a stream that cannot fetch shows up in entities_fresh.
            return True, "; ".join(
                f"{source}: last token request {outcome} ({kind} grant)"
                for source, (kind, outcome) in sorted(last.items())
            ) or "no token requested yet"

        return token_valid


def client_hooks(
    metrics: PublisherMetrics, source: str, tokens: TokenOutcomes | None = None
) -> ClientHooks:
    def on_token(kind: str, outcome: str) -> None:
        metrics.token_refresh(source, kind, outcome)
        if tokens is not None:
            tokens.record(source, kind, outcome)

    return ClientHooks(
        on_request=lambda entity, status, secs: metrics.http_request(source, entity, status, secs),
        on_retry=lambda entity, reason, delay: metrics.retry(source, entity, reason, delay),
        on_token_refresh=on_token,
        # 429s are counted by http_request (status label) already.
    )


def build_streams(
    config: Config,
    specs: Mapping[str, EntitySpec],
    shard: Shard,
    metrics: PublisherMetrics,
    *,
    transport: httpx.BaseTransport | None = None,
    tokens: TokenOutcomes | None = None,
    registry_transport: httpx.BaseTransport | None = None,
) -> list[Stream]:
    """The streams this shard owns, each with its client, mapper, codec and checkpoint."""
    w = config.windows
    # confluent wire format: the schema ids come first; a registry that refuses stops the
    # process here, before any topic or transaction exists.
    schema_ids = register_value_schemas(config, specs, transport=registry_transport)
    streams: list[Stream] = []
    position = 0
    for source in config.sources:
        owned = []
        for entity in source.entities:
            if shard.owns(position):
                owned.append(entity)
            position += 1
        if not owned:
            continue
        client = DeltasClient(
            http_settings(source),
            transport=transport,
            hooks=client_hooks(metrics, source.name, tokens),
        )
        for name in owned:
            spec = specs[name]
            prefix, suffix = key_affixes(config.publisher.key_template, source.name, name)
            streams.append(
                Stream(
                    source=source,
                    entity=spec,
                    topic=config.topic_for(source.name, name),
                    client=client,
                    shape=ShapeRecipe(
                        stream_id(source.name, name),
                        spec,
                        source_name=source.name,
                        version=__version__,
                        zone=source.zone,
                        deleted_carries_row=config.publisher.deleted_rows_carry_data,
                        wire_format=config.publisher.wire_format,
                        schema_id=schema_ids.get(config.topic_for(source.name, name)),
                        key_prefix=prefix,
                        key_suffix=suffix,
                        headers_base=base_headers(source.name, name),
                        max_record_bytes=config.publisher.max_record_bytes,
                    ).build(),
                    sizer=WindowSizer(
                        size=timedelta(seconds=w.initial_window_seconds),
                        min_size=timedelta(seconds=w.min_window_seconds),
                        max_size=timedelta(seconds=w.max_window_seconds),
                        target_rows=w.target_rows,
                    ),
                    committed=new_checkpoint(source.name, name, w.start_from),
                )
            )
    return streams


def restore_checkpoints(
    config: Config, streams: list[Stream], stop: threading.Event | None = None
) -> bool:
    """Replace each stream's fresh checkpoint with the last committed one, if any. False when
    ``stop`` was set before the read was done: then nothing was restored, and nothing may be
    published."""
    # Through open transactions: another instance's (another shard's) open transaction must
    # not hide checkpoints committed after it. Such a transaction ends when its producer
    # restarts or when it times out, so the wait is bounded by the transaction timeout.
    records = (
        (m.key(), m.value())
        for m in read_to_end(
            consumer_conf(config),
            [config.publisher.checkpoint_topic],
            timeout=config.kafka.transaction_timeout_seconds + 60,
            through_open_transactions=True,
            stop=stop,
        )
    )
    committed = latest(records)
    if stop is not None and stop.is_set():  # the read may have ended short: trust none of it
        return False
    for s in streams:
        cp = committed.get(s.id)
        if cp is None:
            continue
        s.committed = cp
        s.committed.state = "running"  # a restart retries streams that were stopped
        s.reset_to_committed()
        if cp.window_size_seconds:
            size = timedelta(seconds=cp.window_size_seconds)
            s.sizer.size = max(s.sizer.min_size, min(s.sizer.max_size, size))
    return True


def close_clients(streams: list[Stream]) -> None:
    """Close each source's client once (its streams share it)."""
    for client in {id(s.client): s.client for s in streams}.values():
        client.close()


class Runner:
    """Owns the process-level resources of one shard; ``run()`` returns the exit code."""

    def __init__(
        self,
        config: Config,
        *,
        shard: Shard = Shard(),
        transport: httpx.BaseTransport | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], Any] = utc_now,
        install_signals: bool = True,
        progress_interval: float | None = None,
    ) -> None:
        self.config = config
        self.shard = shard
        self.transport = transport
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        self.install_signals = install_signals
        self.metrics = PublisherMetrics(self.registry, clock=clock)
        self.tokens = TokenOutcomes()
        #: Seconds between progress lines: ``logging.progress_interval_seconds`` unless given.
        self.progress_interval = (
            config.logging.progress_interval_seconds
            if progress_interval is None
            else progress_interval
        )
        self.publisher: Publisher | None = None
        self.health: HealthServer | None = None
        self._sink: TransactionalSink | None = None
        self._stop_requested = threading.Event()

    def stop(self) -> None:
        self._stop_requested.set()
        if self.publisher is not None:
            self.publisher.stop()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: finishing the transaction in progress", signal.Signals(signum).name)
        self.stop()

    def run(self) -> int:
        for source in self.config.sources:
            register_secret(source.client_secret)
            register_secret(source.password)
        if self.config.publisher.schema_registry_password is not None:
            register_secret(self.config.publisher.schema_registry_password)
        if self.install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        try:
            return self._run()
        except ProducerFenced as exc:
            log.error("%s", exc)
            return EXIT_FENCED
        except ConfigError as exc:
            for line in exc.problems:
                log.error("config: %s", line)
            return EXIT_CONFIG
        except FatalError as exc:
            log.error("stopping: %s", exc)
            return EXIT_FATAL
        except Exception:
            # A bug. Logged rather than left to Python's default hook, so the traceback goes
            # through the scrubbing log handler (and stays one JSON record), then exit 1.
            log.critical("crashed on an unexpected error", exc_info=True)
            return EXIT_FATAL
        finally:
            if self.health is not None:
                self.health.stop()

    def _run(self) -> int:
        config = self.config
        specs = config.entity_specs()
        self.metrics.build_info(
            __version__, platform.python_version(), confluent_kafka.libversion()[0]
        )
        txn_id = transactional_id(config, self.shard)
        streams = build_streams(
            config, specs, self.shard, self.metrics, transport=self.transport, tokens=self.tokens
        )
        if not streams:
            log.warning("shard %d/%d owns no streams", self.shard.index, self.shard.count)
            return EXIT_OK
        self._start_health(streams)
        created = ensure_topics(
            {"bootstrap.servers": config.kafka.bootstrap_servers},
            topic_specs(config),
            unavailable_deadline=config.kafka.unavailable_deadline_seconds,
        )
        if created:
            log.info("created topics: %s", ", ".join(created))
        limits = read_limits(config, streams)
        apply_limits(streams, limits)
        sink = TransactionalSink(
            producer_conf(config, txn_id, batch_bytes=limits.batch_bytes),
            unavailable_deadline=config.kafka.unavailable_deadline_seconds,
        )
        self._sink = sink
        sink.init()  # fences older instances with our transactional.id
        # A stop during the read (it can wait out another shard's open transaction, up to the
        # transaction timeout) ends the process here, before anything is published.
        if not restore_checkpoints(config, streams, stop=self._stop_requested):
            sink.close()
            close_clients(streams)
            log.info("stopped cleanly after 0 transactions (stopped while reading checkpoints)")
            return EXIT_OK
        presence = Presence(config, self.shard)
        for s in streams:
            self.metrics.add_entity(s.source.name, s.entity.name, s.committed.watermark)
            # Nothing else marks a stream running: the service only reports "stopped".
            self.metrics.entity_state(s.source.name, s.entity.name, "running")
        log.info("publishing as %s: %s", txn_id, describe(streams))
        decoder = None
        if config.publisher.decode_processes:
            decoder = DecodePool(config.publisher.decode_processes)
            log.info("%d decode processes ready", decoder.processes)
        publisher = Publisher(
            config,
            streams,
            sink,
            self.metrics,
            clock=self.clock,
            on_commit=self._progress(streams).on_commit,
            decoder=decoder,
            limits=limits,
            reread_limits=lambda: reread_limits(config, streams),
        )
        self.publisher = publisher
        if self._stop_requested.is_set():
            publisher.stop()
        # What start-up built lives as long as the process: freezing it keeps the garbage
        # collector's full passes, which run every few windows, from rescanning all of it.
        gc.freeze()
        try:
            publisher.run()
        finally:
            if decoder is not None:
                decoder.close()
            presence.close()
            sink.close()
            close_clients(streams)
        log.info("stopped cleanly after %d transactions", publisher.transactions_committed)
        return EXIT_OK

    def _progress(self, streams: list[Stream]) -> ProgressReporter:
        """Catch-up progress: INFO lines, and a status line when stderr is a terminal."""
        w = self.config.windows
        # A stream that keeps up lags by about settle delay + poll interval; "catching up"
        # is well beyond that, and at least 5 minutes so a slow answer is not a catch-up.
        steady = w.settle_delay_seconds + w.poll_interval_seconds
        threshold = timedelta(seconds=max(300.0, 3 * steady))
        # The status line only beside INFO logs: a quieter level (the demo's) means quiet.
        info = logging.getLogger("publisher.progress").isEnabledFor(logging.INFO)
        reporter = ProgressReporter(
            ProgressTracker(threshold=threshold, interval=self.progress_interval),
            self.clock,
            terminal=sys.stderr if info and sys.stderr.isatty() else None,
        )
        reporter.begin(streams)
        return reporter

    def _start_health(self, streams: list[Stream]) -> None:
        m = self.config.metrics
        if not m.enabled:
            return

        def kafka_ok() -> tuple[bool, str]:
            # Before the producer exists (topics being created and read), nothing has failed.
            return (True, "not used yet") if self._sink is None else self._sink.health()

        def sources_ok() -> tuple[bool, str]:
            stopped = [f"{s.id}: {s.stopped}" for s in streams if s.stopped]
            return (not stopped, "; ".join(stopped) or "every stream running")

        self.health = HealthServer(
            self.registry,
            {
                "kafka": kafka_ok,
                "streams_running": sources_ok,
                "token_valid": self.tokens.check(self.metrics.states),
                "entities_fresh": entities_fresh(
                    self.metrics.last_commit_times,
                    timedelta(seconds=m.staleness_seconds),
                    self.clock,
                ),
            },
            host=m.host,
            # Shards of one deployment listen on consecutive ports (0 stays "any free port").
            port=m.port + self.shard.index if m.port else 0,
        )
        self.health.start()
