"""Which sends were accepted lately, by their sender's ID for them (SPEC §17): a resend gets
the first one's number and is not delivered again (plain code, on an injected clock).

Bounded: at most C{limit} IDs, the oldest out first, each forgotten C{SENT_FOR} seconds after
it was accepted. A send still being numbered is remembered by what waits for its number, so a
resend that overtakes the answer to the first is not delivered either.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twisted.internet.interfaces import IReactorTime

SENT_FOR = 600.0
LIMIT = 100_000


class SentIds:
    def __init__(self, clock: IReactorTime, limit: int = LIMIT, keep: float = SENT_FOR) -> None:
        self._clock = clock
        self._limit = limit
        self._keep = keep
        # (sender, ID) -> (until when, (epoch, seq)) once numbered, or what waits for that.
        self._known: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        # Until when an ID let go for room (over the limit) would still have been answered.
        self._forgotUntil = 0.0

    def __len__(self) -> int:
        return len(self._known)

    def get(self, sender: str, ref: str) -> Any:
        """(epoch, seq) of an accepted send; what waits for its number while it is numbered;
        None when not sent lately."""
        self._expire()
        entry = self._known.get((sender, ref))
        return None if entry is None else entry[1]

    def wait(self, sender: str, ref: str, waiting: Any) -> None:
        self._put((sender, ref), waiting)

    def add(self, sender: str, ref: str, epoch: str | None, seq: int | None) -> None:
        """Accepted: numbered, or (None, None) delivered unnumbered."""
        self._put((sender, ref), (epoch, seq))

    def drop(self, sender: str, ref: str) -> None:
        """Not accepted after all: a resend is a send again."""
        self._known.pop((sender, ref), None)

    def clear(self) -> None:
        self._known.clear()

    def _put(self, key: tuple[str, str], value: Any) -> None:
        self._known.pop(key, None)
        self._known[key] = (self._clock.seconds() + self._keep, value)
        while len(self._known) > self._limit:
            _, (until, _value) = self._known.popitem(last=False)
            self._forgotUntil = max(self._forgotUntil, until)

    def forgot(self) -> bool:
        """Whether an ID still within its time was let go for room: then only a durable log
        can answer for it."""
        return self._clock.seconds() < self._forgotUntil

    def _expire(self) -> None:
        now = self._clock.seconds()
        known = self._known
        while known:
            key = next(iter(known))
            if known[key][0] > now:
                break
            del known[key]
