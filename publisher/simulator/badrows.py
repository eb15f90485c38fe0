"""Malformed rows, mixed into the data at ``bad_row_rate`` so the product's dead-letter path
gets exercised. They are part of the history: the ground-truth endpoint returns them too.

Kinds: a field with the wrong JSON type, a missing key, an unknown ``RowEvent``, unknown extra
fields, a huge string (random base64 text, which no compression shrinks: the worst case for a
broker's size limit, which applies to compressed batches), and control / non-BMP unicode
characters. The tracking timestamps are never corrupted, so every bad row still belongs to
exactly one window.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import orjson

from publisher.entities import EntitySpec

_WRONG: dict[str, Any] = {
    "guid": 12345,
    "int": "not-a-number",
    "string": {"nested": ["object"]},
    "phone": [5, 5, 5],
    "postal": {"zip": 1},
    "money": "12,50",
    "bool": "yes",
    "flag": 7,
    "timestamp": "yesterday afternoon",
}
_UNICODE = "Zoë \u0000\u0007\u001b\t\n 漢字 😀 \u2028 \ufffd"


def corrupt(row: bytes, kind: str, rng: random.Random, spec: EntitySpec, huge_chars: int) -> bytes:
    """Return ``row`` damaged in the way ``kind`` names (still valid JSON)."""
    obj: dict[str, Any] = orjson.loads(row)
    others = [f for f in spec.fields if f.name != spec.key_field and f.name in obj]
    strings = [f.name for f in others if f.kind == "string"] or ["Notes"]
    if kind == "wrong_type" and others:
        victim = rng.choice(others)
        obj[victim.name] = _WRONG[victim.kind]
    elif kind == "missing_key":
        obj.pop(spec.key_field, None)
    elif kind == "unknown_event":
        obj["RowEvent"] = rng.choice(("Merged", "Purged", "Restored"))
    elif kind == "extra_fields":
        obj["UnexpectedColumn"] = "surprise"
        obj[f"NewField{rng.randint(1, 99)}"] = rng.randint(1, 1000)
    elif kind == "huge_string":
        noise = base64.b64encode(rng.randbytes(huge_chars * 3 // 4 + 3)).decode()
        obj[rng.choice(strings)] = noise[:huge_chars]
    elif kind == "control_chars":
        obj[rng.choice(strings)] = _UNICODE
    return orjson.dumps(obj)
