"""The broker the tests use is a real Kafka with working transactions."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

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
