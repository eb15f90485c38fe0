"""The machine's own ceilings: how fast one core parses, maps and encodes the rows, and how fast
a bare transactional producer moves the encoded messages into Kafka.

Both use the rows of the end-to-end workload (an in-process simulator with the same settings)
and the publisher's own components and Kafka settings, so the end-to-end figures can be read
as a fraction of them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

import fastavro
import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.workload import Workload
from publisher import __version__
from publisher.codec import EntityCodec
from publisher.config import parse_config
from publisher.entities import EntitySpec
from publisher.kafka import LIBRDKAFKA_LOG
from publisher.mapping import RowMapper
from publisher.runner import producer_conf
from publisher.service import base_headers
from publisher.timefmt import to_millis


@dataclass(frozen=True)
class EncodeCeiling:
    """Rows per second of each step on one core, no I/O, best of several passes."""

    entity: str
    rows: int
    json_bytes_per_row: float
    avro_bytes_per_row: float
    parse: float  # orjson.loads of window-sized JSON arrays
    map: float  # RowMapper.map
    encode: float  # EntityCodec.encode (publisher.avrofast)
    fastavro: float  # fastavro.schemaless_writer on the same records
    full: float  # parse + map + encode: the ceiling
    identical: bool  # every avrofast body equals fastavro's bytes

    @property
    def encode_speedup(self) -> float:
        return self.encode / self.fastavro


@dataclass(frozen=True)
class Sample:
    """Encoded messages of one entity, as the publisher would produce them."""

    entity: str
    keys: list[bytes]
    values: list[bytes]


def best_rate(fn: Callable[[], object], items: int, repeat: int) -> float:
    """Best-of-``repeat`` items per second of ``fn`` (which processes ``items`` items)."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return items / best


def each(fn: Callable[[Any], object], items: Iterable[Any]) -> None:
    """Call ``fn`` on every item, keeping no result: a list of 20,000 results would make the
    garbage collector's work part of what is measured."""
    for item in items:
        fn(item)


def chunks(rows: Sequence[bytes], size: int) -> list[bytes]:
    """Rows joined into JSON array bodies of at most ``size`` rows, like Deltas responses."""
    return [b"[" + b",".join(rows[i : i + size]) + b"]" for i in range(0, len(rows), size)]


def workload_rows(workload: Workload, entity: str, limit: int) -> list[bytes]:
    """The first ``limit`` row versions of ``entity`` in the workload's history."""
    sim = workload.simulator()
    total = workload.rows[entity]
    fraction = min(1.0, (limit + 256) / total)  # rows are spread evenly; a little extra
    stop = workload.history_start + workload.span * fraction
    return sim.changes(entity, workload.history_start, stop)[:limit]


def encode_ceiling(
    spec: EntitySpec, rows: Sequence[bytes], *, window_rows: int, repeat: int = 3
) -> tuple[EncodeCeiling, Sample]:
    """Measure parse, map and encode of ``rows``; also return the encoded messages."""
    bodies = chunks(rows, window_rows)
    mapper = RowMapper(spec, source_name="bench", version=__version__)
    codec = EntityCodec(spec)
    start_ms, stop_ms = 1_700_000_000_000, 1_700_003_600_000
    now_ms = to_millis(datetime.now(UTC))
    parsed = [row for body in bodies for row in orjson.loads(body)]
    events = [mapper.map(row, start_ms, stop_ms, now_ms) for row in parsed]
    records = [ev.record for ev in events]
    schema = fastavro.parse_schema(spec.schema)

    def plain(record: dict[str, Any]) -> bytes:
        buf = BytesIO()
        fastavro.schemaless_writer(buf, schema, record)
        return buf.getvalue()

    values = [codec.encode(r) for r in records]
    header = codec.header
    identical = all(v == header + plain(r) for v, r in zip(values, records, strict=True))

    def full() -> None:
        encode, map_row = codec.encode, mapper.map
        for body in bodies:
            for row in orjson.loads(body):
                encode(map_row(row, start_ms, stop_ms, now_ms).record)

    n = len(parsed)
    ceiling = EncodeCeiling(
        entity=spec.name,
        rows=n,
        json_bytes_per_row=sum(map(len, rows)) / n,
        avro_bytes_per_row=sum(map(len, values)) / n,
        parse=best_rate(lambda: each(orjson.loads, bodies), n, repeat),
        map=best_rate(
            lambda: each(lambda r: mapper.map(r, start_ms, stop_ms, now_ms), parsed), n, repeat
        ),
        encode=best_rate(lambda: each(codec.encode, records), n, repeat),
        fastavro=best_rate(lambda: each(plain, records), n, repeat),
        full=best_rate(full, n, repeat),
        identical=identical,
    )
    keys = [ev.key.encode() for ev in events]
    return ceiling, Sample(spec.name, keys, values)


def mixed_rate(rates: dict[str, float], rows: dict[str, int]) -> float:
    """Rows per second of a workload whose entities are processed one after another at
    ``rates`` (rows/s each): total rows over total time."""
    seconds = sum(n / rates[e] for e, n in rows.items())
    return sum(rows.values()) / seconds


@dataclass(frozen=True)
class ProducerCeiling:
    messages: int
    seconds: float
    transactions: int
    value_bytes: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.value_bytes / self.seconds / 1e6


def producer_ceiling(
    bootstrap: str,
    samples: Iterable[Sample],
    *,
    messages: int,
    transaction_rows: int,
    producer_overrides: dict[str, Any] | None = None,
) -> ProducerCeiling:
    """A bare transactional producer with the publisher's settings: ``messages`` pre-encoded
    messages (cycling through the samples) into 3-partition topics, ``transaction_rows`` per
    transaction, each with the publisher's headers."""
    prefix = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    samples = list(samples)
    topics = {s.entity: f"{prefix}.bench.{s.entity}" for s in samples}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(t, 3, 1) for t in topics.values()]).values():
        fut.result(60)
    config = parse_config(
        {
            "publisher": {"transactional_id": prefix},
            "kafka": {"bootstrap_servers": bootstrap, "producer": producer_overrides or {}},
            "windows": {"start_from": "2024-01-01T00:00:00Z"},
            "sources": [
                {
                    "name": "bench",
                    "client_id": "x",
                    "client_secret": "x",
                    "username": "x",
                    "password": "x",  # never used: no source is contacted
                    "entities": [s.entity for s in samples],
                }
            ],
        },
        env={},
    )
    producer = Producer({"logger": LIBRDKAFKA_LOG, **producer_conf(config, prefix)})
    producer.init_transactions(60)
    plan = [
        (topics[s.entity], key, value, base_headers("bench", s.entity))
        for s in samples
        for key, value in zip(s.keys, s.values, strict=True)
    ]
    sent = txns = size = 0
    began = time.perf_counter()
    while sent < messages:
        producer.begin_transaction()
        for _ in range(min(transaction_rows, messages - sent)):
            topic, key, value, base = plan[sent % len(plan)]
            headers: list[tuple[str, str | bytes | None]] = [
                *base,
                ("dc-op", b"c"),
                ("idempotency-key", key),
            ]
            while True:
                try:
                    producer.produce(topic, value, key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
            size += len(value)
        producer.commit_transaction()
        txns += 1
    seconds = time.perf_counter() - began
    producer.flush(10)
    admin.delete_topics(list(topics.values()))
    return ProducerCeiling(sent, seconds, txns, size)
