"""The broker the tests use is a real Kafka with working transactions."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from publisher.config import utc_now
from publisher.entities import load_entities
from publisher.kafka import TransactionAborted, TransactionalSink, read_to_end
from publisher.metrics import PublisherMetrics
from publisher.runner import Shard, build_streams, producer_conf, restore_checkpoints
from publisher.service import new_checkpoint
from tests.integration.harness import load, write_config
from tests.kafka_helpers import consume_all, create_topic, random_name

pytestmark = pytest.mark.integration


def test_read_committed_consumer_sees_only_committed_transactions(
    kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name, partitions=3)
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "transactional.id": random_name("txn"),
        }
    )
    producer.init_transactions(30)

    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic_name, key=f"k{i}", value=f"committed-{i}")
    producer.commit_transaction(30)

    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic_name, key=f"k{i}", value=f"aborted-{i}")
    producer.flush(30)  # the aborted records really reach the log before the abort
    producer.abort_transaction(30)

    producer.begin_transaction()
    producer.produce(topic_name, key="last", value="committed-last")
    producer.commit_transaction(30)

    seen = sorted(r.value for r in consume_all(kafka_bootstrap, [topic_name]) if r.value)
    expected = sorted([f"committed-{i}".encode() for i in range(10)] + [b"committed-last"])
    assert seen == expected


def open_then_committed(bootstrap: str, topic: str, key: str, value: bytes) -> Producer:
    """One producer's transaction left open on ``topic`` (a shard killed mid-transaction),
    then another producer's record committed after it; returns the first, still open."""

    def producer() -> Producer:
        p = Producer({"bootstrap.servers": bootstrap, "transactional.id": random_name("t")})
        p.init_transactions(30)
        return p

    dead, alive = producer(), producer()
    dead.begin_transaction()
    dead.produce(topic, key="shard-1", value="never committed")
    dead.flush(30)  # written, its transaction left open
    alive.begin_transaction()
    alive.produce(topic, key=key, value=value)
    alive.commit_transaction(30)
    return dead


@contextmanager
def aborted_once_the_reader_waits(dead: Producer) -> Iterator[None]:
    """The dead shard's successor aborts its transaction when the reader says it is waiting
    (``read_to_end``'s warning): the read must have waited, and then must finish."""

    class AbortOnceWarned(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("still reading"):
                dead.abort_transaction(30)

    reader_log = logging.getLogger("publisher.kafka")
    handler = AbortOnceWarned()
    reader_log.addHandler(handler)
    try:
        yield
    finally:
        reader_log.removeHandler(handler)


def test_reading_checkpoints_waits_out_another_producers_open_transaction(
    kafka_bootstrap: str, topic_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A shard killed with a transaction open holds the checkpoint partition's stable offset
    # back; what another shard committed after it is only visible once that transaction ends.
    create_topic(kafka_bootstrap, topic_name)
    dead = open_then_committed(kafka_bootstrap, topic_name, "shard-0", b"committed after it")

    conf = {"bootstrap.servers": kafka_bootstrap, "group.id": random_name("g")}
    assert [m.value() for m in read_to_end(conf, [topic_name], timeout=30)] == []

    with aborted_once_the_reader_waits(dead):
        seen = read_to_end(
            conf, [topic_name], timeout=60, through_open_transactions=True, warn_after=1.0
        )
        with caplog.at_level(logging.INFO, logger="publisher.kafka"):
            assert [m.value() for m in seen] == [b"committed after it"]
    # The wait is explained while it lasts, and its end is logged.
    said = [r.getMessage() for r in caplog.records if r.name == "publisher.kafka"]
    assert len(said) == 2, said
    assert said[0].startswith(f"still reading {topic_name}[0] to the end after ")
    assert "a producer's transaction may still be open there" in said[0]
    assert said[1].startswith(f"read {topic_name} to the end in ")


@pytest.mark.parametrize("stopped", [False, True], ids=["waits-it-out", "stop-requested"])
def test_a_restart_finds_its_checkpoint_behind_another_shards_open_transaction(
    kafka_bootstrap: str, tmp_path: Path, stopped: bool
) -> None:
    # The exactly-once case CI found: shard 1 killed with a transaction open on the shared
    # checkpoint partition, shard 0's later checkpoint behind it. A restarted shard 0 that
    # read only to the stable offset started from an older watermark and published windows
    # twice; restore_checkpoints must find the newest one.
    start = datetime(2026, 1, 1, tzinfo=UTC)
    config = load(
        write_config(
            tmp_path / "p.toml",
            bootstrap=kafka_bootstrap,
            simulator_url="http://127.0.0.1:9",  # never called: nothing is fetched here
            prefix=random_name("restore"),
            start_from=start,
            entities=["Customers"],
        )
    )
    topic = config.publisher.checkpoint_topic
    create_topic(kafka_bootstrap, topic, **{"cleanup.policy": "compact"})
    committed = new_checkpoint("retailer", "Customers", start)
    committed.watermark = start + timedelta(hours=4)
    dead = open_then_committed(kafka_bootstrap, topic, committed.stream, committed.encode())

    streams = build_streams(
        config, load_entities(), Shard(), PublisherMetrics(CollectorRegistry(), clock=utc_now)
    )
    if stopped:
        # SIGTERM while the read waits (a supervisor stopping the tree after the other shard
        # died): the read must end at once, restore nothing, and say nothing may be published.
        stop = threading.Event()
        threading.Timer(1.0, stop.set).start()
        began = time.monotonic()
        assert restore_checkpoints(config, streams, stop=stop) is False
        assert time.monotonic() - began < 30  # not the 120 s bound of the wait
        assert [s.committed.watermark for s in streams] == [start]
        dead.abort_transaction(30)
        return
    with aborted_once_the_reader_waits(dead):
        assert restore_checkpoints(config, streams) is True
    assert [(s.id, s.committed.watermark) for s in streams] == [
        ("retailer/Customers", committed.watermark)
    ]


def refusing_topic(bootstrap: str, tmp_path: Path, prefix: str) -> tuple[dict[str, Any], str]:
    """The publisher's own producer settings, and a topic that refuses batches over 2000
    bytes."""
    config = load(
        write_config(
            tmp_path / "p.toml",
            bootstrap=bootstrap,
            simulator_url="http://127.0.0.1:9",  # never called
            prefix=prefix,
            start_from=datetime(2026, 1, 1, tzinfo=UTC),
            entities=["Customers"],
        )
    )
    topic = f"{prefix}.small"
    create_topic(bootstrap, topic, partitions=1, **{"max.message.bytes": "2000"})
    return producer_conf(config, f"{prefix}-txn"), topic


def replay_the_record_that_fits(sink: TransactionalSink, topic: str) -> None:
    """What the publisher's loop does after an abort: replay from its checkpoint (here, the
    record that fits). The producer may need one more abort to bump its epoch after a refused
    batch ("skipped sequence numbers"), so replay until a commit goes through."""
    for attempt in range(1, 6):
        sink.begin()
        sink.produce(topic, b"fits", b"a small record")
        try:
            sink.commit()
            return
        except TransactionAborted:
            assert attempt < 5


def test_a_record_the_broker_refuses_fails_the_commit_with_the_publishers_settings(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The publisher asks librdkafka for no report of a delivered record: a record that fails
    # must still fail commit_transaction (the transaction is aborted and the caller replays
    # from its checkpoint), or it would be lost without a word.
    conf, topic = refusing_topic(kafka_bootstrap, tmp_path, random_name("refused"))
    assert conf["delivery.report.only.error"] is True
    sink = TransactionalSink(conf, unavailable_deadline=30)
    try:
        sink.init()
        sink.begin()
        sink.produce(topic, b"fits", b"a small record")
        # Random bytes do not compress: its batch is over the topic's limit after lz4 too.
        sink.produce(topic, b"refused", os.urandom(10_000))
        with pytest.raises(TransactionAborted, match="Message size too large"):
            sink.commit()
        replay_the_record_that_fits(sink, topic)
    finally:
        sink.close()
    seen = [(r.key, r.value) for r in consume_all(kafka_bootstrap, [topic])]
    assert seen == [(b"fits", b"a small record")]  # once: the aborted copy is not read


def test_a_record_refused_while_producing_aborts_the_transaction_not_the_process(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Once a batch is refused, librdkafka takes no more records in that transaction:
    # produce() says "Erroneous state". That is the transaction's failure (abort and replay),
    # not the producer's: the process must not stop on it.
    conf, topic = refusing_topic(kafka_bootstrap, tmp_path, random_name("refusedmid"))
    sink = TransactionalSink(conf, unavailable_deadline=30)
    try:
        sink.init()
        sink.begin()
        sink.produce(topic, b"refused", os.urandom(10_000))
        deadline = time.monotonic() + 20
        with pytest.raises(TransactionAborted, match="Erroneous state"):
            while time.monotonic() < deadline:  # until the broker's refusal is known
                sink.produce(topic, b"meanwhile", b"a small record")
                time.sleep(0.01)
        replay_the_record_that_fits(sink, topic)
    finally:
        sink.close()
    seen = [(r.key, r.value) for r in consume_all(kafka_bootstrap, [topic])]
    assert seen == [(b"fits", b"a small record")]
