"""The simulated RQ database: the location tree and one lazily generated history per entity."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from publisher.entities import EntitySpec
from publisher.simulator.body import block_stream
from publisher.simulator.cache import ByteBudgetCache
from publisher.simulator.history import Block, EntityHistory, Timeline
from publisher.simulator.ids import salt, seeded_random
from publisher.simulator.locations import LocationTree
from publisher.simulator.prefetch import Prefetcher
from publisher.simulator.render import RowRenderer
from publisher.simulator.settings import SimulatorSettings
from publisher.simulator.timestamps import TimestampFormatter
from publisher.simulator.values import CITIES, make_personas
from publisher.timefmt import floor_millis, to_millis

DEFAULT_HISTORY = timedelta(days=7)


class Dataset:
    """Everything that is data: deterministic for a seed, the settings and ``history_end``."""

    def __init__(
        self, settings: SimulatorSettings, entities: Mapping[str, EntitySpec], now: datetime
    ) -> None:
        anchor = floor_millis(settings.history_end or now)
        start = floor_millis(settings.history_start or anchor - DEFAULT_HISTORY)
        if start >= anchor:
            raise ValueError("history_start must be before history_end (or now)")
        self.timeline = Timeline(to_millis(start), to_millis(anchor))
        self.tree = LocationTree(settings.tree, CITIES)
        self.entities = dict(entities)
        cache: ByteBudgetCache[Block] = ByteBudgetCache(settings.cache_mb * 2**20)
        timestamps = TimestampFormatter(settings.tzinfo, settings.varied_timestamps)
        codes = tuple(s.code for s in self.tree.stores)
        # dates inside rows (DateCreated, EmailSetDate ...) fall in the year before the history
        inner_times = (self.timeline.start - 365 * 86_400_000, self.timeline.anchor)
        self._cache = cache
        self._prefetcher = Prefetcher(settings.prefetch_blocks)
        self._budget = settings.cache_mb * 2**20
        self._histories: dict[str, EntityHistory] = {}
        for name, spec in self.entities.items():
            rng = seeded_random(salt(settings.seed, name, "profiles"))
            personas = make_personas(
                rng, settings.profiles, self.tree.store_ids, codes, inner_times
            )
            renderer = RowRenderer(spec, personas, rng, timestamps)
            self._histories[name] = EntityHistory(
                spec,
                settings=settings,
                timeline=self.timeline,
                renderer=renderer,
                store_ids=self.tree.store_ids,
                timestamps=timestamps,
                cache=cache,
                salt=salt(settings.seed, name),
            )

    def history(self, entity: str) -> EntityHistory:
        """The history of a declared entity (KeyError for an unknown one)."""
        return self._histories[entity]

    def prefetch(self, entity: str, after_ms: int, now_ms: int, blocks: int) -> None:
        """Hint that the next request for ``entity`` will likely start at ``after_ms``."""
        self._prefetcher.hint(self._histories[entity], after_ms, now_ms, blocks)

    @property
    def cache_bytes(self) -> int:
        """Bytes of rendered rows held in the block cache."""
        return self._cache.used

    def prerender(self, deflate_level: int | None = None) -> int:
        """Render history blocks, oldest first, until the cache is nine-tenths full; with
        ``deflate_level``, also compress each block for gzip answers (about a sixth more
        memory, not counted in the cache's budget).

        For benchmarks: a catch-up then reads pre-rendered (and pre-compressed) bytes instead
        of generating them, so the simulator's CPU stays off the cores being measured, the
        first catch-up as much as the next. Returns the number of row versions rendered.
        """
        rows = 0
        for history in self._histories.values():
            for j in range(history.history_blocks):
                if self._cache.used > self._budget * 0.9:
                    return rows
                block = history.block(j)
                if deflate_level is not None:
                    block_stream(block, deflate_level)
                rows += len(block.rows)
        return rows
