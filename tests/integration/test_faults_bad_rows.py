"""Bad rows end to end: every malformed-row kind the simulator makes, in every timestamp shape,
in a source zone that is not UTC. No row is lost (each ground-truth row version is either one
event or one dead letter whose raw JSON is the row), unknown fields are kept in ``_extra``,
strings survive byte for byte, and the pipeline never stalls."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from publisher.config import Config
from publisher.simulator.settings import BAD_ROW_KINDS, SimulatorSettings
from tests.integration.harness import (
    PublisherProcess,
    RunningSimulator,
    assert_huge_rows_dead_lettered,
    canonical,
    dead_letters,
    decoded_events,
    huge_row_simulator,
    load,
    minutes_ago,
    report,
    soak,
    start_simulator,
    wait_for_watermarks,
    write_config,
)
from tests.kafka_helpers import random_name

pytestmark = [pytest.mark.integration, pytest.mark.faults]

ZONE = "America/Winnipeg"
ENTITIES = ["Customers", "AccountsReceivable", "Activities"]
HUGE = 100_000
OPS = {"Added", "Updated", "Deleted"}
_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,7}))?(Z?)")


def shape(text: str) -> tuple[int, bool]:
    """(fraction digits, ends in Z) of a DataConnect timestamp."""
    m = _STAMP.fullmatch(text)
    assert m, f"not a DataConnect timestamp: {text!r}"
    return len(m[7] or ""), m[8] == "Z"


def epoch_ms(text: str) -> int:
    """The instant a DataConnect timestamp names, computed here without the product's parser:
    no Z means the source's zone, digits beyond the millisecond are dropped."""
    m = _STAMP.fullmatch(text)
    assert m
    zone = UTC if m[8] else ZoneInfo(ZONE)
    year, month, day, hour, minute, second = (int(m[i]) for i in range(1, 7))
    moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    return int(moment.timestamp()) * 1000 + int(((m[7] or "") + "000")[:3])


def publish_all(
    sim: RunningSimulator,
    bootstrap: str,
    tmp_path: Path,
    *,
    prefix: str,
    start_from: datetime,
    entities: list[str],
    timeout: float,
    **overrides: Any,
) -> tuple[Config, dict[str, datetime]]:
    """Run the publisher until every stream's watermark passes the end of the data (it never
    stalls), then stop it cleanly; the config and the watermarks reached."""
    config_path = write_config(
        tmp_path / "publisher.toml",
        bootstrap=bootstrap,
        simulator_url=sim.url,
        prefix=random_name(prefix),
        start_from=start_from,
        entities=entities,
        **overrides,
    )
    config = load(config_path)
    proc = PublisherProcess(config_path, tmp_path / "publisher.log").start()
    try:
        marks = wait_for_watermarks(config, sim.clock.freeze(), timeout=timeout)
        assert proc.terminate() == 0, proc.log()[-3000:]
    finally:
        if proc.alive():
            proc.kill9()
    return config, marks


def test_bad_rows_are_dead_lettered_or_kept_and_none_is_lost(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rows = soak(500, 5000)
    start_from = minutes_ago(60)
    sim = start_simulator(
        SimulatorSettings(
            seed=17,
            default_rows=rows,
            history_start=start_from,
            bad_row_rate=0.15,
            bad_row_kinds=BAD_ROW_KINDS,
            huge_string_chars=HUGE,
            zone=ZONE,
            varied_timestamps=True,
        )
    )
    try:
        config, marks = publish_all(
            sim,
            kafka_bootstrap,
            tmp_path,
            prefix="badrows",
            start_from=start_from,
            entities=ENTITIES,
            timeout=soak(90, 600),
            windows={"initial_window_seconds": 600},
            source={"timezone": ZONE},
        )

        specs = config.entity_specs()
        events: Counter[tuple[str, str, str]] = Counter()
        by_version: dict[tuple[str, str, str], dict[str, Any]] = {}
        for entity, event in decoded_events(config):
            src = event["source"]
            value = event["after"] or event["before"]
            version = (entity, str(value[specs[entity].key_field]).lower(), src["row_thumbprint"])
            events[version] += 1
            by_version[version] = event
        dead: Counter[tuple[str, bytes]] = Counter()
        reasons: Counter[str] = Counter()
        for letter in dead_letters(config):
            dead[(letter["entity"], canonical(orjson.loads(letter["row"])))] += 1
            reasons[letter["reason"]] += 1

        seen: Counter[str] = Counter()
        shapes: set[tuple[int, bool]] = set()
        for entity in ENTITIES:
            spec = specs[entity]
            kinds = {f.name: f.kind for f in spec.fields}
            for row in sim.truth(entity, start_from, marks[f"retailer/{entity}"]):
                shapes.update(shape(row[t]) for t in ("RowInserted", "RowUpdated") if row[t])
                version = (entity, str(row.get(spec.key_field)).lower(), row["RowThumbprint"])
                if events[version]:
                    events[version] -= 1
                    check_event(row, by_version[version], kinds, seen)
                    continue
                raw = (entity, canonical(row))
                assert dead[raw], f"row version lost: {version}"
                dead[raw] -= 1
                seen["dead letter"] += 1
                if spec.key_field not in row:
                    seen["missing_key"] += 1
                elif row["RowEvent"] not in OPS:
                    seen["unknown_event"] += 1
                else:
                    seen["wrong_type"] += 1
        assert not +events, f"events beyond the ground truth: {list((+events).items())[:3]}"
        assert not +dead, f"dead letters beyond the ground truth: {len(list(+dead))}"
        # Every kind of bad row really was there, and went where it should.
        for kind in ("missing_key", "unknown_event", "wrong_type", "extra_fields", "huge_string"):
            assert seen[kind] >= 1, (kind, seen)
        assert seen["control_chars"] >= 1, seen
        assert set(reasons) == {"missing_key", "unknown_row_event", "bad_value"}, reasons
        assert seen["event"] >= 0.8 * rows * len(ENTITIES)
        # Timestamps came in many shapes (0 to 7 digits, with and without Z) and all mapped.
        assert len(shapes) >= 8, shapes
        assert {d for d, _ in shapes} >= {0, 3, 7}
        assert {z for _, z in shapes} == {True, False}
        report(
            "bad rows",
            **{k.replace(" ", "_"): v for k, v in seen.items()},
            dead_letters=dict(reasons),
            timestamp_shapes=len(shapes),
        )
    finally:
        sim.server.stop()


def check_event(
    row: dict[str, Any], event: dict[str, Any], kinds: dict[str, str], seen: Counter[str]
) -> None:
    """An event keeps every field of its row: strings exactly, timestamps as the same instant,
    unknown fields as JSON text in ``_extra``."""
    seen["event"] += 1
    src = event["source"]
    value = event["after"] if event["op"] != "d" else event["before"]
    assert src["row_event"] == row["RowEvent"]
    assert src["row_inserted"] == (epoch_ms(row["RowInserted"]) if row["RowInserted"] else None)
    assert src["row_updated"] == (epoch_ms(row["RowUpdated"]) if row["RowUpdated"] else None)
    tracking = {"RowThumbprint", "RowInserted", "RowUpdated", "RowEvent"}
    extra = {k: v for k, v in row.items() if k not in kinds and k not in tracking}
    assert {k: orjson.loads(v) for k, v in value["_extra"].items()} == extra
    if extra:
        seen["extra_fields"] += 1
    for name, kind in kinds.items():
        raw = row.get(name)
        if kind == "string" and isinstance(raw, str):
            assert value[name] == raw, name  # huge, control and non-BMP characters included
            if len(raw) == HUGE:
                seen["huge_string"] += 1
            if "\x00" in raw and "\U0001f600" in raw:
                seen["control_chars"] += 1
        elif kind == "timestamp" and isinstance(raw, str) and raw:
            assert value[name] == epoch_ms(raw), name


def test_a_row_too_large_for_its_topic_is_dead_lettered_not_replayed_forever(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # A 1.1 MB string that does not compress makes a record over Kafka's default
    # max.message.bytes (about 1 MB), which the entity topic (created with defaults) refuses:
    # every transaction carrying it would abort and replay it, and the stream would never
    # move again.
    huge = 1_100_000
    start_from = minutes_ago(60)
    sim = huge_row_simulator(seed=23, rows=200, start=start_from, chars=huge, rate=0.03)
    try:
        config, marks = publish_all(
            sim,
            kafka_bootstrap,
            tmp_path,
            prefix="toolarge",
            start_from=start_from,
            entities=["Customers"],
            timeout=90,
        )
        rows, letters = assert_huge_rows_dead_lettered(
            sim, config, start_from, marks["retailer/Customers"], huge
        )
        report("row too large", rows=rows, dead_letters=len(letters))
    finally:
        sim.server.stop()
