"""Everything the simulator can be told at start-up, typed and validated once.

Fault injection (errors, slow and dropped responses) is separate: it can be replaced while the
simulator runs, see :mod:`publisher.simulator.faults`. Bad rows are data, not faults: they are
fixed here so the ground truth never changes under a running test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr

from publisher.errors import ConfigError

#: Kinds of malformed rows the simulator can mix into the data (see ``badrows``).
BAD_ROW_KINDS = (
    "wrong_type",
    "missing_key",
    "unknown_event",
    "extra_fields",
    "huge_string",
    "control_chars",
)

Order = Literal["change_time", "shuffled"]
DeletedRows = Literal["full", "key_only"]
LimitMode = Literal["estimate", "exact"]


@dataclass(frozen=True, slots=True)
class TreeShape:
    """Size of the location tree: Company > Region > District > Store, plus Channels."""

    regions: int = 3
    districts_per_region: int = 2
    stores_per_district: int = 4
    channels: int = 2


@dataclass(frozen=True, kw_only=True)
class SimulatorSettings:
    """Start-up settings; defaults follow the vendor page where it says something.

    Times: ``history_start`` .. ``history_end`` hold ``rows`` row versions per entity
    (``history_end`` None: the clock's time when the simulator is built). In live mode new
    versions arrive after ``history_end`` at ``rate`` per second per entity, a fraction
    ``late_fraction`` of them with a change time ``late_delay`` seconds before they become
    visible.
    """

    seed: int = 1
    default_rows: int = 1000
    rows: Mapping[str, int] = field(default_factory=dict)
    history_start: datetime | None = None  # None: history_end minus 7 days
    history_end: datetime | None = None
    block_size: int = 256
    add_fraction: float = 0.6
    delete_fraction: float = 0.05
    live: bool = False
    rate: float = 1.0
    late_fraction: float = 0.0
    late_delay: float = 60.0
    profiles: int = 1024
    varied_timestamps: bool = True
    zone: str = "UTC"
    start_inclusive: bool = True
    stop_inclusive: bool = False
    order: Order = "change_time"
    deleted_rows: DeletedRows = "full"
    strict_params: bool = True
    deltas_path: str = "/deltas/{entity}"
    gzip: bool = True
    gzip_level: int = 1
    max_rows: int = 100_000
    limit_mode: LimitMode = "estimate"
    max_in_flight: int = 8
    token_ttl: int = 43199
    refresh_ttl: int = 7 * 86400
    client_id: str = "simulator"
    client_secret: SecretStr = field(default_factory=lambda: SecretStr("simulator-secret"))
    username: str = "simulator"
    password: SecretStr = field(default_factory=lambda: SecretStr("simulator-password"))
    denied_entities: frozenset[str] = frozenset()
    allowed_location_ids: frozenset[int] | None = None
    tree: TreeShape = TreeShape()
    bad_row_rate: float = 0.0
    bad_row_kinds: tuple[str, ...] = BAD_ROW_KINDS
    huge_string_chars: int = 100_000
    cache_mb: int = 256
    prefetch_blocks: int = 0
    schemas_dir: Path | None = None

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError(problems)

    @property
    def tzinfo(self) -> ZoneInfo:
        """The zone request dates and zone-less response timestamps are read in."""
        return ZoneInfo(self.zone)

    def rows_for(self, entity: str) -> int:
        """Row versions in the history of ``entity``."""
        return self.rows.get(entity, self.default_rows)


def _problems(s: SimulatorSettings) -> list[str]:
    p: list[str] = []
    if s.default_rows < 0 or any(n < 0 for n in s.rows.values()):
        p.append("rows: must be >= 0")
    for name, moment in (("history_start", s.history_start), ("history_end", s.history_end)):
        if moment is not None and moment.tzinfo is None:
            p.append(f"{name}: must be timezone-aware")
    if s.block_size < 8:
        p.append("block_size: must be >= 8")
    if not 0 < s.add_fraction <= 1 or not 0 <= s.delete_fraction < 1:
        p.append("add_fraction must be in (0, 1] and delete_fraction in [0, 1)")
    if s.add_fraction + s.delete_fraction > 1:
        p.append("add_fraction + delete_fraction: must be <= 1")
    if s.rate <= 0:
        p.append("rate: must be > 0 rows per second")
    if not 0 <= s.late_fraction <= 1 or s.late_delay < 0:
        p.append("late_fraction must be in [0, 1] and late_delay >= 0")
    if s.profiles < 1:
        p.append("profiles: must be >= 1")
    try:
        ZoneInfo(s.zone)
    except (ZoneInfoNotFoundError, ValueError):
        p.append(f"zone: unknown time zone {s.zone!r}")
    if "{entity}" not in s.deltas_path or not s.deltas_path.startswith("/"):
        p.append("deltas_path: must start with / and contain {entity}")
    if not 0 <= s.gzip_level <= 9:
        p.append("gzip_level: must be 0..9")
    if s.max_rows < 0 or s.max_in_flight < 1:
        p.append("max_rows must be >= 0 and max_in_flight >= 1")
    if s.token_ttl < 1 or s.refresh_ttl < 1:
        p.append("token_ttl and refresh_ttl: must be >= 1 second")
    if not 0 <= s.bad_row_rate <= 1:
        p.append("bad_row_rate: must be in [0, 1]")
    unknown = sorted(set(s.bad_row_kinds) - set(BAD_ROW_KINDS))
    if unknown or not s.bad_row_kinds:
        p.append(f"bad_row_kinds: unknown {unknown}, known {list(BAD_ROW_KINDS)}")
    t = s.tree
    if min(t.regions, t.districts_per_region, t.stores_per_district, t.channels) < 1:
        p.append("tree: every level needs at least one location")
    if s.cache_mb < 1 or s.prefetch_blocks < 0:
        p.append("cache_mb must be >= 1 and prefetch_blocks >= 0")
    return p
