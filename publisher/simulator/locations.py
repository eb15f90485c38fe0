"""The company location tree that ``LocationType`` + ``LocationTypeIDs`` filter on.

Company > Region > District > Store, and every store also belongs to one Channel. Every node
has an id unique across the tree (as in RQ, where all of them are "locations"); rows carry the
id of their store. The ids below are arbitrary but stable for a given tree shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from publisher.simulator.settings import TreeShape

LOCATION_TYPES = ("Company", "Region", "District", "Store", "Channel")
COMPANY_ID = 1
_CHANNEL_BASE = 2
_REGION_BASE = 10
_DISTRICT_BASE = 100
_STORE_BASE = 33484  # the vendor page's example LocationID
_CHANNEL_NAMES = ("Retail", "Online", "Corporate", "Dealer", "Kiosk")


@dataclass(frozen=True, slots=True)
class Store:
    """A leaf of the tree with every ancestor's id."""

    id: int
    district: int
    region: int
    channel: int
    code: str


class LocationTree:
    """Store lookup and ``LocationType``/``LocationTypeIDs`` resolution."""

    def __init__(self, shape: TreeShape, cities: tuple[str, ...]) -> None:
        stores: list[Store] = []
        district = _DISTRICT_BASE
        for r in range(shape.regions):
            for _ in range(shape.districts_per_region):
                for _ in range(shape.stores_per_district):
                    n = len(stores)
                    city = cities[n % len(cities)]
                    code = (city.replace(" ", "")[:5] + str(n // len(cities) or "")).upper()
                    channel = _CHANNEL_BASE + n % shape.channels
                    stores.append(Store(_STORE_BASE + n, district, _REGION_BASE + r, channel, code))
                district += 1
        self.stores = tuple(stores)
        self.store_ids = tuple(s.id for s in stores)
        self._by_type: dict[str, dict[int, frozenset[int]]] = {
            "company": {COMPANY_ID: frozenset(self.store_ids)},
            "region": _group(stores, lambda s: s.region),
            "district": _group(stores, lambda s: s.district),
            "store": {s.id: frozenset((s.id,)) for s in stores},
            "channel": _group(stores, lambda s: s.channel),
        }
        self.channel_names = {
            _CHANNEL_BASE + i: _CHANNEL_NAMES[i % len(_CHANNEL_NAMES)]
            for i in range(shape.channels)
        }

    def ids_of(self, location_type: str) -> tuple[int, ...]:
        """Node ids at one level (``Company``, ``Region``, ...), case-insensitive."""
        return tuple(sorted(self._by_type[location_type.lower()]))

    def stores_under(self, node_id: int) -> frozenset[int]:
        """Store ids under a node of any level (empty for an unknown id)."""
        for level in self._by_type.values():
            if node_id in level:
                return level[node_id]
        return frozenset()

    def resolve(self, location_type: str | None, ids_text: str | None) -> RequestedLocations:
        """Parse the two filter parameters; raise ValueError with a message for a 400.

        ``-1`` (the default) means every location. Ids unknown at that level select nothing.
        """
        ids_text = (ids_text or "").strip() or "-1"
        try:
            ids = tuple(int(part) for part in ids_text.split(","))
        except ValueError:
            raise ValueError(
                f"LocationTypeIDs must be comma-separated integers, got {ids_text[:64]!r}"
            ) from None
        if location_type is None or location_type.strip() == "":
            if ids != (-1,):
                raise ValueError("LocationTypeIDs needs a LocationType")
            return RequestedLocations(None, ())
        level = self._by_type.get(location_type.strip().lower())
        if level is None:
            raise ValueError(
                f"LocationType must be one of {', '.join(LOCATION_TYPES)}, "
                f"got {location_type[:32]!r}"
            )
        if -1 in ids:
            return RequestedLocations(None, ())
        stores: frozenset[int] = frozenset().union(*(level.get(i, frozenset()) for i in ids))
        return RequestedLocations(stores, ids)

    def visible_stores(self, allowed: frozenset[int] | None) -> frozenset[int] | None:
        """Stores a user restricted to ``allowed`` node ids may see (None: all)."""
        if allowed is None:
            return None
        return frozenset().union(*(self.stores_under(i) for i in allowed))


@dataclass(frozen=True, slots=True)
class RequestedLocations:
    """What a request asked for: ``stores`` None means every location."""

    stores: frozenset[int] | None
    node_ids: tuple[int, ...]


def _group(stores: list[Store], key: Callable[[Store], int]) -> dict[int, frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for s in stores:
        groups.setdefault(key(s), set()).add(s.id)
    return {k: frozenset(v) for k, v in groups.items()}
