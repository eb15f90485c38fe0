"""The broker the tests use is a real Kafka with working transactions."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import Producer

from publisher.kafka import read_to_end
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


def test_reading_checkpoints_waits_out_another_producers_open_transaction(
    kafka_bootstrap: str, topic_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A shard killed with a transaction open holds the checkpoint partition's stable offset
    # back; what another shard committed after it is only visible once that transaction ends.
    create_topic(kafka_bootstrap, topic_name)

    def producer() -> Producer:
        p = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": random_name("t")})
        p.init_transactions(30)
        return p

    dead, alive = producer(), producer()
    dead.begin_transaction()
    dead.produce(topic_name, key="shard-1", value="never committed")
    dead.flush(30)  # written, its transaction left open
    alive.begin_transaction()
    alive.produce(topic_name, key="shard-0", value="committed after it")
    alive.commit_transaction(30)

    conf = {"bootstrap.servers": kafka_bootstrap, "group.id": random_name("g")}
    assert [m.value() for m in read_to_end(conf, [topic_name], timeout=30)] == []

    class AbortOnceWarned(logging.Handler):
        """The dead shard's successor aborts its transaction once the reader says it waits:
        the read must have waited, and then must finish."""

        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("still reading"):
                dead.abort_transaction(30)

    reader_log = logging.getLogger("publisher.kafka")
    abort = AbortOnceWarned()
    reader_log.addHandler(abort)
    try:
        seen = read_to_end(
            conf, [topic_name], timeout=60, through_open_transactions=True, warn_after=1.0
        )
        with caplog.at_level(logging.INFO, logger="publisher.kafka"):
            assert [m.value() for m in seen] == [b"committed after it"]
    finally:
        reader_log.removeHandler(abort)
    # The wait is explained while it lasts, and its end is logged.
    said = [r.getMessage() for r in caplog.records if r.name == "publisher.kafka"]
    assert len(said) == 2, said
    assert said[0].startswith(f"still reading {topic_name}[0] to the end after ")
    assert "a producer's transaction may still be open there" in said[0]
    assert said[1].startswith(f"read {topic_name} to the end in ")
