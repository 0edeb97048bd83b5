"""Python's collector with thousands of connections: when to freeze, and when to give back.

Every open connection is dozens of objects the cyclic collector tracks, and a pass walks every
object of the generations it collects. Thousands of connections that arrive sit in the
younger generations until a pass of the middle one walks them all (10,000: 231 ms, once,
about 20 s later in the people bench), and a full pass walks every connection the process
holds. So the hub freezes what lives long: once L{CROWD} connections made since the last
freeze are still open, a full pass over what is not frozen (what came since the last freeze:
its garbage goes now, not into the freeze), and everything moved to the permanent generation,
which passes skip; they then walk only what is newer.

A closed connection is freed as it is let go, frozen or not: its one reference cycle, from
Autobahn, is cut when it closes (L{txchat.autobahn_internals.ServerProtocol.connectionLost}),
so connections coming and going leave nothing for a pass to find. But freed
memory stays with the process (the C allocator keeps its pages until asked). So once a crowd
has gone (the connections are L{CROWD} fewer than at the most), or a batch of rooms has
expired (a room is a few cycles), the hub gives memory back: a full pass over everything,
frozen or not, the allocator asked to return free pages, and what lives frozen again. It
does that L{INTERVAL} seconds later, so at most that often; connections merely coming and
going, whose newcomers reuse what the leavers freed, never ask for it (a full pass over
10,000 connections takes over 100 ms)."""

from __future__ import annotations

import ctypes
import gc
from typing import Callable

INTERVAL = 10.0
CROWD = 1000


class Heap:
    """The hub's connections as the collector sees them (plain code, no clock)."""

    def __init__(self, crowd: int = CROWD) -> None:
        self._crowd = crowd
        self._young: set[object] = set()  # open, and made since the last freeze
        self._peak = 0  # the most open at once since the last give-back

    def joined(self, connection: object, count: int) -> bool:
        """A connection was opened (C{count} open now): whether to freeze now."""
        self._peak = max(self._peak, count)
        self._young.add(connection)
        if len(self._young) < self._crowd:
            return False
        self._young.clear()
        return True

    def left(self, connection: object, count: int) -> bool:
        """A connection has closed (C{count} open now): whether to give memory back."""
        self._young.discard(connection)
        return self._peak - count >= self._crowd

    def gaveBack(self, count: int) -> None:
        """Memory was given back, and everything frozen again."""
        self._young.clear()
        self._peak = count


def _mallocTrim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to ask
        return None


_trim = _mallocTrim()


def freeze() -> None:
    # A full pass first, over what is not frozen yet (what came since the last freeze): the
    # garbage among it goes now, not into the permanent generation with the rest.
    gc.collect()
    gc.freeze()


def giveBack() -> None:
    gc.unfreeze()
    gc.collect()
    if _trim is not None:
        _trim(0)
    gc.freeze()
