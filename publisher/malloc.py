"""glibc malloc settings that keep a long catch-up's resident memory flat.

Two glibc defaults make a multi-threaded Python process grow for hours without leaking:

- **Arenas.** Each thread that calls malloc may get its own arena (up to 8 per core), and an
  arena keeps its high-water fragmentation. The fetch threads parse and encode whole windows,
  so each would keep its own peak. Two arenas are plenty for one loop thread and a few
  fetch threads that spend their time in I/O or holding the GIL anyway.
- **The dynamic mmap threshold.** A response body of several MB is first mmap'd, but when it is
  freed glibc raises the threshold to its size, so the next bodies come from the heap, where
  freed space fragments and is rarely returned. A fixed threshold keeps large buffers
  mmap'd: freed at once, back to the kernel.

Applied by ``run`` before any thread starts (arenas made earlier keep existing). An operator's
own ``MALLOC_ARENA_MAX`` / ``MALLOC_MMAP_THRESHOLD_`` (glibc reads them at start-up) wins:
then the setting is left alone. Other C libraries are left alone too.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

#: mallopt parameter numbers, from glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

ARENAS = 2
MMAP_THRESHOLD = 1 << 20  # 1 MiB: response bodies and their parsed arrays, not rows

Mallopt = Callable[[int, int], int]


def _glibc_mallopt() -> Mallopt | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    fn: Mallopt = ctypes.CDLL(None).mallopt
    return fn


def tune(env: Mapping[str, str] = os.environ, mallopt: Mallopt | None = None) -> dict[str, int]:
    """Apply the settings above; returns what was set (empty when not glibc).

    ``mallopt`` replaces glibc's own (tests).
    """
    fn = mallopt or _glibc_mallopt()
    if fn is None:
        return {}
    wanted = {
        ("MALLOC_ARENA_MAX", M_ARENA_MAX): ARENAS,
        ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD): MMAP_THRESHOLD,
    }
    applied: dict[str, int] = {}
    for (variable, param), value in wanted.items():
        if variable in env:
            continue  # the operator's choice, already applied by glibc at start-up
        if fn(param, value) == 1:  # mallopt returns 1 on success
            applied[variable] = value
        else:
            log.warning("mallopt(%s, %d) was refused; memory use may grow", variable, value)
    return applied
