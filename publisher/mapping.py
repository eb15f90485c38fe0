"""Turn one DataConnect row into the record of an Avro change event. Pure: no I/O, no clock.

This runs once per row on the hot path, so everything that depends only on the entity (the
converter of each field, the all-null row template, how the key becomes text) is worked out
once in :class:`RowMapper`'s constructor; :meth:`RowMapper.map` copies the row over a
template in one C-level update and then touches only the columns that need converting.

Conversion rules, by the field's ``dc_kind`` (how DataConnect spells the value in JSON):

========= ================================================================================
guid      a GUID string; kept as its canonical lowercase ``8-4-4-4-12`` text. Braces,
          ``urn:uuid:`` and the 32-digit form are accepted and canonicalised.
int       a JSON integer, an integral JSON number (``42.0``) or an integer string (``"42"``,
          ``"-7"``); must fit a signed 64-bit long. Booleans are not integers.
string    a JSON string, kept exactly (``""`` stays ``""``). A JSON number is accepted as its
          JSON text (``5555555555`` -> ``"5555555555"``): phone numbers and postal codes in
          string columns arrive as numbers and must not dead-letter. Booleans, objects and
          arrays are rejected.
phone,    like string, but an integral JSON number is written without a fraction
postal    (``5555555555.0`` -> ``"5555555555"``, ``0`` -> ``"0"``).
money     a JSON number or numeric string -> ``Decimal`` quantized to 4 places with
          ROUND_HALF_EVEN; at most 19 digits in all (15 before the point). A float is read
          through its shortest repr, which is the JSON text it was parsed from, so no binary
          artefacts (``0.1`` -> ``Decimal("0.1000")``).
bool,     ``true``/``false``, ``1``/``0`` and the strings ``"true"``/``"false"``/``"1"``/``"0"``
flag      (case-insensitive).
timestamp any DataConnect timestamp spelling (:func:`publisher.timefmt.parse_timestamp`); one
          without an offset is read in the source's zone; becomes epoch milliseconds (Avro
          ``timestamp-millis``), sub-millisecond digits floored.
========= ================================================================================

JSON ``null`` is null everywhere; ``""`` is null in every kind except string, phone and postal,
where it is kept. Fields the schema does not know go to the row's ``_extra`` map as
name -> JSON text of the value and are listed in :attr:`ChangeEvent.unknown_fields`: nothing a
row carries is ever dropped. A schema field absent from the row is null.

Operations: ``RowEvent`` ``Added`` -> ``c``, ``Updated`` -> ``u``, ``Deleted`` -> ``d``
(case-insensitive); the set is open, so anything else is rejected, never guessed. ``c`` and
``u`` put the row in ``after`` with ``before`` null: DataConnect sends only the new version of
a changed row, never the previous one. ``d`` puts the row in ``before`` with ``after`` null; a
deleted row that carries only its key gives a ``before`` with only the key set.

Rejections (:class:`publisher.errors.RowRejected`) are checked in this order, so a row with
several problems always gets the same reason: ``not_an_object``, ``missing_key``,
``missing_thumbprint`` (a RowThumbprint that is not text is ``bad_value``), ``unknown_row_event``,
``bad_timestamp`` (RowInserted/RowUpdated), ``bad_value`` (detail names the field, never the
value: values are customer data). With ``deleted_carries_row=False`` a Deleted row's other
columns are kept raw in ``_extra`` instead of converted (see :class:`RowMapper`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, tzinfo
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from operator import itemgetter
from typing import Any, Final, NamedTuple

import orjson

from publisher import CONNECTOR_NAME
from publisher.entities import TRACKING_FIELDS, EntitySpec
from publisher.errors import RowRejected
from publisher.timefmt import timestamp_millis

Converter = Callable[[Any], Any]

#: RowEvent -> envelope ``op``. Keys are lower-case; the match is case-insensitive.
OPS: Final[dict[str, str]] = {"added": "c", "updated": "u", "deleted": "d"}
_OPS_EXACT: Final[dict[str, str]] = {"Added": "c", "Updated": "u", "Deleted": "d"}

_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_MONEY_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_GUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_MONEY_QUANTUM: Final = Decimal("0.0001")
# 19 digits with 4 after the point: the absolute value must stay below 10**15.
_MONEY_LIMIT: Final = Decimal(10) ** 15
# A private context: quantize must not depend on whatever the thread's context was set to,
# and 40 digits of precision leave room for any value that passes the adjusted() pre-check.
_MONEY_CONTEXT: Final = Context(prec=40, rounding=ROUND_HALF_EVEN)
_BOOL_TEXT: Final[dict[str, bool]] = {"true": True, "false": False, "1": True, "0": False}


def _tracking_column(raw: Any) -> Any:
    """Marks the tracking columns in a converter table (they go to ``source``, not the row), so
    one dict lookup per column says "schema field", "tracking column" or "unknown"."""
    return raw


_TRACKING: Final[Converter] = _tracking_column


class ChangeEvent(NamedTuple):
    """One row turned into an event, with what the sink needs beside the Avro record."""

    #: Entity key as text: a GUID in canonical lowercase, an integer as decimal digits.
    key: str
    #: RowThumbprint exactly as received: identifies this row version.
    thumbprint: str
    #: ``c``, ``u`` or ``d``.
    op: str
    #: The Envelope record, ready for :meth:`publisher.codec.EntityCodec.encode`.
    record: dict[str, Any]
    #: RowUpdated if set, else RowInserted, else the window's stop (epoch ms): orders versions
    #: of one key and measures lag.
    change_ms: int
    #: Names of row fields the schema does not know (kept in ``_extra``).
    unknown_fields: tuple[str, ...]


_new_event = tuple.__new__


def _type_name(raw: Any) -> str:
    if raw is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", dict: "object"}.get(
        type(raw), "array" if isinstance(raw, list) else type(raw).__name__
    )


def convert_guid(raw: Any) -> str | None:
    """A GUID string -> canonical lowercase text; ``""`` and null -> None."""
    if type(raw) is str:
        if len(raw) == 36 and _GUID_TEXT.fullmatch(raw):
            return raw.lower()
        if raw == "":
            return None
        return str(uuid.UUID(raw))  # other GUID spellings; raises ValueError if not a GUID
    if raw is None:
        return None
    raise ValueError(f"expected a GUID string, got {_type_name(raw)}")


def convert_int(raw: Any) -> int | None:
    """A JSON integer, integral number or integer string -> int (64-bit); ``""`` -> None."""
    t = type(raw)
    if t is int:
        value: int = raw
    elif t is str:
        if raw == "":
            return None
        if not _INT_TEXT.fullmatch(raw):
            raise ValueError("expected an integer, got a non-integer string")
        value = int(raw)
    elif t is float:
        if not raw.is_integer():
            raise ValueError("expected an integer, got a fractional number")
        value = int(raw)
    elif raw is None:
        return None
    else:
        raise ValueError(f"expected an integer, got {_type_name(raw)}")
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise ValueError("integer does not fit in 64 bits")
    return value


def convert_string(raw: Any) -> str | None:
    """A JSON string as is; a JSON number as its JSON text; null -> None."""
    t = type(raw)
    if t is str:
        return raw  # type: ignore[no-any-return]
    if raw is None:
        return None
    if t is int:
        return str(raw)
    if t is float:
        return orjson.dumps(raw).decode()
    raise ValueError(f"expected a string or number, got {_type_name(raw)}")


def convert_digits(raw: Any) -> str | None:
    """Phone/postal: like :func:`convert_string`, integral numbers without a fraction."""
    if type(raw) is float and raw.is_integer():
        return str(int(raw))
    return convert_string(raw)


def convert_money(raw: Any) -> Decimal | None:
    """A JSON number or numeric string -> Decimal with 4 places, at most 19 digits."""
    t = type(raw)
    if t is int:
        value = Decimal(raw)
    elif t is float:
        # repr is the shortest text that reads back as this float: the JSON text it came from.
        value = Decimal(repr(raw))
    elif t is str:
        if raw == "":
            return None
        text = raw.strip()
        if not _MONEY_TEXT.fullmatch(text):
            raise ValueError("expected an amount, got a non-numeric string")
        value = Decimal(text)
    elif raw is None:
        return None
    else:
        raise ValueError(f"expected an amount, got {_type_name(raw)}")
    if not value.is_finite() or value.adjusted() >= 15:
        raise ValueError("amount has more than 19 digits")
    try:
        quantized = value.quantize(_MONEY_QUANTUM, context=_MONEY_CONTEXT)
    except InvalidOperation as exc:  # unreachable after the pre-check; keep it a ValueError
        raise ValueError("amount cannot be held with 4 decimal places") from exc
    if quantized.copy_abs() >= _MONEY_LIMIT:  # 999999999999999.99995 rounds up to 16 digits
        raise ValueError("amount has more than 19 digits")
    return quantized


def convert_bool(raw: Any) -> bool | None:
    """true/false, 1/0, "true"/"false"/"1"/"0" (any case) -> bool; ``""`` and null -> None."""
    t = type(raw)
    if t is bool:
        return raw  # type: ignore[no-any-return]
    if t is str:
        if raw == "":
            return None
        found = _BOOL_TEXT.get(raw.lower())
        if found is None:
            raise ValueError("expected a boolean, got a non-boolean string")
        return found
    if t is int and raw in (0, 1):
        return raw == 1  # type: ignore[no-any-return]
    if raw is None:
        return None
    raise ValueError(f"expected a boolean, got {_type_name(raw)}")


def timestamp_converter(zone: tzinfo) -> Converter:
    """A converter from a DataConnect timestamp string to epoch ms, reading zoneless times in
    ``zone``."""

    def convert_timestamp(raw: Any) -> int | None:
        if type(raw) is str:
            try:
                return timestamp_millis(raw, zone)  # "" -> None
            except ValueError:
                # The parser quotes the text; a field's value stays out of the detail.
                raise ValueError("not a DataConnect timestamp") from None
        if raw is None:
            return None
        raise ValueError(f"expected a timestamp string, got {_type_name(raw)}")

    return convert_timestamp


def converters_for(zone: tzinfo = UTC) -> dict[str, Converter]:
    """The converter of each ``dc_kind``."""
    return {
        "guid": convert_guid,
        "int": convert_int,
        "string": convert_string,
        "phone": convert_digits,
        "postal": convert_digits,
        "money": convert_money,
        "bool": convert_bool,
        "flag": convert_bool,
        "timestamp": timestamp_converter(zone),
    }


def _key_text(value: Any) -> str:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_text(raw: Any) -> str:
    return orjson.dumps(raw).decode()


_NoneType = type(None)
_STR_OR_NONE: Final = frozenset({str, _NoneType})
#: Per dc_kind, the JSON type a value may already have that its converter returns unchanged.
_PLAIN: Final[dict[str, type]] = {
    "int": int,
    "bool": bool,
    "flag": bool,
    "phone": str,
    "postal": str,
}
#: Kinds whose converter turns ``""`` into null (string-like kinds keep ``""``).
_EMPTY_IS_NULL: Final = frozenset({"guid", "int", "money", "bool", "flag", "timestamp"})


def _values_of(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function giving the values of ``names`` in a dict as a tuple, in one C call."""
    if len(names) >= 2:
        return itemgetter(*names)
    if len(names) == 1:
        (only,) = names
        return lambda d: (d[only],)
    return lambda _d: ()


class RowMapper:
    """Maps rows of one entity to change events; build one per (source, entity) and reuse it."""

    __slots__ = (
        "_converters",
        "_deleted_carries_row",
        "_entity_name",
        "_key_converter",
        "_key_field",
        "_names",
        "_source_name",
        "_string_values",
        "_strings",
        "_template",
        "_typed",
        "_version",
        "_width",
        "_zone",
    )

    def __init__(
        self,
        entity: EntitySpec,
        *,
        source_name: str,
        version: str,
        zone: tzinfo = UTC,
        deleted_carries_row: bool = True,
    ) -> None:
        """``zone`` is the zone DataConnect writes zoneless timestamps in.

        ``deleted_carries_row=False`` says Deleted rows carry only their key and that any other
        values on them are placeholders: ``before`` then has only the key set, the placeholders
        are not converted (so they cannot dead-letter the delete) and are kept verbatim in
        ``_extra`` instead, because nothing a row carries is dropped.
        """
        by_kind = converters_for(zone)
        self._converters: dict[str, Converter] = dict.fromkeys(TRACKING_FIELDS, _TRACKING)
        self._converters.update({f.name: by_kind[f.kind] for f in entity.fields})
        self._key_field = entity.key_field
        self._key_converter = self._converters[entity.key_field]
        self._template: dict[str, Any] = dict.fromkeys((f.name for f in entity.fields), None)
        self._template["_extra"] = None  # replaced per row by a fresh dict
        #: Every column name with a meaning: schema fields and tracking columns.
        self._names = frozenset(self._converters)
        #: A row with only known columns fills exactly the template (tracking ones removed).
        self._width = len(self._template)
        #: Plain string fields (the bulk of most rows) need work only when not a str; their
        #: values are fetched in one C call and their types checked in one pass.
        self._strings = tuple(f.name for f in entity.fields if f.kind == "string")
        self._string_values = _values_of(self._strings)
        #: The other fields in schema order (the first bad one names the rejection), each with
        #: the type its value may already have (skipping the converter's call) and whether
        #: ``""`` simply becomes null.
        self._typed = tuple(
            (f.name, by_kind[f.kind], _PLAIN.get(f.kind, _NoneType), f.kind in _EMPTY_IS_NULL)
            for f in entity.fields
            if f.kind != "string"
        )
        self._zone = zone
        self._entity_name = entity.name
        self._source_name = source_name
        self._version = version
        self._deleted_carries_row = deleted_carries_row

    def map(
        self, row: dict[str, Any], window_start_ms: int, window_stop_ms: int, now_ms: int
    ) -> ChangeEvent:
        """Turn one row of the window ``[window_start_ms, window_stop_ms]`` into an event.

        ``now_ms`` becomes the envelope's ``ts_ms``. Raises RowRejected (see the module doc).
        """
        if type(row) is not dict:
            raise RowRejected("not_an_object", f"row is a JSON {_type_name(row)}, not an object")
        raw_key = row.get(self._key_field)
        if raw_key is None or raw_key == "":
            raise RowRejected("missing_key", f"{self._key_field} is missing or empty")
        thumbprint = row.get("RowThumbprint")
        if thumbprint is None or thumbprint == "":
            raise RowRejected("missing_thumbprint", "RowThumbprint is missing or empty")
        if type(thumbprint) is not str:
            raise RowRejected("bad_value", "RowThumbprint: expected a string")
        row_event = row.get("RowEvent")
        if type(row_event) is not str:
            raise RowRejected("unknown_row_event", f"RowEvent is {_type_name(row_event)}")
        op = _OPS_EXACT.get(row_event) or OPS.get(row_event.lower())
        if op is None:
            # The RowEvent set is open and the text is the vendor's, not customer data.
            raise RowRejected("unknown_row_event", f"RowEvent {row_event[:40]!r} is not known")
        inserted = self._tracking_time(row, "RowInserted")
        updated = self._tracking_time(row, "RowUpdated")

        if op == "d" and not self._deleted_carries_row:
            value, unknown = self._key_only(row)
        else:
            value, unknown = self._convert(row)
        key = value[self._key_field]
        if key is None or key == "":
            raise RowRejected("missing_key", f"{self._key_field} is empty")

        record = {
            "before": value if op == "d" else None,
            "after": None if op == "d" else value,
            "source": {
                "connector": CONNECTOR_NAME,
                "version": self._version,
                "source": self._source_name,
                "entity": self._entity_name,
                "row_thumbprint": thumbprint,
                "row_inserted": inserted,
                "row_updated": updated,
                "row_event": row_event,
                "window_start": window_start_ms,
                "window_stop": window_stop_ms,
            },
            "op": op,
            "ts_ms": now_ms,
        }
        if updated is not None:
            change_ms: int = updated
        elif inserted is not None:
            change_ms = inserted
        else:
            # No tracking time at all (seen on key-only deletes): the change happened no later
            # than the end of the window that returned it.
            change_ms = window_stop_ms
        key_text = key if type(key) is str else _key_text(key)
        # tuple.__new__ directly: NamedTuple's generated __new__ is a Python-level call.
        return _new_event(ChangeEvent, (key_text, thumbprint, op, record, change_ms, unknown))

    def _tracking_time(self, row: dict[str, Any], name: str) -> int | None:
        raw = row.get(name)
        if raw is None:
            return None
        if type(raw) is not str:
            raise RowRejected("bad_timestamp", f"{name} is a JSON {_type_name(raw)}")
        try:
            return timestamp_millis(raw, self._zone)
        except ValueError as exc:  # the vendor's own column: quoting it helps, it is no PII
            raise RowRejected("bad_timestamp", f"{name}: {exc}") from None

    def _convert(self, row: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        # Copy the row over the all-null template in one C-level update, then touch only what
        # needs it: most columns are strings that arrive as strings and need no work at all.
        value = self._template.copy()
        value.update(row)
        for name in TRACKING_FIELDS:
            value.pop(name, None)
        unknown: tuple[str, ...] = ()
        name = ""
        try:
            # Only known columns: nothing was added to the template. A row column named
            # "_extra" lands on the template's own key, so it is looked for separately.
            if len(value) == self._width and "_extra" not in row:
                value["_extra"] = {}
            else:  # a row column named "_extra" is unknown too: it goes inside the map
                unknown = tuple(n for n in row if n not in self._names)
                extra = {}
                for name in unknown:
                    extra[name] = _json_text(row[name])
                    del value[name]
                value["_extra"] = extra
            for name, convert, plain, empty_is_null in self._typed:
                raw = value[name]
                kind = type(raw)
                if kind is plain:  # already the right type: an int still needs its range
                    if kind is not int or _LONG_MIN <= raw <= _LONG_MAX:
                        continue
                elif raw is None:
                    continue
                elif empty_is_null and raw == "":
                    value[name] = None
                    continue
                value[name] = convert(raw)
            if not _STR_OR_NONE.issuperset(map(type, self._string_values(value))):
                for name in self._strings:
                    raw = value[name]
                    if raw is not None and type(raw) is not str:
                        value[name] = convert_string(raw)
        except (ValueError, TypeError) as exc:
            raise RowRejected("bad_value", f"{name}: {exc}") from None
        return value, unknown

    def _key_only(self, row: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        value = self._template.copy()
        converters = self._converters
        extra: dict[str, str] = {}
        unknown: list[str] = []
        name = self._key_field
        try:
            value[name] = self._key_converter(row[name])
            for name, raw in row.items():
                convert = converters.get(name)
                if convert is _TRACKING or name == self._key_field:
                    continue
                if convert is None:
                    unknown.append(name)
                extra[name] = _json_text(raw)
        except (ValueError, TypeError) as exc:
            raise RowRejected("bad_value", f"{name}: {exc}") from None
        value["_extra"] = extra
        return value, tuple(unknown)
