"""``dataconnect-publisher demo``: the main job on the embedded default.

Starts a real local Kafka broker, the DataConnect simulator in live mode (with late rows), and
the publisher against both; then prints every committed event as it arrives, read back with
``isolation.level=read_committed``, like ``tail`` does. Ctrl-C (or ``--duration``) stops the
publisher gracefully, then the simulator and the broker.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta
from typing import IO, Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from publisher.codec import SchemaResolver
from publisher.config import parse_config, utc_now
from publisher.kafka import LIBRDKAFKA_LOG
from publisher.localkafka import LocalKafka
from publisher.runner import Runner
from publisher.simulator.app import Simulator
from publisher.simulator.server import SimulatorServer
from publisher.simulator.settings import SimulatorSettings
from publisher.timefmt import from_millis

ENTITIES = ["Customers", "AccountsReceivable", "Activities", "Discussions", "FollowUps"]


def demo_config(bootstrap: str, simulator_url: str, start_from: str, metrics_port: int) -> Any:
    settings = SimulatorSettings()
    return parse_config(
        {
            "publisher": {"transactional_id": "dataconnect-publisher-demo"},
            "kafka": {"bootstrap_servers": bootstrap, "topic_partitions": 3},
            "windows": {
                "start_from": start_from,
                "overlap_seconds": 60,
                "settle_delay_seconds": 2,
                "poll_interval_seconds": 2,
                "initial_window_seconds": 86400,
                "max_window_seconds": 7 * 86400,
            },
            "metrics": {"port": metrics_port},
            "logging": {"level": "WARNING"},
            "sources": [
                {
                    "name": "demo-retailer",
                    "base_url": simulator_url,
                    "token_url": f"{simulator_url}/v1/oauth2/token",
                    "client_id": settings.client_id,
                    "client_secret": settings.client_secret.get_secret_value(),
                    "username": settings.username,
                    "password": settings.password.get_secret_value(),
                    "entities": ENTITIES,
                }
            ],
        },
        env={},
    )


def run_demo(*, duration: float | None, rows: int, out: IO[str], metrics_port: int = 9464) -> int:
    """Run broker + simulator + publisher, printing events until Ctrl-C or ``duration``."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out.write("starting a local Kafka broker (first run fetches its jars with Maven)...\n")
    out.flush()
    with LocalKafka() as broker:
        now = utc_now()
        history_start = now - timedelta(days=2)
        simulator = Simulator(
            SimulatorSettings(
                seed=7,
                default_rows=rows,
                history_start=history_start,
                history_end=now,
                live=True,
                rate=2.0,
                late_fraction=0.1,
                late_delay=20.0,
            )
        )
        with SimulatorServer(simulator) as server:
            config = demo_config(
                broker.bootstrap, server.url, history_start.isoformat(), metrics_port
            )
            runner = Runner(config, install_signals=False)
            worker = threading.Thread(target=lambda: setattr(runner, "code", runner.run()))
            worker.start()
            out.write(
                f"Kafka {broker.bootstrap} | DataConnect simulator {server.url} | "
                f"metrics http://127.0.0.1:{metrics_port}/metrics\n"
                f"publishing {', '.join(ENTITIES)} to dataconnect.demo-retailer.<Entity>; "
                "events below are read back read_committed. Ctrl-C stops.\n"
            )
            out.flush()
            deadline = None if duration is None else time.monotonic() + duration
            try:
                count = _print_events(config, out, stop, deadline, worker)
            finally:
                runner.stop()
                worker.join(60)
            code = int(getattr(runner, "code", 1))
            out.write(f"\n{count} events printed; publisher exited with {code}\n")
            return code


def _print_events(
    config: Any,
    out: IO[str],
    stop: threading.Event,
    deadline: float | None,
    worker: threading.Thread,
) -> int:
    topics = [config.topic_for("demo-retailer", e) for e in ENTITIES]
    resolver = SchemaResolver.for_entities(config.entity_specs().values())
    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka.bootstrap_servers,
            "logger": LIBRDKAFKA_LOG,
            "group.id": "dataconnect-publisher-demo-tail",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    count = 0
    assigned = False
    try:
        while not stop.is_set() and worker.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                break
            if not assigned:
                meta = consumer.list_topics(timeout=5)
                if all(t in meta.topics for t in topics):
                    consumer.assign(
                        [TopicPartition(t, p, 0) for t in topics for p in meta.topics[t].partitions]
                    )
                    assigned = True
                else:
                    time.sleep(0.5)
                    continue
            msg = consumer.poll(0.5)
            if msg is None or msg.value() is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    out.write(f"consumer error: {err.str()}\n")
                continue
            entity, event = resolver.decode(msg.value() or b"")
            src = event["source"]
            changed_ms = src["row_updated"] or src["row_inserted"]
            changed = "-" if changed_ms is None else from_millis(changed_ms).isoformat()
            out.write(
                f"{entity:<19} {event['op']}  key={(msg.key() or b'').decode():<36} "
                f"thumbprint={src['row_thumbprint']}  changed={changed}\n"
            )
            count += 1
    finally:
        consumer.close()
    return count
