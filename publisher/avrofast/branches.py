"""Which schema branch fastavro writes a value with, decided from the value's exact type.

fastavro writes a union by trying its branches in order and taking the first one its
validator accepts (after applying the branch's logical-type conversion, and preferring a later
``double`` over a ``float``). The generated encoders reproduce that choice from the value's
exact Python type plus at most one cheap guard (a range, an enum symbol, a fixed size) instead
of running the validator. This module is the table behind that choice.

Where the type cannot settle it, the verdict says so:

- ``Open.BY_CONTENT``: a dict or list whose contents decide (record, map, array). If no later
  branch could take the type, the branch is taken and its writer checks the contents;
  otherwise the generated code gives up on the fast path.
- ``Open.SLOW``: a combination too rare to specialise; the fast path gives up and fastavro
  encodes the record.

Giving up is always safe: the record is then encoded by fastavro itself.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastavro.logical_writers import LOGICAL_WRITERS

NoneType = type(None)

#: The exact value types the generated code dispatches on; any other type (subclasses
#: included) makes the fast path give up, so fastavro's own rules apply to it.
FAST_TYPES: tuple[type, ...] = (
    NoneType,
    str,
    int,
    bool,
    float,
    bytes,
    dict,
    list,
    Decimal,
    datetime,
    date,
    time,
    UUID,
)

#: The value types each known fastavro logical-type writer converts; it passes every other
#: type through unchanged (the table test in tests/unit checks this against fastavro).
LOGICAL_SOURCES: dict[str, tuple[type, ...]] = {
    "long-timestamp-millis": (datetime,),
    "long-timestamp-micros": (datetime,),
    "long-local-timestamp-millis": (datetime,),
    "long-local-timestamp-micros": (datetime,),
    "long-time-micros": (time,),
    "int-time-millis": (time,),
    "int-date": (date, datetime, str),
    "bytes-decimal": (Decimal,),
    "fixed-decimal": (Decimal,),
    "string-uuid": (UUID,),
}


class Guard(enum.Enum):
    """A cheap check that completes a type-based decision."""

    INT = "int"  # -2**31 <= v < 2**31
    LONG = "long"  # -2**63 <= v < 2**63
    SYMBOL = "symbol"  # v is one of the enum's symbols
    SIZE = "size"  # len(v) equals the fixed's size


class Open(enum.Enum):
    """Verdicts that the value's type alone cannot settle."""

    BY_CONTENT = "by-content"
    SLOW = "slow"


@dataclass(frozen=True, slots=True)
class Take:
    """fastavro takes the branch for every value of the type that passes ``guard``.

    ``convert`` names the logical-type writer fastavro applies first (datetime to int ...).
    A converted value that fails its guard makes the fast path give up rather than try the
    next branch: the conversion, not the type, decided.
    """

    guard: Guard | None = None
    convert: str | None = None


Verdict = Take | Open | None  # None: fastavro never takes this branch for the type
TAKE = Take()


def logical_key(schema: Any) -> str | None:
    """fastavro's key for the schema's logical-type writer, if it has one."""
    if isinstance(schema, dict) and schema.get("logicalType"):
        key = f"{schema['type']}-{schema['logicalType']}"
        if key in LOGICAL_WRITERS:
            return key
    return None


def type_name(schema: Any) -> str:
    """The Avro type of a resolved (non-reference) schema."""
    return schema if isinstance(schema, str) else str(schema["type"])


def verdict(schema: Any, pytype: type) -> Verdict:
    """Whether fastavro writes a value of exactly ``pytype`` with this resolved branch."""
    kind = type_name(schema)
    logical = logical_key(schema)
    if logical is not None and logical not in LOGICAL_SOURCES:
        return Open.SLOW  # a logical writer this table does not know
    if pytype is NoneType:
        return TAKE if kind == "null" else None
    if logical is not None and pytype in LOGICAL_SOURCES[logical]:
        if kind == "fixed":
            return Open.SLOW  # fastavro's fixed-decimal gives a bytearray its validator refuses
        return Take(_RANGE.get(kind), logical)
    if kind in _BY_TYPE:
        accepted, guard = _BY_TYPE[kind]
        return Take(guard) if pytype in accepted else None
    if kind == "array":
        if pytype is list:
            return Open.BY_CONTENT
        return Open.SLOW if pytype is bytes else None  # bytes is a Sequence to the validator
    if kind in ("map", "record", "error"):
        return Open.BY_CONTENT if pytype is dict else None
    return Open.SLOW


_RANGE = {"int": Guard.INT, "long": Guard.LONG}
_BY_TYPE: dict[str, tuple[tuple[type, ...], Guard | None]] = {
    "null": ((), None),
    "boolean": ((bool,), None),
    "int": ((int,), Guard.INT),
    "long": ((int,), Guard.LONG),
    "float": ((float, int), None),
    "double": ((float, int), None),
    "bytes": ((bytes,), None),
    "string": ((str,), None),
    "fixed": ((bytes,), Guard.SIZE),
    "enum": ((str,), Guard.SYMBOL),
}


@dataclass(frozen=True, slots=True)
class Choice:
    """Write the value with branch ``index``; ``take`` is None when its contents decide."""

    index: int
    take: Take | None


@dataclass(slots=True)
class Plan:
    """How to write a value of one exact type against a list of branches.

    Try ``guarded`` in order (each with a guard and no conversion), then ``final``; a final
    of None means the fast path gives up.
    """

    rank: int
    guarded: list[Choice] = field(default_factory=list)
    final: Choice | None = None


def plan(branches: list[Any], pytype: type, resolve: Callable[[Any], Any]) -> Plan | None:
    """The writing plan for ``pytype``, or None when no branch can ever take it."""
    verdicts = [verdict(resolve(b), pytype) for b in branches]
    live = [i for i, v in enumerate(verdicts) if v is not None]
    if not live:
        return None
    result = Plan(rank=live[0])
    for i in live:
        v = verdicts[i]
        if not isinstance(v, Take):
            if v is Open.BY_CONTENT and i == live[-1]:
                result.final = Choice(i, None)
            return result
        choice = Choice(_prefer_double(branches, i, resolve), v)
        if v.guard is None or v.convert is not None:
            result.final = choice
            return result
        result.guarded.append(choice)
    return result


def _prefer_double(branches: list[Any], index: int, resolve: Callable[[Any], Any]) -> int:
    """fastavro writes a value that fits ``float`` with a later ``double`` branch if any."""
    if type_name(resolve(branches[index])) != "float":
        return index
    for later in range(index + 1, len(branches)):
        b = branches[later]
        if b == "double" or (isinstance(b, dict) and b.get("type") == "double"):
            return later
    return index
