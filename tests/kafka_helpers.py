"""Test helpers that talk to a real Kafka cluster: topics and read_committed consumption."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def random_name(prefix: str = "t") -> str:
    """A topic or id name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_topic(bootstrap: str, name: str, partitions: int = 1, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)]
    )
    for fut in futures.values():
        fut.result(30)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def consume_all(bootstrap: str, topics: list[str], timeout: float = 30.0) -> list[Record]:
    """Every record a read_committed consumer sees in ``topics``, up to the last stable offset.

    Stops when each partition's position reaches its end offset (for read_committed, the LSO),
    so a test never waits on a fixed sleep.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(timeout=10)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": random_name("g"),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        parts = [
            TopicPartition(t, p)
            for t in topics
            if t in meta.topics
            for p in meta.topics[t].partitions
        ]
        ends: dict[tuple[str, int], int] = {}
        for tp in parts:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            ends[(tp.topic, tp.partition)] = high
        consumer.assign([TopicPartition(tp.topic, tp.partition, 0) for tp in parts])
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        pending = {k for k, end in ends.items() if end > 0}
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(err)
                out.append(
                    Record(
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        msg.key(),
                        msg.value(),
                        tuple(msg.headers() or ()),
                    )
                )
            for tp in consumer.position([TopicPartition(t, p) for t, p in pending]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    pending.discard((tp.topic, tp.partition))
        if pending:
            raise TimeoutError(f"did not reach the end of {sorted(pending)}")
        return out
    finally:
        consumer.close()
