"""Rooms: who is in each, what each has said (numbered and kept), and which rooms to forget.

Plain code with no network: the hub passes the time in and acts on what these return.

A room has one order. Its messages go out through two fanouts, one per protocol: the plain
protocol's members get the bare text, txchat.v1 members a JSON line; each is encoded once per
message and framed once per flush, whatever the number of members.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from twisted.internet.interfaces import IDelayedCall

from txchat import wire
from txchat.fanout import Fanout
from txchat.history import History
from txchat.presence import RoomPresence


@dataclass(frozen=True)
class Delivery:
    """A message as the broker hands it back: numbered by the broker, or not (seq None)."""

    room: str
    text: bytes  # normalised, UTF-8
    name: str
    time: int  # milliseconds since the Unix epoch, when accepted
    seq: int | None = None
    epoch: str | None = None


def newEpoch() -> str:
    return secrets.token_hex(6)


def _line(message: Delivery, seq: int | None) -> bytes:
    """The message's v1 line: encoded once, for every v1 member and the history."""
    return wire.message(seq, message.time, message.name, message.text.decode("utf-8"))


class Room:
    def __init__(
        self, name: str, epoch: str, history: int, sendQueue: int, frame: Callable[[bytes], bytes], now: float,
        maxMessageSize: int = 512,
    ) -> None:
        self.name = name
        self.epoch = epoch
        self.maxMessageSize = maxMessageSize
        self.seq = 0
        # Whether the members here follow the broker's stream (Redis's epoch), not one this
        # process began on its own (one process, or a room made while Redis was away).
        self.fromBroker = False
        self.plain: Fanout[Any] = Fanout(sendQueue, frame)
        self.v1: Fanout[Any] = Fanout(sendQueue, frame)
        self.history = History(history)
        self.lastMessage = now  # when the newest kept message came, or the room was made
        self.reserved = 0  # handshakes admitted here and not yet open
        self.watched = False  # the broker delivers this room's messages here
        self.joining: list[Any] = []  # v1 members waiting for the broker's snapshot
        self.buffer: list[Delivery] = []  # what was delivered meanwhile
        # While this process catches up with what it missed during a Redis outage: what
        # arrives live, to deliver after that (None: not catching up).
        self.held: list[Delivery] | None = None
        self.waiting: list[Any] = []  # v1 members whose join waits for that
        self.presence = RoomPresence()
        self.expiryCall: IDelayedCall | None = None

    def __len__(self) -> int:
        """Members connected to this process."""
        return len(self.plain) + len(self.v1)

    @property
    def online(self) -> int:
        return len(self) + self.presence.elsewhere

    @property
    def occupied(self) -> bool:
        return len(self) + self.reserved + len(self.joining) + len(self.waiting) > 0

    def fanout(self, v1: bool) -> Fanout[Any]:
        return self.v1 if v1 else self.plain

    def publish(self, delivery: Delivery, numberHere: bool, now: float) -> bool:
        """Queue a message for the next flush, numbered here when C{numberHere} (one process),
        as the broker numbered it otherwise; True when the flush needs scheduling."""
        seq = delivery.seq
        started = False
        if numberHere:
            self.seq += 1
            seq = self.seq
        elif seq is not None:
            if delivery.epoch is not None and delivery.epoch != self.epoch:
                started = self._startedOver(delivery.epoch, seq)
            self.seq = seq
        line = None
        if self.v1 or (seq is not None and self.history.limit):
            line = _line(delivery, seq)
        if seq is not None and self.history.limit:
            assert line is not None
            self.history.append(seq, line)
            self.lastMessage = now
        started = (self.plain.publish(delivery.text) if self.plain else False) or started
        if line is not None and self.v1:
            started = self.v1.publish(line) or started
        return started

    def _startedOver(self, epoch: str, seq: int) -> bool:
        """The broker's stream for this room has another epoch than the room here: Redis lost
        its data, or the room was made here while Redis was away (its epoch was this process's
        own). The old history goes, and v1 members are told with a new welcome before the
        stream's first message here. (A room made during an outage whose members were not told
        was found by the fault runs: they took the new stream's numbers for the old epoch's.)"""
        self.history.clear()
        told = self._tell(epoch, seq - 1)
        self.epoch, self.fromBroker = epoch, True
        return told

    def gap(self, seq: int) -> bool:
        """Messages up to C{seq} were missed and are no longer kept: the room's numbers go on
        from there, and v1 members are told with a welcome that does not claim recovery;
        True when the flush needs scheduling."""
        self.seq = seq
        self.history.clear()
        return self._tell(self.epoch, seq)

    def adopt(self, epoch: str | None, seq: int, kept: list[Delivery], since: list[Delivery]) -> bool:
        """Take the broker's view of the room: its epoch, numbers and history (C{kept}), then
        what was delivered since the subscription began (C{since}) and is newer. If that is
        another stream than the v1 members here know, they are told with a welcome; True
        when the flush needs scheduling."""
        if epoch is None:
            return False  # no stream in the broker yet: the first message will start one
        told = self._tell(epoch, seq) if epoch != self.epoch else False
        self.epoch, self.seq, self.fromBroker = epoch, seq, True
        self.history.clear()
        newer = [m for m in since if m.epoch == epoch and m.seq is not None and m.seq > seq]
        for message in [*kept, *newer]:
            if message.seq is not None:
                self.seq = max(self.seq, message.seq)
                if self.history.limit:
                    self.history.append(message.seq, _line(message, message.seq))
        return told

    def _tell(self, epoch: str, seq: int) -> bool:
        """Tell the v1 members here, with a welcome that does not claim recovery, that their
        stream goes on as C{epoch} after C{seq}; True when the flush needs scheduling."""
        if not self.v1:
            return False
        return self.v1.publish(wire.welcome(self.name, epoch, seq, self.online, self.maxMessageSize, False))

    def flush(self) -> list[Any]:
        """Send both batches; return the members dropped for a full backlog."""
        return self.plain.flush() + self.v1.flush()

    def joinLines(self, since: tuple[str, int] | None) -> list[bytes]:
        """What a v1 member gets first: the welcome line, then the kept history, or with
        C{since} exactly what it missed, when that is still kept."""
        if since is not None:
            epoch, seq = since
            missed = self.history.after(seq, self.seq) if epoch == self.epoch else None
            if missed is not None:
                welcome = wire.welcome(self.name, self.epoch, self.seq, self.online, self.maxMessageSize, True)
                return [welcome, *missed]
        welcome = wire.welcome(
            self.name, self.epoch, self.seq, self.online, self.maxMessageSize, None if since is None else False
        )
        return [welcome, *self.history.lines()]


class Rooms:
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
