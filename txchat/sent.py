"""The sends accepted lately, by sender and the sender's ID for each (SPEC §17): a resend of one
is answered with the first answer and not delivered again.

Pure: the caller passes the time in (an injected clock's seconds). Bounded twice: an entry lives
C{ttl} seconds (ten minutes: longer than any client keeps resending), and at most C{limit}
entries are held, the oldest going first, so a flood of sends cannot grow it without end.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["LIMIT", "TTL", "SentIds"]

V = TypeVar("V")

TTL = 600.0
LIMIT = 100_000


class SentIds(Generic[V]):
    """(sender, ref) -> what the send was given (its epoch and seq, say), for C{ttl} seconds."""

    __slots__ = ("limit", "ttl", "_entries")

    def __init__(self, limit: int = LIMIT, ttl: float = TTL) -> None:
        self.limit = limit
        self.ttl = ttl
        # Oldest first: entries are added as time goes on, so expiry only ever looks at the front.
        self._entries: OrderedDict[tuple[str, str], tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sender: str, ref: str, now: float) -> V | None:
        """What the send was given, if it was accepted less than C{ttl} seconds ago."""
        self._expire(now)
        entry = self._entries.get((sender, ref))
        return entry[1] if entry is not None else None

    def remember(self, sender: str, ref: str, value: V, now: float) -> None:
        """The send was accepted now and given C{value}. A key seen before keeps its first value
        and time: the first answer is the one every resend repeats."""
        self._expire(now)
        entries = self._entries
        key = (sender, ref)
        if key in entries:
            return
        entries[key] = (now, value)
        while len(entries) > self.limit:
            entries.popitem(last=False)

    def _expire(self, now: float) -> None:
        entries = self._entries
        horizon = now - self.ttl
        while entries:
            first = next(iter(entries.values()))
            if first[0] > horizon:
                break
            entries.popitem(last=False)
