"""OS-visible thread names: what ``top -H`` and the benchmark's per-thread CPU table read."""

from __future__ import annotations

import os
import platform
import threading
from pathlib import Path

import pytest

from bench.procstat import thread_ticks
from publisher.threadnames import name_this_thread

pytestmark = pytest.mark.skipif(platform.system() != "Linux", reason="prctl is Linux's")


def _named(name: str) -> tuple[str, str]:
    """(the comm the kernel reports, the benchmark's group) for a thread named ``name``."""
    seen: dict[str, str] = {}
    ready, done = threading.Event(), threading.Event()

    def body() -> None:
        assert name_this_thread(name)
        ready.set()
        done.wait(10)

    thread = threading.Thread(target=body)
    thread.start()
    try:
        ready.wait(10)
        tid = thread.native_id
        seen["comm"] = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        seen["group"] = thread_ticks(os.getpid())[tid][0]
    finally:
        done.set()
        thread.join(10)
    return seen["comm"], seen["group"]


def test_a_fetch_thread_is_named_for_the_os_and_grouped_as_fetch() -> None:
    assert _named("dcp-fetch") == ("dcp-fetch", "fetch")


def test_long_names_are_cut_to_what_linux_keeps() -> None:
    comm, group = _named("dcp-presence-and-more")
    assert comm == "dcp-presence-an"  # 15 bytes
    assert group == "other"


def test_the_main_thread_is_its_own_group() -> None:
    assert thread_ticks(os.getpid())[os.getpid()][0] == "main"
