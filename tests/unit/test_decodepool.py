"""Decode processes: a window decoded in a worker process equals the same window prepared on
the calling thread, byte for byte, and an unreadable body comes back as BodyUnreadable."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from publisher.dataconnect.client import Body, BodyUnreadable
from publisher.decodepool import DecodePool
from publisher.errors import RowRejected
from publisher.prepare import Event, ShapeRecipe, header_bytes, prepare
from publisher.service import base_headers
from tests.unit.test_prepare import NOW_MS, SPEC, WINDOW, row


@pytest.fixture(scope="module")
def pool() -> Iterator[DecodePool]:
    decoder = DecodePool(2)
    try:
        yield decoder
    finally:
        decoder.close()


def recipe(zone: str = "UTC", **more: Any) -> ShapeRecipe:
    return ShapeRecipe(
        "src/AccountsReceivable",
        SPEC,
        source_name="src",
        version="9.9.9",
        zone=ZoneInfo(zone),
        deleted_carries_row=True,
        wire_format="single-object",
        schema_id=None,
        key_prefix="src:",
        key_suffix="!",
        headers_base=base_headers("src", "AccountsReceivable"),
        **more,
    )


def test_a_window_decoded_elsewhere_equals_the_one_prepared_here(pool: DecodePool) -> None:
    rows = [row(k, k % 50, ("Added", "Updated", "Deleted")[k % 3]) for k in range(300)]
    rows.append({"RowEvent": "Added"})  # a refused row comes back with its reason
    rows.append(row(999, 3, Unknown="x"))  # unknown fields are counted
    body = orjson.dumps(rows)
    skip = frozenset({prepare(recipe().build(), WINDOW, rows[:5], now_ms=NOW_MS).events[0].digest})
    # The body crosses as downloaded: gzip-compressed or plain.
    for zone, sent in (("UTC", Body(gzip.compress(body), "gzip")), ("America/Regina", Body(body))):
        here = prepare(recipe(zone).build(), WINDOW, orjson.loads(body), now_ms=NOW_MS, skip=skip)
        there = pool.decode(recipe(zone), WINDOW, sent, now_ms=NOW_MS, skip=skip)
        assert there.events == here.events
        assert all(type(e) is Event for e in there.events)
        assert [(r, str(e)) for r, e in there.rejected] == [(r, str(e)) for r, e in here.rejected]
        assert there.rows == here.rows == len(rows)
        assert any(e.value is None for e in there.events)  # the skip hint crossed over


def test_a_decode_process_applies_the_configured_record_size_limit(pool: DecodePool) -> None:
    # The limit crosses in the recipe: a worker that fell back to the default would publish
    # what the operator asked to dead-letter.
    rows = [row(k, k) for k in range(3)]
    (first,) = prepare(recipe().build(), WINDOW, rows[:1], now_ms=NOW_MS).events
    assert isinstance(first.value, bytes)
    tight = len(first.value) + len(first.key) + header_bytes(first.headers) - 1
    body = Body(orjson.dumps(rows))
    there = pool.decode(recipe(max_record_bytes=tight), WINDOW, body, now_ms=NOW_MS, skip=())
    reasons = [e.value.reason for e in there.events if isinstance(e.value, RowRejected)]
    assert reasons == ["too_large"] * len(rows)


@pytest.mark.parametrize(
    ("body", "excerpt"),
    [
        (Body(b'[{"AccountID": '), b'[{"AccountID": '),
        (Body(b'{"Error": true, "Message": "busy"}'), b'{"Error": true, "Message": "busy"}'),
        (Body(gzip.compress(b"[" + b"x" * 5000)[:-8], "gzip"), b""),  # cut short: no quote
        (Body(gzip.compress(b"[" + b"x" * 5000), "gzip"), b"[" + b"x" * 2047),  # the start only
    ],
    ids=["truncated", "error-object", "broken-gzip", "long"],
)
def test_an_unreadable_body_comes_back_as_body_unreadable(
    pool: DecodePool, body: Body, excerpt: bytes
) -> None:
    with pytest.raises(BodyUnreadable) as caught:
        pool.decode(recipe(), WINDOW, body, now_ms=NOW_MS, skip=frozenset())
    assert caught.value.excerpt == excerpt
    assert caught.value.problem


@pytest.mark.parametrize("creator_alive", [True, False], ids=["creator-runs", "creator-gone"])
def test_a_worker_started_after_its_creator_died_exits_before_taking_work(
    creator_alive: bool,
) -> None:
    # The start-up race CI found: the publisher was killed before a slow worker ran its
    # initializer, so the parent-death signal came too late and the worker waited for work
    # forever. The initializer must notice that its parent is no longer the creator, at once.
    probe = subprocess.Popen(["true"])  # once it has ended, its pid is nobody's parent
    probe.wait()
    creator = os.getpid() if creator_alive else probe.pid
    code = f"from publisher.decodepool import _init_worker; _init_worker({creator}); print('on')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=False
    )
    if creator_alive:
        assert (done.returncode, done.stdout) == (0, b"on\n"), done.stderr
    else:
        assert (done.returncode, done.stdout) == (1, b""), done.stderr
