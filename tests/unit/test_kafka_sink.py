"""TransactionalSink's own bookkeeping, with a fake producer (the broker tests are integration)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from publisher.errors import ProducerFenced
from publisher.kafka import SERVE_EVERY, SLOW_CALL_SECONDS, TransactionalSink


class RecordingProducer:
    def __init__(self, _conf: dict[str, Any]) -> None:
        self.calls: list[str] = []

    def produce(self, topic: str, **_kwargs: Any) -> None:
        self.calls.append("produce")

    def poll(self, timeout: float) -> int:
        assert timeout == 0  # never blocks the produce loop
        self.calls.append("poll")
        return 0


def test_delivery_reports_are_served_while_producing_not_only_at_commit() -> None:
    producers: list[RecordingProducer] = []

    def factory(conf: dict[str, Any]) -> Any:
        producers.append(RecordingProducer(conf))
        return producers[-1]

    sink = TransactionalSink(
        {"transactional.id": "t"}, unavailable_deadline=1, producer_factory=factory
    )
    for _ in range(2 * SERVE_EVERY + 1):
        sink.produce("topic", b"k", b"v")
    calls = producers[0].calls
    assert calls.count("produce") == 2 * SERVE_EVERY + 1
    polls = [i for i, c in enumerate(calls) if c == "poll"]
    assert polls == [SERVE_EVERY, 2 * SERVE_EVERY + 1]  # after every SERVE_EVERY records


class StuckCommitProducer:
    """commit_transaction blocks (a coordinator that does not answer) until released."""

    def __init__(self, _conf: dict[str, Any]) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def commit_transaction(self, timeout: float) -> None:
        self.entered.set()
        self.release.wait(10)

    def flush(self, timeout: float) -> int:
        return 0  # every record already delivered: only the commit is left


def test_a_commit_that_waits_on_kafka_makes_the_sink_unready() -> None:
    producers: list[StuckCommitProducer] = []
    now = [100.0]

    def factory(conf: dict[str, Any]) -> Any:
        producers.append(StuckCommitProducer(conf))
        return producers[-1]

    sink = TransactionalSink(
        {"transactional.id": "t"},
        unavailable_deadline=60,
        producer_factory=factory,
        monotonic=lambda: now[0],
    )
    committing = threading.Thread(target=sink.commit)
    committing.start()
    try:
        assert producers[0].entered.wait(10)
        assert sink.health() == (True, "not used yet")  # a commit may take a moment
        now[0] += SLOW_CALL_SECONDS + 1
        assert sink.health() == (False, "commit_transaction: waiting for Kafka for 6s")
    finally:
        producers[0].release.set()
        committing.join(10)
    assert sink.health() == (True, "commit_transaction succeeded")


class ConfProducer:
    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.calls: list[str] = []

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init_transactions")

    def purge(self) -> None:
        self.calls.append("purge")


def test_a_new_batch_size_is_a_new_producer_that_takes_over_the_transactional_id() -> None:
    producers: list[ConfProducer] = []

    def factory(conf: dict[str, Any]) -> Any:
        producers.append(ConfProducer(conf))
        return producers[-1]

    sink = TransactionalSink(
        {"transactional.id": "t", "linger.ms": 100, "batch.size": 50_000},
        unavailable_deadline=1,
        producer_factory=factory,
    )
    sink.init()
    sink.use_batch_size(20_000)
    sink.use_batch_size(None)
    first, smaller, default = producers
    assert first.calls == ["init_transactions", "purge"]
    assert smaller.calls == ["init_transactions", "purge"]
    assert default.calls == ["init_transactions"]
    assert smaller.conf["batch.size"] == 20_000
    assert "batch.size" not in default.conf
    for p in producers:
        assert (p.conf["transactional.id"], p.conf["linger.ms"]) == ("t", 100)


class FencedProducer:
    """Every record delivered; ending the transaction finds the producer fenced."""

    def __init__(self, _conf: dict[str, Any]) -> None:
        pass

    def begin_transaction(self) -> None:
        pass

    def flush(self, timeout: float) -> int:
        return 0

    def commit_transaction(self, timeout: float) -> None:
        raise KafkaException(
            KafkaError(
                KafkaError._FENCED,
                "Failed to end transaction: Local: This instance has been fenced by a newer "
                "instance",
                fatal=True,
            )
        )


@pytest.mark.parametrize(
    ("open_seconds", "says"),
    [
        (5.0, "fenced: another publisher instance started with transactional.id 't'"),
        (
            75.0,
            "fenced: transactional.id 't' was fenced while its transaction had been open for "
            "75s, longer than transaction.timeout.ms (60s). The broker aborts such a "
            "transaction",
        ),
    ],
)
def test_a_fenced_transaction_that_outlived_its_timeout_says_the_broker_may_have_aborted_it(
    open_seconds: float, says: str
) -> None:
    # A broker away for longer than transaction.timeout.ms aborts the transaction when it
    # comes back, and fences the producer to do so: not necessarily another instance.
    now = [100.0]
    sink = TransactionalSink(
        {"transactional.id": "t", "transaction.timeout.ms": 60_000},
        unavailable_deadline=600,
        producer_factory=FencedProducer,
        monotonic=lambda: now[0],
    )
    sink.begin()
    now[0] += open_seconds
    with pytest.raises(ProducerFenced) as caught:
        sink.commit()
    assert str(caught.value).startswith(says)
