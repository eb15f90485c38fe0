"""The Kafka edge: the transactional sink, topic creation and read-to-end, following librdkafka's
transaction contract exactly.

``classify`` is the one place that decides what a Kafka error means:

- retriable (``err.retriable()``, timeouts): call the same operation again, until the
  configured unavailable deadline passes;
- abortable (``err.txn_requires_abort()``, or any delivery failure): abort the transaction and
  replay from the last committed checkpoint;
- fenced (``_FENCED``/``PRODUCER_FENCED``/``INVALID_PRODUCER_EPOCH`` when fatal): another instance
  owns our transactional.id: stop, non-zero exit, clear message;
- anything else fatal: stop, non-zero exit.

The first delivery error of a transaction is kept and raised before commit, so a failed
record never hides behind a successful commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from publisher.errors import KafkaFatal, ProducerFenced, PublisherError

log = logging.getLogger(__name__)
#: librdkafka's own log lines go through Python logging (scrubbed, JSON when configured).
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")

#: Broker errors that pass by themselves (leader elections, coordinators loading, a topic
#: just created) although librdkafka does not flag them retriable on every code path.
_TRANSIENT_CODES = frozenset(
    {
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.REQUEST_TIMED_OUT,
    }
)
_FENCED_CODES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


class Outcome(Enum):
    RETRY = "retry"
    ABORT = "abort"
    FENCED = "fenced"
    FATAL = "fatal"


def classify(err: KafkaError) -> Outcome:
    """What librdkafka's contract says to do about ``err``."""
    if err.fatal():
        return Outcome.FENCED if err.code() in _FENCED_CODES else Outcome.FATAL
    if err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
        return Outcome.FENCED
    if err.txn_requires_abort():
        return Outcome.ABORT
    if err.retriable() or err.code() in _TRANSIENT_CODES:
        return Outcome.RETRY
    return Outcome.FATAL


class TransactionAborted(PublisherError):
    """The open transaction had to be aborted; replay from the last committed checkpoint."""


def _fatal(err: KafkaError, transactional_id: str) -> PublisherError:
    if classify(err) is Outcome.FENCED:
        return ProducerFenced(
            f"fenced: another publisher instance started with transactional.id "
            f"{transactional_id!r}; this instance stops so that only one publishes ({err.str()})"
        )
    return KafkaFatal(f"Kafka fatal error for transactional.id {transactional_id!r}: {err.str()}")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: Mapping[str, str]


def ensure_topics(admin_conf: Mapping[str, Any], topics: Sequence[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AdminClient(dict(admin_conf))
    existing = set(admin.list_topics(timeout=30).topics)
    missing = [t for t in topics if t.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t.name, t.partitions, t.replication, config=dict(t.config)) for t in missing]
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result(60)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a racing instance
                raise KafkaFatal(f"cannot create topic {name}: {exc.args[0].str()}") from None
    return created


class TransactionalSink:
    """One transactional producer: begin, produce, commit or abort, per librdkafka's rules."""

    def __init__(
        self,
        conf: Mapping[str, Any],
        *,
        unavailable_deadline: float,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        self.transactional_id = str(conf["transactional.id"])
        self._producer = producer_factory({"logger": LIBRDKAFKA_LOG, **conf})
        self._deadline_s = unavailable_deadline
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._first_error: KafkaError | None = None
        self._in_flight = 0
        self._open = False
        #: False while Kafka calls are failing with retriable errors (for /readyz).
        self.healthy = True
        self.health_detail = "not used yet"

    # -- lifecycle -----------------------------------------------------------------------
    def init(self) -> None:
        """``init_transactions``: fences older instances with our id and completes (aborts)
        whatever transaction they left open."""
        self._call("init_transactions", self._producer.init_transactions)

    def begin(self) -> None:
        self._first_error = None
        self._call("begin_transaction", self._producer.begin_transaction)
        self._open = True

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """Queue one record in the open transaction; waits while librdkafka's queue is full."""
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery
                )
                with self._lock:
                    self._in_flight += 1
                return
            except BufferError:
                self._producer.poll(0.05)  # serve delivery reports to make room
            except KafkaException as exc:
                self._raise_for(exc.args[0], "produce")

    def commit(self) -> None:
        """Flush, surface the first delivery error, then commit. Raises TransactionAborted when
        the transaction had to be aborted (the caller replays), ProducerFenced/KafkaFatal when
        the process must stop."""
        self._flush_until_deadline()
        if self._first_error is not None:
            err = self._first_error
            if err.fatal():
                raise _fatal(err, self.transactional_id)
            self.abort()
            raise TransactionAborted(f"a record was not delivered: {err.str()}")
        # No timeout: librdkafka then uses the remaining transaction time, as it recommends.
        self._call("commit_transaction", self._producer.commit_transaction)
        self._open = False

    def abort(self) -> None:
        """Abort the open transaction (retrying while Kafka is unreachable)."""
        if not self._open:
            return
        # librdkafka#4849: an abort racing the first AddPartitionsToTxn can turn fatal, so give
        # in-flight deliveries a moment to be acknowledged first.
        self._producer.flush(5.0)
        self._call("abort_transaction", self._producer.abort_transaction, abortable=False)
        self._open = False
        self._first_error = None

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)

    def close(self) -> None:
        """Abort what is open (best effort) and release the producer."""
        if self._open:
            try:
                self.abort()
            except PublisherError as exc:
                log.warning("could not abort the open transaction on close: %s", exc)
        self._producer.flush(5.0)
        self._producer.close()

    # -- internals -----------------------------------------------------------------------
    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        with self._lock:
            self._in_flight -= 1
            if err is not None and self._first_error is None:
                self._first_error = err

    def _flush_until_deadline(self) -> None:
        deadline = self._monotonic() + self._deadline_s
        while self._producer.flush(1.0) > 0:
            self.healthy, self.health_detail = False, "records waiting for Kafka"
            if self._monotonic() > deadline:
                raise KafkaFatal(
                    f"Kafka unreachable for {self._deadline_s:.0f}s: records not delivered"
                )

    def _raise_for(self, err: KafkaError, op: str) -> None:
        outcome = classify(err)
        if outcome in (Outcome.FENCED, Outcome.FATAL):
            raise _fatal(err, self.transactional_id)
        if outcome is Outcome.ABORT:
            raise TransactionAborted(f"{op}: {err.str()}")
        raise KafkaFatal(f"{op}: unexpected retriable error outside a retry loop: {err.str()}")

    def _call(self, op: str, fn: Callable[[], object], *, abortable: bool = True) -> None:
        deadline = self._monotonic() + self._deadline_s
        while True:
            try:
                fn()
                self.healthy, self.health_detail = True, f"{op} succeeded"
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                outcome = classify(err)
                if outcome is Outcome.RETRY:
                    self.healthy, self.health_detail = False, f"{op}: {err.str()}"
                    if self._monotonic() > deadline:
                        raise KafkaFatal(
                            f"{op}: Kafka unreachable for {self._deadline_s:.0f}s ({err.str()})"
                        ) from None
                    log.warning("%s: retriable Kafka error, retrying: %s", op, err.str())
                    self._sleep(0.5)
                    continue
                if outcome is Outcome.ABORT and abortable:
                    self.abort()
                    raise TransactionAborted(f"{op}: {err.str()}") from None
                raise _fatal(err, self.transactional_id) from None


def read_to_end(
    conf: Mapping[str, Any],
    topics: Sequence[str],
    *,
    timeout: float = 60.0,
) -> Iterator[Message]:
    """Every record a read_committed consumer sees in ``topics`` from the beginning up to the
    end as of the call (the last stable offset), in per-partition order. Missing topics yield
    nothing."""
    consumer = Consumer(
        {
            "logger": LIBRDKAFKA_LOG,
            **conf,
            "group.id": conf.get("group.id", "dataconnect-publisher-reader"),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        meta = consumer.list_topics(timeout=30)
        parts = [
            TopicPartition(t, p)
            for t in topics
            if t in meta.topics and meta.topics[t].error is None
            for p in meta.topics[t].partitions
        ]
        deadline = time.monotonic() + timeout
        ends = {}
        for tp in parts:
            high = _end_offset(consumer, tp, deadline)
            if high > 0:
                ends[(tp.topic, tp.partition)] = high
        if not ends:
            return
        consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
        pending = set(ends)
        while pending:
            if time.monotonic() > deadline:
                raise KafkaFatal(f"could not read {sorted(pending)} to the end in {timeout}s")
            msg = consumer.poll(0.5)
            if msg is not None:
                err = msg.error()
                if err is None:
                    yield msg
                elif err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaFatal(f"reading {msg.topic()}: {err.str()}")
            positions = consumer.position([TopicPartition(t, p) for t, p in pending])
            for tp in positions:
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    pending.discard((tp.topic, tp.partition))
    finally:
        consumer.close()


def _end_offset(consumer: Consumer, tp: TopicPartition, deadline: float) -> int:
    """The partition's end offset (the last stable offset for read_committed), retrying
    retriable errors such as a leader not elected yet right after the topic was created."""
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            return int(high)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if classify(err) is not Outcome.RETRY or time.monotonic() > deadline:
                raise KafkaFatal(f"end offset of {tp.topic}[{tp.partition}]: {err.str()}") from None
            time.sleep(0.2)
