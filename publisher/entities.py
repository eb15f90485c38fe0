"""Entities are declarations: one ``schemas/<Entity>.avsc`` file each.

The Avro envelope schema carries a ``dataconnect`` block (key field, whether the location
filters apply, fixed extra query parameters) and every row field carries ``dc_kind``, how
DataConnect spells the value in JSON. Adding a DataConnect entity is dropping one file into
the schemas directory; no code changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from publisher.errors import ConfigError

#: The JSON spellings the mapper and the simulator understand.
FIELD_KINDS = frozenset(
    {"guid", "int", "string", "phone", "postal", "money", "bool", "flag", "timestamp"}
)

#: Columns DataConnect appends to every row; they go to the envelope's ``source`` record.
TRACKING_FIELDS = ("RowThumbprint", "RowInserted", "RowUpdated", "RowEvent")

DEFAULT_SCHEMAS_DIR = Path(__file__).resolve().parent / "avsc"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One row column: its DataConnect name and JSON spelling."""

    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """What the product knows about one DataConnect Deltas entity."""

    name: str
    key_field: str
    location_filter: bool
    params: dict[str, str]
    fields: tuple[FieldSpec, ...]
    schema: dict[str, Any] = field(repr=False, compare=False)
    schema_path: Path

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


def _value_record(schema: dict[str, Any]) -> dict[str, Any]:
    before = next(f for f in schema["fields"] if f["name"] == "before")
    value: dict[str, Any] = next(t for t in before["type"] if isinstance(t, dict))
    return value


def load_entity(path: Path) -> EntitySpec:
    """Read one ``.avsc`` declaration; raise ConfigError naming the file on any problem."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
        decl = schema["dataconnect"]
        value = _value_record(schema)
        fields = tuple(
            FieldSpec(f["name"], f["dc_kind"]) for f in value["fields"] if f["name"] != "_extra"
        )
        spec = EntitySpec(
            name=str(decl["entity"]),
            key_field=str(decl["key"]),
            location_filter=bool(decl.get("location_filter", False)),
            params={str(k): str(v) for k, v in decl.get("params", {}).items()},
            fields=fields,
            schema=schema,
            schema_path=path,
        )
    except (OSError, ValueError, KeyError, StopIteration, TypeError) as exc:
        raise ConfigError([f"{path}: not a valid entity declaration ({exc!r})"]) from exc
    problems = [
        f"{path}: field {f.name} has unknown dc_kind {f.kind!r}"
        for f in fields
        if f.kind not in FIELD_KINDS
    ]
    if spec.key_field not in spec.field_names:
        problems.append(f"{path}: key field {spec.key_field} is not a field of the row")
    if problems:
        raise ConfigError(problems)
    return spec


def load_entities(directory: Path = DEFAULT_SCHEMAS_DIR) -> dict[str, EntitySpec]:
    """All entity declarations in ``directory``, by entity name."""
    specs = [load_entity(p) for p in sorted(directory.glob("*.avsc"))]
    if not specs:
        raise ConfigError([f"{directory}: no entity schemas (*.avsc) found"])
    return {s.name: s for s in specs}
