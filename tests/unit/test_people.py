"""People, plain (txchat.people), and presence telling them on a task.Clock (txchat.presence)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.task import Clock

from txchat.people import RoomPeople, page, stable, validIdentity
from txchat.presence import Presence
from txchat.rooms import Room, RoomTable

LIMIT = 3


def apply(people: RoomPeople, steps: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Run steps on a room's people; the lines its members were told, in order, decoded."""
    told: list[dict[str, Any]] = []
    for step in steps:
        kind, *args = step
        if kind == "add":
            people.add(args[0], args[1] if len(args) > 1 else args[0].upper(), args[2] if len(args) > 2 else 0)
        elif kind == "remove":
            people.remove(args[0], args[1] if len(args) > 1 else 0)
        elif kind == "changes":
            assert people.heardChanges(*args)
        elif kind == "missed":
            assert not people.heardChanges(*args)
        elif kind == "all":
            people.heardAll(*args)
        elif kind == "gone":
            people.gone(args[0])
        elif kind == "join":
            told.append(json.loads(people.membersLine(LIMIT)))
        elif kind == "tell":
            told.extend(json.loads(line) for line in people.news(args[0] if args else 0, False, LIMIT))
    return told


def present(*pairs: str) -> list[dict[str, str]]:
    return [{"from": f, "name": f.upper()} for f in pairs]


CASES: list[tuple[str, list[tuple[Any, ...]], list[dict[str, Any]], int]] = [
    ("three tabs are one person",
     [("add", "u:a", "A", 1), ("add", "u:a", "A", 2), ("add", "u:a", "A", 3), ("tell",)],
     [{"type": "presence", "online": 0, "users": 1, "joined": [{"from": "u:a", "name": "A"}], "left": []}], 1),
    ("a person leaves with the last tab",
     [("add", "u:a", "U:A", 1), ("add", "u:a", "U:A", 2), ("tell",), ("remove", "u:a", 1), ("tell",),
      ("remove", "u:a", 2), ("tell",)],
     [{"type": "presence", "online": 0, "users": 1, "joined": present("u:a"), "left": []},
      {"type": "presence", "online": 0, "users": 0, "joined": [], "left": ["u:a"]}], 0),
    ("in and out between two lines: nothing to tell",
     [("add", "u:a"), ("tell",), ("add", "u:b"), ("remove", "u:b"), ("tell",)],
     [{"type": "presence", "online": 0, "users": 1, "joined": present("u:a"), "left": []}], 1),
    ("a joiner between two lines: the next names everyone touched",
     [("add", "u:a"), ("tell",), ("add", "u:b"), ("join",), ("remove", "u:b"), ("tell",)],
     [{"type": "presence", "online": 0, "users": 1, "joined": present("u:a"), "left": []},
      {"type": "members", "members": present("u:a", "u:b"), "users": 2},
      {"type": "presence", "online": 0, "users": 1, "joined": [], "left": ["u:b"]}], 1),
    ("another process's people count, once per identity",
     [("add", "u:a"), ("changes", "p", 1, {"u:a": "U:A", "u:b": "U:B"}, []), ("tell",)],
     [{"type": "presence", "online": 0, "users": 2, "joined": present("u:a", "u:b"), "left": []}], 2),
    ("a change that does not follow the last is refused: read them all",
     [("missed", "p", 2, {"u:a": "U:A"}, []), ("changes", "p", 1, {"u:b": "U:B"}, []),
      ("missed", "p", 3, {"u:c": "U:C"}, []),
      ("all", "p", 3, {"u:b": "U:B", "u:c": "U:C"}), ("changes", "p", 3, {"u:x": "U:X"}, []), ("tell",)],
     [{"type": "presence", "online": 0, "users": 2, "joined": present("u:b", "u:c"), "left": []}], 2),
    ("an older whole set than what is known is not news",
     [("changes", "p", 1, {"u:b": "U:B"}, []), ("changes", "p", 2, {}, ["u:b"]), ("all", "p", 1, {"u:b": "U:B"}),
      ("tell",)],
     [{"type": "presence", "online": 0, "users": 0, "joined": [], "left": []}], 0),
    ("a process that goes takes its people, not those also here",
     [("add", "u:a"), ("changes", "p", 1, {"u:a": "U:A", "u:b": "U:B"}, []), ("tell",), ("gone", "p"), ("tell",)],
     [{"type": "presence", "online": 0, "users": 2, "joined": present("u:a", "u:b"), "left": []},
      {"type": "presence", "online": 0, "users": 1, "joined": [], "left": ["u:b"]}], 1),
    ("above the limit: counts only, then a list again below it",
     [*[("add", f"u:{c}") for c in "abcd"], ("tell",), ("add", "u:e"), ("tell",), ("remove", "u:e"),
      ("remove", "u:d"), ("tell",)],
     [{"type": "members", "users": 4}, {"type": "presence", "online": 0, "users": 4},
      {"type": "presence", "online": 0, "users": 5},
      {"type": "members", "members": present("u:a", "u:b", "u:c"), "users": 3},
      {"type": "presence", "online": 0, "users": 3, "joined": [], "left": []}], 3),
    ("a joiner given counts where the others had a list: everyone gets the list again",
     [("add", "u:a"), ("tell",), *[("add", f"u:{c}") for c in "bcd"], ("join",), ("remove", "u:d"), ("tell",)],
     [{"type": "presence", "online": 0, "users": 1, "joined": present("u:a"), "left": []},
      {"type": "members", "users": 4},
      {"type": "members", "members": present("u:a", "u:b", "u:c"), "users": 3},
      {"type": "presence", "online": 0, "users": 3, "joined": [], "left": []}], 3),
]


@pytest.mark.parametrize("steps, told, users", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_people(steps: list[tuple[Any, ...]], told: list[dict[str, Any]], users: int) -> None:
    people = RoomPeople()
    got = apply(people, steps)
    for line in got:  # (the order of identities within a line is not part of the contract)
        if "members" in line:
            line["members"].sort(key=lambda m: m["from"])
    assert got == told
    assert people.users == users


def test_what_the_others_are_told_is_numbered_changes_and_the_whole_set() -> None:
    people = RoomPeople()
    people.add("u:a", "A", 1)
    people.add("u:b", "B", 2)
    people.add("u:b", "B", 3)
    assert people.saying and people.changes() == (1, {"u:a": "A", "u:b": "B"}, [])
    people.remove("u:b", 2)
    assert not people.saying  # another tab of u:b is still here
    people.remove("u:b", 3)
    people.add("u:c", "C", 4)
    people.remove("u:c", 4)  # came and went between two says: not said at all
    assert people.changes() == (2, {}, ["u:b"])
    assert people.everyone() == {"u:a": "A"}
    people.remove("u:a", 1)
    people.add("u:a", "A", 5)
    assert not people.saying and people.changes() == (2, {}, [])  # back as said: nothing to say
    people.remove("u:a", 5)
    people.add("u:a", "A", 6)
    people.remove("u:a", 6)  # said present, now gone (however it came and went meanwhile)
    assert people.saying and people.changes() == (3, {}, ["u:a"])


@pytest.mark.parametrize("identity, ok", [
    ("u:ann", True), ("a:client-1", True), ("c:0af3", True), ("ann", False), ("", False), ("u:", False),
    ("uu:x", False), ("u:\x01", False), ("u:" + "x" * 257, False),
])
def test_valid_identity(identity: str, ok: bool) -> None:
    assert validIdentity(identity) is ok


def test_only_signed_and_client_ids_are_stable() -> None:
    assert [stable(i) for i in ("u:x", "a:x", "c:x")] == [True, True, False]


def test_pages_are_by_identity_after_the_last() -> None:
    everyone = [("u:c", "C"), ("u:a", "A"), ("u:b", "B")]
    assert page(everyone, None, 2) == ([("u:a", "A"), ("u:b", "B")], True)
    assert page(everyone, "u:b", 2) == ([("u:c", "C")], False)
    assert page(everyone, "u:bb", 5) == ([("u:c", "C")], False)  # (one who left meanwhile)


class World:
    """Presence over real rooms on a Clock, with people; what v1 members are told is kept."""

    def __init__(self, limit: int = 200) -> None:
        self.clock = Clock()
        self.rooms = RoomTable(0, lambda name: Room(name, "e", 10, lambda payload: payload, 0))
        self.told: list[tuple[float, dict[str, Any]]] = []
        self.presence = Presence(self.clock, self.rooms, lambda room, count: None, self.tell, False, 5, 20,
                                 membersLimit=limit)
        room, _ = self.rooms.open("r")
        assert room is not None
        self.room = room

    def tell(self, room: Room, line: bytes) -> None:
        self.told.append((self.clock.seconds(), json.loads(line)))

    def join(self, identity: str, connection: object) -> None:
        self.room.v1Members.add(connection, lambda data: None)
        self.room.presence.people.add(identity, identity, connection)
        self.presence.changed(self.room)

    def leave(self, identity: str, connection: object) -> None:
        self.room.v1Members.remove(connection)
        self.room.presence.people.remove(identity, connection)
        self.presence.changed(self.room)


def test_a_storm_costs_a_line_a_second_and_its_last_state_arrives() -> None:
    world = World(limit=1000)
    connections = [object() for _ in range(500)]
    for i, connection in enumerate(connections):
        world.join(f"u:{i}", connection)
        world.clock.advance(0.002)  # 500 joins in a second
    for connection in connections[:100]:
        world.leave(f"u:{connections.index(connection)}", connection)
    world.clock.pump([0.01] * 200)
    assert [when for when, _ in world.told] == pytest.approx([0, 1, 2], abs=0.011)
    assert world.told[-1][1]["users"] == world.told[-1][1]["online"] == 400
    view: set[str] = set()
    for _, line in world.told:
        view = (view | {j["from"] for j in line["joined"]}) - set(line["left"])
    assert view == {f"u:{i}" for i in range(100, 500)}
    world.clock.advance(10)
    assert len(world.told) == 3 and not world.clock.getDelayedCalls()


def test_people_who_come_and_go_unsaid_leave_nothing_behind() -> None:
    people = RoomPeople()
    for i in range(2000):
        people.add(f"c:{i:012x}", "", i)
        people.remove(f"c:{i:012x}", i)
    people.add("u:ann", "Ann", "tab")
    assert len(people._unsaid) == 1 and people.users == 1  # noqa: SLF001 - what a long-lived room keeps
