"""Turn a parsed Avro schema into Python source that writes the binary encoding directly.

The generated code has no per-value type dispatch beyond ``type(v) is X`` tests and no union
resolution at run time: every union is compiled into the branch choice fastavro would make
(see :mod:`publisher.avrofast.branches`). The code appends to the bytearray ``out``; a record
type the schema holds in one or two places (a change event's row, its source block) is written
inline there, any other becomes one function ``_rN(out, d)``. Ints and longs are written with
inline table lookups, never a call. Anything the code does not expect raises :class:`Unfit`
and the caller encodes the record with fastavro instead, so the fast path only ever writes
bytes fastavro would write.

Measured, not guessed (``bench/encode_ceiling.py``): in CPython a call, an attribute lookup or
a live local costs about as much as the work of writing a field, hence the inlining, the one
``itemgetter`` call per record and the few reused scratch names.

Schema-controlled text enters the source only as ``repr()`` literals (field names); every other
schema-derived value (defaults, enum tables, logical-type writers) is passed in the namespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from functools import cache
from operator import itemgetter
from typing import Any
from uuid import UUID

from fastavro.logical_writers import LOGICAL_WRITERS

from publisher.avrofast.branches import (
    FAST_TYPES,
    Choice,
    Guard,
    NoneType,
    Plan,
    Take,
    plan,
    type_name,
)
from publisher.avrofast.wire import (
    GROUP,
    GROUP_EVEN,
    INT_MAX,
    INT_MIN,
    LONG_MAX,
    LONG_MIN,
    SMALL,
    SMALL_EVEN,
    SMALL_ODD,
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
    gen = _Generator(named, _record_uses(schema, named))
    body = gen.value(schema, "d", validated=False)
    entry = ["def _encode(out, d):", "    ap = out.append", *_indent(body)]
    source = "\n\n\n".join([*gen.functions, "\n".join(entry)]) + "\n"
    return Generated(source, gen.namespace, "_encode")


def _indent(lines: list[str], depth: int = 1) -> list[str]:
    pad = "    " * depth
    return [pad + line for line in lines]


class _Generator:
    """Builds the source; every value and loop variable gets a name of its own (``_tmp``).

    The scratch names ``t`` (a value's type), ``w`` (a converted value), ``u`` (``~n``) and
    ``b`` (encoded text) are shared instead: each is read only before any code that could set
    it again (``t`` by the type tests of its if/elif chain, the others by the lines right
    after), and sharing them frees each encoded string as soon as it is copied and keeps the
    frame small, which measurably speeds up the generated code. Likewise the field variables
    of an inline record are reused by the inline records after it.
    """

    def __init__(self, named: dict[str, Any], uses: dict[str, int]) -> None:
        self._named = named
        self._uses = uses
        self._inlining: set[str] = set()
        self._copies = 1  # how many copies of the code being generated the source will hold
        self._counter = 0
        self._free: list[str] = []  # field variables of inlined records already written
        self._records: dict[tuple[str, bool], str] = {}
        self._enums: dict[str, str] = {}
        self._headers: dict[bytes, str] = {}
        self.functions: list[str] = []
        self.namespace: dict[str, Any] = {
            "_Unfit": Unfit,
            "_varint": varint,
            "_vS": SMALL,
            "_vG": GROUP,
            "_vS0": SMALL_EVEN,
            "_vS1": SMALL_ODD,
            "_vG0": GROUP_EVEN,
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
            tvar = "t"  # scratch: see _Generator
            lines.append(f"{tvar} = type({var})")
        for n, (_, _, pytype, p) in enumerate(cases):
            test = f"{var} is None" if pytype is NoneType else f"{tvar} is {_TYPE_NAMES[pytype]}"
            lines.append(f"{'elif' if n else 'if'} {test}:")
            lines += _indent(self._plan(p, site))
        return [*lines, "else:", "    raise _Unfit"]

    def _plan(self, p: Plan, site: _Site) -> list[str]:
        lines: list[str] = []
        if p.final is None and len(p.guarded) == 1 and p.guarded[0].take in _RANGE_TAKES:
            # An int/long writer checks the range itself (see _long), and failing it raises
            # Unfit just as this plan's "else" would: no separate guard needed.
            return self._choose(p.guarded[0], site)
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
            converted = "w"  # scratch
            writer = self._const(LOGICAL_WRITERS[take.convert], "_lw")
            lines.append(f"{converted} = {writer}({var}, {self._const(schema, '_s')})")
            check = f"type({converted}) is {expected}"
            if take.guard is not None and take.guard not in _RANGE_GUARDS:
                check += f" and {self._guard(take.guard, converted, schema)}"
            # (An int/long range guard is left to the writer, which raises Unfit as well.)
            lines += [f"if not ({check}):", "    raise _Unfit"]
            var = converted
        prefix = long_bytes(choice.index) if site.indexed else b""
        if kind == "string":
            return [*lines, *self._string(var, prefix)]
        if kind == "bytes":
            return [*lines, *self._bytes(var, prefix)]
        if prefix:
            lines.append(_put(prefix))
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
            return self._long(schema, var)
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
        return self._record(schema, validated, var)

    def _long(self, schema: Any, var: str) -> list[str]:
        """Lines writing the int or long ``var``; Unfit if it is out of the type's range.

        The varint is read off ``var`` (or ``~var`` when negative) with the tables of
        :mod:`~publisher.avrofast.wire`, never computing the zig-zag, and its size cases
        double as the range check: ``var`` and ``~var`` are below ``2**63`` (``2**31`` for an
        int) exactly when ``var`` is in range.
        """
        limit = 1 << 31 if type_name(schema) == "int" else 1 << 63
        cases = _even_varint(var, limit)
        lines: list[str] = []
        if isinstance(schema, dict) and schema.get("logicalType") in _MILLIS and len(cases) > 3:
            # Every millisecond timestamp from 1970-01-02 to 2039-09 takes this case (a 5- or
            # 6-byte varint): test it first (and, having failed it, not again).
            low, high, body = cases.pop(2)
            lines += [f"if {low:#x} <= {var} < {high:#x}:", *_indent(body)]
        lines += [f"{'elif' if lines else 'if'} {var} >= 0:"]
        for n, (_, high, body) in enumerate(cases):
            lines += [f"    {'elif' if n else 'if'} {var} < {high:#x}:", *_indent(body, 2)]
        u = "u"  # scratch
        return [
            *lines,
            "    else:",
            "        raise _Unfit",
            "else:",
            f"    {u} = ~{var}",
            f"    if {u} < 0x2000:",
            f"        out += _vS1[{u}]",
            f"    elif {u} < {limit:#x}:",  # rare: no inline code
            f"        out += _varint({u} << 1 | 1)",
            "    else:",
            "        raise _Unfit",
        ]

    def _length(self, n: str, prefix: bytes = b"") -> list[str]:
        """Lines writing ``prefix`` (a union index) and the length ``n`` as a long.

        One lookup in a table of the encodings of every length below 2**13 (after the prefix)
        covers nearly all of them; the zero-cost ``try`` is cheaper than a size test.
        """
        if prefix not in self._headers:
            self._headers[prefix] = self._const(_length_table(prefix), "_h")
        return [
            "try:",
            f"    out += {self._headers[prefix]}[{n}]",
            "except IndexError:",
            *([f"    {_put(prefix)}"] if prefix else []),
            f"    out += _varint({n} << 1)",
        ]

    def _string(self, var: str, prefix: bytes = b"") -> list[str]:
        b = "b"  # scratch
        return [f"{b} = {var}.encode()", *self._length(f"len({b})", prefix), f"out += {b}"]

    def _bytes(self, var: str, prefix: bytes = b"") -> list[str]:
        return [*self._length(f"len({var})", prefix), f"out += {var}"]

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

    def _record(self, schema: Any, validated: bool, var: str) -> list[str]:
        """Lines writing the record ``var`` (a dict): inline if the schema holds this record
        type only here, else a call to its function (one per record type, so recursive and
        shared types cost their code once)."""
        name = str(schema["name"])
        copies = self._copies * self._uses.get(name, _INLINE_COPIES + 1)
        if copies <= _INLINE_COPIES and name not in self._inlining:
            # A self-reference (only a recursive type has one) gets the function instead.
            outer, self._copies = self._copies, copies
            self._inlining.add(name)
            lines, variables = self._fields(schema, validated, var)
            self._inlining.discard(name)
            self._copies = outer
            # Written: its field variables are free for the code after it (fewer locals).
            self._free += reversed(variables)
            return lines
        return [f"{self._function(schema, validated)}(out, {var})"]

    def _function(self, schema: Any, validated: bool) -> str:
        key = (str(schema["name"]), validated)
        if key in self._records:
            return self._records[key]
        stem = re.sub(r"[^0-9A-Za-z_]", "_", key[0].rsplit(".", 1)[-1])
        fn = f"_r{len(self._records)}_{stem}{'_v' if validated else ''}"
        self._records[key] = fn  # registered first: recursive schemas call themselves
        lines = [f"def {fn}(out, d):", "    ap = out.append"]
        outer, self._copies = self._copies, 1  # a function body is written once
        lines += _indent(self._fields(schema, validated, "d")[0] or ["pass"])
        self._copies = outer
        self.functions.append("\n".join(lines))
        return fn

    def _fields(self, schema: Any, validated: bool, d: str) -> tuple[list[str], list[str]]:
        """Lines writing the fields of the record ``d`` (a dict), and the variables they use."""
        lines: list[str] = []
        if validated:
            # fastavro's validator refuses a record whose "-type" names another record.
            lines += [f'if "-type" in {d}:', "    raise _Unfit"]
        fields = schema["fields"]
        names = [fld["name"] for fld in fields]
        # All before any field is written: a record written inline reuses freed variables,
        # which must not include one this record has yet to write.
        variables = [self._free.pop() if self._free else self._tmp("v") for _ in fields]
        fetch: list[str] = []
        body: list[str] = []
        for fld, v in zip(fields, variables, strict=True):
            name, ftype = fld["name"], fld["type"]
            if fld.get("default") is not None:
                fetch.append(f"{v} = {d}.get({name!r}, {self._const(fld['default'], '_d')})")
            elif "default" in fld or "null" in ftype:
                fetch.append(f"{v} = {d}.get({name!r})")
            else:
                # fastavro refuses a missing field that has no default and no "null" in its
                # type; a KeyError sends the record to fastavro for that error.
                fetch.append(f"{v} = {d}[{name!r}]")
            body += self.value(ftype, v, validated)
        if len(names) > 1:
            # Rows usually carry every field: fetch them all in one C call (an itemgetter)
            # rather than one .get() each, and only when one is missing field by field.
            getter = self._const(itemgetter(*names), "_ig")
            fetch = [
                "try:",
                f"    {', '.join(variables)} = {getter}({d})",
                "except KeyError:",
                *_indent(fetch),
            ]
        return lines + fetch + body, variables


def _record_uses(schema: Any, named: dict[str, Any]) -> dict[str, int]:
    """How many places of ``schema`` hold each record type (its definition or a reference)."""
    uses: dict[str, int] = {}

    def walk(s: Any) -> None:
        if isinstance(s, str):
            if s in named:
                uses[s] = uses.get(s, 0) + 1
        elif isinstance(s, list):
            for branch in s:
                walk(branch)
        elif s["type"] in ("record", "error"):
            uses[s["name"]] = uses.get(s["name"], 0) + 1
            for fld in s["fields"]:
                walk(fld["type"])
        elif s["type"] == "array":
            walk(s["items"])
        elif s["type"] == "map":
            walk(s["values"])

    walk(named[schema] if isinstance(schema, str) and schema in named else schema)
    return uses


#: Record types held in at most this many places of a schema are written inline there, not
#: by a call to a function: a call, with the frame of a record's many locals, costs as much as
#: writing a dozen fields. Two covers a change event's "before" and "after".
_INLINE_COPIES = 2
#: Range guards the int/long writer enforces itself (see _Generator._long).
_RANGE_GUARDS = frozenset({Guard.INT, Guard.LONG})
_RANGE_TAKES = frozenset(Take(g) for g in _RANGE_GUARDS)
#: Logical types whose values are usually 6-byte varints (milliseconds since 1970).
_MILLIS = frozenset({"timestamp-millis", "local-timestamp-millis"})


def _even_varint(m: str, limit: int) -> list[tuple[int, int, list[str]]]:
    """Lines writing the varint of ``2m`` for ``0 <= m < limit``, by size: ``(low, high,
    lines)`` for ``low <= m < high``.

    Inline, from tables 14 bits at a time: a function call per value costs more than this.
    """
    cases: list[tuple[int, int, list[str]]] = [(0, 1 << 13, [f"out += _vS0[{m}]"])]
    groups = [f"out += _vG0[{m} & 0x1FFF]"]  # the low 14 bits of 2m: 13 of m
    while cases[-1][1] < limit:
        shift = 14 * len(cases) - 1  # bits of m below the group being written
        high = min(1 << (shift + 14), limit)
        cases.append((cases[-1][1], high, [*groups, f"out += _vS[{m} >> {shift}]"]))
        groups.append(f"out += _vG[{m} >> {shift} & 0x3FFF]")
    return cases


@cache
def _length_table(prefix: bytes) -> tuple[bytes, ...]:
    """``prefix`` and the varint of the length ``n``, for every ``n < 2**13`` (two bytes)."""
    return SMALL_EVEN if not prefix else tuple(prefix + v for v in SMALL_EVEN)


def _put(prefix: bytes) -> str:
    """The line appending constant bytes: ``ap`` is quicker than ``+=`` for a single one."""
    return f"ap({prefix[0]})" if len(prefix) == 1 else f"out += {prefix!r}"
