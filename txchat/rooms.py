"""Rooms: who is in each here, and which rooms to forget.

Plain code with no network: the hub passes the time in and acts on what these return. What a
room's members have been sent of its numbered stream is the room's L{RoomStream}; its kept
messages are the broker's.

A room has one order. Its messages go out through two fanouts, one per protocol: the plain
protocol's members get the bare text (line breaks as spaces), txchat.v1 and v2 members a JSON
line; each is encoded once per message and framed once per flush, whatever the number of
members. A v2 member is a v1 member with lines of its own besides (L{tellOne}, L{tellOthers}).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence


from txchat import wire
from txchat.fanout import Fanout
from txchat.presence import RoomPresence
from txchat.stream import Delivery, RoomStream, joinLines

__all__ = ["Delivery", "Room", "RoomTable"]


class Room:
    """A room as this process holds it: its members (two fanouts, one per protocol), its
    stream (L{RoomStream}) and the other processes' member counts."""

    def __init__(
        self, name: str, epoch: str, sendQueue: int, frame: Callable[[bytes], bytes], now: int,
        maxMessageSize: int = 512, queued: Callable[[Room], None] = lambda room: None,
    ) -> None:
        """
        @param queued: called when a fanout's batch has its first message (a flush is due).
        """
        self.name = name
        self.maxMessageSize = maxMessageSize
        self.plainMembers: Fanout[Any] = Fanout(sendQueue, frame)
        self.v1Members: Fanout[Any] = Fanout(sendQueue, frame)
        self.stream = RoomStream(epoch, self)
        self._queued = queued
        self.lastMessage = now  # when (ms) the newest numbered message was sent, or the room was made
        self.reserved = 0  # handshakes admitted here and not yet open
        self.watched = False  # the broker delivers this room's messages here
        self.presence = RoomPresence()

    def __len__(self) -> int:
        """Members connected to this process."""
        return len(self.plainMembers) + len(self.v1Members)

    @property
    def epoch(self) -> str:
        return self.stream.epoch

    @property
    def seq(self) -> int:
        return self.stream.seq

    @property
    def online(self) -> int:
        return len(self) + self.presence.elsewhere

    @property
    def users(self) -> int:
        """Distinct identities in the room over every process (SPEC §18)."""
        return self.presence.people.users

    @property
    def occupied(self) -> bool:
        stream = self.stream
        return len(self) + self.reserved + stream.reads + len(stream.waiting) > 0

    def fanout(self, v1: bool) -> Fanout[Any]:
        return self.v1Members if v1 else self.plainMembers

    # -- the stream's outlet ----------------------------------------------------------------

    def send(self, message: Delivery) -> None:
        plain, v1 = self.plainMembers, self.v1Members
        started = plain.queue(wire.plainText(message.text)) if plain else False
        if v1 and v1.queue(message.line) or started:
            self._queued(self)

    def tell(self, epoch: str, seq: int) -> None:
        if self.v1Members and self.v1Members.queue(
                wire.welcome(self.name, epoch, seq, self.online, self.maxMessageSize, False, {"users": self.users})):
            self._queued(self)

    def say(self, line: bytes) -> None:
        """Queue a line for the v1 members here (presence)."""
        if self.v1Members and self.v1Members.queue(line):
            self._queued(self)

    def sayWithNext(self, line: bytes) -> bool:
        """Queue a line for the v1 members here to leave with the next flush; whether there
        is anyone to tell (then the caller makes sure a flush comes)."""
        if not self.v1Members:
            return False
        self.v1Members.queueToWait(line)
        return True

    def tellOne(self, member: Any, line: bytes) -> None:
        """Queue a line for one v1/v2 member (a v2 answer): after the batch of its flush, or
        after its welcome when it has not joined yet."""
        self.v1Members.queueTo(member, line)
        self._queued(self)

    def tellOthers(self, sender: Any, line: bytes) -> None:
        """Queue a line for every v2 member here but C{sender} (typing)."""
        v1 = self.v1Members
        told = False
        for member in v1:
            if member is not sender and member.v2:
                v1.queueTo(member, line)
                told = True
        if told:
            self._queued(self)

    def flush(self) -> list[Any]:
        """Send both batches; return the members dropped for a full backlog."""
        return self.plainMembers.flush() + self.v1Members.flush()

    def joinLines(
        self, since: tuple[str, int] | None, kept: Sequence[Delivery], history: int, read: str | None = None,
    ) -> list[bytes]:
        """@param read: the joiner's read position (C{EPOCH:SEQ}), where known (SPEC §18)."""
        extra: dict[str, Any] = {"users": self.users}
        if read is not None:
            extra["read"] = read
        return joinLines(self.stream, self.name, self.online, self.maxMessageSize, since, kept, history, extra)


class RoomTable:
    """Every room this process knows, at most C{limit} (0: no limit)."""

    def __init__(self, limit: int, make: Callable[[str], Room]) -> None:
        self.limit = limit
        self._make = make
        self._rooms: dict[str, Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def open(self, name: str) -> tuple[Room | None, Room | None]:
        """(the room, a room forgotten to make space for it); (None, None) when every room
        has members and there is no space for another."""
        room = self._rooms.get(name)
        if room is not None:
            return room, None
        evicted = None
        if self.limit and len(self._rooms) >= self.limit:
            empty = [r for r in self._rooms.values() if not r.occupied]
            if not empty:
                return None, None
            evicted = min(empty, key=lambda r: r.lastMessage)
            self.forget(evicted)
        room = self._rooms[name] = self._make(name)
        return room, evicted

    def forget(self, room: Room) -> None:
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]
