"""The lobby, one scenario a row: steps on a clock that turns as a reactor does, beside a flush
scheduled as the hub schedules it, and what each step did."""

from __future__ import annotations

import pytest
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import capturedLogs
from tests.support.turnclock import TurnClock
from txchat.lobby import Admit, Lobby


class World:
    """A hub as the lobby sees it: a message read makes a flush due (a callLater(0), as
    L{txchat.hub.ChatHub} schedules it), and the flush tells the lobby. Steps happen in the
    poll between turns; "turn" is the reactor's next run of its timed calls."""

    def __init__(self, perTurn: int = 1, patience: float = 10, cost: float = 0) -> None:
        """@param cost: the seconds each handshake let in takes."""
        self.clock = TurnClock()
        self.flushCall: IDelayedCall | None = None
        self.lobby = Lobby(self.clock, lambda: self.flushCall is not None, perTurn, patience)
        self.cost = cost
        self.events: list[str] = []
        self.waited: dict[str, float] = {}
        self._admits: dict[str, Admit] = {}

    def admit(self, name: str) -> Admit:
        if name not in self._admits:
            def admit(waited: float) -> None:
                self.events.append(f"in {name}")
                self.waited[name] = waited
                self.clock.rightNow += self.cost
            self._admits[name] = admit
        return self._admits[name]

    def _flush(self) -> None:
        self.flushCall = None
        self.events.append("flush")
        self.lobby.flushed()

    def step(self, step: str) -> list[str]:
        """Run one step; what it did."""
        before = len(self.events)
        verb, _, arg = step.partition(" ")
        if verb == "enter":
            self.lobby.enter(self.admit(arg))
        elif verb == "leave":
            self.lobby.leave(self.admit(arg))
        elif verb == "message":
            if self.flushCall is None:
                self.flushCall = self.clock.callLater(0, self._flush)
        elif verb == "cancel":  # the flush is called off (the hub forgets the room)
            assert self.flushCall is not None
            self.flushCall.cancel()
            self.flushCall = None
        elif verb == "turn":
            self.clock.advance(0)
        elif verb == "wait":  # a turn that comes this late
            self.clock.advance(float(arg))
        elif verb == "stall":  # time passes in the poll (a long one), before the next turn
            self.clock.rightNow += float(arg)
        elif verb == "shutdown":
            self.lobby.admitAll()
        else:
            raise ValueError(step)
        return self.events[before:]


# Each row: a step and what it did ("," between events); every scenario ends with nobody
# waiting and no timer left.
SCENARIOS = {
    "an idle hub takes a handshake at once": [
        ("enter a", "in a"),
    ],
    "with a message due, the handshake goes in right after its flush": [
        ("message", ""), ("enter a", ""), ("turn", "flush,in a"),
    ],
    "steady chat: one a turn, each after that turn's flush, in the order they came": [
        ("message", ""), ("enter a", ""), ("enter b", ""), ("enter c", ""), ("turn", "flush,in a"),
        ("message", ""), ("turn", "flush,in b"), ("message", ""), ("turn", "flush,in c"),
    ],
    "a turn with no flush takes one too": [
        ("message", ""), ("enter a", ""), ("enter b", ""), ("enter c", ""), ("turn", "flush,in a"),
        ("turn", "in b"), ("turn", "in c"),
    ],
    "behind others, a newcomer waits its turn even on an idle hub": [
        ("message", ""), ("enter a", ""), ("enter b", ""), ("turn", "flush,in a"), ("enter c", ""),
        ("turn", "in b"), ("turn", "in c"),
    ],
    "a connection gone while it waited is never let in": [
        ("message", ""), ("enter a", ""), ("enter b", ""), ("leave a", ""), ("turn", "flush,in b"),
    ],
    "the last one gone: no timer left": [
        ("message", ""), ("enter a", ""), ("leave a", ""), ("turn", "flush"),
    ],
    "a flush called off: the next turn takes the handshake": [
        ("message", ""), ("enter a", ""), ("enter b", ""), ("turn", "flush,in a"), ("message", ""),
        ("cancel", ""), ("turn", "in b"),
    ],
    "shutting down lets everyone in at once, for the gate to refuse": [
        ("message", ""), ("enter a", ""), ("enter b", ""), ("shutdown", "in a,in b"), ("turn", "flush"),
    ],
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(name: str) -> None:
    world = World()
    for step, expected in SCENARIOS[name]:
        assert world.step(step) == (expected.split(",") if expected else []), f"{name}: after {step!r}"
    assert len(world.lobby) == 0
    assert world.clock.getDelayedCalls() == []


def test_no_limit_takes_every_handshake_at_once() -> None:
    """--handshakes-per-turn 0: as before the lobby."""
    world = World(perTurn=0)
    assert world.step("message") == []
    assert world.step("enter a") == ["in a"]
    assert world.step("turn") == ["flush"]
    assert world.clock.getDelayedCalls() == []


def test_a_larger_share_a_turn() -> None:
    world = World(perTurn=2)
    for step in ("message", "enter a", "enter b", "enter c"):
        assert world.step(step) == []
    assert world.step("turn") == ["flush", "in a", "in b"]
    assert world.step("turn") == ["in c"]
    assert world.clock.getDelayedCalls() == []


def test_each_is_told_how_long_it_waited() -> None:
    world = World()
    world.step("enter now")
    world.step("message")
    world.step("enter a")
    world.step("enter b")
    assert world.step("wait 1.5") == ["flush", "in a"]  # a turn that came 1.5 s late
    assert world.step("wait 2") == ["in b"]
    assert world.waited == {"now": 0.0, "a": 1.5, "b": 3.5}


def test_one_that_raises_is_logged_and_the_queue_goes_on() -> None:
    world = World(perTurn=2)
    world.step("message")

    def broken(waited: float) -> None:
        raise RuntimeError("a handshake that fails")

    world.lobby.enter(broken)
    world.step("enter b")
    world.step("enter c")
    with capturedLogs() as events:
        assert world.step("turn") == ["flush", "in b"]
    assert [e["log_failure"].value.args for e in events if "log_failure" in e] == [("a handshake that fails",)]
    assert world.step("turn") == ["in c"]
    assert world.clock.getDelayedCalls() == []


def test_those_out_of_patience_go_in_beyond_the_share() -> None:
    """A backlog that queued its patience (here while the process stalled) goes in in one turn
    when handshakes cost nothing; the fresh ones behind it, one a turn."""
    world = World(patience=1)
    for step in ("message", "enter a", "enter b", "stall 1.5", "enter c", "enter d"):
        assert world.step(step) == []
    assert world.step("turn") == ["flush", "in a", "in b"]
    assert world.step("turn") == ["in c"]
    assert world.step("turn") == ["in d"]
    assert world.waited == {"a": 1.5, "b": 1.5, "c": 0.0, "d": 0.0}
    assert world.clock.getDelayedCalls() == []


def test_one_that_queued_exactly_its_patience_goes_in_beyond_the_share() -> None:
    world = World(patience=1)
    for step in ("message", "enter a", "enter b", "enter c"):
        world.step(step)
    assert world.step("wait 0.5") == ["flush", "in a"]
    world.step("message")
    assert world.step("wait 0.5") == ["flush", "in b", "in c"]


def test_leaving_says_how_long_it_waited() -> None:
    world = World()
    world.step("message")
    world.step("enter a")
    world.step("stall 2")
    assert world.lobby.leave(world.admit("a")) == 2
    assert world.lobby.leave(world.admit("a")) == 0  # (not there any more)
    assert world.step("turn") == ["flush"]


def test_flushed_with_nobody_waiting_schedules_nothing() -> None:
    world = World()
    world.step("message")
    assert world.step("turn") == ["flush"]
    assert world.clock.getDelayedCalls() == []


def test_a_saturated_hub_lets_each_in_after_its_patience() -> None:
    """A flush due at every turn, and turns that come late (a process with no time to spare):
    one a turn would leave newcomers queued ever longer; each goes in once it has waited its
    patience, the fresh ones still one a turn."""
    world = World(patience=1)
    for step in ("message", "enter a", "enter b", "enter c", "enter d"):
        assert world.step(step) == []
    assert world.step("wait 0.6") == ["flush", "in a"]
    world.step("message")
    world.step("enter e")
    assert world.step("wait 0.6") == ["flush", "in b", "in c", "in d"]
    world.step("message")
    world.step("enter f")
    world.step("enter g")
    assert world.step("wait 0.6") == ["flush", "in e"]
    world.step("message")
    assert world.step("wait 0.6") == ["flush", "in f", "in g"]
    assert world.waited == pytest.approx({"a": 0.6, "b": 1.2, "c": 1.2, "d": 1.2, "e": 1.2, "f": 1.2, "g": 1.2})
    assert world.clock.getDelayedCalls() == []


def test_a_flood_past_its_patience_takes_a_fifth_of_the_process_a_turn_not_all_of_it() -> None:
    """5000 handshakes at once, each costing 1 ms, while every turn has 6 ms of chat to do:
    one a turn until they have waited their patience, then beyond the share only what fits in
    a quarter of the turn's other time (1.5 ms: one more); never the whole backlog in one turn."""
    world = World(patience=1, cost=0.001)
    world.step("message")
    for i in range(5000):
        world.step(f"enter {i}")
    perTurn = []
    while len(world.lobby):
        world.step("message")
        perTurn.append(len(world.step("wait 0.006")) - 1)  # (the flush)
    assert perTurn[0] == 1 and max(perTurn) == 2
    assert sum(perTurn) == 5000 and len(world.waited) == 5000


def test_the_time_before_a_queue_began_is_not_spare_time() -> None:
    """A quiet minute, then a crowd while the process is busy 40 ms: the first turn after may
    spend a quarter of those 40 ms on them (10), not of the minute."""
    world = World(patience=0, cost=0.001)
    world.step("stall 60")
    world.step("message")
    for i in range(100):
        world.step(f"enter {i}")
    world.step("stall 0.04")
    assert 9 <= len(world.step("turn")) - 1 <= 11


def test_a_stall_gives_at_most_a_slice() -> None:
    """However long the turn before (a stall, the wall clock stepping forward), a turn takes
    at most SLICE of handshakes beyond its share."""
    world = World(patience=1, cost=0.001)
    world.step("message")
    for i in range(1000):
        world.step(f"enter {i}")
    world.step("stall 30")
    assert 1 + 24 <= len(world.step("turn")) - 1 <= 1 + 26


def test_a_turn_with_no_flush_takes_those_out_of_patience_too() -> None:
    world = World(patience=1, cost=0.001)
    for step in ("message", "enter a", "enter b", "enter c", "enter d"):
        world.step(step)
    assert world.step("wait 0.5") == ["flush", "in a"]
    assert world.step("wait 0.6") == ["in b", "in c", "in d"]  # b its share; c, d out of patience
