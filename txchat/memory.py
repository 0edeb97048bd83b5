"""Giving memory back to the system once a crowd has gone.

When thousands of rooms expire together, or thousands of connections have gone, the objects
are freed but the memory stays with the process: connections are reference cycles, freed only
by a full pass of Python's collector, and the C allocator keeps freed pages until asked to
return them. After a batch of rooms has expired, or the connections are L{CROWD} fewer than
they were at the most (a crowd has gone; not connections coming and going, whose newcomers
reuse what the leavers freed), the hub asks for both, L{INTERVAL} seconds later (a full pass over a large heap takes some
milliseconds, so it runs at most that often)."""

from __future__ import annotations

import ctypes
import gc
from typing import Callable

INTERVAL = 10.0
CROWD = 1000


def _mallocTrim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to ask
        return None


_trim = _mallocTrim()


def giveBack() -> None:
    gc.collect()
    if _trim is not None:
        _trim(0)
