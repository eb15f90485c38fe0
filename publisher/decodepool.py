"""Parse, map and encode fetched windows in worker processes (``publisher.decode_processes``).

A publishing process runs its Python one thread at a time (the GIL), and parsing, mapping and
encoding are most of that work: with them in other processes, the publishing process only
downloads, produces and commits, and one stream can use more than one core.

A worker gets the window's body as DataConnect sent it (still compressed) and a stream's
:class:`~publisher.prepare.ShapeRecipe`, builds the stream's mapper and codec once, and
returns the :class:`~publisher.prepare.Prepared` window. A body that is not a JSON array
raises :class:`~publisher.dataconnect.client.BodyUnreadable`, which the client retries.

Workers are started with ``spawn`` (the publishing process has librdkafka's threads, which a
fork would copy in an unknown state), all of them at start-up, from the thread that creates
the pool: each asks the kernel to kill it when that thread's process dies, and also checks
twice a second that its parent still runs, so a ``kill -9`` of the publisher leaves no worker
behind. They ignore SIGINT and SIGTERM: stopping is the
publishing process's decision, and a signal sent to the whole process group must not kill a
worker in the middle of a window the publisher still waits for.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Container
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from publisher.dataconnect.client import Body, BodyUnreadable, read_rows
from publisher.errors import FatalError
from publisher.localproc import die_with_parent
from publisher.prepare import Prepared, ShapeRecipe, StreamShape, prepare
from publisher.windows import Window

#: How long starting the workers (interpreter start and imports) may take.
START_TIMEOUT = 120.0
#: How often a worker checks that the process that started it still runs.
ORPHAN_CHECK_SECONDS = 0.5


class DecodeProcessDied(FatalError):
    """A decode process ended (killed, out of memory): the publisher stops with exit 1."""


class DecodePool:
    """``processes`` worker processes; :meth:`decode` runs one window in one of them."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        )
        # Every worker now, from this thread: the parent-death signal is tied to the thread
        # that spawns a worker, and the pool would otherwise spawn them from the fetch threads.
        # Wait until each one has answered: one fast worker could take every _ready task
        # while another is still starting.
        deadline = time.monotonic() + START_TIMEOUT
        started: set[int] = set()
        while len(started) < processes:
            left = max(0.1, deadline - time.monotonic())
            started.update(
                f.result(left) for f in [self._pool.submit(_ready) for _ in range(processes)]
            )
            if time.monotonic() > deadline:
                raise FatalError(f"only {len(started)} of {processes} decode processes started")

    def decode(
        self,
        recipe: ShapeRecipe,
        window: Window,
        body: Body,
        *,
        now_ms: int,
        skip: Container[int],
    ) -> Prepared:
        """Parse, map and encode ``body`` for ``window`` in a worker; raises BodyUnreadable
        for a body that is not a JSON array, DecodeProcessDied if the worker died."""
        try:
            return self._pool.submit(_decode, recipe, window, body, now_ms, skip).result()
        except BrokenProcessPool as exc:
            raise DecodeProcessDied(f"a decode process died: {exc}") from None

    def close(self) -> None:
        """Stop the workers once they finish what they are doing; do not wait for them."""
        self._pool.shutdown(wait=False, cancel_futures=True)


# -- in the worker ---------------------------------------------------------------------------
_shapes: dict[str, StreamShape] = {}


def _init_worker(parent: int) -> None:
    die_with_parent(signal.SIGKILL)()
    # The kernel's signal only covers a parent that dies after this call: a worker that was
    # slow to start may find its parent gone already. And a worker blocked on the call queue
    # never sees end-of-file (it holds a write end of that queue itself). So: check now, and
    # keep checking, against the pid of the process that created the pool.
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(1)


def _ready() -> int:
    """The worker's pid, once it runs; a moment's wait lets the other workers take theirs."""
    time.sleep(0.05)
    return os.getpid()


def _decode(
    recipe: ShapeRecipe, window: Window, body: Body, now_ms: int, skip: Container[int]
) -> Prepared:
    # Built once per stream (generated code). A recipe that differs from the cached shape's
    # (the same stream id with another zone or size limit: a pool shared beyond one
    # publisher's fixed streams) gets a shape of its own, never a stale one.
    shape = _shapes.get(recipe.stream_id)
    if shape is None or shape.recipe != recipe:
        shape = _shapes[recipe.stream_id] = recipe.build()
    try:
        rows = read_rows(body)
    except BodyUnreadable as exc:  # only the start of the body crosses back, to quote it
        raise BodyUnreadable(exc.problem, exc.excerpt[:2048]) from None
    del body
    return prepare(shape, window, rows, now_ms=now_ms, skip=skip)
