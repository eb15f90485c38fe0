"""The Docker path hangs together: compose services, the config they mount, scrape targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from publisher.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def test_compose_runs_the_whole_stack() -> None:
    assert set(compose()["services"]) == {
        "kafka",
        "simulator",
        "publisher",
        "prometheus",
        "grafana",
    }


def test_single_node_kafka_is_configured_for_transactions() -> None:
    env = compose()["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[name] == 1, name


def test_publisher_config_mounted_by_compose_is_valid_and_scraped() -> None:
    service = compose()["services"]["publisher"]
    host_path = service["volumes"][0].split(":")[0]
    config = load_config(ROOT / host_path, env=service["environment"])
    assert config.kafka.bootstrap_servers == "kafka:9092"
    assert config.metrics.host == "0.0.0.0"
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"publisher:{config.metrics.port}"]


def test_every_mounted_file_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"
