"""Turn one DataConnect row into the record of an Avro change event. Pure: no I/O, no clock.

This runs once per row on the hot path, so everything that depends only on the entity is
worked out once in :class:`RowMapper`'s constructor, which generates ``map`` as Python
source for the entity (:mod:`publisher.mapgen`): it copies the row over an all-null template
in one C-level update, then checks each field inline and calls a converter only for values
that need converting.

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
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from functools import partial
from typing import Any, Final, NamedTuple

import orjson

from publisher import CONNECTOR_NAME
from publisher.entities import TRACKING_FIELDS, EntitySpec
from publisher.errors import RowRejected
from publisher.mapgen import LONG_MAX, LONG_MIN, map_source
from publisher.timefmt import EPOCH, EPOCH_NAIVE, timestamp_millis

Converter = Callable[[Any], Any]

#: RowEvent -> envelope ``op``. Keys are lower-case; the match is case-insensitive.
OPS: Final[dict[str, str]] = {"added": "c", "updated": "u", "deleted": "d"}
_OPS_EXACT: Final[dict[str, str]] = {"Added": "c", "Updated": "u", "Deleted": "d"}

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
    if not LONG_MIN <= value <= LONG_MAX:
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


# --- helpers the generated code calls off its fast path -----------------------------------------


def _move_unknown(
    known: frozenset[str], value: dict[str, Any], row: dict[str, Any]
) -> tuple[str, ...]:
    """Move the columns of ``row`` not in ``known`` from ``value`` to its ``_extra`` map, as
    JSON text, and name them in row order. A row column named "_extra" is unknown too: it
    goes inside the map."""
    unknown = tuple(n for n in row if n not in known)
    extra = {}
    name = ""
    try:
        for name in unknown:
            extra[name] = _json_text(row[name])
            del value[name]
    except (ValueError, TypeError) as exc:
        raise RowRejected("bad_value", f"{name}: {exc}") from None
    value["_extra"] = extra
    return unknown


def _key_only(
    template: dict[str, Any],
    converters: dict[str, Converter],
    key_field: str,
    row: dict[str, Any],
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A Deleted row's value when deletes carry only their key: the key converted, every other
    column (known or not) kept verbatim in ``_extra``."""
    value = template.copy()
    extra: dict[str, str] = {}
    unknown: list[str] = []
    name = key_field
    try:
        value[name] = converters[key_field](row[name])
        for name, raw in row.items():
            convert = converters.get(name)
            if convert is _TRACKING or name == key_field:
                continue
            if convert is None:
                unknown.append(name)
            extra[name] = _json_text(raw)
    except (ValueError, TypeError) as exc:
        raise RowRejected("bad_value", f"{name}: {exc}") from None
    value["_extra"] = extra
    return value, tuple(unknown)


class RowMapper:
    """Maps rows of one entity to change events; build one per (source, entity) and reuse it.

    ``map(row, window_start_ms, window_stop_ms, now_ms)`` turns one row of the window
    ``[window_start_ms, window_stop_ms]`` into a :class:`ChangeEvent`; ``now_ms`` becomes the
    envelope's ``ts_ms``. It raises RowRejected (see the module doc). ``map`` is generated for
    the entity by the constructor and is a plain attribute, so calling it costs no method
    binding.
    """

    __slots__ = ("map",)

    map: Callable[[dict[str, Any], int, int, int], ChangeEvent]

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
        converters: dict[str, Converter] = dict.fromkeys(TRACKING_FIELDS, _TRACKING)
        converters.update({f.name: by_kind[f.kind] for f in entity.fields})
        # Interned, the template's keys are the very objects of the generated code's literals
        # (the compiler interns name-like constants): its lookups succeed on identity.
        names = [sys.intern(f.name) for f in entity.fields]
        template: dict[str, Any] = dict.fromkeys(names, None)
        template["_extra"] = None  # replaced per row by a fresh dict

        def tracking_time(raw: Any, name: str) -> int | None:
            if type(raw) is not str:
                raise RowRejected("bad_timestamp", f"{name} is a JSON {_type_name(raw)}")
            try:
                return timestamp_millis(raw, zone)
            except ValueError as exc:  # the vendor's own column: quoting it helps, it is no PII
                raise RowRejected("bad_timestamp", f"{name}: {exc}") from None

        namespace: dict[str, Any] = {f"_convert_{k}": c for k, c in by_kind.items()}
        namespace.update(
            _RowRejected=RowRejected,
            _type_name=_type_name,
            _OPS_EXACT=_OPS_EXACT,
            _OPS=OPS,
            _copy_template=template.copy,
            _tracking_time=tracking_time,
            _move_unknown=partial(_move_unknown, frozenset(converters)),
            _key_only=partial(_key_only, template, converters, entity.key_field),
            _fromiso=datetime.fromisoformat,
            _EPOCH=EPOCH,
            _EPOCH_NAIVE=EPOCH_NAIVE,
            _ZONE=zone,
            _guid_text=_GUID_TEXT.fullmatch,
            _CONNECTOR=CONNECTOR_NAME,
            _VERSION=version,
            _SOURCE=source_name,
            _ENTITY=entity.name,
            _key_text=_key_text,
            _new_event=_new_event,
            _ChangeEvent=ChangeEvent,
        )
        source = map_source(
            entity,
            # A row with only known columns fills exactly the template (tracking ones removed).
            width=len(template),
            zone_is_utc=zone is UTC,
            key_only=not deleted_carries_row,
        )
        # The source is this module's own text plus repr() literals of the schema's names.
        exec(compile(source, f"<RowMapper.map for {entity.name}>", "exec"), namespace)  # noqa: S102
        self.map = namespace["map_row"]
