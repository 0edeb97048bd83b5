"""Read positions, plain: never backwards within an epoch, in memory or through a chat log."""

from __future__ import annotations

import pytest

from txchat.chatlog import Head, LogError
from txchat.reads import ReadPositions, later


@pytest.mark.parametrize("stored, position, kept", [
    (None, Head("e", 3), Head("e", 3)),
    (Head("e", 3), Head("e", 5), Head("e", 5)),
    (Head("e", 5), Head("e", 3), Head("e", 5)),
    (Head("e", 5), Head("e", 5), Head("e", 5)),
    (Head("old", 9), Head("new", 1), Head("new", 1)),  # the room started over
])
def test_later(stored: Head | None, position: Head, kept: Head) -> None:
    assert later(stored, position) == kept


def test_in_memory_per_identity_and_room() -> None:
    reads = ReadPositions()
    assert reads.get("u:a", "r") is None
    assert reads.set("u:a", "r", Head("e", 4)) == Head("e", 4)
    assert reads.set("u:a", "r", Head("e", 2)) == Head("e", 4)
    assert reads.get("u:a", "s") is None and reads.get("u:b", "r") is None
    assert reads.heard("u:a", "r", Head("e", 3)) == Head("e", 4)
    assert reads.heard("u:a", "r", Head("e", 6)) == Head("e", 6)


class Log:
    """The two calls of a chat log that read positions use (txchat.chatlog.ChatLog), kept in a
    dict; C{broken} makes them fail as a full disk would."""

    def __init__(self) -> None:
        self.positions: dict[tuple[str, str], Head] = {}
        self.broken = False

    def read(self, identity: str, room: str) -> Head | None:
        if self.broken:
            raise LogError("disk full")
        return self.positions.get((identity, room))

    def setRead(self, identity: str, room: str, position: Head) -> Head:
        if self.broken:
            raise LogError("disk full")
        kept = self.positions[(identity, room)] = later(self.positions.get((identity, room)), position)
        return kept


def test_through_the_log_which_outlives_the_process() -> None:
    log = Log()
    first = ReadPositions(log)  # type: ignore[arg-type]
    first.set("u:a", "r", Head("e", 7))
    again = ReadPositions(log)  # type: ignore[arg-type]  # (a restart)
    assert again.get("u:a", "r") == Head("e", 7)
    assert again.set("u:a", "r", Head("e", 5)) == Head("e", 7)
    log.broken = True
    assert again.set("u:a", "r", Head("e", 8)) == Head("e", 8)  # kept here meanwhile
    assert again.get("u:a", "r") == Head("e", 8)
