"""The ``confluent`` wire format against a real schema registry (Apicurio Registry's
Confluent-compatible API, started from Maven artifacts) and a real Kafka broker: the publisher
registers each entity's envelope under ``<topic>-value``, and a read_committed consumer that
knows nothing but the registry decodes every event by the id in its header."""

from __future__ import annotations

import io
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import httpx
import orjson
import pytest
from confluent_kafka.admin import AdminClient

from publisher.admin import tail
from publisher.kafka import read_to_end
from publisher.simulator.settings import SimulatorSettings
from tests.integration.harness import (
    PublisherProcess,
    load,
    minutes_ago,
    start_simulator,
    truth_multiset,
    wait_for_watermarks,
    write_config,
)
from tests.kafka_helpers import random_name

pytestmark = pytest.mark.integration

ENTITIES = ["Customers", "Discussions"]
SR_JSON = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    """A real registry's Confluent API: $SCHEMA_REGISTRY_URL, else a local Apicurio Registry
    started from Maven artifacts (Java 17 + Maven)."""
    env = os.environ.get("SCHEMA_REGISTRY_URL")
    if env:
        yield env
        return
    if not (shutil.which("java") and shutil.which("mvn")):
        pytest.fail("no schema registry: set SCHEMA_REGISTRY_URL, or install Java 17 + Maven")
    from publisher.localregistry import LocalRegistry

    with LocalRegistry() as registry:
        yield registry.url


class RegistryReader:
    """A consumer's view: schemas fetched by id from the registry, nothing from this repo."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fetched: dict[int, tuple[str, Any]] = {}

    def decode(self, value: bytes) -> tuple[int, str, dict[str, Any]]:
        assert value[:1] == b"\x00", "not Confluent framing"
        schema_id = int.from_bytes(value[1:5], "big")
        if schema_id not in self.fetched:
            answer = httpx.get(f"{self.url}/schemas/ids/{schema_id}")
            assert answer.status_code == 200, answer.text
            doc = orjson.loads(answer.json()["schema"])
            self.fetched[schema_id] = (doc["dataconnect"]["entity"], fastavro.parse_schema(doc))
        entity, schema = self.fetched[schema_id]
        body = io.BytesIO(value[5:])
        event = fastavro.schemaless_reader(body, schema, None)
        assert body.tell() == len(value) - 5, "bytes left after the record"
        assert isinstance(event, dict)
        return schema_id, entity, event


def latest_id(url: str, subject: str) -> int:
    answer = httpx.get(f"{url}/subjects/{subject}/versions/latest")
    assert answer.status_code == 200, answer.text
    schema_id: int = answer.json()["id"]
    return schema_id


def test_confluent_events_decode_with_the_registrys_schemas_alone(
    kafka_bootstrap: str, registry_url: str, tmp_path: Path
) -> None:
    start_from = minutes_ago(60)
    sim = start_simulator(SimulatorSettings(seed=23, default_rows=300, history_start=start_from))
    try:
        config_path = write_config(
            tmp_path / "publisher.toml",
            bootstrap=kafka_bootstrap,
            simulator_url=sim.url,
            prefix=random_name("sr"),
            start_from=start_from,
            entities=ENTITIES,
            publisher={"wire_format": "confluent", "schema_registry_url": registry_url},
        )
        config = load(config_path)
        frozen = sim.clock.freeze()
        proc = PublisherProcess(config_path, tmp_path / "publisher.log").start()
        try:
            marks = wait_for_watermarks(config, frozen, timeout=90)
        finally:
            assert proc.terminate() == 0, proc.log()[-3000:]
        truth = truth_multiset(sim, config, start_from, marks)
    finally:
        sim.server.stop()

    reader = RegistryReader(registry_url)
    got: Counter[tuple[str, str, str]] = Counter()
    ids_by_topic: dict[str, set[int]] = {}
    topics = [config.topic_for("retailer", e) for e in ENTITIES]
    conf = {"bootstrap.servers": kafka_bootstrap, "group.id": random_name("sr-reader")}
    for msg in read_to_end(conf, topics, timeout=60):
        schema_id, entity, event = reader.decode(msg.value() or b"")
        ids_by_topic.setdefault(msg.topic() or "", set()).add(schema_id)
        key = (msg.key() or b"").decode().lower()
        got[(entity, key, event["source"]["row_thumbprint"])] += 1

    assert truth, "the simulator produced no rows: the test would prove nothing"
    assert got == truth
    # Each topic's values carry the id its "<topic>-value" subject holds; two entities, two ids.
    assert ids_by_topic == {t: {latest_id(registry_url, f"{t}-value")} for t in topics}
    assert len(set.union(*ids_by_topic.values())) == len(ENTITIES)

    # `tail` decodes the same events, learning the ids from the registry.
    out = io.StringIO()
    count = tail(config, "Customers", follow=False, out=out)
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert count == len(lines) == sum(n for (e, _, _), n in got.items() if e == "Customers")
    assert not [line for line in lines if "undecodable" in line]
    tailed = Counter(
        ("Customers", line["key"].lower(), line["source"]["row_thumbprint"]) for line in lines
    )
    assert tailed == Counter({k: n for k, n in got.items() if k[0] == "Customers"})


def test_an_incompatible_subject_stops_the_publisher_before_any_topic_exists(
    kafka_bootstrap: str, registry_url: str, tmp_path: Path
) -> None:
    prefix = random_name("sr")
    config_path = write_config(
        tmp_path / "publisher.toml",
        bootstrap=kafka_bootstrap,
        simulator_url="http://127.0.0.1:9",  # never reached: registration comes first
        prefix=prefix,
        start_from=minutes_ago(60),
        entities=["Customers"],
        publisher={"wire_format": "confluent", "schema_registry_url": registry_url},
    )
    topic = load(config_path).topic_for("retailer", "Customers")
    subject = f"{topic}-value"
    # Someone else owns the subject with another record, under a BACKWARD rule.
    other = {"type": "record", "name": "Envelope", "fields": [{"name": "x", "type": "int"}]}
    answer = httpx.put(
        f"{registry_url}/config/{subject}", json={"compatibility": "BACKWARD"}, headers=SR_JSON
    )
    assert answer.status_code == 200, answer.text
    answer = httpx.post(
        f"{registry_url}/subjects/{subject}/versions",
        content=orjson.dumps({"schema": orjson.dumps(other).decode()}),
        headers=SR_JSON,
    )
    assert answer.status_code == 200, answer.text

    proc = PublisherProcess(config_path, tmp_path / "publisher.log").start()
    assert proc.wait(60) == 1, proc.log()[-3000:]
    log = proc.log()
    assert f"registering {subject}" in log
    assert "incompatible" in log
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    assert not [t for t in topics if t.startswith(prefix)]
