"""Presence, plain, on a task.Clock: real rooms, the broker's and the members' ends recorded."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock

from txchat import wire
from txchat.config import Config
from txchat.presence import CHECK_INTERVAL, PRESENCE_INTERVAL, Presence
from txchat.rooms import Room, RoomTable


REFRESH, STALE = 10.0, 25.0


class World:
    """A Presence over real rooms; what it tells v1 members and the other processes is kept."""

    def __init__(self, shared: bool = True) -> None:
        self.clock = Clock()
        self.rooms = RoomTable(0, lambda name: Room(name, "e", 10, lambda payload: payload, int(self.clock.seconds() * 1000)))
        self.told: list[tuple[str, float, int]] = []  # (room, when, online) as v1 members heard it
        self.published: list[tuple[str, float, int]] = []  # (room, when, count) as the broker heard it
        self.presence = Presence(self.clock, self.rooms, self.setOnline, self.tell, shared, REFRESH, STALE)

    def setOnline(self, room: str, count: int) -> None:
        self.published.append((room, self.clock.seconds(), count))

    def tell(self, room: Room, line: bytes) -> None:
        assert line.startswith(b'{"type":"presence"')
        self.told.append((room.name, self.clock.seconds(), json.loads(line)["online"]))

    def room(self, name: str = "r", watched: bool = True) -> Room:
        room, _ = self.rooms.open(name)
        assert room is not None
        room.watched = watched
        return room

    def join(self, room: Room, v1: bool = True) -> object:
        member = object()
        room.fanout(v1).add(member, lambda data: None)
        self.presence.changed(room)
        return member

    def leave(self, room: Room, member: object) -> None:
        room.plainMembers.remove(member)
        room.v1Members.remove(member)
        self.presence.changed(room)


def test_at_most_one_line_a_room_a_second_and_the_last_change_arrives() -> None:
    world = World()
    room, other = world.room("r"), world.room("s")
    world.join(room)
    assert world.told == [("r", 0, 1)], "the first change at once"
    members = [world.join(room, v1=False) for _ in range(5)]  # a storm of joins
    world.join(other)  # another room has its own second
    world.clock.advance(0.5)
    world.leave(room, members[0])
    assert world.told == [("r", 0, 1), ("s", 0, 1)]
    world.clock.advance(PRESENCE_INTERVAL - 0.5)
    assert world.told[-1] == ("r", 1, 5), "a second after the last line: the count as it is then"
    assert [p for p in world.published if p[0] == "r"] == [("r", 0, 1), ("r", 1, 5)]
    world.clock.advance(10)
    world.presence.changed(room)  # nothing changed: nothing said
    assert len(world.told) == 3 and len(world.published) == 3
    assert world.clock.getDelayedCalls() == []


def test_the_last_change_arrives_even_when_it_returns_to_what_was_said() -> None:
    world = World()
    room = world.room()
    world.join(room)
    member = world.join(room)
    world.leave(room, member)  # back to 1 within the second
    world.clock.advance(PRESENCE_INTERVAL)
    assert world.told == [("r", 0, 1)], "the members already know 1"
    assert world.clock.getDelayedCalls() == []


def test_other_processes_count_until_they_fall_silent() -> None:
    world = World()
    world.presence.start()
    room = world.room()
    world.join(room)
    world.presence.heard("r", "p2", 3)
    world.presence.heard("nowhere", "p2", 7)  # a room with nobody here: not kept
    assert world.rooms.get("nowhere") is None
    world.clock.advance(PRESENCE_INTERVAL)
    assert world.told == [("r", 0, 1), ("r", 1, 4)]
    world.clock.advance(REFRESH - PRESENCE_INTERVAL)  # this process says its count again
    assert world.published[-1] == ("r", REFRESH, 1)
    world.clock.advance(STALE - REFRESH)
    assert room.online == 4, "p2 said its count STALE seconds ago: it still counts"
    world.clock.advance(CHECK_INTERVAL)  # more than STALE since p2 spoke: it died
    assert room.online == 1 and world.told[-1] == ("r", STALE + CHECK_INTERVAL, 1)
    world.presence.heard("r", "p3", 2)
    world.presence.heard("r", "p3", 0)  # p3's members left
    world.clock.advance(PRESENCE_INTERVAL)
    assert room.online == 1 and world.told[-1] == ("r", STALE + CHECK_INTERVAL, 1)
    world.presence.stop()
    assert world.clock.getDelayedCalls() == []


def test_a_process_heard_again_keeps_counting() -> None:
    world = World()
    world.presence.start()
    room = world.room()
    world.join(room)
    for _ in range(5):
        world.presence.heard("r", "p2", 3)  # p2 refreshes as often as this process does
        world.clock.advance(REFRESH)
    assert room.online == 4
    world.presence.stop()


def walk(clock: Clock, until: float) -> None:
    """Advance to C{until}, each timer running at its own time (C{Clock.advance} runs every
    timer due within one step at the step's end)."""
    while (due := min((c.getTime() for c in clock.getDelayedCalls()), default=until)) < until:
        clock.advance(max(due - clock.seconds(), 0))
    clock.advance(until - clock.seconds())


@pytest.mark.parametrize("phase", [0.0, 0.001, 0.5, 0.999])
def test_a_dead_process_leaves_online_within_30s_of_its_death_at_worst(phase: float) -> None:
    """The worst case, walked on the clock with the shipped timing: the dead process's last say
    just before it died, the staleness check just missing it, and a presence line sent just
    before the count goes stale, so that the one saying it is gone waits its second."""
    config = Config()
    world = World()
    world.presence = Presence(world.clock, world.rooms, world.setOnline, world.tell, True,
                              config.presenceRefresh, config.presenceStale)
    world.presence.start()
    room = world.room()
    world.join(room)
    walk(world.clock, 100 + phase)  # the checks run on whole seconds: the say falls among them
    world.presence.heard("r", "dead", 3)  # its last say...
    death = world.clock.seconds()  # ...and its death, at once
    assert world.told[-1] == ("r", death, 4)
    walk(world.clock, death + config.presenceStale - 0.001)
    world.join(room, v1=False)  # a line just before the dead count goes stale
    assert world.told[-1] == ("r", world.clock.seconds(), 5)
    while world.told[-1][2] != 2:
        walk(world.clock, world.clock.seconds() + 0.001)
        assert world.clock.seconds() - death < 30, "SPEC §13: a dead process stops counting within 30 s"
    gone = world.clock.seconds() - death
    assert config.presenceStale < gone <= config.presenceStale + CHECK_INTERVAL + PRESENCE_INTERVAL + 1e-6
    world.presence.stop()
    assert world.clock.getDelayedCalls() == []


def test_an_older_say_than_the_one_known_changes_nothing() -> None:
    world = World()
    room = world.room()
    world.join(room)
    room.presence.heard("p2", 3, 10.0)
    room.presence.heard("p2", 5, 4.0)  # a joiner's read of Redis, overtaken on the channel
    assert room.presence.remote == {"p2": (3, 10.0)}


def test_a_room_not_shared_from_here_neither_hears_nor_says() -> None:
    world = World()
    room = world.room()
    world.join(room)
    world.presence.heard("r", "p2", 3)
    world.clock.advance(PRESENCE_INTERVAL)
    world.presence.unwatched(room)
    assert world.published[-1] == ("r", 1, 0), "the others stop counting this process's members"
    room.watched = False
    assert room.online == 1
    world.presence.heard("r", "p2", 3)
    assert room.online == 1, "an unwatched room does not hear the others"
    world.presence.unwatched(room)
    assert len([p for p in world.published if p[2] == 0]) == 1, "0 is said once"


def test_alone_a_room_of_plain_members_has_nobody_to_tell() -> None:
    world = World(shared=False)
    room = world.room(watched=False)
    world.join(room, v1=False)
    world.join(room, v1=False)
    assert world.told == world.published == [] and world.clock.getDelayedCalls() == []
    world.join(room)
    assert world.told == [("r", 0, 3)] and world.published == []


def test_a_forgotten_room_says_nothing_more() -> None:
    world = World()
    room = world.room()
    world.join(room)
    world.join(room)  # waits for the second
    world.presence.forget(room)
    assert world.clock.getDelayedCalls() == []
    world.clock.advance(PRESENCE_INTERVAL)
    assert world.told == [("r", 0, 1)]


def test_the_line_is_the_wire_presence_line() -> None:
    world = World()
    lines: list[bytes] = []
    world.presence = Presence(world.clock, world.rooms, world.setOnline, lambda room, line: lines.append(line),
                              True, REFRESH, STALE)
    world.join(world.room())
    assert lines == [wire.presence(1, 0, [], [])]  # (these members are not people: L{txchat.people})
