"""A thread-safe least-recently-used cache bounded by the bytes of what it holds."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    """Anything that knows its approximate memory cost."""

    @property
    def nbytes(self) -> int:
        """Approximate bytes held."""
        ...


V = TypeVar("V", bound=Sized)


class ByteBudgetCache(Generic[V]):
    """Keeps recently used values while their ``nbytes`` total stays under ``budget``."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        """The cached value, marked as recently used, or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value``, evicting the least recently used entries to stay in budget."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._used -= old.nbytes
            self._items[key] = value
            self._used += value.nbytes
            while self._used > self._budget and len(self._items) > 1:
                _, evicted = self._items.popitem(last=False)
                self._used -= evicted.nbytes

    @property
    def used(self) -> int:
        """Bytes currently held."""
        return self._used
