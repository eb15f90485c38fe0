"""TransactionalSink's own bookkeeping, with a fake producer (the broker tests are integration)."""

from __future__ import annotations

from typing import Any

from publisher.kafka import SERVE_EVERY, TransactionalSink


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
