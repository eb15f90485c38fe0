"""Shared fixtures: a real Kafka broker for the session, a clean environment for every test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.kafka_helpers import random_name


@pytest.fixture(autouse=True)
def _clean_product_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's DCP_* settings (they would change what is tested)."""
    for name in list(os.environ):
        if name.startswith("DCP_") and name != "DCP_KAFKA_LIBS":
            monkeypatch.delenv(name)


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        import docker

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means "no usable engine"
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Kafka cluster: $KAFKA_BOOTSTRAP_SERVERS, else a local KRaft broker started from
    Maven artifacts (Java + Maven), else testcontainers (Docker)."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    if shutil.which("java") and shutil.which("mvn"):
        from publisher.localkafka import LocalKafka

        broker = LocalKafka().start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    pytest.fail("no Kafka: set KAFKA_BOOTSTRAP_SERVERS, or install Java 17 + Maven, or Docker")


@pytest.fixture
def topic_name() -> str:
    """A fresh topic name per test."""
    return random_name("topic")
