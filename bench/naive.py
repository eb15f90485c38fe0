"""The naive baseline: what a quick script does to copy DataConnect rows to Kafka.

One HTTP request per window with httpx, the stdlib ``json`` parser, each row converted field by
field and written with ``fastavro.schemaless_writer``, then one ``produce`` and one ``flush``
per row with a plain (not transactional) producer. No exactly-once, no dead letters: a
correct-looking script, measured over a few thousand rows of the same history.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import BytesIO
from typing import Any

import fastavro
import httpx
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.workload import SECRET_ENV, Workload
from publisher.entities import EntitySpec


@dataclass(frozen=True)
class Naive:
    rows: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def _timestamp(text: str) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def naive_value(spec: EntitySpec, row: dict[str, Any]) -> dict[str, Any]:
    """The ``Value`` record the quick script builds: one branch per field kind."""
    value: dict[str, Any] = {"_extra": {}}
    for f in spec.fields:
        raw = row.get(f.name)
        if raw is None or (raw == "" and f.kind not in ("string", "phone", "postal")):
            value[f.name] = None
        elif f.kind in ("string", "phone", "postal", "guid"):
            value[f.name] = raw if isinstance(raw, str) else str(raw)
        elif f.kind == "money":
            value[f.name] = Decimal(str(raw))
        elif f.kind == "timestamp":
            value[f.name] = _timestamp(raw)
        else:
            value[f.name] = raw
    return value


def naive_baseline(
    url: str, bootstrap: str, workload: Workload, *, spec: EntitySpec, rows: int
) -> Naive:
    """Fetch the first ``rows`` rows of ``spec``'s entity in one window; publish row by row."""
    entity = spec.name
    topic = f"bench-naive-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        fut.result(60)
    schema = fastavro.parse_schema(spec.schema)
    producer = Producer({"bootstrap.servers": bootstrap})
    stop = workload.history_start + workload.span * (rows / workload.rows[entity])
    start_ms = int(workload.history_start.timestamp() * 1000)
    stop_ms = int(stop.timestamp() * 1000)
    began = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120) as client:
        token = client.post(
            "/v1/oauth2/token",
            data={
                "grant_type": "password",
                "client_id": "simulator",
                "client_secret": SECRET_ENV["DC_CLIENT_SECRET"],
                "username": "simulator",
                "password": SECRET_ENV["DC_PASSWORD"],
            },
        ).json()["access_token"]
        fmt = "%Y-%m-%dT%H:%M:%S.000"
        response = client.get(
            f"/deltas/{entity}",
            params={
                "StartDate": workload.history_start.strftime(fmt),
                "StopDate": (stop + timedelta(milliseconds=1)).strftime(fmt),
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        response.raise_for_status()
        data = json.loads(response.text)
    published = 0
    for row in data[:rows]:
        op = {"Added": "c", "Updated": "u", "Deleted": "d"}[row["RowEvent"]]
        value = naive_value(spec, row)
        record = {
            "before": value if op == "d" else None,
            "after": None if op == "d" else value,
            "source": {
                "connector": "naive-script",
                "version": "1",
                "source": "bench",
                "entity": entity,
                "row_thumbprint": row["RowThumbprint"],
                "row_inserted": _timestamp(row["RowInserted"]),
                "row_updated": _timestamp(row["RowUpdated"]),
                "row_event": row["RowEvent"],
                "window_start": start_ms,
                "window_stop": stop_ms,
            },
            "op": op,
            "ts_ms": int(time.time() * 1000),
        }
        buf = BytesIO()
        fastavro.schemaless_writer(buf, schema, record)
        producer.produce(topic, key=str(row[spec.key_field]).encode(), value=buf.getvalue())
        producer.flush()
        published += 1
    seconds = time.perf_counter() - began
    admin.delete_topics([topic])
    return Naive(published, seconds)
