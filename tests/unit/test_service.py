"""The service loop with injected fakes: what is committed, and what an abort replays."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from publisher.checkpoint import Checkpoint
from publisher.config import parse_config
from publisher.kafka import TransactionAborted
from publisher.limits import BATCH_FRAMING_BYTES, LARGE_MESSAGE_BYTES, Limits, plan_limits
from publisher.metrics import PublisherMetrics
from publisher.runner import build_streams
from publisher.service import Publisher

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=6)


def customer(minute: float, key: str, event: str = "Added", **extra: Any) -> dict[str, Any]:
    changed = (T0 + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    row: dict[str, Any] = {
        "CustomerID": key,
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "RowThumbprint": str(uuid.uuid4()),
        "RowInserted": changed,
        "RowUpdated": "" if event == "Added" else changed,
        "RowEvent": event,
    }
    row.update(extra)
    return row


def change_time(row: dict[str, Any]) -> datetime:
    text = row["RowUpdated"] or row["RowInserted"]
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class FakeDataConnect:
    """Plays DataConnect's token and Deltas endpoints over rows held in memory."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.requests: list[tuple[str, str]] = []
        self.max_rows = len(rows)  # more rows than this in one window: 413
        self.fail_next = 0  # the next N data requests fail with a 400

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth2/token":
            return httpx.Response(
                200, json={"access_token": "tok", "expires_in": 43199, "refresh_token": "r"}
            )
        assert request.headers["Authorization"] == "Bearer tok"
        q = parse_qs(request.url.query.decode())
        start = datetime.fromisoformat(q["StartDate"][0]).replace(tzinfo=UTC)
        stop = datetime.fromisoformat(q["StopDate"][0]).replace(tzinfo=UTC)
        self.requests.append((q["StartDate"][0], q["StopDate"][0]))
        body = [r for r in self.rows if start <= change_time(r) < stop]
        if len(body) > self.max_rows:
            return httpx.Response(413, json={"Error": True, "Message": "too many rows"})
        if self.fail_next:
            self.fail_next -= 1
            return httpx.Response(400, json={"Error": True, "Message": "bad request"})
        return httpx.Response(200, content=orjson.dumps(body))


class FakeSink:
    """Records transactions; ``fail_commits`` makes the next N commits abort, and so does a
    record over its topic's bytes in ``refuse_over`` (as a broker refuses one)."""

    def __init__(self) -> None:
        self.committed: list[list[tuple[str, bytes | None, bytes | None]]] = []
        self.open: list[tuple[str, bytes | None, bytes | None]] | None = None
        self.headers: list[dict[str, bytes]] = []
        self._all: list[tuple[str, bytes | None, bytes | None]] = []
        self.fail_commits = 0
        self.refuse_over: dict[str, int] = {}
        self.batch_sizes: list[int | None] = []  # use_batch_size calls
        self.aborts = 0
        self.healthy = True
        self.health_detail = "fake"

    def begin(self) -> None:
        assert self.open is None
        self.open = []

    def produce(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None
    ) -> None:
        assert self.open is not None, "produce outside a transaction"
        self.open.append((topic, key, value))
        self._all.append((topic, key, value))
        self.headers.append({k: v for k, v in headers or ()})

    def abort(self) -> None:
        assert self.open is not None
        self.open = None
        self.aborts += 1

    def commit(self) -> None:
        assert self.open is not None
        refused = [
            topic
            for topic, key, value in self.open
            if len(key or b"") + len(value or b"") > self.refuse_over.get(topic, 1 << 62)
        ]
        if self.fail_commits or refused:
            self.fail_commits = max(0, self.fail_commits - 1)
            self.open = None
            self.aborts += 1
            raise TransactionAborted(f"injected (refused: {refused})")
        self.committed.append(self.open)
        self.open = None

    def use_batch_size(self, size: int | None) -> None:
        assert self.open is None
        self.batch_sizes.append(size)

    def records_with_headers(self) -> list[tuple[str, bytes | None, bytes | None]]:
        """Every produced record in produce order, aborted ones included (like ``headers``)."""
        return list(self._all)

    def records(self, topic: str) -> list[tuple[str, bytes | None, bytes | None]]:
        return [r for txn in self.committed for r in txn if r[0] == topic]


def make_config(
    publisher: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    *,
    more_sources: list[dict[str, Any]] | None = None,
    **windows: Any,
) -> Any:
    """A config with source ``s1`` (``source`` overrides its settings), and one more source
    like it per entry of ``more_sources`` (each entry overrides that copy's settings)."""
    s1 = {
        "name": "s1",
        "base_url": "http://127.0.0.1:1",
        "token_url": "http://127.0.0.1:1/v1/oauth2/token",
        "client_id": "c",
        "client_secret": "unit-secret",
        "username": "u",
        "password": "unit-password",
        "entities": ["Customers"],
        **(source or {}),
    }
    return parse_config(
        {
            "publisher": {"transactional_id": "unit", **(publisher or {})},
            "windows": {
                "start_from": T0.isoformat(),
                "overlap_seconds": 600,
                "settle_delay_seconds": 0,
                "initial_window_seconds": 3600,
                "max_window_seconds": 3600,
                "poll_interval_seconds": 0.01,
                **windows,
            },
            "sources": [s1, *({**s1, **more} for more in more_sources or [])],
        },
        env={},
    )


def new_streams(config: Any, handler: Any) -> tuple[list[Any], PublisherMetrics]:
    from publisher.runner import Shard

    metrics = PublisherMetrics(CollectorRegistry(), clock=lambda: NOW)
    transport = httpx.MockTransport(handler)
    return build_streams(config, config.entity_specs(), Shard(), metrics, transport=transport), (
        metrics
    )


def run_streams(
    config: Any,
    streams: list[Any],
    sink: FakeSink,
    metrics: Any,
    decoder: Any = None,
    *,
    limits: Limits | None = None,
    reread_limits: Callable[[], Limits | None] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Publisher:
    """Run the loop on a thread until every running stream's watermark reaches NOW."""
    publisher = Publisher(
        config,
        streams,
        sink,  # type: ignore[arg-type]
        metrics,
        clock=lambda: NOW,
        decoder=decoder,
        limits=limits,
        reread_limits=reread_limits,
        monotonic=monotonic,
    )

    def stop_when_caught_up(_streams: Any) -> None:
        if all(s.committed.watermark >= NOW for s in publisher.streams if not s.stopped):
            publisher.stop()

    publisher.on_commit = stop_when_caught_up
    thread = threading.Thread(target=publisher.run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "publisher did not catch up"
    return publisher


def run_until_caught_up(config: Any, fake: FakeDataConnect, sink: FakeSink) -> Publisher:
    streams, metrics = new_streams(config, fake)
    return run_streams(config, streams, sink, metrics)


def published_thumbprints(sink: FakeSink, config: Any) -> Counter[str]:
    from publisher.codec import EntityCodec

    codec = EntityCodec(config.entity_specs()["Customers"])
    out: Counter[str] = Counter()
    for _topic, _key, value in sink.records("dataconnect.s1.Customers"):
        assert value is not None
        out[codec.decode(value)["source"]["row_thumbprint"]] += 1
    return out


def test_every_row_once_despite_overlap_and_aborted_transactions() -> None:
    rows = [customer(m * 7.5, f"00000000-0000-0000-0000-{m % 5:012d}") for m in range(40)]
    rows += [
        customer(61, "00000000-0000-0000-0000-000000000001", "Updated"),
        customer(61, "00000000-0000-0000-0000-000000000001", "Deleted"),
    ]  # a tie
    fake = FakeDataConnect(rows)
    sink = FakeSink()
    sink.fail_commits = 2  # the first two transactions abort and must be replayed
    config = make_config()
    run_until_caught_up(config, fake, sink)
    assert sink.aborts == 2
    assert published_thumbprints(sink, config) == Counter(r["RowThumbprint"] for r in rows)
    # The overlap re-read rows (requests start 10 minutes before the previous stop).
    assert any(start.endswith("T00:50:00.000") for start, _ in fake.requests)
    last = Checkpoint.decode(sink.records("dataconnect.checkpoints")[-1][2] or b"")
    assert last.watermark == NOW


def spread_rows(n: int) -> list[dict[str, Any]]:
    """``n`` rows over the first five hours, five keys, with several versions per key."""
    return [customer(m * 300 / n, f"00000000-0000-0000-0000-{m % 5:012d}") for m in range(n)]


@pytest.mark.parametrize("prefetch", [1, 3])
def test_split_windows_while_fetching_ahead_leave_no_gap(prefetch: int) -> None:
    # Windows planned after one that DataConnect splits (413) went from its planned stop;
    # they must be planned again from where the split window really stopped.
    rows = spread_rows(60)
    fake = FakeDataConnect(rows)
    fake.max_rows = 4
    sink = FakeSink()
    config = make_config({"prefetch_windows": prefetch}, min_window_seconds=1)
    run_until_caught_up(config, fake, sink)
    assert published_thumbprints(sink, config) == Counter(r["RowThumbprint"] for r in rows)


def test_a_failed_fetch_drops_the_windows_planned_after_it() -> None:
    rows = spread_rows(40)
    fake = FakeDataConnect(rows)
    sink = FakeSink()
    config = make_config({"prefetch_windows": 3}, {"max_attempts": 1})
    original = fake.__call__

    def fail_third_window(request: httpx.Request) -> httpx.Response:
        if len(fake.requests) == 2 and not request.url.path.endswith("/token"):
            fake.requests.append(("failed", "failed"))
            return httpx.Response(503, json={"Error": True, "Message": "try later"})
        return original(request)

    streams, metrics = new_streams(config, fail_third_window)
    run_streams(config, streams, sink, metrics)
    assert ("failed", "failed") in fake.requests
    assert published_thumbprints(sink, config) == Counter(r["RowThumbprint"] for r in rows)


def test_rows_a_stale_hint_said_to_skip_are_still_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fetch thread skips encoding rows that the window before most likely published; if
    # that window never committed, the loop encodes them itself.
    from publisher import service
    from publisher.checkpoint import row_digest

    rows = spread_rows(30)
    late: list[int] = []
    real_encode_late = service.encode_late

    def counting(*args: Any) -> bytes:
        late.append(1)
        return real_encode_late(*args)

    monkeypatch.setattr(service, "encode_late", counting)
    config = make_config()
    fake, sink = FakeDataConnect(rows), FakeSink()
    streams, metrics = new_streams(config, fake)
    hint = frozenset(row_digest(r["CustomerID"], r["RowThumbprint"]) for r in rows)
    streams[0].recent = (0, hint)  # a hint from a window that was never committed
    run_streams(config, streams, sink, metrics)
    assert late, "the hint was not used"
    assert published_thumbprints(sink, config) == Counter(r["RowThumbprint"] for r in rows)


def test_versions_of_a_key_follow_change_time_even_if_the_source_shuffles() -> None:
    key = "11111111-1111-1111-1111-111111111111"
    rows = [customer(30, key, "Updated"), customer(10, key, "Added"), customer(50, key, "Deleted")]
    sink = FakeSink()
    config = make_config()
    run_until_caught_up(config, FakeDataConnect(rows), sink)
    from publisher.codec import EntityCodec

    codec = EntityCodec(config.entity_specs()["Customers"])
    ops = [codec.decode(v or b"")["op"] for _t, _k, v in sink.records("dataconnect.s1.Customers")]
    assert ops == ["c", "u", "d"]


def test_bad_rows_are_dead_lettered_once_with_raw_json_and_never_stall() -> None:
    good = customer(5, "22222222-2222-2222-2222-222222222222")
    bad_event = customer(6, "33333333-3333-3333-3333-333333333333", "Merged")
    no_key = customer(7, "")
    bad_int = customer(8, "44444444-4444-4444-4444-444444444444", LegacyCustomerID="seven")
    sink = FakeSink()
    config = make_config()
    run_until_caught_up(config, FakeDataConnect([good, bad_event, no_key, bad_int]), sink)
    assert published_thumbprints(sink, config) == Counter([good["RowThumbprint"]])
    dead = [orjson.loads(v or b"") for _t, _k, v in sink.records("dataconnect.deadletter")]
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == ["bad_value", "missing_key", "unknown_row_event"]
    raw = {orjson.loads(d["row"])["RowThumbprint"] for d in dead}
    assert raw == {bad_event["RowThumbprint"], no_key["RowThumbprint"], bad_int["RowThumbprint"]}


def test_a_row_over_the_record_size_limit_is_dead_lettered_whole() -> None:
    good = customer(5, "22222222-2222-2222-2222-222222222222")
    big = customer(6, "33333333-3333-3333-3333-333333333333", Notes="n" * 5000)
    sink = FakeSink()
    config = make_config(publisher={"max_record_bytes": 4096})
    run_until_caught_up(config, FakeDataConnect([good, big]), sink)
    assert published_thumbprints(sink, config) == Counter([good["RowThumbprint"]])
    (dead,) = [orjson.loads(v or b"") for _t, _k, v in sink.records("dataconnect.deadletter")]
    assert dead["reason"] == "too_large"
    assert "publisher.max_record_bytes = 4,096" in dead["detail"]
    assert orjson.loads(dead["row"]) == big


def thumbprints_in(sink: FakeSink, config: Any, topic: str) -> Counter[str]:
    from publisher.codec import EntityCodec

    codec = EntityCodec(config.entity_specs()["Customers"])
    return Counter(
        codec.decode(v or b"")["source"]["row_thumbprint"] for _t, _k, v in sink.records(topic)
    )


def last_checkpoint(sink: FakeSink, stream: str) -> Checkpoint:
    return [
        Checkpoint.decode(v or b"")
        for _t, k, v in sink.records("dataconnect.checkpoints")
        if k == stream.encode()
    ][-1]


def test_a_dead_letter_larger_than_its_topic_takes_stops_only_its_stream() -> None:
    # Its topic would refuse it, and every replay would carry it again (a stall); it cannot
    # be cut short without losing the row. So its stream stops, with the reason, and the
    # window holding it is not published at all; the other stream goes on.
    good = spread_rows(30)
    big = customer(150, "77777777-7777-7777-7777-777777777777", "Merged", Notes="n" * 5000)
    first, second = FakeDataConnect([*good, big]), FakeDataConnect(good)

    def by_host(request: httpx.Request) -> httpx.Response:
        return (second if request.url.host == "127.0.0.2" else first)(request)

    config = make_config(
        more_sources=[
            {
                "name": "s2",
                "base_url": "http://127.0.0.2:1",
                "token_url": "http://127.0.0.2:1/v1/oauth2/token",
            }
        ]
    )
    streams, metrics = new_streams(config, by_host)
    sink = FakeSink()
    publisher = run_streams(config, streams, sink, metrics, limits=Limits(dead_letter_bytes=3000))
    one, two = publisher.streams
    assert one.stopped is not None
    assert "the dead letter of a unknown_row_event row would be" in one.stopped
    assert "over the 3,000 topic dataconnect.deadletter takes" in one.stopped
    assert two.stopped is None
    assert sink.aborts == 1
    assert sink.records("dataconnect.deadletter") == []
    stopped = last_checkpoint(sink, "s1/Customers")
    assert stopped.state == "stopped"
    assert stopped.last_error == one.stopped
    # Everything before the window that holds the big row, once; nothing from it on.
    assert T0 < stopped.watermark <= change_time(big)
    before = [r for r in good if change_time(r) < stopped.watermark]
    assert thumbprints_in(sink, config, "dataconnect.s1.Customers") == Counter(
        r["RowThumbprint"] for r in before
    )
    assert thumbprints_in(sink, config, "dataconnect.s2.Customers") == Counter(
        r["RowThumbprint"] for r in good
    )
    assert ("s1", "Customers", "stopped", "record_too_large") in set(metrics.states())


def test_a_checkpoint_larger_than_its_topic_takes_stops_its_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The checkpoint keeps the digests of the rows its last windows published: a busy window
    # makes it grow. One its topic would refuse stops the stream, and its stopped state
    # (the same checkpoint) is not sent either: the last committed one stands.
    quiet = [customer(10, "88888888-8888-8888-8888-888888888888")]
    busy = [customer(70 + i / 10, f"00000000-0000-0000-0000-{i:012d}") for i in range(100)]
    config = make_config()
    streams, metrics = new_streams(config, FakeDataConnect([*quiet, *busy]))
    sink = FakeSink()
    publisher = Publisher(
        config,
        streams,
        sink,  # type: ignore[arg-type]
        metrics,
        clock=lambda: NOW,
        limits=Limits(checkpoint_bytes=400),
    )
    from publisher.errors import FatalError

    with pytest.raises(FatalError, match="every stream is stopped"):
        publisher.run()
    (stream,) = publisher.streams
    assert stream.stopped is not None
    assert "its checkpoint would be" in stream.stopped
    assert "the digests of the 100 rows its last windows published" in stream.stopped
    assert "over the 400 topic dataconnect.checkpoints takes" in stream.stopped
    committed = last_checkpoint(sink, "s1/Customers")
    assert committed.state == "running"
    assert committed.watermark == T0 + timedelta(hours=1)
    assert thumbprints_in(sink, config, "dataconnect.s1.Customers") == Counter(
        [quiet[0]["RowThumbprint"]]
    )
    assert "its state cannot be recorded" in caplog.text


def limits_with(config: Any, entity_topic_bytes: int) -> Limits:
    """The limits start-up plans when the Customers topic takes ``entity_topic_bytes``."""
    return plan_limits(
        entity_topics=["dataconnect.s1.Customers"],
        dead_letter_topic=config.publisher.dead_letter_topic,
        checkpoint_topic=config.publisher.checkpoint_topic,
        topic_limits={"dataconnect.s1.Customers": entity_topic_bytes},
        max_record_bytes=config.publisher.max_record_bytes,
        producer_max_bytes=LARGE_MESSAGE_BYTES,
        batch_size_set=False,
    )


def test_after_an_abort_a_topic_limit_lowered_meanwhile_is_read_and_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An operator lowered the topic's max.message.bytes while the publisher ran: the broker
    # refuses the big row's record, and every replay carrying it would abort the same way.
    # After the abort the limits are read again: the replay dead-letters the row instead,
    # and the producer's batches shrink to what the topic takes.
    good = spread_rows(30)
    big = customer(100, "44444444-4444-4444-4444-444444444444", Notes="n" * 5000)
    config = make_config()
    streams, metrics = new_streams(config, FakeDataConnect([*good, big]))
    sink = FakeSink()
    sink.refuse_over["dataconnect.s1.Customers"] = 4000 - BATCH_FRAMING_BYTES
    reads: list[Limits] = []

    def reread() -> Limits:
        reads.append(limits_with(config, 4000))
        return reads[-1]

    as_created = limits_with(config, 1_048_588)  # the broker's default
    publisher = run_streams(config, streams, sink, metrics, limits=as_created, reread_limits=reread)
    room = 4000 - BATCH_FRAMING_BYTES
    assert len(reads) == 1
    assert sink.aborts == 1
    assert sink.batch_sizes == [room]
    assert publisher.limits is reads[0]
    assert published_thumbprints(sink, config) == Counter(r["RowThumbprint"] for r in good)
    (dead,) = [orjson.loads(v or b"") for _t, _k, v in sink.records("dataconnect.deadletter")]
    assert dead["reason"] == "too_large"
    assert f"over {room:,}: max.message.bytes of topic dataconnect.s1.Customers" in dead["detail"]
    assert orjson.loads(dead["row"]) == big
    assert (
        "topic limits changed: events of dataconnect.s1.Customers up to 2,976 bytes "
        "(were up to 1,000,000); producer batch.size 2,976 (was librdkafka's default)"
    ) in caplog.text
    assert "rows whose record is over 2,976 bytes go to the dead-letter topic" in caplog.text


def test_limits_are_read_again_at_most_every_30_seconds_and_kept_when_unknown() -> None:
    rows = spread_rows(30)
    config = make_config()
    streams, metrics = new_streams(config, FakeDataConnect(rows))
    sink = FakeSink()
    sink.fail_commits = 3  # aborts for another reason (a broker restart, say)
    reads = 0

    def reread() -> None:  # a cluster that will not describe its topics
        nonlocal reads
        reads += 1

    ticks = itertools.count()
    publisher = run_streams(
        config, streams, sink, metrics, reread_limits=reread, monotonic=lambda: next(ticks) / 1000
    )
    assert sink.aborts == 3
    assert reads == 1  # three aborts within a second: one read
    assert publisher.limits == Limits()
    assert sink.batch_sizes == []
    assert published_thumbprints(sink, config) == Counter(r["RowThumbprint"] for r in rows)


@pytest.mark.parametrize("status", [403, 404])
def test_access_denied_stops_the_entity_and_records_why(status: int) -> None:
    def deny(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(
                200, json={"access_token": "eyJ-realistic-token", "expires_in": 99999}
            )
        return httpx.Response(status, json={"Error": True, "Message": "no access to Customers"})

    config = make_config()
    metrics = PublisherMetrics(CollectorRegistry(), clock=lambda: NOW)
    from publisher.errors import FatalError
    from publisher.runner import Shard

    streams = build_streams(
        config, config.entity_specs(), Shard(), metrics, transport=httpx.MockTransport(deny)
    )
    sink = FakeSink()
    publisher = Publisher(config, streams, sink, metrics, clock=lambda: NOW)  # type: ignore[arg-type]
    with pytest.raises(FatalError, match="every stream is stopped"):
        publisher.run()
    stopped = Checkpoint.decode(sink.records("dataconnect.checkpoints")[-1][2] or b"")
    assert stopped.state == "stopped"
    assert "no access to Customers" in (stopped.last_error or "")
    assert stopped.watermark == T0  # the watermark never moved


def test_headers_and_optional_tombstone_after_a_delete() -> None:
    key = "55555555-5555-5555-5555-555555555555"
    added, deleted = customer(10, key, "Added"), customer(20, key, "Deleted")
    sink = FakeSink()
    config = make_config(publisher={"tombstones": True})
    run_until_caught_up(config, FakeDataConnect([added, deleted]), sink)
    topic = "dataconnect.s1.Customers"
    records = [
        (r, h)
        for r, h in zip(sink.records_with_headers(), sink.headers, strict=True)
        if r[0] == topic
    ]
    assert [(r[1], r[2] is None) for r, _ in records] == [
        (key.encode(), False),  # the Added event
        (key.encode(), False),  # the Deleted event
        (key.encode(), True),  # its tombstone, same key, for compaction
    ]
    first = records[0][1]
    assert first["dc-entity"] == b"Customers"
    assert first["dc-source"] == b"s1"
    assert first["dc-op"] == b"c"
    assert first["idempotency-key"] == f"s1/Customers/{key}/{added['RowThumbprint']}".encode()
    assert records[1][1]["dc-op"] == b"d"


def test_no_tombstone_unless_configured() -> None:
    key = "66666666-6666-6666-6666-666666666666"
    sink = FakeSink()
    config = make_config()
    run_until_caught_up(
        config, FakeDataConnect([customer(10, key), customer(20, key, "Deleted")]), sink
    )
    values = [v for _t, _k, v in sink.records("dataconnect.s1.Customers")]
    assert len(values) == 2
    assert all(v is not None for v in values)


@pytest.mark.parametrize(("entities", "prefetch", "expected"), [(1, 2, [2]), (3, 2, [1, 1, 1])])
def test_windows_in_flight_per_stream_and_per_process(
    entities: int, prefetch: int, expected: list[int]
) -> None:
    # One stream fetches ahead; several streams get one window each before any gets two.
    release = threading.Event()
    fake = FakeDataConnect(spread_rows(40))

    def slow(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/token"):
            release.wait(10)
        return fake(request)

    names = ["Customers", "AccountsReceivable", "Activities"][:entities]
    config = make_config({"prefetch_windows": prefetch}, {"entities": names})
    streams, metrics = new_streams(config, slow)
    publisher = Publisher(config, streams, FakeSink(), metrics, clock=lambda: NOW)  # type: ignore[arg-type]
    try:
        publisher._start_fetches()
        publisher._start_fetches()  # nothing more while the first ones are in flight
        assert [len(s.pending) for s in publisher.streams] == expected
    finally:
        release.set()
        publisher.stop()
        publisher._pool.shutdown(wait=True)


def test_fetched_windows_are_decoded_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Downloads overlap, but parsed rows (about three times their JSON size) exist for only one
    # window at a time in the process: that bounds memory by one window, not prefetch_windows.
    from publisher import service

    active: list[int] = []
    most = 0
    lock = threading.Lock()
    real_prepare = service.prepare

    def slow_prepare(*args: Any, **kwargs: Any) -> Any:
        nonlocal most
        with lock:
            active.append(1)
            most = max(most, len(active))
        try:
            threading.Event().wait(0.02)  # the GIL is free: another thread could come in
            return real_prepare(*args, **kwargs)
        finally:
            with lock:
                active.pop()

    monkeypatch.setattr(service, "prepare", slow_prepare)
    rows = spread_rows(40)
    config = make_config(
        {"prefetch_windows": 3}, initial_window_seconds=900, max_window_seconds=900
    )
    sink = FakeSink()
    run_until_caught_up(config, FakeDataConnect(rows), sink)
    assert most == 1
    assert published_thumbprints(sink, config) == Counter(r["RowThumbprint"] for r in rows)


def test_decode_processes_publish_every_row_once_and_an_unreadable_body_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from publisher import service
    from publisher.decodepool import DecodePool

    def not_here(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("prepared in the publishing process, not in a decode process")

    monkeypatch.setattr(service, "prepare", not_here)  # the spawned worker has its own

    rows = spread_rows(40)
    fake = FakeDataConnect(rows)
    broken = [1]  # the first data answer is cut short: the worker cannot parse it

    def handler(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/token") and broken[0]:
            broken[0] -= 1
            return httpx.Response(200, content=b'[{"CustomerID": "00000000-')
        return fake(request)

    config = make_config(
        {"decode_processes": 1},
        {"retry_base_seconds": 0.01},
        initial_window_seconds=900,
        max_window_seconds=900,
    )
    streams, metrics = new_streams(config, handler)
    decoder = DecodePool(1)
    sink = FakeSink()
    try:
        run_streams(config, streams, sink, metrics, decoder)
    finally:
        decoder.close()
    assert broken == [0]
    assert published_thumbprints(sink, config) == Counter(r["RowThumbprint"] for r in rows)
