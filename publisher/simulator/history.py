"""The deterministic change history of one entity, generated lazily one time block at a time.

Time is cut into blocks of ``block_size`` row versions. History blocks share the span
``history_start .. history_end`` evenly; live blocks follow ``history_end`` at ``rate`` versions
per second. Keys are numbered: block ``j`` adds keys ``j*A .. j*A+adds(j)-1`` (``A`` adds per
full block). Everything about a key (GUID, store, profile, add time) is a pure function of
``mix(salt + key)``, and a block's own choices come from a ``Random`` seeded by the block
number, so any block is generated alone, in any order, always the same.

Consistency rules the generator keeps:

* a key's ``Added`` version comes first; ``Updated`` versions follow it (strictly later);
* the keys deleted in block ``j`` are a seeded sample of the keys added in block ``j - 2``, and
  no update of a key is generated in or after the block that deletes it;
* ``RowInserted`` of every version is the key's add time; ``RowUpdated`` is ``""`` for Added;
* ties: some adds share their neighbour's timestamp, some updates share the previous event's;
* late rows (live blocks only): a fraction of adds and updates get a change time ``late_delay``
  before the moment they become visible. Deletes are never late.
"""

from __future__ import annotations

import math
import random
import threading
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

from publisher.entities import EntitySpec
from publisher.simulator.badrows import corrupt
from publisher.simulator.cache import ByteBudgetCache
from publisher.simulator.ids import guid_from_hash, guid_from_hex, mix, seeded_random
from publisher.simulator.render import RowRenderer
from publisher.simulator.settings import SimulatorSettings
from publisher.simulator.timestamps import TimestampFormatter

_MASK = 0xFFFFFFFFFFFFFFFF
_ODD = 0xD1B54A32D192ED03
_DELETE_LAG = 2  # blocks between a key's add block and the block that may delete it
_ADDED, _UPDATED, _DELETED = "Added", "Updated", "Deleted"
#: (change ms, visible ms, key number, key hash, RowEvent, volatile profile or -1, inserted ms)
_Event = tuple[int, int, int, int, str, int, int]


@dataclass(slots=True, eq=False)
class Block:
    """The rendered versions of one block, sorted by (change time, generation order).

    ``deflated`` caches the block's rows joined with ``,`` as a raw deflate stream ending in a
    sync flush, so gzip responses reuse it instead of compressing the rows again.
    """

    change: list[int]
    visible: list[int]
    store: list[int]
    rows: list[bytes]
    max_visible: int
    has_late: bool
    nbytes: int
    deflated: bytes | None = None


#: A piece of a response: a whole block, or selected rows in order.
Segment = Block | list[bytes]


@dataclass(frozen=True, slots=True)
class Timeline:
    """Where history and live blocks sit in time (epoch milliseconds)."""

    start: int
    anchor: int  # history_end: history before, live blocks after


class EntityHistory:
    """Generates and caches the blocks of one entity; answers window queries."""

    def __init__(
        self,
        spec: EntitySpec,
        *,
        settings: SimulatorSettings,
        timeline: Timeline,
        renderer: RowRenderer,
        store_ids: tuple[int, ...],
        timestamps: TimestampFormatter,
        cache: ByteBudgetCache[Block],
        salt: int,
    ) -> None:
        self.spec = spec
        self._s = settings
        self._renderer = renderer
        self._stores = store_ids
        self._ts = timestamps
        self._cache = cache
        self._salt = salt
        self._start = timeline.start
        self._anchor = timeline.anchor
        self._n_hist = settings.rows_for(spec.name)
        self._m = settings.block_size
        self._h = math.ceil(self._n_hist / self._m)
        self._span = timeline.anchor - timeline.start
        if self._h and self._span < self._h:
            raise ValueError(
                f"{spec.name}: history of {self._span} ms is too short for {self._n_hist} rows"
            )
        self._live = settings.live
        self._live_ms = self._m * 1000.0 / settings.rate
        self._a_full = max(1, round(self._m * settings.add_fraction))
        late = settings.live and settings.late_fraction > 0 and settings.late_delay > 0
        # how far a window's query reaches past its end for versions that arrive late
        self._late_ms = round(settings.late_delay * 1000) if late else 0
        self._late_cut = int(settings.late_fraction * 65536)
        self._late_possible = self._late_ms > 0
        self._deleted: dict[int, frozenset[int]] = {}
        self._pending: dict[int, threading.Event] = {}
        self._pending_lock = threading.Lock()
        self._full_rows = settings.deleted_rows == "full"
        self._bad_rate = settings.bad_row_rate
        self._varied = settings.varied_timestamps
        self._guid_key = any(f.name == spec.key_field and f.kind == "guid" for f in spec.fields)

    # ----- block geometry -------------------------------------------------------------------

    def bounds(self, j: int) -> tuple[int, int]:
        """Visible-time range [b0, b1) of block ``j``."""
        if j < self._h:
            return (
                self._start + j * self._span // self._h,
                self._start + (j + 1) * self._span // self._h,
            )
        i = j - self._h
        return (
            self._anchor + int(i * self._live_ms),
            self._anchor + int((i + 1) * self._live_ms),
        )

    def _count(self, j: int) -> int:
        if j < 0:
            return 0
        if j < self._h:
            return min(self._m, self._n_hist - j * self._m)
        return self._m if self._live else 0

    def _adds(self, j: int) -> int:
        return min(self._a_full, self._count(j))

    def _dels(self, j: int) -> int:
        if j < _DELETE_LAG:
            return 0
        n = self._count(j)
        wanted = round(n * self._s.delete_fraction)
        return max(0, min(wanted, self._adds(j - _DELETE_LAG), n - self._adds(j)))

    def block_at(self, t: int) -> int:
        """Index of the block whose visible range holds ``t`` (may not exist)."""
        if self._h and t < self._anchor:
            j = max(0, (t - self._start) * self._h // self._span) if t >= self._start else 0
            while j + 1 < self._h and self.bounds(j + 1)[0] <= t:
                j += 1
            while j > 0 and self.bounds(j)[0] > t:
                j -= 1
            return j
        j = self._h + max(0, int((t - self._anchor) // self._live_ms))
        while self.bounds(j + 1)[0] <= t:
            j += 1
        while j > self._h and self.bounds(j)[0] > t:
            j -= 1
        return j

    def last_block(self, now: int) -> int:
        """The newest block that has begun by ``now`` (-1 when there is none)."""
        if not self._live:
            return self._h - 1
        return self.block_at(now) if now >= self._start else -1

    def _block_range(self, lo: int, hi: int, now: int) -> range:
        """Blocks whose visible range meets [lo, hi) and that have begun by ``now``."""
        hi = min(hi, now + 1)
        if hi <= lo:
            return range(0)
        last = self.block_at(hi - 1) if (self._live or self._h) else -1
        if not self._live:
            last = min(last, self._h - 1)
        return range(self.block_at(lo), last + 1)

    # ----- per-key facts (pure functions of the key number) ----------------------------------

    def _key_hash(self, k: int) -> int:
        return mix((self._salt + k) & _MASK)

    def _base_time(self, k: int, kh: int) -> int:
        b0, b1 = self.bounds(k // self._a_full)
        t = b0 + (kh >> 20) % (b1 - b0)
        if (kh >> 4) & 7 == 0 and t - t % 1000 >= b0:  # some rows land on whole seconds
            t -= t % 1000
        return t

    def _visible_add(self, k: int, kh: int) -> int:
        if k % self._a_full % 2 and (kh >> 8) & 7 == 0:  # a tie with the previous key's add
            return self._base_time(k - 1, self._key_hash(k - 1))
        return self._base_time(k, kh)

    def _change_add(self, k: int, kh: int, visible: int) -> int:
        if (
            self._late_possible
            and k // self._a_full >= self._h
            and (kh >> 40) & 0xFFFF < self._late_cut
        ):
            return visible - self._late_ms
        return visible

    def _deleted_slots(self, a: int) -> frozenset[int]:
        slots = self._deleted.get(a)
        if slots is None:
            rng = seeded_random(mix((self._salt ^ 0x5DE1E7E5) + a))
            slots = frozenset(rng.sample(range(self._adds(a)), self._dels(a + _DELETE_LAG)))
            if len(self._deleted) > 4096:
                self._deleted.clear()
            self._deleted[a] = slots
        return slots

    def _delete_block(self, k: int) -> int | None:
        a, slot = divmod(k, self._a_full)
        return a + _DELETE_LAG if slot in self._deleted_slots(a) else None

    def _exists(self, k: int) -> bool:
        a, slot = divmod(k, self._a_full)
        return slot < self._adds(a)

    # ----- generation -----------------------------------------------------------------------

    def block(self, j: int) -> Block:
        """Block ``j``, from the cache or generated (generation is deterministic).

        A block another thread is already generating is waited for, not generated twice (the
        prefetch thread and a request often want the same block at the same time).
        """
        key = (self.spec.name, j)
        found = self._cache.get(key)
        if found is not None:
            return found
        with self._pending_lock:
            done = self._pending.get(j)
            owner = done is None
            if done is None:
                done = self._pending[j] = threading.Event()
        if not owner:
            done.wait()
            found = self._cache.get(key)
            return found if found is not None else self._generate(j)
        try:
            found = self._generate(j)
            self._cache.put(key, found)
        finally:
            with self._pending_lock:
                del self._pending[j]
            done.set()
        return found

    def _generate(self, j: int) -> Block:
        b0, b1 = self.bounds(j)
        rng = seeded_random(mix((self._salt ^ 0xB10C) + j))
        live = j >= self._h
        adds, dels = self._adds(j), self._dels(j)
        updates = self._count(j) - adds - dels
        events: list[_Event] = []
        first = j * self._a_full
        for k in range(first, first + adds):
            kh = self._key_hash(k)
            v = self._visible_add(k, kh)
            c = self._change_add(k, kh, v)
            events.append((c, v, k, kh, _ADDED, -1, c))
        a = j - _DELETE_LAG
        for slot in sorted(self._deleted_slots(a)) if dels else ():
            k = a * self._a_full + slot
            kh = self._key_hash(k)
            v = rng.randrange(b0, b1)
            inserted = self._change_add(k, kh, self._visible_add(k, kh))
            events.append((v, v, k, kh, _DELETED, rng.randrange(self._renderer.profiles), inserted))
        recent = max(0, j - 2) * self._a_full
        newest = first + adds
        for _ in range(updates):
            event = self._update(
                j, rng=rng, b0=b0, b1=b1, recent=recent, newest=newest, live=live, events=events
            )
            if event is not None:
                events.append(event)
        return self._render(events, rng)

    def _update(
        self,
        j: int,
        *,
        rng: random.Random,
        b0: int,
        b1: int,
        recent: int,
        newest: int,
        live: bool,
        events: list[_Event],
    ) -> _Event | None:
        """One Updated version of an existing, not yet deleted key; None if none fits."""
        for _ in range(8):
            # half the updates touch recent keys, so one key often has several versions
            # inside a single polling window
            k = rng.randrange(recent if rng.random() < 0.5 else 0, newest)
            if not self._exists(k):
                continue
            deleted_in = self._delete_block(k)
            if deleted_in is not None and deleted_in <= j:
                continue
            kh = self._key_hash(k)
            v_add = self._visible_add(k, kh)
            lo = v_add + 1 if k >= j * self._a_full else b0
            if lo >= b1:
                continue
            v = rng.randrange(lo, b1)
            if events and rng.random() < 0.05 and lo <= events[-1][1] < b1:
                v = events[-1][1]  # a tie with the previous event
            elif rng.random() < 0.1 and v - v % 1000 >= lo:
                v -= v % 1000
            inserted = self._change_add(k, kh, v_add)
            c = v
            if (
                live
                and self._late_possible
                and rng.random() < self._s.late_fraction
                and v - self._late_ms > inserted
            ):
                c = v - self._late_ms
            return (c, v, k, kh, _UPDATED, rng.randrange(self._renderer.profiles), inserted)
        return None

    def _render(self, events: list[_Event], rng: random.Random) -> Block:
        # the hot loop of a catch-up: everything it touches is bound to a local first
        renderer = self._renderer
        render, key_member, tracking = renderer.render, renderer.key_member, renderer.tracking
        fmt = self._ts.format
        stores = self._stores
        n_stores = len(stores)
        n_profiles = renderer.profiles
        guid_key, varied, full_rows = self._guid_key, self._varied, self._full_rows
        draw, randbytes = rng.random, rng.randbytes
        bad_rate = self._bad_rate
        rows: list[tuple[int, int, int, bytes]] = []
        for c, v, k, kh, event, q, inserted in events:
            kh2 = (kh * _ODD) & _MASK
            store = stores[(kh2 >> 48) % n_stores]
            profile = (kh2 >> 16 & 0xFFFFFFFF) % n_profiles
            shape = int(draw() * 100) if varied else 0
            key = key_member(guid_from_hash(kh) if guid_key else k + 1)
            track = tracking(
                guid_from_hex(randbytes(16).hex()),
                fmt(inserted, shape),
                "" if event == _ADDED else fmt(c, shape),
                event,
            )
            if event == _DELETED and not full_rows:
                row = renderer.render_key_only(key, track)
            else:
                volatile = profile if q < 0 else q
                row = render(
                    key, track, store=store, number=k + 1, stable=profile, volatile=volatile
                )
            if bad_rate and draw() < bad_rate:
                kind = rng.choice(self._s.bad_row_kinds)
                row = corrupt(row, kind, rng, self.spec, self._s.huge_string_chars)
            rows.append((c, v, store, row))
        rows.sort(key=itemgetter(0))  # stable: ties keep generation order
        change = [r[0] for r in rows]
        visible = [r[1] for r in rows]
        return Block(
            change=change,
            visible=visible,
            store=[r[2] for r in rows],
            rows=[r[3] for r in rows],
            max_visible=max(visible, default=0),
            has_late=any(ch != vi for ch, vi in zip(change, visible, strict=True)),
            # rows, their list and int entries, and room for the deflate cache (~1/5 of JSON)
            nbytes=sum(len(r[3]) * 5 // 4 + 120 for r in rows) + 200,
        )

    @property
    def history_blocks(self) -> int:
        """How many blocks the history (before ``history_end``) has."""
        return self._h

    # ----- queries ---------------------------------------------------------------------------

    def rows(self, lo: int, hi: int, now: int, stores: frozenset[int] | None) -> list[bytes]:
        """Versions with change time in [lo, hi), visible by ``now``, at ``stores`` (None: all).

        Ordered by change time; versions with equal change times keep generation order.
        """
        out: list[bytes] = []
        for segment in self.segments(lo, hi, now, stores):
            out.extend(segment.rows if isinstance(segment, Block) else segment)
        return out

    def segments(self, lo: int, hi: int, now: int, stores: frozenset[int] | None) -> list[Segment]:
        """:meth:`rows` as a list of pieces, blocks used whole kept as blocks (cached bytes)."""
        if hi <= lo:
            return []
        # Without late rows blocks hold disjoint, increasing change times: concatenating
        # them keeps the order. Late rows overlap earlier blocks, so they need a sort.
        keyed: list[tuple[int, bytes]] = []
        out: list[Segment] = []
        for j in self._block_range(lo, hi + self._late_ms, now):
            b = self.block(j)
            i0, i1 = bisect_left(b.change, lo), bisect_left(b.change, hi)
            if i0 == i1:
                continue
            selected: Sequence[int]
            if stores is None and b.max_visible <= now:
                selected = range(i0, i1)
            else:
                selected = [
                    i
                    for i in range(i0, i1)
                    if b.visible[i] <= now and (stores is None or b.store[i] in stores)
                ]
            if self._late_possible:
                keyed.extend((b.change[i], b.rows[i]) for i in selected)
            elif len(selected) == len(b.rows):
                out.append(b)
            elif isinstance(selected, range):
                out.append(b.rows[i0:i1])
            elif selected:
                out.append([b.rows[i] for i in selected])
        if self._late_possible:
            keyed.sort(key=itemgetter(0))
            return [[row for _, row in keyed]]
        return out

    def estimate(self, lo: int, hi: int, now: int, store_share: float) -> int:
        """DataConnect-style estimate of the rows in [lo, hi): block counts pro rata in time."""
        total = 0.0
        hi = min(hi, now + 1)
        for j in self._block_range(lo, hi, now):
            b0, b1 = self.bounds(j)
            overlap = max(0, min(hi, b1) - max(lo, b0))
            total += self._count(j) * overlap / (b1 - b0)
        return math.ceil(total * store_share)
