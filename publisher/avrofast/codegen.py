"""Turn a parsed Avro schema into Python source that writes the binary encoding directly.

The generated code has no per-value type dispatch beyond ``type(v) is X`` tests and no union
resolution at run time: every union is compiled into the branch choice fastavro would make
(see :mod:`publisher.avrofast.branches`). Each named record becomes one function
``_rN(out, d)`` appending to the bytearray ``out``. Anything the code does not expect raises
:class:`Unfit` and the caller encodes the record with fastavro instead, so the fast path only
ever writes bytes fastavro would write.

Schema-controlled text enters the source only as ``repr()`` literals (field names); every other
schema-derived value (defaults, enum tables, logical-type writers) is passed in the namespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from fastavro.logical_writers import LOGICAL_WRITERS

from publisher.avrofast.branches import FAST_TYPES, Choice, Guard, NoneType, Plan, plan, type_name
from publisher.avrofast.wire import (
    INT_MAX,
    INT_MIN,
    LONG_MAX,
    LONG_MIN,
    long_bytes,
    pack_double,
    pack_float,
    varint,
)

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class Unfit(Exception):
    """The fast path met a value it does not handle (a signal: the record goes to fastavro)."""


@dataclass(frozen=True, slots=True)
class _Site:
    """One place a value is written: its branches (one unless a union) and variable name."""

    branches: list[Any]
    var: str
    indexed: bool  # a union: write the branch index first
    validated: bool  # under a union: fastavro validates the value before writing it


#: How the generated source names each fast type.
_TYPE_NAMES: dict[type, str] = {
    NoneType: "None",
    str: "str",
    int: "int",
    bool: "bool",
    float: "float",
    bytes: "bytes",
    dict: "dict",
    list: "list",
    Decimal: "_Decimal",
    datetime: "_datetime",
    date: "_date",
    time: "_time",
    UUID: "_UUID",
}
#: The exact type a logical-type writer's output must have to be written as the base type.
_CONVERTED_TYPE = {"int": int, "long": int, "string": str, "bytes": bytes}


@dataclass(frozen=True, slots=True)
class Generated:
    """Generated source and the namespace it runs in; ``entry(out, value)`` writes a value."""

    source: str
    namespace: dict[str, Any]
    entry: str

    def load(self) -> Callable[[bytearray, Any], None]:
        """Execute the source once and return the entry function."""
        code = compile(self.source, "<avrofast generated encoder>", "exec")
        namespace = dict(self.namespace)
        # The source is built by this module from a parsed schema; see the module docstring.
        exec(code, namespace)  # noqa: S102
        fn: Callable[[bytearray, Any], None] = namespace[self.entry]
        return fn


def generate(schema: Any, named: dict[str, Any]) -> Generated:
    """Source for an encoder of ``schema`` (parsed by fastavro, with its named types)."""
    gen = _Generator(named)
    body = gen.value(schema, "d", validated=False)
    entry = ["def _encode(out, d):", "    ap = out.append", *_indent(body)]
    source = "\n\n\n".join([*gen.functions, "\n".join(entry)]) + "\n"
    return Generated(source, gen.namespace, "_encode")


def _indent(lines: list[str], depth: int = 1) -> list[str]:
    pad = "    " * depth
    return [pad + line for line in lines]


class _Generator:
    def __init__(self, named: dict[str, Any]) -> None:
        self._named = named
        self._counter = 0
        self._records: dict[tuple[str, bool], str] = {}
        self._enums: dict[str, str] = {}
        self._headers: dict[bytes, str] = {}
        self.functions: list[str] = []
        self.namespace: dict[str, Any] = {
            "_Unfit": Unfit,
            "_varint": varint,
            "_pf": pack_float,
            "_pd": pack_double,
            **{name: t for t, name in _TYPE_NAMES.items() if name.startswith("_")},
        }

    # -- naming ---------------------------------------------------------------------------

    def _tmp(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}{self._counter}"

    def _const(self, value: Any, stem: str = "_c") -> str:
        name = self._tmp(stem)
        self.namespace[name] = value
        return name

    def resolve(self, schema: Any) -> Any:
        """The definition behind a named-type reference; other schemas unchanged."""
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return self._named[schema]
        return schema

    # -- values ---------------------------------------------------------------------------

    def value(self, schema: Any, var: str, validated: bool) -> list[str]:
        """Lines writing ``var`` per ``schema``; a union's children are validated by fastavro."""
        if isinstance(schema, list):
            return self._dispatch(schema, var, indexed=True, validated=True)
        return self._dispatch([schema], var, indexed=False, validated=validated)

    def _dispatch(self, branches: list[Any], var: str, indexed: bool, validated: bool) -> list[str]:
        site = _Site(branches, var, indexed, validated)
        cases: list[tuple[int, int, type, Plan]] = []
        for order, pytype in enumerate(FAST_TYPES):
            p = plan(branches, pytype, self.resolve)
            if p is not None:
                cases.append((p.rank, order, pytype, p))
        if not cases:
            return ["raise _Unfit"]
        cases.sort(key=lambda c: (c[0], c[1]))
        typed = [c for c in cases if c[2] is not NoneType]
        tvar = f"type({var})"
        lines: list[str] = []
        if len(typed) > 1:
            tvar = self._tmp("t")
            lines.append(f"{tvar} = type({var})")
        for n, (_, _, pytype, p) in enumerate(cases):
            test = f"{var} is None" if pytype is NoneType else f"{tvar} is {_TYPE_NAMES[pytype]}"
            lines.append(f"{'elif' if n else 'if'} {test}:")
            lines += _indent(self._plan(p, site))
        return [*lines, "else:", "    raise _Unfit"]

    def _plan(self, p: Plan, site: _Site) -> list[str]:
        lines: list[str] = []
        for n, choice in enumerate(p.guarded):
            schema = self.resolve(site.branches[choice.index])
            guard = choice.take.guard if choice.take else None
            lines.append(f"{'elif' if n else 'if'} {self._guard(guard, site.var, schema)}:")
            lines += _indent(self._choose(choice, site))
        final = ["raise _Unfit"] if p.final is None else self._choose(p.final, site)
        if not lines:
            return final
        return [*lines, "else:", *_indent(final)]

    def _guard(self, guard: Guard | None, var: str, schema: Any) -> str:
        if guard is Guard.INT:
            return f"{INT_MIN} <= {var} <= {INT_MAX}"
        if guard is Guard.LONG:
            return f"{LONG_MIN} <= {var} <= {LONG_MAX}"
        if guard is Guard.SYMBOL:
            return f"{var} in {self._enum_table(schema)}"
        if guard is Guard.SIZE:
            return f"len({var}) == {int(schema['size'])}"
        return "True"

    def _enum_table(self, schema: Any) -> str:
        """Name of the symbol -> encoded index table of an enum (one per enum)."""
        name = str(schema["name"])
        if name not in self._enums:
            table = {s: long_bytes(i) for i, s in enumerate(schema["symbols"])}
            self._enums[name] = self._const(table, "_e")
        return self._enums[name]

    def _choose(self, choice: Choice, site: _Site) -> list[str]:
        schema = self.resolve(site.branches[choice.index])
        kind = type_name(schema)
        var = site.var
        lines: list[str] = []
        take = choice.take
        if take is not None and take.convert is not None:
            # fastavro converts with its own logical writer; so do we, then check the result.
            expected = _TYPE_NAMES[_CONVERTED_TYPE[kind]]
            converted = self._tmp("w")
            writer = self._const(LOGICAL_WRITERS[take.convert], "_lw")
            lines.append(f"{converted} = {writer}({var}, {self._const(schema, '_s')})")
            check = f"type({converted}) is {expected}"
            if take.guard is not None:
                check += f" and {self._guard(take.guard, converted, schema)}"
            lines += [f"if not ({check}):", "    raise _Unfit"]
            var = converted
        prefix = long_bytes(choice.index) if site.indexed else b""
        if kind == "string":
            return [*lines, *self._string(var, prefix)]
        if kind == "bytes":
            return [*lines, *self._bytes(var, prefix)]
        if prefix:
            lines.append(f"ap({prefix[0]})" if len(prefix) == 1 else f"out += {prefix!r}")
        lines += self._write(schema, var, site.validated)
        return lines or ["pass"]

    # -- writers for a value of a known exact type ------------------------------------------

    def _write(self, schema: Any, var: str, validated: bool) -> list[str]:
        kind = type_name(schema)
        if kind == "null":
            return []
        if kind == "boolean":
            return [f"ap({var})"]
        if kind in ("int", "long"):
            z = self._tmp("z")
            return [
                f"{z} = ({var} << 1) ^ ({var} >> 63)",
                f"if {z} < 128:",
                f"    ap({z})",
                "else:",
                f"    out += _varint({z})",
            ]
        if kind == "float":
            # Same bytes as fastavro's C cast, NaN payloads included; a double too large for a
            # float makes struct raise where C gives inf, and the record goes to fastavro.
            return [f"out += _pf({var})"]
        if kind == "double":
            return [f"out += _pd({var})"]
        if kind == "bytes":
            return self._bytes(var)
        if kind == "string":
            return self._string(var)
        if kind == "fixed":
            return [f"out += {var}"]
        if kind == "enum":
            return [f"out += {self._enum_table(schema)}[{var}]"]
        if kind == "array":
            return self._array(schema, var, validated)
        if kind == "map":
            return self._map(schema, var, validated)
        return [f"{self._record(schema, validated)}(out, {var})"]

    def _length(self, n: str, prefix: bytes = b"") -> list[str]:
        """Lines writing ``prefix`` (a union index) and the length ``n`` as a long."""
        if not prefix:
            return [f"if {n} < 64:", f"    ap({n} << 1)", "else:", f"    out += _varint({n} << 1)"]
        # Union index and a short length in one append: most strings are shorter than 64.
        if prefix not in self._headers:
            table = tuple(prefix + bytes((i << 1,)) for i in range(64))
            self._headers[prefix] = self._const(table, "_h")
        headers = self._headers[prefix]
        return [
            f"if {n} < 64:",
            f"    out += {headers}[{n}]",
            "else:",
            f"    out += {prefix!r}",
            f"    out += _varint({n} << 1)",
        ]

    def _string(self, var: str, prefix: bytes = b"") -> list[str]:
        b, n = self._tmp("b"), self._tmp("n")
        return [f"{b} = {var}.encode()", f"{n} = len({b})", *self._length(n, prefix), f"out += {b}"]

    def _bytes(self, var: str, prefix: bytes = b"") -> list[str]:
        n = self._tmp("n")
        return [f"{n} = len({var})", *self._length(n, prefix), f"out += {var}"]

    def _array(self, schema: Any, var: str, validated: bool) -> list[str]:
        n, item = self._tmp("n"), self._tmp("x")
        body = self.value(schema["items"], item, validated)
        return [
            f"{n} = len({var})",
            f"if {n}:",
            *_indent(self._length(n)),
            f"    for {item} in {var}:",
            *_indent(body, 2),
            "ap(0)",
        ]

    def _map(self, schema: Any, var: str, validated: bool) -> list[str]:
        n, key, item = self._tmp("n"), self._tmp("k"), self._tmp("x")
        body = self.value(schema["values"], item, validated)
        return [
            f"{n} = len({var})",
            f"if {n}:",
            *_indent(self._length(n)),
            f"    for {key}, {item} in {var}.items():",
            f"        if type({key}) is not str:",
            "            raise _Unfit",
            *_indent(self._string(key), 2),
            *_indent(body, 2),
            "ap(0)",
        ]

    def _record(self, schema: Any, validated: bool) -> str:
        key = (str(schema["name"]), validated)
        if key in self._records:
            return self._records[key]
        stem = re.sub(r"[^0-9A-Za-z_]", "_", key[0].rsplit(".", 1)[-1])
        fn = f"_r{len(self._records)}_{stem}{'_v' if validated else ''}"
        self._records[key] = fn  # registered first: recursive schemas call themselves
        lines = [f"def {fn}(out, d):", "    ap = out.append"]
        if validated:
            # fastavro's validator refuses a record whose "-type" names another record.
            lines += ['    if "-type" in d:', "        raise _Unfit"]
        lines.append("    get = d.get")
        for fld in schema["fields"]:
            name, ftype = fld["name"], fld["type"]
            v = self._tmp("v")
            if fld.get("default") is not None:
                lines.append(f"    {v} = get({name!r}, {self._const(fld['default'], '_d')})")
            elif "default" in fld or "null" in ftype:
                lines.append(f"    {v} = get({name!r})")
            else:
                # fastavro refuses a missing field that has no default and no "null" in its
                # type; a KeyError sends the record to fastavro for that error.
                lines.append(f"    {v} = d[{name!r}]")
            lines += _indent(self.value(ftype, v, validated))
        self.functions.append("\n".join(lines))
        return fn
