"""A task.Clock that turns as a reactor does."""

from __future__ import annotations

from twisted.internet.task import Clock


class TurnClock(Clock):
    """A clock whose advance runs only the calls due when it starts, as a reactor's turn does
    (Twisted's runUntilCurrent leaves calls made meanwhile for the turn after the next poll);
    Clock itself would run a callLater(0) made by a call in the same advance."""

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        for call in [c for c in self.calls if c.getTime() <= self.rightNow]:  # (kept in time order)
            if call in self.calls:  # not cancelled by one run before it
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)
