"""Operator commands: ``status``, ``tail`` and ``reset``. They read (and, for reset, write)
the same Kafka topics the publisher uses, never the publisher's memory."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from publisher.checkpoint import Checkpoint, SeenSet, latest, stream_id
from publisher.codec import UndecodableMessage
from publisher.config import Config, utc_now
from publisher.errors import ConfigError, FatalError
from publisher.kafka import TransactionalSink, read_to_end
from publisher.registry import message_resolver
from publisher.runner import (
    Shard,
    consumer_conf,
    presence_group,
    producer_conf,
    transactional_id,
)


@dataclass(frozen=True, slots=True)
class StreamStatus:
    stream: str
    state: str
    watermark: datetime | None
    lag_seconds: float | None
    rows_published: int
    last_error: str | None
    updated_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "state": self.state,
            "watermark": None if self.watermark is None else self.watermark.isoformat(),
            "lag_seconds": self.lag_seconds,
            "rows_published": self.rows_published,
            "last_error": self.last_error,
            "updated_at": None if self.updated_at is None else self.updated_at.isoformat(),
        }


def read_checkpoints(config: Config) -> dict[str, Checkpoint]:
    records = (
        (m.key(), m.value())
        for m in read_to_end(consumer_conf(config), [config.publisher.checkpoint_topic])
    )
    return latest(records)


def status(config: Config, now: datetime | None = None) -> list[StreamStatus]:
    """Per configured stream: committed watermark, lag behind now, last error."""
    now = now or utc_now()
    checkpoints = read_checkpoints(config)
    out = []
    for source in config.sources:
        for entity in source.entities:
            sid = stream_id(source.name, entity)
            cp = checkpoints.get(sid)
            if cp is None:
                out.append(StreamStatus(sid, "never committed", None, None, 0, None, None))
                continue
            lag = (now - cp.watermark).total_seconds()
            out.append(
                StreamStatus(
                    sid,
                    cp.state,
                    cp.watermark,
                    lag,
                    cp.rows_published,
                    cp.last_error,
                    cp.updated_at,
                )
            )
    return out


def format_status(rows: list[StreamStatus]) -> str:
    header = ("STREAM", "STATE", "WATERMARK", "LAG", "ROWS", "LAST ERROR")
    table = [header]
    for r in rows:
        table.append(
            (
                r.stream,
                r.state,
                "-" if r.watermark is None else r.watermark.isoformat(timespec="seconds"),
                "-" if r.lag_seconds is None else _duration(r.lag_seconds),
                str(r.rows_published),
                (r.last_error or "")[:80],
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def tail(
    config: Config,
    entity: str,
    *,
    source: str | None = None,
    follow: bool = True,
    max_events: int | None = None,
    out: IO[str],
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Print the entity topic's committed events as JSON lines; returns how many."""
    topics = _entity_topics(config, entity, source)
    # With a registry configured, Confluent-framed values are decoded by the ids it holds.
    resolver = message_resolver(config)
    count = 0
    for msg in _consume(config, topics, follow=follow, should_stop=should_stop):
        line: dict[str, Any] = {
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
            "key": (msg.key() or b"").decode("utf-8", "replace"),
        }
        value = msg.value()
        if value is None:
            line["tombstone"] = True
        else:
            try:
                _name, record = resolver.decode(value)
                line.update(record)
            except UndecodableMessage as exc:
                line["undecodable"] = str(exc)
        out.write(orjson.dumps(line, default=str).decode() + "\n")
        out.flush()
        count += 1
        if max_events is not None and count >= max_events:
            break
    return count


def _entity_topics(config: Config, entity: str, source: str | None) -> list[str]:
    topics = sorted(
        {
            config.topic_for(s.name, entity)
            for s in config.sources
            if entity in s.entities and (source is None or s.name == source)
        }
    )
    if not topics:
        raise ConfigError([f"tail: no configured source publishes entity {entity!r}"])
    return topics


def _consume(
    config: Config, topics: list[str], *, follow: bool, should_stop: Callable[[], bool]
) -> Iterator[Any]:
    if not follow:
        yield from read_to_end(consumer_conf(config), topics)
        return
    consumer = Consumer(
        {
            **consumer_conf(config),
            "group.id": f"dataconnect-publisher-tail-{time.time_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        meta = consumer.list_topics(timeout=30)
        consumer.assign(
            [
                TopicPartition(t, p, 0)
                for t in topics
                if t in meta.topics
                for p in meta.topics[t].partitions
            ]
        )
        while not should_stop():
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                yield msg
            elif err.code() != KafkaError._PARTITION_EOF:
                raise FatalError(f"tail: {err.str()}")
    finally:
        consumer.close()


def publisher_running(config: Config, shard: Shard) -> bool:
    """Whether a publisher process holds this shard's identity right now (its presence
    consumer group has members)."""
    admin = AdminClient({"bootstrap.servers": config.kafka.bootstrap_servers})
    group = presence_group(config, shard)
    futures = admin.describe_consumer_groups([group])
    try:
        desc = futures[group].result(30)
    except KafkaException:
        return False
    return bool(desc.members)


def reset(
    config: Config,
    entity: str,
    to: datetime,
    *,
    source: str | None = None,
    force: bool = False,
) -> list[str]:
    """Move streams' watermarks to ``to`` in one transaction with the publisher's identity.

    Refuses while a publisher holds that identity, unless ``force``: then the running
    publisher is fenced (it exits non-zero) and must be restarted. Returns the streams reset.
    """
    if to.tzinfo is None:
        raise ConfigError(["reset --to: give a time zone, e.g. 2024-01-01T00:00:00Z"])
    positions = [
        (pos, s.name)
        for pos, (s, e) in enumerate((s, e) for s in config.sources for e in s.entities)
        if e == entity and (source is None or s.name == source)
    ]
    if not positions:
        raise ConfigError([f"reset: no configured source publishes entity {entity!r}"])
    shards = {pos % config.publisher.shards for pos, _ in positions}
    done: list[str] = []
    for index in sorted(shards):
        shard = Shard(index, config.publisher.shards)
        if not force and publisher_running(config, shard):
            raise FatalError(
                f"a publisher is running as {transactional_id(config, shard)}: stop it first, "
                "or pass --force to fence it"
            )
        sink = TransactionalSink(
            producer_conf(config, transactional_id(config, shard)),
            unavailable_deadline=config.kafka.unavailable_deadline_seconds,
        )
        current = read_checkpoints(config)
        sink.init()
        sink.begin()
        for pos, src in positions:
            if pos % config.publisher.shards != index:
                continue
            sid = stream_id(src, entity)
            old = current.get(sid)
            cp = Checkpoint(
                stream=sid,
                watermark=to,
                origin=to,
                seen=SeenSet(),
                rows_published=0 if old is None else old.rows_published,
                last_error=None,
                state="running",
                updated_at=utc_now(),
                publisher_version="reset",
            )
            sink.produce(config.publisher.checkpoint_topic, sid.encode(), cp.encode())
            done.append(sid)
        sink.commit()
        sink.close()
    return done
