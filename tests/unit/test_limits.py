"""Record limits from the topics' max.message.bytes: what each kind of record may take, the
producer's batch size, and what start-up warns about."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from publisher import kafka
from publisher.errors import RowRejected
from publisher.limits import (
    BATCH_FRAMING_BYTES,
    LARGE_MESSAGE_BYTES,
    LIBRDKAFKA_BATCH_SIZE,
    Limits,
    changes,
    plan_limits,
)
from publisher.prepare import prepare
from publisher.runner import producer_conf
from publisher.service import apply_limits
from publisher.windows import Window
from tests.unit.test_service import T0, FakeDataConnect, customer, make_config, new_streams

KAFKA_DEFAULT = 1_048_588  # the broker's message.max.bytes out of the box
ENTITIES = ["s.Customers", "s.Activities"]


def plan(
    topic_limits: Mapping[str, int] | None,
    *,
    max_record_bytes: int = 1_000_000,
    producer_max_bytes: int = LARGE_MESSAGE_BYTES,
    batch_size_set: bool = False,
) -> Limits:
    return plan_limits(
        entity_topics=ENTITIES,
        dead_letter_topic="dlq",
        checkpoint_topic="cp",
        topic_limits=topic_limits,
        max_record_bytes=max_record_bytes,
        producer_max_bytes=producer_max_bytes,
        batch_size_set=batch_size_set,
    )


def as_created(**changes: int) -> dict[str, int]:
    """Each topic's max.message.bytes as the publisher creates them (entity topics with the
    broker's default), then ``changes``."""
    return {
        **dict.fromkeys(ENTITIES, KAFKA_DEFAULT),
        "dlq": LARGE_MESSAGE_BYTES,
        "cp": LARGE_MESSAGE_BYTES,
        **changes,
    }


def test_topics_as_the_publisher_creates_them_change_nothing() -> None:
    limits = plan(as_created())
    assert limits.record_bytes == dict.fromkeys(ENTITIES, 1_000_000)
    assert limits.record_notes == {}
    assert limits.dead_letter_bytes == LARGE_MESSAGE_BYTES - BATCH_FRAMING_BYTES
    assert limits.checkpoint_bytes == LARGE_MESSAGE_BYTES - BATCH_FRAMING_BYTES
    assert limits.batch_bytes is None
    assert limits.warnings == []


def test_a_small_entity_topic_lowers_its_records_and_the_batches() -> None:
    limits = plan(as_created(**{"s.Activities": 100_000}))
    room = 100_000 - BATCH_FRAMING_BYTES
    assert limits.record_bytes == {"s.Customers": 1_000_000, "s.Activities": room}
    assert limits.record_notes["s.Activities"] == (
        "max.message.bytes of topic s.Activities (100,000) less 1,024 bytes of batch framing"
    )
    assert "s.Customers" not in limits.record_notes
    # The broker applies the limit to whole batches: librdkafka's default batch.size would
    # build batches of small records that this topic refuses.
    assert limits.batch_bytes == room
    (warning,) = limits.warnings
    assert warning == (
        f"s.Activities: rows whose record is over {room:,} bytes go to the dead-letter topic "
        "as too_large (max.message.bytes of topic s.Activities is 100,000), below "
        "publisher.max_record_bytes = 1,000,000"
    )


def test_changes_say_what_limits_read_again_keep_differently() -> None:
    before = plan(as_created())
    assert changes(before, plan(as_created())) == []
    lowered = plan(as_created(**{"s.Activities": 100_000}, dlq=KAFKA_DEFAULT))
    room = 100_000 - BATCH_FRAMING_BYTES
    assert changes(before, lowered) == [
        f"events of s.Activities up to {room:,} bytes (were up to 1,000,000)",
        f"dead letters up to {KAFKA_DEFAULT - BATCH_FRAMING_BYTES:,} bytes "
        f"(were up to {LARGE_MESSAGE_BYTES - BATCH_FRAMING_BYTES:,})",
        f"producer batch.size {room:,} (was librdkafka's default)",
    ]
    # Raised back: the same phrases the other way round.
    assert changes(lowered, before)[-1] == (
        f"producer batch.size librdkafka's default (was {room:,})"
    )


def test_an_operators_batch_size_is_left_alone() -> None:
    assert plan(as_created(cp=50_000), batch_size_set=True).batch_bytes is None


def test_topics_at_or_above_the_batch_size_keep_librdkafkas_batches() -> None:
    exactly = LIBRDKAFKA_BATCH_SIZE + BATCH_FRAMING_BYTES
    assert plan(as_created(**dict.fromkeys(ENTITIES, exactly))).batch_bytes is None
    assert plan(as_created(**dict.fromkeys(ENTITIES, exactly - 1))).batch_bytes == (
        LIBRDKAFKA_BATCH_SIZE - 1
    )


def test_dead_letter_and_checkpoint_topics_created_smaller_are_warned_about() -> None:
    limits = plan(as_created(dlq=KAFKA_DEFAULT, cp=KAFKA_DEFAULT))
    assert limits.dead_letter_bytes == KAFKA_DEFAULT - BATCH_FRAMING_BYTES
    assert limits.checkpoint_bytes == KAFKA_DEFAULT - BATCH_FRAMING_BYTES
    dlq, cp = limits.warnings
    assert dlq.startswith("dead-letter topic dlq takes records up to 1,048,588 bytes")
    assert "stops its stream" in dlq
    assert f"max.message.bytes = {LARGE_MESSAGE_BYTES}" in dlq
    assert cp.startswith("checkpoint topic cp takes records up to 1,048,588 bytes")
    assert limits.batch_bytes is None  # 1 MB topics take librdkafka's batches


def test_the_producers_own_limit_bounds_every_record() -> None:
    limits = plan(as_created(), producer_max_bytes=500_000)
    room = 500_000 - BATCH_FRAMING_BYTES
    assert limits.record_bytes == dict.fromkeys(ENTITIES, room)
    assert limits.dead_letter_bytes == limits.checkpoint_bytes == room
    # The topics themselves take more than the producer sends: only the events' limit,
    # lower than the setting, is worth a warning, and it names the producer's.
    assert [w.split(":")[0] for w in limits.warnings] == ENTITIES
    assert all("(message.max.bytes of the producer is 500,000)" in w for w in limits.warnings)


def test_unknown_topic_limits_fall_back_to_the_producers() -> None:
    limits = plan(None)
    assert limits.record_bytes == dict.fromkeys(ENTITIES, 1_000_000)
    assert limits.dead_letter_bytes == LARGE_MESSAGE_BYTES - BATCH_FRAMING_BYTES
    assert limits.batch_bytes is None
    assert limits.warnings == []


def test_producer_conf_takes_the_batch_size_unless_the_operator_set_one() -> None:
    conf: dict[str, Any] = producer_conf(make_config(), "t", batch_bytes=62_000)
    assert conf["batch.size"] == 62_000
    assert "batch.size" not in producer_conf(make_config(), "t")
    config = make_config()
    config.kafka.producer["batch.size"] = 10_000
    assert producer_conf(config, "t", batch_bytes=62_000)["batch.size"] == 10_000


def test_a_streams_shape_and_recipe_take_its_topics_limit() -> None:
    config = make_config()
    streams, _ = new_streams(config, FakeDataConnect([]))
    (stream,) = streams
    limits = plan_limits(
        entity_topics=[stream.topic],
        dead_letter_topic="dlq",
        checkpoint_topic="cp",
        topic_limits={stream.topic: 3000},
        max_record_bytes=1_000_000,
        producer_max_bytes=LARGE_MESSAGE_BYTES,
        batch_size_set=False,
    )
    apply_limits(streams, limits)
    room = 3000 - BATCH_FRAMING_BYTES
    assert stream.shape.max_record_bytes == room
    # A decode process builds its shape from the recipe: the limit must travel in it.
    assert stream.shape.recipe is not None
    assert stream.shape.recipe.max_record_bytes == room
    window = Window(T0, T0.replace(hour=1), T0)
    row = customer(5, "99999999-9999-9999-9999-999999999999", Notes="n" * 2500)
    (event,) = prepare(stream.shape, window, [row], now_ms=0).events
    assert isinstance(event.value, RowRejected)
    assert event.value.reason == "too_large"
    assert event.value.detail.endswith(
        f"over {room:,}: max.message.bytes of topic {stream.topic} (3,000) less 1,024 "
        "bytes of batch framing"
    )


def test_a_cluster_that_will_not_describe_its_topics_leaves_the_producers_limit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Denied:
        def __init__(self, _conf: dict[str, Any]) -> None:
            pass

        def describe_configs(self, resources: list[Any], **_kw: Any) -> dict[Any, Future[Any]]:
            out: dict[Any, Future[Any]] = {}
            for r in resources:
                out[r] = Future()
                out[r].set_exception(
                    KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
                )
            return out

    monkeypatch.setattr(kafka, "AdminClient", Denied)
    assert kafka.topic_message_limits({}, ["a", "b"], deadline=1, otherwise="...") is None
    assert "cannot read the topics' max.message.bytes" in caplog.text
