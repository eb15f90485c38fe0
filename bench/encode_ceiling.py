"""How many Customers rows per second one core can parse and encode.

Prints rows/s for (a) orjson parsing one DataConnect row, (b) fastavro.schemaless_writer on
the change event, (c) publisher.avrofast on the same event, (d) parse + map (the product's
RowMapper) + encode with avrofast, and the ratio (c)/(b). ``python -m bench`` measures the
same on the simulator's rows, as part of the full benchmark. Rows are realistic: names,
emails, phone numbers, many "" (which become null), a few ints, GUIDs and timestamps, built
from schemas/Customers.avsc.

Run: .venv/bin/python bench/encode_ceiling.py [--rows 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_writer

from publisher.avrofast import compile_encoder
from publisher.entities import EntitySpec, load_entities
from publisher.mapping import RowMapper
from publisher.timefmt import parse_timestamp, to_millis

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
FIRST = ["Olivia", "Liam", "Émilie", "Noah", "Zoë", "Mateo", "Aarav", "Chloé", "Lucas", "Mia"]
LAST = ["Smith", "Tremblay", "García", "Nguyen", "O'Brien", "Kowalski", "Roy", "Müller", "Lee"]
CITIES = ["Regina", "Saskatoon", "Calgary", "Montréal", "Toronto", "Vancouver", "Winnipeg"]
TEXT: dict[str, Callable[[random.Random], str]] = {
    "Address": lambda r: f"{r.randint(1, 9999)} {r.choice(LAST)} Street",
    "City": lambda r: r.choice(CITIES),
    "Region": lambda r: r.choice(["SK", "AB", "QC", "ON", "BC", "MB"]),
    "Country": lambda r: "Canada",
    "ZipPostal": lambda r: f"S4P {r.randint(1, 9)}X{r.randint(1, 9)}",
    "Notes": lambda r: "Prefers text messages; upgraded plan in store. " * r.randint(0, 3),
    "Title": lambda r: r.choice(["Mr.", "Ms.", "Dr.", ""]),
}


def _category(r: random.Random) -> str:
    return r.choice(["Retail", "Consumer", "Business", "A1"])


def _timestamp(r: random.Random) -> str:
    moment = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(seconds=r.randint(0, 150_000_000))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{r.randint(0, 999):03d}Z"


def dataconnect_row(spec: EntitySpec, r: random.Random) -> dict[str, Any]:
    """One row as DataConnect sends it: every column present, empty ones as ""."""
    first, last = r.choice(FIRST), r.choice(LAST)
    row: dict[str, Any] = {}
    for f in spec.fields:
        empty = r.random() < 0.45 and f.name != spec.key_field
        if f.kind == "guid":
            row[f.name] = str(uuid.UUID(int=r.getrandbits(128)))
        elif f.kind == "int":
            row[f.name] = r.choice([-1, r.randint(1, 500), r.randint(10_000, 3_000_000)])
        elif f.kind in ("flag", "bool"):
            row[f.name] = "" if empty else r.choice([True, False])
        elif f.kind == "timestamp":
            row[f.name] = "" if empty else _timestamp(r)
        elif f.kind == "money":
            row[f.name] = round(r.uniform(0, 5000), 2)
        elif empty:
            row[f.name] = ""
        elif "Email" in f.name:
            row[f.name] = f"{first}.{last}{r.randint(1, 99)}@example.com".lower()
        elif "Phone" in f.name or f.name in ("Pager", "FaxNumber", "MainPhone"):
            row[f.name] = f"306-{r.randint(200, 999)}-{r.randint(1000, 9999)}"
        elif f.name in ("FirstName", "Customer_Name"):
            row[f.name] = first if f.name == "FirstName" else f"{first} {last}"
        elif f.name == "LastName":
            row[f.name] = last
        else:
            row[f.name] = TEXT.get(f.name, _category)(r)
    row["RowThumbprint"] = str(uuid.UUID(int=r.getrandbits(128)))
    row["RowInserted"] = _timestamp(r)
    row["RowUpdated"] = r.choice(["", _timestamp(r)])
    row["RowEvent"] = "Added"
    return row


def change_event(spec: EntitySpec, row: dict[str, Any], window: tuple[int, int]) -> dict[str, Any]:
    """A minimal stand-in for the product's mapper: "" to None, typed values, the envelope."""
    value: dict[str, Any] = {"_extra": {}}
    for f in spec.fields:
        raw = row.get(f.name, "")
        if raw == "" or raw is None:
            value[f.name] = None
        elif f.kind == "timestamp":
            moment = parse_timestamp(raw)
            value[f.name] = None if moment is None else to_millis(moment)
        elif f.kind == "money":
            value[f.name] = Decimal(str(raw))
        else:
            value[f.name] = raw
    inserted = parse_timestamp(row["RowInserted"])
    updated = parse_timestamp(row["RowUpdated"])
    return {
        "before": None,
        "after": value,
        "source": {
            "connector": "dataconnect-publisher",
            "version": "0.1.0",
            "source": "acme-prod",
            "entity": spec.name,
            "row_thumbprint": row["RowThumbprint"],
            "row_inserted": None if inserted is None else to_millis(inserted),
            "row_updated": None if updated is None else to_millis(updated),
            "row_event": row["RowEvent"],
            "window_start": window[0],
            "window_stop": window[1],
        },
        "op": "c",
        "ts_ms": window[1] + 1234,
    }


def rate(fn: Callable[[Any], object], items: list[Any], repeat: int) -> float:
    """Best-of-``repeat`` rows per second of ``fn`` over ``items``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--entity", default="Customers")
    args = parser.parse_args()

    spec = load_entities(SCHEMAS)[args.entity]
    r = random.Random(7)
    window = (1_700_000_000_000, 1_700_000_300_000)
    rows_json = [orjson.dumps(dataconnect_row(spec, r)) for _ in range(args.rows)]
    events = [change_event(spec, orjson.loads(j), window) for j in rows_json]

    parsed = parse_schema(spec.schema)
    encode = compile_encoder(spec.schema)

    def fastavro_encode(event: dict[str, Any]) -> bytes:
        buf = BytesIO()
        schemaless_writer(buf, parsed, event)
        return buf.getvalue()

    for event in events:  # same bytes, and the fast path really is the one measured
        if encode.fast_path(event) != fastavro_encode(event):
            raise SystemExit("avrofast and fastavro disagree; not measuring")

    mapper = RowMapper(spec, source_name="acme-prod", version="0.1.0")

    def full(raw: bytes) -> bytes:
        return encode(mapper.map(orjson.loads(raw), *window, window[1] + 1234).record)

    avg_json = sum(map(len, rows_json)) / len(rows_json)
    avg_avro = sum(len(encode(e)) for e in events) / len(events)
    print(f"{args.entity}: {args.rows} rows, {avg_json:.0f} B JSON, {avg_avro:.0f} B Avro each")
    parse_rate = rate(orjson.loads, rows_json, args.repeat)
    fastavro_rate = rate(fastavro_encode, events, args.repeat)
    fast_rate = rate(encode, events, args.repeat)
    full_rate = rate(full, rows_json, args.repeat)
    print(f"(a) orjson parse             {parse_rate:>10,.0f} rows/s")
    print(f"(b) fastavro.schemaless      {fastavro_rate:>10,.0f} rows/s")
    print(f"(c) avrofast                 {fast_rate:>10,.0f} rows/s")
    print(f"(d) parse + map + avrofast   {full_rate:>10,.0f} rows/s")
    print(f"(c)/(b) = {fast_rate / fastavro_rate:.2f}x")


if __name__ == "__main__":
    main()
