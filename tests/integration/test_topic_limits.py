"""Topics an operator created with a smaller max.message.bytes than the publisher would, or
lowered while it runs: the publisher reads each topic's limit at start-up, and again after an
aborted transaction, and keeps every record within it, so that no stream stalls on a record
the broker refuses (each transaction carrying it would abort, and each replay carry it
again)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from confluent_kafka.cimpl import NewTopic

from publisher.admin import read_checkpoints
from publisher.config import Config
from tests.integration.harness import (
    PublisherProcess,
    assert_huge_rows_dead_lettered,
    canonical,
    dead_letters,
    decoded_events,
    huge_row_simulator,
    load,
    minutes_ago,
    published_thumbprints,
    report,
    split_huge,
    wait_for_watermarks,
    write_config,
)
from tests.kafka_helpers import random_name

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def create_topic(bootstrap: str, name: str, max_message_bytes: int, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, partitions, 1, config={"max.message.bytes": str(max_message_bytes)})]
    )
    for future in futures.values():
        future.result(30)


def set_max_message_bytes(bootstrap: str, topic: str, value: int) -> None:
    """What an operator does with kafka-configs.sh --alter: the change applies at once."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes", str(value), incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def config_for(
    bootstrap: str, sim_url: str, tmp_path: Path, prefix: str, start_from: datetime
) -> tuple[Path, Config]:
    path = write_config(
        tmp_path / "publisher.toml",
        bootstrap=bootstrap,
        simulator_url=sim_url,
        prefix=random_name(prefix),
        start_from=start_from,
        entities=["Customers"],
    )
    return path, load(path)


def test_a_small_entity_topic_gets_small_batches_and_dead_letters_what_it_cannot_take(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # 64 KB: librdkafka's default batches (up to 1 MB) of ordinary rows would be refused
    # whole, and a 100 KB row that does not compress could never be published there.
    huge = 100_000
    start_from = minutes_ago(60)
    sim = huge_row_simulator(seed=31, rows=3000, start=start_from, chars=huge, rate=0.01)
    try:
        path, config = config_for(kafka_bootstrap, sim.url, tmp_path, "smalltopic", start_from)
        topic = config.topic_for("retailer", "Customers")
        create_topic(kafka_bootstrap, topic, 64_000, partitions=3)
        proc = PublisherProcess(path, tmp_path / "publisher.log").start()
        try:
            marks = wait_for_watermarks(config, sim.clock.freeze(), timeout=120)
            assert proc.terminate() == 0, proc.log()[-3000:]
        finally:
            if proc.alive():
                proc.kill9()
        log = proc.log()
        assert f"{topic}: rows whose record is over 62,976 bytes go to the dead-letter" in log
        assert "producer batch.size 62976" in log
        rows, letters = assert_huge_rows_dead_lettered(
            sim, config, start_from, marks["retailer/Customers"], huge
        )
        assert all(f"max.message.bytes of topic {topic} (64,000)" in d["detail"] for d in letters)
        report("small entity topic", rows=rows, dead_letters=len(letters))
    finally:
        sim.server.stop()


def test_a_dead_letter_its_topic_cannot_take_stops_the_stream_until_the_topic_is_raised(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The dead-letter topic created with Kafka's defaults (about 1 MB) cannot take the whole
    # JSON of a 1.1 MB row. The stream stops with the reason instead of replaying forever;
    # once the operator raises the topic's limit, a restart publishes every row exactly once.
    huge = 1_100_000
    start_from = minutes_ago(60)
    sim = huge_row_simulator(seed=37, rows=300, start=start_from, chars=huge, rate=0.02)
    try:
        path, config = config_for(kafka_bootstrap, sim.url, tmp_path, "smalldlq", start_from)
        dlq = config.publisher.dead_letter_topic
        create_topic(kafka_bootstrap, dlq, 1_048_588)
        end = sim.clock.freeze()
        first = PublisherProcess(path, tmp_path / "first.log").start()
        try:
            assert first.wait(90) == 1, first.log()[-3000:]
        finally:
            if first.alive():
                first.kill9()
        log = first.log()
        assert f"dead-letter topic {dlq} takes records up to 1,048,588 bytes" in log
        assert "the dead letter of a too_large row would be" in log
        assert "every stream is stopped" in log
        stopped = read_checkpoints(config)["retailer/Customers"]
        assert stopped.state == "stopped"
        assert f"over the 1,047,564 topic {dlq} takes" in (stopped.last_error or "")
        assert stopped.watermark < end
        assert dead_letters(config) == []
        # Nothing from the window that held the row, nor after it.
        reached = int(stopped.watermark.timestamp() * 1000)
        assert all(e["source"]["window_stop"] <= reached for _e, e in decoded_events(config))

        set_max_message_bytes(kafka_bootstrap, dlq, 8 * 1024 * 1024)

        second = PublisherProcess(path, tmp_path / "second.log").start()
        try:
            marks = wait_for_watermarks(config, end, timeout=90)
            assert second.terminate() == 0, second.log()[-3000:]
        finally:
            if second.alive():
                second.kill9()
        rows, letters = assert_huge_rows_dead_lettered(
            sim, config, start_from, marks["retailer/Customers"], huge
        )
        report("dead-letter topic too small", rows=rows, dead_letters=len(letters))
    finally:
        sim.server.stop()


def test_a_topic_limit_lowered_while_publishing_is_read_again_and_nothing_stalls(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Live rows, some with 100,000 random characters. While the topic takes 1 MB they are
    # published; once an operator lowers it to 64 KB the broker refuses them, which aborts the
    # transaction. Without reading the limits again every replay would abort the same way.
    huge = 100_000
    start_from = minutes_ago(30)
    sim = huge_row_simulator(
        seed=43, rows=600, start=start_from, chars=huge, rate=0.03, live_rate=20.0
    )
    try:
        path, config = config_for(kafka_bootstrap, sim.url, tmp_path, "lowered", start_from)
        topic = config.topic_for("retailer", "Customers")
        proc = PublisherProcess(path, tmp_path / "publisher.log").start()
        try:
            wait_for_watermarks(config, datetime.now(UTC), timeout=90)
            set_max_message_bytes(kafka_bootstrap, topic, 64_000)
            time.sleep(20)  # about 12 huge rows arrive meanwhile
            end = sim.clock.freeze()
            marks = wait_for_watermarks(config, end, timeout=120)
            assert proc.terminate() == 0, proc.log()[-3000:]
        finally:
            if proc.alive():
                proc.kill9()
        log = proc.log()
        assert (
            f"topic limits changed: events of {topic} up to 62,976 bytes "
            "(were up to 1,000,000); producer batch.size 62,976"
        ) in log
        # Every row version once: an event, or (a huge one, after the change) a dead letter.
        truth = sim.truth("Customers", start_from, marks["retailer/Customers"])
        letters = dead_letters(config)
        assert letters, "no huge row arrived after the limit was lowered"
        assert {d["reason"] for d in letters} == {"too_large"}
        assert all(f"max.message.bytes of topic {topic} (64,000)" in d["detail"] for d in letters)
        dead_rows = [orjson.loads(d["row"]) for d in letters]
        _fits, huge_rows = split_huge(truth, huge)
        assert Counter(map(canonical, dead_rows)) <= Counter(huge_rows)  # only huge ones
        seen = published_thumbprints(config) + Counter(r["RowThumbprint"] for r in dead_rows)
        assert seen == Counter(r["RowThumbprint"] for r in truth)
        published_huge = len(huge_rows) - len(letters)
        assert published_huge > 0, "no huge row was published before the change"
        report(
            "topic limit lowered while publishing",
            rows=len(truth),
            huge_published=published_huge,
            dead_letters=len(letters),
        )
    finally:
        sim.server.stop()
