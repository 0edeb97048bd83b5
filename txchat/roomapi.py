"""The rooms as the server API (L{txchat.api}) sees them: post into one, read one, list them.

Apart from the hub because it is another door into the same rooms: it goes through the hub's
public parts (its rooms, broker, metrics, clock) and asks nothing of the members.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail

from txchat.chatlog import Page
from txchat.stream import Delivery, Snapshot

if TYPE_CHECKING:
    from txchat.hub import ChatHub

# The "from" of the messages posted through the server API (SPEC §17): the application's own.
API_SENDER = "api"


@dataclass(frozen=True)
class RoomView:
    """A room for the server API: its stream's epoch (None: none yet), newest number, members
    on every process, and kept messages as txchat.v1 lines."""

    room: str
    epoch: str | None
    seq: int
    online: int
    lines: list[bytes]


class RoomsFull(Exception):
    """Every room has members and --max-rooms allows no more."""


class BrokerDown(Exception):
    """Redis, which keeps the rooms, cannot be reached."""


class RoomApi:
    """The server API's calls, answered from the hub's rooms and broker."""

    def __init__(self, hub: ChatHub) -> None:
        self.hub = hub

    def post(self, roomName: str, text: bytes, name: str) -> Deferred[tuple[str, int] | None]:
        """Accept a normalised message from the application's backend, as from a member of the
        room; fires with its (epoch, number), or None when it went out unnumbered (Redis away)."""
        hub = self.hub
        hub.metrics.messagesIn.inc()
        delivery = Delivery(roomName, text, name, int(hub.clock.seconds() * 1000), sender=API_SENDER)
        # The room counts against --max-rooms like any other, while the broker keeps it here.
        room = hub.openRoom(roomName)
        if room is None:
            return fail(RoomsFull())
        posted = hub.broker.post(delivery)
        hub.settle(room)
        return posted

    def describe(self, roomName: str, since: int = 0) -> Deferred[RoomView]:
        """The room as its members see it, with its kept messages numbered after C{since};
        L{BrokerDown} while Redis, which keeps the rooms, is away."""
        room = self.hub.rooms.get(roomName)
        here = len(room) if room is not None else 0

        def view(snapshot: Snapshot | None) -> RoomView:
            if snapshot is None:
                raise BrokerDown()
            lines = [m.line for m in snapshot.history if m.seq is not None and m.seq > since]
            return RoomView(roomName, snapshot.epoch, snapshot.seq, here + sum(snapshot.others.values()), lines)

        return self.hub.broker.snapshot(roomName).addCallback(view)

    def history(self, roomName: str, before: tuple[str, int] | None, limit: int) -> Deferred[Page]:
        return self.hub.history(roomName, before, limit)

    # -- people and moderation (SPEC §18): the hub's roster answers --------------------------

    def members(self, roomName: str) -> Deferred[list[tuple[str, str]]]:
        return self.hub.roster.members(roomName)

    def disconnect(self, sub: str) -> Deferred[int | None]:
        return self.hub.roster.disconnect(sub)

    def ban(self, roomName: str, sub: str, seconds: int) -> Deferred[int]:
        return self.hub.roster.ban(roomName, sub, seconds)

    def lift(self, roomName: str, sub: str) -> Deferred[bool]:
        return self.hub.roster.lift(roomName, sub)

    def delete(self, roomName: str, epoch: str, seq: int) -> Deferred[bool]:
        return self.hub.roster.delete(roomName, epoch, seq)

    def known(self) -> list[tuple[str, int]]:
        """(room, online) for every room this process knows."""
        return sorted((room.name, room.online) for room in self.hub.rooms)
