"""The lobby, one scenario a row: steps on a task.Clock, and who was let in at each."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from txchat.lobby import Lobby


class TurnClock(Clock):
    """A clock whose advance runs only the calls due when it starts, as a reactor's turn does
    (Twisted's runUntilCurrent leaves calls made meanwhile for the turn after the next poll);
    Clock itself would run a callLater(0) made by a call in the same advance."""

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        for call in sorted((c for c in self.calls if c.getTime() <= self.rightNow), key=lambda c: c.getTime()):
            if call in self.calls:  # not cancelled by one run before it
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


class World:
    """A hub as the lobby sees it: busy or not, and a clock whose turns are advance(0)."""

    def __init__(self, patience: float = 0.25) -> None:
        self.clock = TurnClock()
        self.busy = False
        self.lobby = Lobby(self.clock, lambda: self.busy, patience)
        self.admitted: list[str] = []
        self._admits: dict[str, object] = {}

    def admit(self, name: str) -> object:
        if name not in self._admits:
            self._admits[name] = lambda: self.admitted.append(name)
        return self._admits[name]

    def step(self, step: str) -> list[str]:
        """Run one step; who was let in by it."""
        before = len(self.admitted)
        verb, _, arg = step.partition(" ")
        if verb == "enter":
            self.lobby.enter(self.admit(arg))  # type: ignore[arg-type]
        elif verb == "leave":
            self.lobby.leave(self.admit(arg))  # type: ignore[arg-type]
        elif verb == "busy":
            self.busy = True
        elif verb == "idle":
            self.busy = False
        elif verb == "flushed":
            self.busy = False
            self.lobby.flushed()
        elif verb == "turn":
            self.clock.advance(0)
        elif verb == "wait":
            self.clock.advance(float(arg))
        elif verb == "shutdown":
            self.lobby.admitAll()
        else:
            raise ValueError(step)
        return self.admitted[before:]


# Each row: the steps, and who each step let in ("" for nobody); every scenario must end with
# nobody waiting and no timer left.
SCENARIOS = {
    "an idle hub lets a handshake in at once": [
        ("enter a", "a"),
    ],
    "while a flush is due, a handshake waits for the next turn after it": [
        ("busy", ""), ("enter a", ""), ("turn", ""), ("flushed", ""), ("turn", "a"),
    ],
    "a flush due again at that turn: it waits on": [
        ("busy", ""), ("enter a", ""), ("flushed", ""), ("busy", ""), ("turn", ""), ("flushed", ""), ("turn", "a"),
    ],
    "one a turn, in the order they came": [
        ("busy", ""), ("enter a", ""), ("enter b", ""), ("enter c", ""), ("flushed", ""),
        ("turn", "a"), ("turn", "b"), ("turn", "c"),
    ],
    "behind others, a newcomer waits its turn even on an idle hub": [
        ("busy", ""), ("enter a", ""), ("idle", ""), ("enter b", ""), ("turn", "a"), ("turn", "b"),
    ],
    "a hub that stays busy: in at last after the patience, then one a turn": [
        ("busy", ""), ("enter a", ""), ("enter b", ""), ("turn", ""), ("wait 0.2", ""), ("wait 0.05", "a"),
        ("turn", "b"),
    ],
    "one that came later than the patience allows waits its own": [
        ("busy", ""), ("enter a", ""), ("wait 0.2", ""), ("enter b", ""), ("wait 0.05", "a"), ("turn", ""),
        ("wait 0.2", "b"),
    ],
    "a connection gone while it waited is never let in": [
        ("busy", ""), ("enter a", ""), ("enter b", ""), ("leave a", ""), ("flushed", ""), ("turn", "b"),
    ],
    "the last one gone: no timer left": [
        ("busy", ""), ("enter a", ""), ("leave a", ""), ("flushed", ""), ("turn", ""),
    ],
    "shutting down lets everyone in at once, for the gate to refuse": [
        ("busy", ""), ("enter a", ""), ("enter b", ""), ("shutdown", "a b"),
    ],
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(name: str) -> None:
    world = World()
    for step, expected in SCENARIOS[name]:
        assert world.step(step) == expected.split(), f"{name}: after {step!r}"
    assert len(world.lobby) == 0
    assert world.clock.getDelayedCalls() == []


def test_no_patience_means_no_wait() -> None:
    """--handshake-wait 0: every handshake at once, as before the lobby."""
    world = World(patience=0)
    assert world.step("busy") == []
    assert world.step("enter a") == ["a"]
    assert world.clock.getDelayedCalls() == []


def test_flushed_with_nobody_waiting_schedules_nothing() -> None:
    world = World()
    world.step("busy")
    world.step("flushed")
    assert world.clock.getDelayedCalls() == []
