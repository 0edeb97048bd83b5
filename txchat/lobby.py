"""Where a new connection's handshake waits while the hub has messages to send.

A handshake (Autobahn's parsing, the gate, the welcome and member list) costs the process about
as much as sending a message to a room of a hundred; done the moment it arrives, a stream of
visitors puts that work ahead of messages already read, and the people chatting wait for them
(docs/performance.md, "churn"). So while a flush is due, handshakes wait their turn: each goes
in a reactor turn with no flush due, after the poll has read what came meanwhile, one a turn;
none waits longer than C{patience}, so under a load that never lets up they still go in, one
a turn. An idle hub takes a handshake at once, so nothing changes where there is no chat.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

Admit = Callable[[], object]


class Lobby:
    def __init__(self, clock: IReactorTime, busy: Callable[[], bool], patience: float) -> None:
        """
        @param busy: whether messages are waiting to go out (a flush is due).
        @param patience: the longest a handshake waits (seconds); 0: none waits.
        """
        self._clock = clock
        self._busy = busy
        self._patience = patience
        self._waiting: deque[tuple[float, Admit]] = deque()
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def enter(self, admit: Admit) -> None:
        """Call C{admit} now, or in a later turn when messages have gone out."""
        if not self._waiting and (self._patience <= 0 or not self._busy()):
            admit()
            return
        self._waiting.append((self._clock.seconds(), admit))
        if self._call is None:
            self._call = self._clock.callLater(0, self._next)

    def leave(self, admit: Admit) -> None:
        """The connection went while it waited."""
        for entry in self._waiting:
            if entry[1] == admit:  # (bound methods: equal, not the same object)
                self._waiting.remove(entry)
                break
        if not self._waiting and self._call is not None:
            self._call.cancel()
            self._call = None

    def flushed(self) -> None:
        """Messages went out: a waiting handshake may go in, after the next poll."""
        if self._waiting and (self._call is None or self._call.getTime() > self._clock.seconds()):
            if self._call is not None:
                self._call.cancel()
            self._call = self._clock.callLater(0, self._next)

    def admitAll(self) -> None:
        """Shutting down: every waiting handshake now (the gate refuses them)."""
        if self._call is not None:
            self._call.cancel()
            self._call = None
        while self._waiting:
            self._waiting.popleft()[1]()

    def _next(self) -> None:
        self._call = None
        if not self._waiting:
            return
        since, admit = self._waiting[0]
        overdue = since + self._patience
        if self._busy() and self._clock.seconds() < overdue:
            # The flush that is due calls flushed(); should it never come, patience ends this.
            self._call = self._clock.callLater(overdue - self._clock.seconds(), self._next)
            return
        self._waiting.popleft()
        admit()
        if self._waiting and self._call is None:
            self._call = self._clock.callLater(0, self._next)
