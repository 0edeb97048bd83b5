"""Bans (SPEC §18): which signed users may not enter which rooms, until when.

Plain code on an injected clock. One process keeps them here; in a cluster, Redis keeps them
too and every process holds a copy of all of them (L{txchat.roster}), so that the gate, which
answers a handshake at once, never waits on a network round trip.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime


class Bans:
    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}  # (room, sub) -> when it ends (clock seconds)

    def __len__(self) -> int:
        return len(self._until)

    def ban(self, room: str, sub: str, until: float) -> None:
        self._prune()
        self._until[(room, sub)] = until

    def replace(self, bans: dict[tuple[str, str], float]) -> None:
        """Every ban, as another keeper (Redis) holds them: the ones it lacks are lifted."""
        self._until = dict(bans)
        self._prune()

    def lift(self, room: str, sub: str) -> bool:
        """Whether a ban was in force."""
        until = self._until.pop((room, sub), None)
        return until is not None and until > self._clock.seconds()

    def banned(self, room: str, sub: str) -> bool:
        until = self._until.get((room, sub))
        if until is None:
            return False
        if until > self._clock.seconds():
            return True
        del self._until[(room, sub)]
        return False

    def _prune(self) -> None:
        now = self._clock.seconds()
        for key in [key for key, until in self._until.items() if until <= now]:
            del self._until[key]
