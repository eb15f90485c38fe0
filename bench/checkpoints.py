"""Follow a publisher's checkpoint topic as a read_committed consumer.

A checkpoint is committed in the same transaction as its window's events, so the moment it is
read is the moment those events are visible to consumers. One long-lived consumer (rather
than reading the topic again and again) keeps the benchmark's own CPU use small.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from publisher.checkpoint import Checkpoint


@dataclass(frozen=True)
class Progress:
    """Per stream, the latest committed checkpoint and when this process read it."""

    checkpoints: dict[str, Checkpoint]
    first_seen: float | None  # monotonic time of the first checkpoint read

    def rows_published(self) -> int:
        return sum(cp.rows_published for cp in self.checkpoints.values())

    def reached(self, streams: list[str], target: datetime) -> bool:
        return all(
            s in self.checkpoints and self.checkpoints[s].watermark >= target for s in streams
        )


class CheckpointFollower:
    """Reads the checkpoint topic from the beginning on a thread, as it is written."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._latest: dict[str, Checkpoint] = {}
        self._first: float | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)

    def start(self) -> CheckpointFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_until(
        self,
        streams: list[str],
        target: datetime,
        timeout: float,
        alive: Callable[[], bool] = lambda: True,
    ) -> float:
        """Block until every stream's watermark reaches ``target``; returns the monotonic
        time at which the last needed checkpoint was read. TimeoutError after ``timeout``,
        RuntimeError as soon as ``alive()`` turns false (the publisher died)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self._error:
                    raise RuntimeError(self._error)
                if not alive() and not self.progress().reached(streams, target):
                    raise RuntimeError("the publisher exited before catching up")
                if self.progress().reached(streams, target):
                    return self._last_read
                left = deadline - time.monotonic()
                if left <= 0:
                    marks = {s: c.watermark.isoformat() for s, c in self._latest.items()}
                    raise TimeoutError(f"watermarks short of {target.isoformat()}: {marks}")
                self._changed.wait(min(left, 1.0))

    def progress(self) -> Progress:
        return Progress(dict(self._latest), self._first)

    def _run(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while not self._stop.is_set():  # the publisher creates the topic when it starts
            if self.topic in admin.list_topics(timeout=10).topics:
                break
            time.sleep(0.1)
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"{self.topic}-bench",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        with self._changed:
                            self._error = f"checkpoint topic: {err.str()}"
                            self._changed.notify_all()
                    continue
                now = time.monotonic()
                key, value = msg.key(), msg.value()
                if key is None or value is None:
                    continue
                cp = Checkpoint.decode(value)
                with self._changed:
                    self._latest[key.decode()] = cp
                    self._last_read = now
                    if self._first is None:
                        self._first = now
                    self._changed.notify_all()
        finally:
            consumer.close()

    _last_read: float = 0.0
