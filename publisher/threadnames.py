"""Thread names the operating system sees, so ``top -H``, ``ps -L`` and ``/proc`` tell the
publisher's threads apart (Python's own thread names stay inside Python).

librdkafka already names its threads (``rdk:main``, ``rdk:broker1``, ...). The publisher's are
``dcp-fetch`` (download, parse, map and encode windows), ``dcp-presence`` and ``dcp-health``;
the main thread, which produces and commits, keeps the process's name.
"""

from __future__ import annotations

import ctypes
import platform

PR_SET_NAME = 15  # from <linux/prctl.h>
#: Linux keeps 15 bytes of a thread name (16 with the terminating NUL).
MAX_BYTES = 15


def name_this_thread(name: str) -> bool:
    """Give the calling thread ``name`` (cut to 15 bytes) as the OS sees it. Linux only;
    returns whether the name was set."""
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    return bool(libc.prctl(PR_SET_NAME, name.encode()[:MAX_BYTES], 0, 0, 0) == 0)
