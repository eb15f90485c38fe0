"""Spelling millisecond timestamps the several ways DataConnect does.

The vendor page shows ``2019-04-25T06:19:12.343Z``; the product must also cope with no ``Z``
(read in the source's zone) and 0 to 7 fractional digits. Every spelling is exact: a shape
never drops a non-zero digit, so the text parses back to the same millisecond the simulator
filtered on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

#: (fractional digits, ends in Z) with weights out of 100; the page's shape dominates.
_VARIED: tuple[tuple[int, bool, int], ...] = (
    (3, True, 50),
    (3, False, 10),
    (7, True, 10),
    (7, False, 8),
    (0, True, 6),
    (0, False, 4),
    (1, True, 4),
    (2, False, 4),
    (6, True, 4),
)
_PAGE_SHAPE = (3, True)
_SECONDS = tuple(f"{s:02d}" for s in range(60))


def _fractions(digits: int) -> tuple[str, ...]:
    """``.fff`` texts for every millisecond with at least ``digits`` digits, never fewer than
    the millisecond needs (so no information is lost)."""
    out = []
    for ms in range(1000):
        needed = 0 if ms == 0 else 3 if ms % 10 else 2 if ms % 100 else 1
        n = max(digits, needed)
        out.append("." + (f"{ms:03d}" + "0000")[:n] if n else "")
    return tuple(out)


_FRACTIONS = tuple(_fractions(d) for d in range(8))


def _shape_table(varied: bool) -> tuple[tuple[tuple[str, ...], bool], ...]:
    shapes = [(d, z, w) for d, z, w in _VARIED] if varied else [(*_PAGE_SHAPE, 100)]
    table: list[tuple[tuple[str, ...], bool]] = []
    for digits, zulu, weight in shapes:
        table.extend([(_FRACTIONS[digits], zulu)] * weight)
    return tuple(table)


class TimestampFormatter:
    """Formats epoch milliseconds; ``draw`` in 0..99 picks the shape (page shape if not varied).

    Thread-safe: the only state is a cache of per-minute prefixes.
    """

    def __init__(self, zone: ZoneInfo, varied: bool) -> None:
        self._zone = zone
        self._utc_zone = zone.key == "UTC"
        self._shapes = _shape_table(varied)
        self._minutes: dict[int, str] = {}

    def format(self, millis: int, draw: int) -> str:
        """The text of ``millis`` in shape number ``draw``."""
        fractions, zulu = self._shapes[draw]
        minute = millis // 60_000
        key = minute * 2 + (zulu or self._utc_zone)
        prefix = self._minutes.get(key)
        if prefix is None:
            prefix = self._prefix(minute, key)
        second, ms = divmod(millis - minute * 60_000, 1000)
        text = prefix + _SECONDS[second] + fractions[ms]
        return text + "Z" if zulu else text

    def _prefix(self, minute: int, key: int) -> str:
        if len(self._minutes) > 100_000:  # bounded: a catch-up walks forward in time
            self._minutes.clear()
        zone = UTC if key % 2 else self._zone
        # zone offsets are whole minutes, so the seconds never change the prefix
        prefix = datetime.fromtimestamp(minute * 60, zone).strftime("%Y-%m-%dT%H:%M:")
        self._minutes[key] = prefix
        return prefix
