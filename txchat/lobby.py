"""Where a new connection's handshake waits while the hub has messages to send.

A handshake (Autobahn's parsing, the gate, the welcome with its history and member list) costs
the process about as much as sending a message to a room of a hundred. Taken the moment they
arrive, a crowd's handshakes (a reconnection storm: hundreds in one poll) go ahead of messages
already read, and everyone chatting waits for all of them. So while a flush is due, handshakes
queue here, and a turn of the reactor takes C{perTurn} of them, its share: right after its
flush, or in a turn with none due. Twisted runs a C{callLater(0)} made during a turn only after the
next poll, so what came meanwhile is read, and its flush goes, before the next handshake.
An idle hub with nobody queued takes a handshake at once.

A process saturated by its chat (a flush due at every turn, and turns that come late) would let
newcomers in one a long turn, a few dozen a second, and keep the rest queued ever longer. So
beyond its share, a turn also takes the handshakes that have queued C{patience} seconds, while
its handshakes have taken less than L{SPARE} of the time the process spent on everything else
since the last turn's, and at most L{SLICE}: newcomers then get about a fifth of a saturated
process, and a backlog bigger than that (a storm of thousands at once) goes in a bounded slice
a turn, the chat going on between. Those still queued at the handshake's deadline are
answered (by their admit) as cheaply as a refusal, so a stale backlog clears many a turn.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

# Called with how long (seconds) the handshake waited.
Admit = Callable[[float], object]

# How long a handshake waits before it may go in beyond a turn's share (seconds).
PATIENCE = 1.0
# The time a turn's handshakes may take beyond its share, as a part of the rest of the process's
# time since the turn before: a quarter, so about a fifth of a saturated process; and at most
# SLICE seconds (a stall, or a step of the wall clock, is no store of spare time).
SPARE = 0.25
SLICE = 0.025

_log = Logger()


class Lobby:
    """The queue of handshakes, first come first in, on the hub's clock."""

    def __init__(self, clock: IReactorTime, busy: Callable[[], bool], perTurn: int, patience: float) -> None:
        """
        @param busy: whether messages are waiting to go out (a flush is due).
        @param perTurn: handshakes a turn takes while the queue lasts; 0: every one at once.
        @param patience: seconds after which a queued handshake may go in beyond a share.
        """
        self._clock = clock
        self._busy = busy
        self._perTurn = perTurn
        self._patience = patience
        self._waiting: dict[Admit, float] = {}  # (insertion ordered) admit -> when it came
        self._call: IDelayedCall | None = None
        self._lastTurn = clock.seconds()  # when the last turn's handshakes were done, or the queue began

    def __len__(self) -> int:
        return len(self._waiting)

    def enter(self, admit: Admit) -> None:
        """Call C{admit} now, or in a later turn."""
        if self._perTurn <= 0 or not (self._waiting or self._busy()):
            admit(0.0)
            return
        now = self._clock.seconds()
        if not self._waiting:
            self._lastTurn = now  # (the quiet before it is no spare time)
        self._waiting[admit] = now
        if self._call is None:
            self._call = self._clock.callLater(0, self._turn)

    def leave(self, admit: Admit) -> float:
        """It goes without its turn (its connection went): how long it waited."""
        came = self._waiting.pop(admit, None)
        if not self._waiting:
            self._stopTurn()
        return self._clock.seconds() - came if came is not None else 0.0

    def flushed(self) -> None:
        """Messages have gone out: this turn's share goes in now, the rest from the next."""
        if self._waiting:
            self._stopTurn()  # (due this turn, it would take a second share)
            self._admit(self._perTurn)

    def admitAll(self) -> None:
        """Shutting down: every waiting handshake now (the closed gate refuses them)."""
        self._stopTurn()
        self._admit(len(self._waiting))

    def _stopTurn(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _turn(self) -> None:
        self._call = None
        if self._busy():
            # The flush due calls flushed(); and should it be cancelled, the next turn looks again.
            self._call = self._clock.callLater(0, self._turn)
        else:
            self._admit(self._perTurn)

    def _admit(self, count: int) -> None:
        clock = self._clock
        began = clock.seconds()
        budget = min((began - self._lastTurn) * SPARE, SLICE)
        waiting = self._waiting
        while waiting:
            admit = next(iter(waiting))
            now = clock.seconds()
            waited = now - waiting[admit]
            if count:
                count -= 1
            elif waited < self._patience or now - began >= budget:
                break
            del waiting[admit]
            try:
                admit(waited)
            except Exception:  # one handshake's failure is its own: the queue goes on
                _log.failure("letting a handshake in")
        self._lastTurn = clock.seconds()
        if waiting and self._call is None:
            self._call = clock.callLater(0, self._turn)
