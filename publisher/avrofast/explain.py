"""Name the field fastavro could not encode, and why, without echoing the value.

Messages carry field paths, schema types and Python type names only: row values are customer
data and these messages end up in logs and dead-letter reasons.

Runs only after fastavro has refused a record. It walks the record along the schema (into
records, into the one record of a nullable-record union, through maps and arrays) and asks
fastavro about each leaf on its own, so the report names the deepest field at fault
(``after.FirstName``) instead of the whole ``after`` union.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from typing import Any

from fastavro import schemaless_writer
from fastavro.validation import validate

from publisher.avrofast.codegen import PRIMITIVES

#: What fastavro raises for a value that does not fit its schema.
FASTAVRO_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    OverflowError,
    AttributeError,
    KeyError,
    IndexError,
)
_RECORDS = ("record", "error")


class EncodeError(ValueError):
    """A value does not fit the Avro schema; ``field`` is its dotted path when known."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


def explain(record: Any, schema: Any, named: dict[str, Any], cause: Exception) -> EncodeError:
    """The error to raise for ``record``, which fastavro refused with ``cause``."""
    found = _Finder(named).find(record, schema, "", validated=False)
    if found is None:
        return EncodeError(None, f"Avro refused the record ({type(cause).__name__})")
    return EncodeError(*found)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Finder:
    """Walks a value along its schema; ``validated`` marks values under a union, which
    fastavro validates (strictly, by type) before writing."""

    def __init__(self, named: dict[str, Any]) -> None:
        self._named = named

    def _resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return self._named[schema]
        return schema

    def find(self, value: Any, schema: Any, path: str, validated: bool) -> tuple[str, str] | None:
        """(field path, reason) of the first problem, or None if none was found."""
        s = self._resolve(schema)
        if isinstance(s, list):
            return self._union(value, s, path)
        kind = s if isinstance(s, str) else s["type"]
        if kind in _RECORDS:
            return self._record(value, s, path, validated)
        if kind == "map" and isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    return path, f"map key of type {type(key).__name__} is not a string"
                found = self.find(item, s["values"], f"{path}[{key!r}]", validated)
                if found:
                    return found
            return None
        if kind == "array" and isinstance(value, list | tuple):
            for i, item in enumerate(value):
                found = self.find(item, s["items"], f"{path}[{i}]", validated)
                if found:
                    return found
            return None
        return self._leaf(value, schema, path, validated)

    def _record(
        self, value: Any, schema: dict[str, Any], path: str, validated: bool
    ) -> tuple[str, str] | None:
        if not isinstance(value, Mapping):
            where = path or "(record)"
            return where, f"{type(value).__name__} value is not a mapping for {schema['name']}"
        if validated and value.get("-type", schema["name"]) != schema["name"]:
            return path or "(record)", "its '-type' names another record"
        for fld in schema["fields"]:
            name, ftype = fld["name"], fld["type"]
            where = _join(path, name)
            if name not in value and "default" not in fld and "null" not in ftype:
                return where, "missing, and the field has no default"
            item = value.get(name, fld.get("default"))
            if ftype in ("float", "double") and not validated:
                # fastavro's record writer converts these with float() first.
                try:
                    item = float(item)
                except (TypeError, ValueError):
                    return where, f"{type(item).__name__} value is not a number ({ftype})"
            found = self.find(item, ftype, where, validated)
            if found:
                return found
        return None

    def _union(self, value: Any, branches: list[Any], path: str) -> tuple[str, str] | None:
        if value is None and "null" in branches:
            return None
        resolved = [self._resolve(b) for b in branches]
        kinds = [r if isinstance(r, str) else r["type"] for r in resolved]
        records = [r for r, k in zip(resolved, kinds, strict=True) if k in _RECORDS]
        if isinstance(value, Mapping) and len(records) == 1 and "map" not in kinds:
            return self._record(value, records[0], path, validated=True)
        return self._leaf(value, branches, path, validated=True)

    def _leaf(self, value: Any, schema: Any, path: str, validated: bool) -> tuple[str, str] | None:
        where = path or "(value)"
        standalone = self._standalone(schema, set())
        try:
            if validated and not validate(value, standalone, raise_errors=False):
                return where, f"{type(value).__name__} value does not fit {self.describe(schema)}"
            schemaless_writer(BytesIO(), standalone, value)
        except FASTAVRO_ERRORS as exc:
            kind = type(value).__name__
            return where, f"{self.describe(schema)} refused the {kind} value ({type(exc).__name__})"
        return None

    def _standalone(self, schema: Any, defined: set[str]) -> Any:
        """``schema`` with the named types it references defined inline (once each)."""
        if isinstance(schema, str):
            if schema in PRIMITIVES or schema in defined:
                return schema
            return self._standalone(self._named[schema], defined)
        if isinstance(schema, list):
            return [self._standalone(b, defined) for b in schema]
        copy = {k: v for k, v in schema.items() if not k.startswith("__")}
        kind = schema["type"]
        if "name" in schema:
            defined.add(schema["name"])
        if kind in _RECORDS:
            copy["fields"] = [
                {**f, "type": self._standalone(f["type"], defined)} for f in schema["fields"]
            ]
        elif kind == "array":
            copy["items"] = self._standalone(schema["items"], defined)
        elif kind == "map":
            copy["values"] = self._standalone(schema["values"], defined)
        return copy

    def describe(self, schema: Any) -> str:
        """A short human spelling of a schema: ``null or long/timestamp-millis``."""
        if isinstance(schema, list):
            return " or ".join(self.describe(b) for b in schema)
        if isinstance(schema, str):
            return schema if schema in PRIMITIVES else self.describe(self._named[schema])
        kind = schema["type"]
        if kind in (*_RECORDS, "enum", "fixed"):
            return f"{kind} {schema['name']}"
        if kind == "array":
            return f"array of {self.describe(schema['items'])}"
        if kind == "map":
            return f"map of {self.describe(schema['values'])}"
        logical = schema.get("logicalType")
        if logical == "decimal":
            return f"decimal({schema.get('precision')},{schema.get('scale', 0)})"
        return f"{kind}/{logical}" if logical else str(kind)
