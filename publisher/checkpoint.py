"""The committed checkpoint of one stream: watermark plus the rows the overlap may bring back.

One record per stream on a compacted topic, keyed ``<source>/<entity>``, written in the same
Kafka transaction as the window's events. A read_committed consumer of that topic therefore
sees a checkpoint only together with the events it accounts for.

The overlap re-reads ``[W - overlap, W)`` on every window so that rows that turn up late are not
missed. Rows already published there are recognised by ``(key, RowThumbprint)``: the
:class:`SeenSet` keeps a 64-bit digest of each pair with the stop of the window that published
it, and forgets it once no future window can return it again (its window stopped before the
next window's start). The set is part of the checkpoint, so it survives restarts.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from publisher.timefmt import from_millis, to_millis

FORMAT_VERSION = 1


def row_digest(key: str, thumbprint: str) -> int:
    """64-bit digest of one row version. Collisions are ~2^-64 per pair: negligible."""
    data = f"{key}\x00{thumbprint}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


@dataclass(slots=True)
class SeenSet:
    """Digests of row versions published recently, each with the stop (ms) of its window."""

    entries: dict[int, int] = field(default_factory=dict)

    def __contains__(self, digest: int) -> bool:
        return digest in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, digest: int, window_stop_ms: int) -> None:
        self.entries[digest] = window_stop_ms

    def prune(self, next_start_ms: int) -> None:
        """Forget rows from windows that stopped before ``next_start_ms``: no later window
        (all start at or after it) can return them. Equality is kept, in case the source
        treats StopDate as inclusive."""
        self.entries = {d: s for d, s in self.entries.items() if s >= next_start_ms}

    def copy(self) -> SeenSet:
        return SeenSet(dict(self.entries))

    def to_json(self) -> dict[str, str]:
        """Compact form: window stop (ms, as text) -> base64 of the packed 8-byte digests."""
        groups: dict[int, list[int]] = {}
        for digest, stop in self.entries.items():
            groups.setdefault(stop, []).append(digest)
        return {
            str(stop): base64.b64encode(
                b"".join(d.to_bytes(8, "little") for d in sorted(digests))
            ).decode()
            for stop, digests in sorted(groups.items())
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> SeenSet:
        entries: dict[int, int] = {}
        for stop_text, packed in data.items():
            raw = base64.b64decode(packed)
            stop = int(stop_text)
            for i in range(0, len(raw), 8):
                entries[int.from_bytes(raw[i : i + 8], "little")] = stop
        return cls(entries)


@dataclass(slots=True)
class Checkpoint:
    """What is committed for one stream."""

    stream: str
    watermark: datetime
    origin: datetime  # no window starts before this (start_from, or a reset's target)
    seen: SeenSet = field(default_factory=SeenSet)
    rows_published: int = 0
    window_size_seconds: float | None = None
    last_error: str | None = None
    state: str = "running"
    updated_at: datetime | None = None
    publisher_version: str = ""

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": FORMAT_VERSION,
                "stream": self.stream,
                "watermark": self.watermark.isoformat(),
                "watermark_ms": to_millis(self.watermark),
                "origin_ms": to_millis(self.origin),
                "seen": self.seen.to_json(),
                "rows_published": self.rows_published,
                "window_size_seconds": self.window_size_seconds,
                "last_error": self.last_error,
                "state": self.state,
                "updated_at": None if self.updated_at is None else self.updated_at.isoformat(),
                "publisher_version": self.publisher_version,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Checkpoint:
        doc = orjson.loads(data)
        if doc.get("v") != FORMAT_VERSION:
            raise ValueError(f"unsupported checkpoint format {doc.get('v')!r}")
        updated = doc.get("updated_at")
        return cls(
            stream=doc["stream"],
            watermark=from_millis(int(doc["watermark_ms"])),
            origin=from_millis(int(doc["origin_ms"])),
            seen=SeenSet.from_json(doc.get("seen") or {}),
            rows_published=int(doc.get("rows_published", 0)),
            window_size_seconds=doc.get("window_size_seconds"),
            last_error=doc.get("last_error"),
            state=doc.get("state", "running"),
            updated_at=None if updated is None else datetime.fromisoformat(updated),
            publisher_version=doc.get("publisher_version", ""),
        )

    def copy(self) -> Checkpoint:
        return Checkpoint(
            stream=self.stream,
            watermark=self.watermark,
            origin=self.origin,
            seen=self.seen.copy(),
            rows_published=self.rows_published,
            window_size_seconds=self.window_size_seconds,
            last_error=self.last_error,
            state=self.state,
            updated_at=self.updated_at,
            publisher_version=self.publisher_version,
        )


def stream_id(source: str, entity: str) -> str:
    """The checkpoint key of a (source, entity) stream."""
    return f"{source}/{entity}"


def latest(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[str, Checkpoint]:
    """The last checkpoint per stream from (key, value) records in log order."""
    out: dict[str, Checkpoint] = {}
    for key, value in records:
        if key is None:
            continue
        if value is None:  # a tombstone: the stream was forgotten
            out.pop(key.decode(), None)
            continue
        out[key.decode()] = Checkpoint.decode(value)
    return out
