"""Row versions as JSON bytes, assembled from pre-rendered fragments.

Rendering is the hot path of a catch-up, so nothing is serialised per row except the few
values unique to a version (key, location, tracking columns). Every profile's other fields are
rendered once into runs of ``"Name":value`` members; a row is the join of its runs and holes,
in the declaration's field order, with the tracking columns last as on the vendor page.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from operator import itemgetter

import orjson

from publisher.entities import EntitySpec, FieldSpec
from publisher.simulator.timestamps import TimestampFormatter
from publisher.simulator.values import Persona, generator_for, is_volatile

_STABLE, _VOLATILE, _HOLE = 0, 1, 2
HOLE_KEY, HOLE_LOCATION, HOLE_LEGACY, HOLE_TRACKING = 0, 1, 2, 3
_TRACKING = '"RowThumbprint":"%s","RowInserted":"%s","RowUpdated":"%s","RowEvent":"%s"'

#: Fields a row's location is read from, in order of preference.
LOCATION_FIELDS = ("LocationID", "StoreLocationID")


def location_field(spec: EntitySpec) -> str | None:
    """The field carrying a row's store, for entities the location filters apply to."""
    if not spec.location_filter:
        return None
    return next((f for f in LOCATION_FIELDS if f in spec.field_names), None)


def _is_legacy(field: FieldSpec) -> bool:
    return field.kind == "int" and field.name.startswith("Legacy")


class RowRenderer:
    """Renders the rows of one entity from ``profiles`` value sets."""

    def __init__(
        self,
        spec: EntitySpec,
        personas: Sequence[Persona],
        rng: random.Random,
        timestamps: TimestampFormatter,
    ) -> None:
        self.spec = spec
        self.location_field = location_field(spec)
        holes = {spec.key_field: HOLE_KEY}
        if self.location_field is not None:
            holes[self.location_field] = HOLE_LOCATION
        # (class, fields) runs in declaration order; consecutive fields of a class merge
        runs: list[tuple[int, list[FieldSpec]]] = []
        plan: list[tuple[int, int]] = []
        counts = [0, 0]
        for f in spec.fields:
            if f.name in holes or _is_legacy(f):
                plan.append((_HOLE, holes.get(f.name, HOLE_LEGACY)))
                continue
            cls = _VOLATILE if is_volatile(f) else _STABLE
            if plan and plan[-1][0] == cls:
                runs[-1][1].append(f)
                continue
            runs.append((cls, [f]))
            plan.append((cls, counts[cls]))
            counts[cls] += 1
        plan.append((_HOLE, HOLE_TRACKING))
        # one itemgetter picks every piece from stable + volatile + holes in field order
        offsets = {
            _STABLE: 0,
            _VOLATILE: counts[_STABLE],
            _HOLE: counts[_STABLE] + counts[_VOLATILE],
        }
        self._pick = itemgetter(*(offsets[src] + i for src, i in plan))
        key_kind = next(f.kind for f in spec.fields if f.name == spec.key_field)
        # str templates: a row is assembled as text and encoded once
        quoted = key_kind in ("guid", "string")
        self._key_template = f'"{spec.key_field}":' + ('"%s"' if quoted else "%s")
        self._location_template = f'"{self.location_field}":%d'
        legacy = next((f.name for f in spec.fields if _is_legacy(f)), "")
        self._legacy_template = f'"{legacy}":%d'
        gens = {f.name: generator_for(f) for cls, fs in runs for f in fs}
        self._stable: list[tuple[str, ...]] = []
        self._volatile: list[tuple[str, ...]] = []
        for persona in personas:
            rendered: list[list[str]] = [[], []]
            for cls, fs in runs:
                members = (
                    f'"{f.name}":' + orjson.dumps(gens[f.name](rng, persona, timestamps)).decode()
                    for f in fs
                )
                rendered[cls].append(",".join(members))
            self._stable.append(tuple(rendered[_STABLE]))
            self._volatile.append(tuple(rendered[_VOLATILE]))

    @property
    def profiles(self) -> int:
        """How many value profiles rows pick from."""
        return len(self._stable)

    def key_member(self, key: str | int) -> str:
        """The key's ``"Name":value`` member (a GUID text, or the row number)."""
        return self._key_template % key

    @staticmethod
    def tracking(thumbprint: str, inserted: str, updated: str, event: str) -> str:
        """The four change-tracking members every row ends with."""
        return _TRACKING % (thumbprint, inserted, updated, event)

    def render(
        self, key: str, tracking: str, *, store: int, number: int, stable: int, volatile: int
    ) -> bytes:
        """A full row: stable fields of profile ``stable``, volatile ones of ``volatile``.

        ``key`` and ``tracking`` are members from :meth:`key_member` and :meth:`tracking`;
        ``store`` fills the location field, ``number`` a ``Legacy...ID`` field.
        """
        holes = (key, self._location_template % store, self._legacy_template % number, tracking)
        pieces = self._pick(self._stable[stable] + self._volatile[volatile] + holes)
        return ("{" + ",".join(pieces) + "}").encode()

    @staticmethod
    def render_key_only(key: str, tracking: str) -> bytes:
        """A deleted row that carries only its key and the tracking columns."""
        return ("{" + key + "," + tracking + "}").encode()
