"""The health server over a real loopback socket: /healthz, /readyz, /metrics, 404s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from publisher.health import HealthServer, entities_fresh

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Toggle:
    """A readiness check whose answer the test sets."""

    def __init__(self, ok: bool, detail: str) -> None:
        self.ok, self.detail = ok, detail

    def __call__(self) -> tuple[bool, str]:
        return self.ok, self.detail


def test_healthz_is_200_and_unknown_paths_404() -> None:
    with HealthServer(CollectorRegistry()) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
        for path in ("/", "/metricsx", "/readyz/extra", "/admin"):
            assert httpx.get(server.url + path, timeout=5).status_code == 404, path


def test_readyz_flips_with_the_injected_checks() -> None:
    kafka = Toggle(True, "broker 127.0.0.1:9092 answered")
    token = Toggle(True, "expires in 43000s")
    with HealthServer(CollectorRegistry(), {"kafka_reachable": kafka, "token_valid": token}) as s:
        ready = httpx.get(s.url + "/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.headers["content-type"] == "application/json"
        assert ready.json() == {
            "ready": True,
            "checks": [
                {"name": "kafka_reachable", "ok": True, "detail": "broker 127.0.0.1:9092 answered"},
                {"name": "token_valid", "ok": True, "detail": "expires in 43000s"},
            ],
        }
        kafka.ok, kafka.detail = False, "no broker answered for 30s"
        unready = httpx.get(s.url + "/readyz", timeout=5)
        assert unready.status_code == 503
        assert unready.json()["ready"] is False
        assert unready.json()["checks"][0] == {
            "name": "kafka_reachable",
            "ok": False,
            "detail": "no broker answered for 30s",
        }
        assert unready.json()["checks"][1]["ok"] is True
        kafka.ok = True
        assert httpx.get(s.url + "/readyz", timeout=5).status_code == 200
        # liveness does not follow readiness
        kafka.ok = False
        assert httpx.get(s.url + "/healthz", timeout=5).status_code == 200


def test_a_check_that_raises_is_unready_without_leaking_its_message(caplog) -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("password=hunter2 rejected")

    with HealthServer(CollectorRegistry(), {"token_valid": broken}) as server:
        response = httpx.get(server.url + "/readyz", timeout=5)
    assert response.status_code == 503
    assert response.json()["checks"] == [
        {"name": "token_valid", "ok": False, "detail": "check raised RuntimeError"}
    ]
    assert "hunter2" not in response.text
    assert any("token_valid" in r.getMessage() for r in caplog.records)


def test_readyz_without_checks_is_ready() -> None:
    with HealthServer(CollectorRegistry()) as server:
        response = httpx.get(server.url + "/readyz", timeout=5)
    assert (response.status_code, response.json()) == (200, {"ready": True, "checks": []})


def test_metrics_serves_the_injected_registry_in_the_format_asked_for() -> None:
    registry = CollectorRegistry()
    Counter("probe_things", "Things.", registry=registry).inc(3)
    with HealthServer(registry) as server:
        plain = httpx.get(server.url + "/metrics", timeout=5)
        om = httpx.get(
            server.url + "/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=5
        )
    samples = {
        s.name: s.value for f in text_string_to_metric_families(plain.text) for s in f.samples
    }
    assert samples["probe_things_total"] == 3
    assert plain.headers["content-type"].startswith("text/plain")
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")


def test_stop_closes_the_port() -> None:
    server = HealthServer(CollectorRegistry())
    server.start()
    url = server.url
    assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz", timeout=5)
    with pytest.raises(RuntimeError):
        _ = server.url


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_entities_fresh_turns_stale_and_back() -> None:
    clock = FakeClock()
    commits: dict[tuple[str, str], datetime | None] = {
        ("prod", "Customers"): T0,
        ("prod", "FollowUps"): None,  # not committed yet in this process
    }
    check = entities_fresh(lambda: commits, timedelta(minutes=15), clock)
    ok, detail = check()
    assert ok, detail
    clock.now = T0 + timedelta(minutes=10)
    commits[("prod", "FollowUps")] = clock.now
    assert check()[0]
    clock.now = T0 + timedelta(minutes=20)
    ok, detail = check()
    assert not ok
    assert "prod/Customers (last commit 1200s ago)" in detail
    assert "FollowUps" not in detail
    commits[("prod", "Customers")] = clock.now
    assert check()[0]


def test_entities_fresh_counts_from_start_for_a_stream_that_never_commits() -> None:
    clock = FakeClock()
    check = entities_fresh(lambda: {("prod", "Activities"): None}, timedelta(seconds=60), clock)
    assert check()[0]
    clock.now = T0 + timedelta(seconds=61)
    ok, detail = check()
    assert not ok
    assert "prod/Activities (no commit since start 61s ago)" in detail


def test_entities_fresh_through_readyz() -> None:
    clock = FakeClock()
    commits = {("prod", "Customers"): T0}
    check = entities_fresh(lambda: commits, timedelta(minutes=5), clock)
    with HealthServer(CollectorRegistry(), {"entities_fresh": check}) as server:
        assert httpx.get(server.url + "/readyz", timeout=5).status_code == 200
        clock.now = T0 + timedelta(minutes=6)
        response = httpx.get(server.url + "/readyz", timeout=5)
    assert response.status_code == 503
    assert "prod/Customers" in response.json()["checks"][0]["detail"]
