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

import logging
import platform
import signal
import threading
from collections.abc import Callable, Mapping
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
from publisher.codec import EntityCodec
from publisher.config import Config, SourceConfig, utc_now
from publisher.dataconnect.client import DeltasClient
from publisher.dataconnect.hooks import ClientHooks
from publisher.dataconnect.settings import RetrySettings, SourceHTTPSettings
from publisher.entities import EntitySpec
from publisher.errors import ConfigError, FatalError, ProducerFenced
from publisher.health import HealthServer, entities_fresh
from publisher.kafka import (
    LIBRDKAFKA_LOG,
    TopicSpec,
    TransactionalSink,
    ensure_topics,
    read_to_end,
)
from publisher.logs import register_secret
from publisher.mapping import RowMapper
from publisher.metrics import PublisherMetrics
from publisher.service import (
    Publisher,
    Stream,
    base_headers,
    describe,
    key_affixes,
    new_checkpoint,
)
from publisher.windows import WindowSizer

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_CONFIG = 2
EXIT_FENCED = 3


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
        while not self._stop.is_set():
            self._consumer.poll(0.5)  # keeps the membership alive; records are ignored

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def producer_conf(config: Config, txn_id: str) -> dict[str, Any]:
    """Producer settings: ours first, the operator's raw librdkafka settings override them."""
    return {
        "bootstrap.servers": config.kafka.bootstrap_servers,
        "transactional.id": txn_id,
        "enable.idempotence": True,
        "acks": "all",
        "transaction.timeout.ms": config.kafka.transaction_timeout_seconds * 1000,
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 200000,
        "message.max.bytes": 8 * 1024 * 1024,
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
        {"cleanup.policy": "compact", "max.message.bytes": str(8 * 1024 * 1024)},
    )
    topics[config.publisher.dead_letter_topic] = TopicSpec(
        config.publisher.dead_letter_topic, 1, k.topic_replication, {}
    )
    return list(topics.values())


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


def client_hooks(metrics: PublisherMetrics, source: str) -> ClientHooks:
    return ClientHooks(
        on_request=lambda entity, status, secs: metrics.http_request(source, entity, status, secs),
        on_retry=lambda entity, reason, delay: metrics.retry(source, entity, reason, delay),
        on_token_refresh=lambda kind, outcome: metrics.token_refresh(source, kind, outcome),
        # 429s are counted by http_request (status label) already.
    )


def build_streams(
    config: Config,
    specs: Mapping[str, EntitySpec],
    shard: Shard,
    metrics: PublisherMetrics,
    *,
    transport: httpx.BaseTransport | None = None,
) -> list[Stream]:
    """The streams this shard owns, each with its client, mapper, codec and checkpoint."""
    w = config.windows
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
            http_settings(source), transport=transport, hooks=client_hooks(metrics, source.name)
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
                    mapper=RowMapper(
                        spec,
                        source_name=source.name,
                        version=__version__,
                        zone=source.zone,
                        deleted_carries_row=config.publisher.deleted_rows_carry_data,
                    ),
                    codec=EntityCodec(spec, wire_format="single-object"),
                    sizer=WindowSizer(
                        size=timedelta(seconds=w.initial_window_seconds),
                        min_size=timedelta(seconds=w.min_window_seconds),
                        max_size=timedelta(seconds=w.max_window_seconds),
                        target_rows=w.target_rows,
                    ),
                    committed=new_checkpoint(source.name, name, w.start_from),
                    headers_base=base_headers(source.name, name),
                    key_prefix=prefix,
                    key_suffix=suffix,
                )
            )
    return streams


def restore_checkpoints(config: Config, streams: list[Stream]) -> None:
    """Replace each stream's fresh checkpoint with the last committed one, if any."""
    records = (
        (m.key(), m.value())
        for m in read_to_end(consumer_conf(config), [config.publisher.checkpoint_topic])
    )
    committed = latest(records)
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
    ) -> None:
        self.config = config
        self.shard = shard
        self.transport = transport
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        self.install_signals = install_signals
        self.metrics = PublisherMetrics(self.registry, clock=clock)
        self.publisher: Publisher | None = None
        self.health: HealthServer | None = None
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
        streams = build_streams(config, specs, self.shard, self.metrics, transport=self.transport)
        if not streams:
            log.warning("shard %d/%d owns no streams", self.shard.index, self.shard.count)
            return EXIT_OK
        sink = TransactionalSink(
            producer_conf(config, txn_id),
            unavailable_deadline=config.kafka.unavailable_deadline_seconds,
        )
        self._start_health(sink, streams)
        created = ensure_topics(
            {"bootstrap.servers": config.kafka.bootstrap_servers}, topic_specs(config)
        )
        if created:
            log.info("created topics: %s", ", ".join(created))
        sink.init()  # fences older instances with our transactional.id
        restore_checkpoints(config, streams)
        presence = Presence(config, self.shard)
        for s in streams:
            self.metrics.add_entity(s.source.name, s.entity.name, s.committed.watermark)
        log.info("publishing as %s: %s", txn_id, describe(streams))
        publisher = Publisher(config, streams, sink, self.metrics, clock=self.clock)
        self.publisher = publisher
        if self._stop_requested.is_set():
            publisher.stop()
        try:
            publisher.run()
        finally:
            presence.close()
            sink.close()
            for client in {id(s.client): s.client for s in streams}.values():
                client.close()
        log.info("stopped cleanly after %d transactions", publisher.transactions_committed)
        return EXIT_OK

    def _start_health(self, sink: TransactionalSink, streams: list[Stream]) -> None:
        m = self.config.metrics
        if not m.enabled:
            return

        def kafka_ok() -> tuple[bool, str]:
            return sink.healthy, sink.health_detail

        def sources_ok() -> tuple[bool, str]:
            stopped = [f"{s.id}: {s.stopped}" for s in streams if s.stopped]
            return (not stopped, "; ".join(stopped) or "every stream running")

        self.health = HealthServer(
            self.registry,
            {
                "kafka": kafka_ok,
                "streams_running": sources_ok,
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


def stream_ids(config: Config) -> list[str]:
    return [stream_id(s.name, e) for s in config.sources for e in s.entities]
