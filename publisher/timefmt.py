"""DataConnect's date spellings, in and out. Pure functions; every datetime is time-zone aware.

Requests send ``yyyy-MM-ddTHH:mm:ss.fff`` with no zone; the zone the server applies is a
setting (``source_timezone``, default UTC). Responses spell timestamps in several ways: with or
without ``Z`` (or an offset), 0 to 7 fractional digits, or ``""`` for none. A timestamp without
a zone is read in the source's zone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

_TS = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Only ever subtracted from naive times that are UTC.
EPOCH_NAIVE = datetime(1970, 1, 1)  # noqa: DTZ001
_ONE_MS = timedelta(milliseconds=1)


def parse_timestamp(text: str, zone: tzinfo = UTC) -> datetime | None:
    """Parse a DataConnect timestamp; ``""`` gives None; anything unreadable raises ValueError.

    Fractions beyond microseconds (DataConnect sends up to 7 digits) are truncated.
    """
    if text == "":
        return None
    moment = _parse_fast(text)
    if moment is not None:
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)
    return _parse_strict(text, zone)


def timestamp_millis(text: str, zone: tzinfo = UTC) -> int | None:
    """``to_millis(parse_timestamp(text, zone))`` (None for ``""``), without building the
    aware datetime when it is not needed: this runs for every timestamp of every row."""
    if text == "":
        return None
    moment = _parse_fast(text)
    if moment is None:
        return to_millis(_parse_strict(text, zone))
    if moment.tzinfo is None:
        if zone is UTC:  # a naive time read as UTC: no offset to apply
            return (moment - EPOCH_NAIVE) // _ONE_MS
        moment = moment.replace(tzinfo=zone)
    return (moment - EPOCH) // _ONE_MS


def _parse_fast(text: str) -> datetime | None:
    """The C parser, but only for the extended layout DataConnect uses, so that it accepts
    exactly what the strict pattern accepts; None when the strict parser must decide."""
    if (
        len(text) >= 19
        and text[4] == "-"
        and text[7] == "-"
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
        and (len(text) == 19 or text[19] in ".Z+-")
    ):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    return None


def _parse_strict(text: str, zone: tzinfo) -> datetime:
    m = _TS.match(text.strip())
    if m is None:
        raise ValueError(f"not a DataConnect timestamp: {text[:64]!r}")
    year, month, day, hour, minute, second, frac, offset = m.groups()
    micros = int((frac or "0")[:6].ljust(6, "0"))
    if offset is None:
        tz: tzinfo = zone
    elif offset == "Z":
        tz = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micros, tz
    )


def to_millis(moment: datetime) -> int:
    """Milliseconds since the Unix epoch (Avro ``timestamp-millis``), floor for sub-milli parts."""
    return (moment - EPOCH) // _ONE_MS  # timedelta // timedelta: exact integer floor


def from_millis(millis: int) -> datetime:
    """Inverse of :func:`to_millis`, in UTC."""
    return EPOCH + timedelta(milliseconds=millis)


def format_request_date(
    moment: datetime, zone: tzinfo = UTC, fmt: str = "%Y-%m-%dT%H:%M:%S.%f"
) -> str:
    """Spell ``moment`` for a StartDate/StopDate parameter in the source's zone.

    The default format is the vendor page's ``2019-10-01T18:00:00.000`` (``%f`` is cut to
    milliseconds). Windows are aligned to whole milliseconds, so nothing is lost.
    """
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every time in the publisher is timezone-aware")
    local = moment.astimezone(zone)
    text = local.strftime(fmt)
    if fmt.endswith("%f"):
        text = text[:-3]
    return text


def parse_request_date(text: str, zone: tzinfo = UTC) -> datetime:
    """Parse a StartDate/StopDate as the simulator receives it; raise ValueError if malformed."""
    moment = parse_timestamp(text, zone)
    if moment is None:
        raise ValueError("empty date")
    return moment


def floor_millis(moment: datetime) -> datetime:
    """Drop sub-millisecond precision, so request dates round-trip exactly."""
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)
