"""The Python source of :meth:`publisher.mapping.RowMapper.map`, generated per entity.

In CPython a loop step, a tuple unpacking or a call costs about as much as the check it
wraps, so ``map`` is written out field by field for each entity: one inline type test per
typed field, converters called only for values that need work, and the common timestamp
layouts parsed inline. Measured with bench/encode_ceiling.py's rows (Customers): about 20%
fewer instructions than a loop over per-field converter tables. Schema field names enter the
source only as repr() literals; everything else (converters, the source name, the version)
reaches it through the namespace it runs in.
"""

from __future__ import annotations

from typing import Final

from publisher.entities import EntitySpec

#: The range of an Avro long.
LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1

#: The layout :func:`publisher.timefmt.timestamp_millis` hands straight to
#: ``datetime.fromisoformat`` (its ``_parse_fast``): dashes and colons in place, then the end,
#: a fraction or a zone. The generated code runs that parser inline and calls the full function
#: for anything else, or when it fails, so both give the same milliseconds and rejections.
_ISO_LAYOUT: Final = (
    'len({v}) >= 19 and {v}[4:17:3] == "--T::" and (len({v}) == 19 or {v}[19] in ".Z+-")'
)


def _indent(lines: list[str], levels: int = 1) -> list[str]:
    return ["    " * levels + line for line in lines]


def _timestamp_lines(var: str, target: str, slow: list[str], zone_is_utc: bool) -> list[str]:
    """Source setting ``target`` to the epoch ms of the value in ``var`` (not null, not
    ``""``); the ``slow`` lines (the full parser, which also rejects) run whenever the inline
    parser does not apply."""
    if zone_is_utc:  # a zoneless time read as UTC: no offset to apply
        delta = "d = (m - _EPOCH) if m.tzinfo is not None else (m - _EPOCH_NAIVE)"
    else:
        delta = "d = (m if m.tzinfo is not None else m.replace(tzinfo=_ZONE)) - _EPOCH"
    # The same floor as timestamp_millis's timedelta // timedelta, at half the cost.
    millis = f"{target} = d.days * 86400000 + d.seconds * 1000 + d.microseconds // 1000"
    parse = ["try:", f"    m = _fromiso({var})", "except ValueError:", *_indent(slow), "else:"]
    return [
        # The vendor page's layout (2019-04-25T06:19:12.343Z), the most common, goes first.
        f'if type({var}) is str and len({var}) == 24 and {var}[23] == "Z" '
        f'and {var}[4:20:3] == "--T::.":',
        *_indent(parse),
        "        d = m - _EPOCH",
        f"        {millis}",
        f"elif type({var}) is str and {_ISO_LAYOUT.format(v=var)}:",
        *_indent(parse),
        f"        {delta}",
        f"        {millis}",
        "else:",
        *_indent(slow),
    ]


def _field_lines(name: str, kind: str, zone_is_utc: bool) -> list[str]:
    """Source converting ``value[name]`` in place, as the kind's converter would. Values that
    already have their final type (and ``""`` where it means null) are settled inline;
    anything else sets ``name`` for the rejection's detail and calls the converter."""
    f = repr(name)
    convert = [f"name = {f}", f"value[{f}] = _convert_{kind}(raw)"]
    empty_is_null = ['if raw == "":', f"    value[{f}] = None"]
    read = f"raw = value[{f}]"
    if kind == "int":  # a JSON integer still needs its range checked
        return [
            read,
            "if type(raw) is int:",
            f"    if not {LONG_MIN} <= raw <= {LONG_MAX}:",
            *_indent(convert, 2),
            "elif raw is not None:",
            *_indent([*empty_is_null, "else:", *_indent(convert)]),
        ]
    if kind in ("bool", "flag"):
        return [
            read,
            "if type(raw) is not bool and raw is not None:",
            *_indent([*empty_is_null, "else:", *_indent(convert)]),
        ]
    if kind in ("string", "phone", "postal"):  # "" is kept
        return [read, "if type(raw) is not str and raw is not None:", *_indent(convert)]
    if kind == "guid":  # convert_guid's first case inline, then its others
        settle = [
            "if type(raw) is str and len(raw) == 36 and _guid_text(raw):",
            f"    value[{f}] = raw.lower()",
            "el" + empty_is_null[0],
            empty_is_null[1],
            "else:",
            *_indent(convert),
        ]
    elif kind == "timestamp":
        inline = _timestamp_lines("raw", f"value[{f}]", convert, zone_is_utc)
        settle = [*empty_is_null, "else:", *_indent(inline)]
    else:  # money: only null and "" are settled inline
        settle = [*empty_is_null, "else:", *_indent(convert)]
    return [read, "if raw is not None:", *_indent(settle)]


def _convert_lines(entity: EntitySpec, width: int, zone_is_utc: bool) -> list[str]:
    """Source completing ``value`` (the template updated with the row, tracking columns
    removed) and setting ``unknown``. Typed fields are converted first, in schema order, then
    plain strings, so the first bad field of a row is always the one named."""
    body: list[str] = []
    for f in entity.fields:
        if f.kind != "string":
            body += _field_lines(f.name, f.kind, zone_is_utc)
    for f in entity.fields:
        if f.kind == "string":
            body += _field_lines(f.name, f.kind, zone_is_utc)
    return [
        # Only known columns: nothing was added to the template. A row column named "_extra"
        # lands on the template's own key, so it is looked for separately.
        f'if len(value) == {width} and "_extra" not in row:',
        '    value["_extra"] = {}',
        "    unknown = ()",
        "else:",
        "    unknown = _move_unknown(value, row)",
        'name = ""',
        "try:",
        *_indent(body or ["pass"]),
        "except (ValueError, TypeError) as exc:",
        '    raise _RowRejected("bad_value", f"{name}: {exc}") from None',
    ]


def _tracking_time_lines(name: str, var: str, zone_is_utc: bool) -> list[str]:
    slow = [f"{var} = _tracking_time({var}, {name!r})"]
    return [
        f"{var} = pop({name!r}, None)",
        f"if {var} is not None:",
        f'    if {var} == "":',
        f"        {var} = None",
        "    else:",
        *_indent(_timestamp_lines(var, var, slow, zone_is_utc), 2),
    ]


def map_source(entity: EntitySpec, *, width: int, zone_is_utc: bool, key_only: bool) -> str:
    """The source of ``map_row``: :meth:`RowMapper.map` for ``entity``, following the module
    doc's rules and its order of rejections."""
    key = entity.key_field
    convert = _convert_lines(entity, width, zone_is_utc)
    if key_only:  # deleted rows carry only their key: their other values are not converted
        convert = [
            'if op == "d":',
            "    value, unknown = _key_only(row)",
            "else:",
            *_indent(convert),
        ]
    record = '{"before": %s, "after": %s, "source": source, "op": op, "ts_ms": now_ms}'
    lines = [
        "if type(row) is not dict:",
        "    raise _RowRejected(",
        '        "not_an_object", f"row is a JSON {_type_name(row)}, not an object"',
        "    )",
        # The template first: popping the tracking columns from the copy reads them too.
        "value = _copy_template()",
        "value.update(row)",
        f"raw = value[{key!r}]",
        'if raw is None or raw == "":',
        f'    raise _RowRejected("missing_key", {key + " is missing or empty"!r})',
        "pop = value.pop",
        'thumbprint = pop("RowThumbprint", None)',
        'if thumbprint is None or thumbprint == "":',
        '    raise _RowRejected("missing_thumbprint", "RowThumbprint is missing or empty")',
        "if type(thumbprint) is not str:",
        '    raise _RowRejected("bad_value", "RowThumbprint: expected a string")',
        'row_event = pop("RowEvent", None)',
        "if type(row_event) is not str:",
        '    raise _RowRejected("unknown_row_event", f"RowEvent is {_type_name(row_event)}")',
        "op = _OPS_EXACT.get(row_event)",
        "if op is None:",
        "    op = _OPS.get(row_event.lower())",
        "    if op is None:",
        # The RowEvent set is open and the text is the vendor's, not customer data.
        "        raise _RowRejected(",
        '            "unknown_row_event", f"RowEvent {row_event[:40]!r} is not known"',
        "        )",
        *_tracking_time_lines("RowInserted", "inserted", zone_is_utc),
        *_tracking_time_lines("RowUpdated", "updated", zone_is_utc),
        *convert,
        f"key = value[{key!r}]",
        'if key is None or key == "":',
        f'    raise _RowRejected("missing_key", {key + " is empty"!r})',
        "source = {",
        '    "connector": _CONNECTOR,',
        '    "version": _VERSION,',
        '    "source": _SOURCE,',
        '    "entity": _ENTITY,',
        '    "row_thumbprint": thumbprint,',
        '    "row_inserted": inserted,',
        '    "row_updated": updated,',
        '    "row_event": row_event,',
        '    "window_start": window_start_ms,',
        '    "window_stop": window_stop_ms,',
        "}",
        'if op == "d":',
        "    record = " + record % ("value", "None"),
        "else:",
        "    record = " + record % ("None", "value"),
        # No tracking time at all (seen on key-only deletes): the change happened no later
        # than the end of the window that returned it.
        "change_ms = updated if updated is not None else inserted",
        "if change_ms is None:",
        "    change_ms = window_stop_ms",
        "key_text = key if type(key) is str else _key_text(key)",
        # tuple.__new__ directly: NamedTuple's generated __new__ is a Python-level call.
        "return _new_event(_ChangeEvent, (key_text, thumbprint, op, record, change_ms, unknown))",
    ]
    head = "def map_row(row, window_start_ms, window_stop_ms, now_ms):"
    return "\n".join([head, *_indent(lines)]) + "\n"
