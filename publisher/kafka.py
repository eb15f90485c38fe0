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
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

# The documented public names; the package's __init__ imports them without re-exporting.
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]
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


def _fatal(
    err: KafkaError,
    transactional_id: str,
    *,
    open_seconds: float | None,
    timeout_seconds: float,
) -> PublisherError:
    """The error that stops the process. ``open_seconds``: how long the transaction had been
    open when ``err`` came (None: no transaction was open)."""
    if classify(err) is not Outcome.FENCED:
        return KafkaFatal(
            f"Kafka fatal error for transactional.id {transactional_id!r}: {err.str()}"
        )
    if open_seconds is not None and open_seconds > timeout_seconds:
        # The broker aborts a transaction open longer than transaction.timeout.ms, and bumps
        # the producer's epoch to do so: the producer is then fenced as if another instance
        # had started. Which of the two it was cannot be told from here, and only a restart
        # (checkpoints read back from Kafka) is safe after either: stop, saying both.
        return ProducerFenced(
            f"fenced: transactional.id {transactional_id!r} was fenced while its transaction "
            f"had been open for {open_seconds:.0f}s, longer than transaction.timeout.ms "
            f"({timeout_seconds:.0f}s). The broker aborts such a transaction (Kafka was "
            "unreachable meanwhile, most likely), or another publisher instance started with "
            "this id. This instance stops; a restart resumes from the last committed "
            "checkpoint. To ride out longer Kafka outages, raise "
            f"kafka.transaction_timeout_seconds ({err.str()})"
        )
    return ProducerFenced(
        f"fenced: another publisher instance started with transactional.id "
        f"{transactional_id!r}; this instance stops so that only one publishes ({err.str()})"
    )


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: Mapping[str, str]


def ensure_topics(
    admin_conf: Mapping[str, Any],
    topics: Sequence[TopicSpec],
    *,
    unavailable_deadline: float = 60.0,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. An unreachable
    cluster is retried until ``unavailable_deadline`` seconds pass, then KafkaFatal."""
    conf: dict[str, Any] = {"logger": LIBRDKAFKA_LOG, **admin_conf}
    admin = AdminClient(conf)
    existing = set(_list_topics(admin, unavailable_deadline).topics)
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


def topic_message_limits(
    admin_conf: Mapping[str, Any],
    topics: Sequence[str],
    *,
    deadline: float,
    otherwise: str,
) -> dict[str, int] | None:
    """Each topic's ``max.message.bytes`` (its own, or the broker's default), for
    :mod:`publisher.limits`. None, after a warning ending with ``otherwise`` (what the
    caller does instead), when the cluster will not say (no DescribeConfigs permission, say):
    then the producer's own limit is all that is known."""
    conf: dict[str, Any] = {"logger": LIBRDKAFKA_LOG, **admin_conf}
    admin = AdminClient(conf)
    until = time.monotonic() + deadline
    while True:
        futures = admin.describe_configs(
            [ConfigResource(ResourceType.TOPIC, t) for t in topics],
            request_timeout=max(1.0, min(10.0, until - time.monotonic())),
        )
        try:
            return {
                res.name: int(fut.result()["max.message.bytes"].value)
                for res, fut in futures.items()
            }
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            # A topic created a moment ago may not be known to every broker yet.
            if classify(err) is Outcome.RETRY and time.monotonic() < until:
                time.sleep(0.5)
                continue
            log.warning("cannot read the topics' max.message.bytes (%s): %s", err.str(), otherwise)
            return None
        except (KeyError, ValueError) as exc:  # a cluster that describes topics oddly
            log.warning("cannot read the topics' max.message.bytes (%r): %s", exc, otherwise)
            return None


def _list_topics(admin: AdminClient, deadline_s: float) -> Any:
    # The first call of a process: a broker that is down (or a wrong bootstrap address) must
    # give one clear line and exit 1 after the deadline, like every later Kafka call, not a
    # traceback after librdkafka's own 30 s.
    deadline = time.monotonic() + deadline_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            return admin.list_topics(timeout=max(1.0, min(10.0, remaining)))
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if classify(err) is not Outcome.RETRY:
                raise KafkaFatal(f"listing topics: {err.str()}") from None
            if time.monotonic() >= deadline:
                raise KafkaFatal(
                    f"Kafka unreachable for {deadline_s:.0f}s: cannot list topics ({err.str()})"
                ) from None
            log.warning("Kafka not reachable yet, retrying: %s", err.str())


def _kafka_error(exc: KafkaException | SystemError) -> KafkaError:
    """The KafkaError behind ``exc``. confluent-kafka sometimes raises a fatal error (fencing)
    while serving callbacks and then runs the next Python callback with it still pending,
    which surfaces as a SystemError caused by the KafkaException."""
    cause = exc if isinstance(exc, KafkaException) else exc.__cause__
    if not isinstance(cause, KafkaException):
        raise exc
    err: KafkaError = cause.args[0]
    return err


#: Queued librdkafka callbacks are served after this many records (TransactionalSink.produce).
SERVE_EVERY = 500
#: A commit, abort or init that has waited longer than this makes the sink unready: these
#: take milliseconds against a healthy broker.
SLOW_CALL_SECONDS = 5.0

#: How long ``close`` may spend aborting an open transaction.
CLOSE_SECONDS = 5.0


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
        # error_cb: fatal errors (fencing) are recorded here and raised from our own code at
        # the next flush; transient ones only mark the sink unhealthy (librdkafka retries).
        self._error_seen: KafkaError | None = None
        self._conf = {"logger": LIBRDKAFKA_LOG, **conf, "error_cb": self._on_error}
        self._factory = producer_factory
        self._producer = producer_factory(self._conf)
        self._deadline_s = unavailable_deadline
        # One blocking call waits at most this long (librdkafka's own default for commit and
        # abort), and never past the unavailable deadline.
        self._txn_timeout_s = float(conf.get("transaction.timeout.ms", 60_000)) / 1000
        self._monotonic = monotonic
        self._sleep = sleep
        self._open = False
        self._began = 0.0  # monotonic time the open transaction began
        self._dead: PublisherError | None = None
        self._unserved = 0  # records produced since delivery reports were last served
        #: False while Kafka calls are failing with retriable errors (for /readyz).
        self.healthy = True
        self.health_detail = "not used yet"
        #: (operation, monotonic start) of the blocking call in progress, if any.
        self._in_call: tuple[str, float] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def init(self) -> None:
        """``init_transactions``: fences older instances with our id and completes (aborts)
        whatever transaction they left open."""
        self._call("init_transactions", self._producer.init_transactions)

    def begin(self) -> None:
        self._call("begin_transaction", lambda _timeout: self._producer.begin_transaction())
        self._open = True
        self._began = self._monotonic()

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
                self._producer.produce(topic, value=value, key=key, headers=headers)
                break
            except BufferError:
                self._producer.poll(0.05)  # let librdkafka drain its queue to make room
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.code() == KafkaError._STATE and self._open:
                    # librdkafka takes no more records once the transaction has failed, say
                    # on a batch the broker refused ("Erroneous state"): abort it, and the
                    # caller replays. A fatal cause makes the abort itself raise it.
                    self.abort()
                    raise TransactionAborted(
                        f"produce: the transaction failed meanwhile ({err.str()})"
                    ) from None
                self._raise_for(err, "produce")
        self._unserved += 1
        if self._unserved >= SERVE_EVERY:
            # Serve what librdkafka has queued for this process so far, now, while this thread
            # holds the GIL anyway: error callbacks, logs, and the reports of records that
            # failed (the producer asks for no others: see runner.producer_conf; an operator
            # may ask for them all, and librdkafka keeps each record until its report is
            # served). Left for commit, they pile up for the whole transaction.
            self._unserved = 0
            self._producer.poll(0)

    def commit(self) -> None:
        """Flush, then commit. Raises TransactionAborted when the transaction had to be aborted
        (the caller replays), ProducerFenced/KafkaFatal when the process must stop.

        There are no per-record delivery callbacks: librdkafka fails commit_transaction with an
        abortable error carrying the first record that was not delivered, which is the check we
        need, without a Python call per record. (confluent-kafka also calls Python delivery
        callbacks with a fatal error still pending, which turns fencing into a SystemError.)
        """
        self._flush_until_deadline()
        # Each attempt blocks for the transaction timeout at most (librdkafka's default), but
        # never past the unavailable deadline: a dead broker must not hold the process longer.
        self._call("commit_transaction", self._producer.commit_transaction)
        self._open = False

    def abort(self) -> None:
        """Abort the open transaction (retrying while Kafka is unreachable)."""
        if not self._open or self._dead is not None:
            return
        # librdkafka#4849: an abort racing the first AddPartitionsToTxn can turn fatal, so give
        # in-flight deliveries a moment to be acknowledged first.
        self._flush(5.0)
        try:
            self._call("abort_transaction", self._producer.abort_transaction, abortable=False)
        except KafkaFatal as exc:  # not ProducerFenced: that one still stops the process
            if self._dead is None:
                raise  # Kafka still unreachable at the deadline: stop
            # Typically a transaction that outlived transaction.timeout.ms while the broker
            # was away: the broker dropped it, so abort_transaction finds no valid state. An
            # aborting transaction never committed, so nothing is ambiguous: a new producer
            # (init_transactions completes whatever is left) and a replay from the committed
            # checkpoints are exactly what a restart of the process would do.
            self._replace_producer(exc)
        self._open = False

    def use_batch_size(self, size: int | None) -> None:
        """Go on with a producer whose ``batch.size`` is ``size`` (None: librdkafka's default),
        when a topic's limit changed: a producer's batch size is fixed when it is created.
        Only between transactions; ``init_transactions`` moves our id to the new producer."""
        if self._open:
            raise RuntimeError("use_batch_size with a transaction open")
        conf = {k: v for k, v in self._conf.items() if k != "batch.size"}
        self._conf = conf if size is None else {**conf, "batch.size": size}
        self._new_producer()

    def _replace_producer(self, why: KafkaFatal) -> None:
        log.warning("the transaction could not be aborted (%s); starting a new producer", why)
        self._new_producer()

    def _new_producer(self) -> None:
        # close() would abort and flush without a timeout: drop the old producer instead.
        self._producer.purge()
        self._producer = self._factory(self._conf)
        self._dead = None
        self._error_seen = None
        self._open = False
        self.init()

    def close(self) -> None:
        """Abort what is open (best effort) and release the producer. After a fatal error
        (fencing included) the producer's transaction is not touched again."""
        settled = self._dead is not None  # a dead producer refuses at once: nothing to wait for
        if self._dead is None:
            # Bounded: when Kafka is gone (the usual reason to stop with a transaction open)
            # the process must still exit; the broker's transaction timeout, or the next
            # instance's init_transactions, aborts what is left open.
            self._deadline_s = min(self._deadline_s, CLOSE_SECONDS)
            try:
                self.abort()
                settled = self._flush(CLOSE_SECONDS) == 0
            except PublisherError as exc:
                log.warning("could not abort the open transaction on close: %s", exc)
        if not settled:
            # confluent-kafka's close() aborts and flushes without a timeout, which waits for
            # a broker that is gone; drop the queue and let the producer be destroyed instead.
            self._producer.purge()
            return
        try:
            with warnings.catch_warnings():
                # After a fatal error close()'s own abort fails by design; its RuntimeWarning
                # would only blur the one clear line the process stops with.
                if self._dead is not None:
                    warnings.simplefilter("ignore", RuntimeWarning)
                self._producer.close()
        except KafkaException as exc:  # a fatal producer may refuse; nothing is left to save
            log.debug("closing the producer: %s", exc.args[0])

    def health(self) -> tuple[bool, str]:
        """Readiness of the Kafka side: False while calls fail with retriable errors, and
        while one blocking call (commit, abort, init) has waited longer than SLOW_CALL_SECONDS.

        A broker that dies just after a transaction's records were delivered leaves
        ``commit_transaction`` waiting for a coordinator that does not answer, with no error
        reported until that call times out; readiness must not wait that long.
        """
        call = self._in_call
        if call is not None:
            op, since = call
            waited = self._monotonic() - since
            if waited > SLOW_CALL_SECONDS:
                return False, f"{op}: waiting for Kafka for {waited:.0f}s"
        return self.healthy, self.health_detail

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._error_seen = err
        else:  # transient (broker down, ...): librdkafka retries; readiness reflects it
            self.healthy, self.health_detail = False, err.str()
            log.warning("Kafka: %s", err.str())

    def _flush(self, timeout: float) -> int:
        try:
            left = int(self._producer.flush(timeout))
        except (KafkaException, SystemError) as exc:
            err = _kafka_error(exc)
            if classify(err) in (Outcome.FENCED, Outcome.FATAL):
                raise self._die(err) from None
            raise TransactionAborted(f"flush: {err.str()}") from None
        if self._error_seen is not None:
            raise self._die(self._error_seen)
        return left

    def _die(self, err: KafkaError) -> PublisherError:
        """Remember a fatal error: the producer is unusable from here on."""
        if err.code() == KafkaError._FATAL and self._error_seen is None:
            # produce() only says "Local: Fatal error"; the cause (fencing, usually) reaches
            # error_cb, which runs from poll: serve it, so a fenced instance exits 3, not 1.
            try:
                self._producer.poll(0.1)
            except (KafkaException, SystemError) as exc:  # it may raise the fatal error instead
                self._error_seen = _kafka_error(exc)
        if err.code() == KafkaError._FATAL and self._error_seen is not None:
            err = self._error_seen
        self._dead = _fatal(
            err,
            self.transactional_id,
            open_seconds=self._monotonic() - self._began if self._open else None,
            timeout_seconds=self._txn_timeout_s,
        )
        self._open = False
        return self._dead

    # -- internals -----------------------------------------------------------------------
    def _flush_until_deadline(self) -> None:
        deadline = self._monotonic() + self._deadline_s
        while self._flush(1.0) > 0:
            self.healthy, self.health_detail = False, "records waiting for Kafka"
            if self._monotonic() > deadline:
                raise KafkaFatal(
                    f"Kafka unreachable for {self._deadline_s:.0f}s: records not delivered"
                )

    def _raise_for(self, err: KafkaError, op: str) -> None:
        outcome = classify(err)
        if outcome in (Outcome.FENCED, Outcome.FATAL):
            raise self._die(err)
        if outcome is Outcome.ABORT:
            raise TransactionAborted(f"{op}: {err.str()}")
        raise KafkaFatal(f"{op}: unexpected retriable error outside a retry loop: {err.str()}")

    def _call(self, op: str, fn: Callable[[float], object], *, abortable: bool = True) -> None:
        """Call ``fn(timeout)`` until it succeeds, retrying retriable errors until the
        unavailable deadline; ``timeout`` bounds each attempt by what is left of it."""
        deadline = self._monotonic() + self._deadline_s
        self._in_call = (op, self._monotonic())
        try:
            self._call_until(op, fn, deadline, abortable=abortable)
        finally:
            self._in_call = None

    def _call_until(
        self, op: str, fn: Callable[[float], object], deadline: float, *, abortable: bool
    ) -> None:
        while True:
            try:
                fn(max(0.1, min(self._txn_timeout_s, deadline - self._monotonic())))
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
                raise self._die(err) from None


def read_to_end(
    conf: Mapping[str, Any],
    topics: Sequence[str],
    *,
    timeout: float = 60.0,
    through_open_transactions: bool = False,
    warn_after: float = 5.0,
    stop: threading.Event | None = None,
) -> Iterator[Message]:
    """Every record a read_committed consumer sees in ``topics`` from the beginning up to the
    end as of the call, in per-partition order. Missing topics yield nothing.

    The end is the last stable offset: the first record of a transaction still open. With
    ``through_open_transactions`` it is the high watermark, and the read waits until every
    transaction that had written there has ended. A restart needs that: another producer's
    open transaction (a shard killed with one open, say) holds the stable offset back, and
    what other producers committed after it would be missed: an older checkpoint, then
    windows published twice.

    A read still short of the end after ``warn_after`` seconds is logged (once, naming the
    partitions), and so is its end: an operator sees why a restart takes a while.

    Once ``stop`` is set the read ends where it is, short of the end: a caller that passes it
    must check it afterwards and not trust what it got.
    """
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
        probe = consumer
        if through_open_transactions:  # read_uncommitted's end offset is the high watermark
            probe = Consumer(
                {
                    "logger": LIBRDKAFKA_LOG,
                    **conf,
                    "group.id": "dataconnect-publisher-end-probe",
                    "isolation.level": "read_uncommitted",
                }
            )
        try:
            ends = {}
            for tp in parts:
                high = _end_offset(probe, tp, deadline)
                if high > 0:
                    ends[(tp.topic, tp.partition)] = high
        finally:
            if probe is not consumer:
                probe.close()
        if not ends:
            return
        consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
        pending = set(ends)
        began = time.monotonic()
        warned = False
        while pending:
            if stop is not None and stop.is_set():
                return
            now = time.monotonic()
            if not warned and now - began > warn_after:
                warned = True
                log.warning(
                    "still reading %s to the end after %.0f s%s; waiting at most %.0f s more",
                    ", ".join(f"{t}[{p}]" for t, p in sorted(pending)),
                    now - began,
                    " (a producer's transaction may still be open there)"
                    if through_open_transactions
                    else "",
                    max(0.0, deadline - now),
                )
            if now > deadline:
                raise KafkaFatal(
                    f"could not read {sorted(pending)} to the end in {timeout:.0f}s"
                    + (" (a transaction stays open there)" if through_open_transactions else "")
                )
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
        if warned:
            log.info("read %s to the end in %.1f s", ", ".join(topics), time.monotonic() - began)
    finally:
        consumer.close()


def _end_offset(consumer: Consumer, tp: TopicPartition, deadline: float) -> int:
    """The partition's end offset (the last stable offset for a read_committed consumer, the
    high watermark for a read_uncommitted one), retrying
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
