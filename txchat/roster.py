"""The hub's desk for people (SPEC §18): who joins and leaves, member lists, read positions,
and what the server API's moderation asks (disconnect, ban, delete).

Apart from the hub because it is one job with its own state (read positions, bans) and its
own traffic between processes; the hub calls it at a few points (join, leave, a v2 C{read}),
and the API calls it for moderation. With Redis (L{Cluster}), every process hears the others'
people on the rooms' channels, and the moderation that concerns every process on one control
channel: each process acts on its own connections.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Protocol, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txchat import wire
from txchat.bans import Bans
from txchat.chatlog import ChatLog, Head, LogError
from txchat.people import RoomPeople, stable
from txchat.reads import ReadPositions
from txchat.stream import Snapshot

if TYPE_CHECKING:
    from txchat.broker import Broker
    from txchat.config import Config
    from txchat.members import Member
    from txchat.presence import Presence
    from txchat.rooms import Room, RoomTable

_log = Logger()

# A signed user's C{sub} as the API takes it: printable, no more than this.
MAX_SUB = 256
_SUB = re.compile(r"[^\x00-\x1f\x7f]{1,%d}\Z" % MAX_SUB)


def validSub(sub: str) -> bool:
    return bool(_SUB.match(sub))


class Cluster(Protocol):
    """What the roster needs of Redis (L{txchat.redisbroker.RedisBroker}) to span processes."""

    process: str

    def when(self, state: str) -> Deferred[None]: ...

    def listenPeople(self, people: Callable[[str, str, int, dict[str, str], list[str]], None],
                     news: Callable[[str, list[Any]], None], control: Callable[[list[Any]], None]) -> None: ...

    def sayPeople(self, room: str, count: int, version: int, joined: dict[str, str], left: list[str],
                  everyone: dict[str, str] | None) -> None: ...

    def readPeople(self, room: str) -> Deferred[dict[str, tuple[int, dict[str, str]]] | None]: ...

    def tellRoom(self, room: str, news: list[Any]) -> None: ...

    def tellAll(self, control: list[Any]) -> Deferred[Any]: ...

    def setRead(self, identity: str, room: str, position: Head) -> Deferred[Head | None]: ...

    def readOf(self, identity: str, room: str) -> Deferred[Head | None]: ...

    def ban(self, room: str, sub: str, seconds: int) -> Deferred[Any]: ...

    def lift(self, room: str, sub: str) -> Deferred[bool]: ...

    def bans(self) -> Deferred[list[tuple[str, str, float]]]: ...


class Hub(Protocol):
    """What the roster needs of the hub (L{txchat.hub.ChatHub})."""

    clock: IReactorTime
    config: Config
    rooms: RoomTable
    presence: Presence[Room]
    broker: Broker

    def members(self) -> Iterator[Member]: ...


class Roster:
    """
    @param cluster: Redis, when several processes form the chat.
    @param log: the chat log, which keeps read positions durably.
    """

    def __init__(self, hub: Hub, cluster: Cluster | None, log: ChatLog | None) -> None:
        self.hub = hub
        self.cluster = cluster
        self.log = log
        self.reads = ReadPositions(log)
        self.bans = Bans(hub.clock)
        self._reading: set[str] = set()  # rooms whose people are being read from Redis

    @property
    def limit(self) -> int:
        return self.hub.config.membersLimit

    def start(self) -> None:
        if self.cluster is not None:
            self.cluster.listenPeople(self.heardPeople, self.heardNews, self.heardControl)
            self.cluster.when("up").addCallback(lambda _: self.loadBans())

    def reconnected(self) -> None:
        """Redis is back after an outage: what the other processes said meanwhile was not heard."""
        for room in self.hub.rooms:
            if room.watched:
                self.readPeople(room)
        self.loadBans()

    # -- joins and leaves ---------------------------------------------------------------------

    def joining(self, client: Member, room: Room) -> str | None:
        """The client joins the room's people; its read position there (C{EPOCH:SEQ}), if known."""
        room.presence.people.add(client.sender, client.displayName, cast(Hashable, client))
        if not stable(client.sender):
            return None
        position = self.reads.get(client.sender, room.name)
        return f"{position.epoch}:{position.seq}" if position is not None else None

    def membersLine(self, client: Member, room: Room) -> bytes | None:
        """A v2 joiner's member list, to follow its welcome."""
        return room.presence.people.membersLine(self.limit) if client.v2 else None

    def left(self, client: Member, room: Room) -> None:
        last = room.presence.people.remove(client.sender, cast(Hashable, client))
        if last and self.cluster is not None and self.log is None:
            self.reads.drop(client.sender, room.name)  # (a cache of what Redis keeps)

    def withRead(self, client: Member, roomName: str, snapshot: Deferred[Snapshot | None]) -> Deferred[Snapshot | None]:
        """The room's snapshot, fired once the client's read position is known too: in a
        cluster without a chat log it is Redis's, read alongside, before the welcome."""
        identity = client.sender
        if self.cluster is None or self.log is not None or not stable(identity) or self.reads.known(identity, roomName):
            return snapshot

        def loaded(position: Head | None) -> Deferred[Snapshot | None]:
            if position is not None:
                self.reads.heard(identity, roomName, position)
            return snapshot

        return self.cluster.readOf(identity, roomName).addErrback(lambda _: None).addCallback(loaded)

    # -- the other processes' people ------------------------------------------------------------

    def sayPeople(self, roomName: str, count: int, whole: bool) -> None:
        """For L{txchat.presence}: tell the others this process's count and people in a room."""
        if self.cluster is None:
            return
        room = self.hub.rooms.get(roomName)
        people = room.presence.people if room is not None else RoomPeople()
        joined: dict[str, str] = {}
        left: list[str] = []
        version = people.version
        if people.saying:
            version, joined, left = people.changes()
        everyone = (people.everyone() if count else {}) if whole else None
        self.cluster.sayPeople(roomName, count, version, joined, left, everyone)

    def heardPeople(self, roomName: str, process: str, version: int, joined: dict[str, str], left: list[str]) -> None:
        room = self.hub.rooms.get(roomName)
        if room is None or not room.watched:
            return
        if not room.presence.people.heardChanges(process, version, joined, left):
            self.readPeople(room)  # some were missed: read them all
        self.hub.presence.changed(room)

    def readPeople(self, room: Room) -> None:
        """Read every other process's people in the room from Redis (the room is new here,
        Redis came back, or some changes were missed)."""
        if self.cluster is None or room.name in self._reading:
            return
        self._reading.add(room.name)
        name = room.name

        def read(everyone: dict[str, tuple[int, dict[str, str]]] | None) -> None:
            self._reading.discard(name)
            if everyone is None or self.hub.rooms.get(name) is not room or not room.watched:
                return
            # (A process missing here may have come since the read: those that went leave by
            # their count, or by falling silent, L{txchat.presence}.)
            people = room.presence.people
            for process, (version, set_) in everyone.items():
                if process != self.cluster.process:  # type: ignore[union-attr]
                    people.heardAll(process, version, set_)
            self.hub.presence.changed(room)

        def failed(failure: Failure) -> None:
            self._reading.discard(name)

        self.cluster.readPeople(name).addCallbacks(read, failed)

    def heardNews(self, roomName: str, news: list[Any]) -> None:
        """Something another process (or Redis) said on a room's channel: a read position, a
        deleted message."""
        room = self.hub.rooms.get(roomName)
        if room is None:
            return
        try:
            if news[0] == "r" and news[1] != self._process:
                _, _, identity, epoch, seq = news
                before = self.reads.get(identity, roomName)
                kept = self.reads.heard(identity, roomName, Head(str(epoch), int(seq)))
                if kept != before:
                    self._readSync(room, identity, kept, None)
            elif news[0] == "x":
                _, epoch, seq = news
                room.say(wire.delete(str(epoch), int(seq)))
        except (ValueError, TypeError, IndexError):
            return

    @property
    def _process(self) -> str:
        return self.cluster.process if self.cluster is not None else ""

    def heardControl(self, control: list[Any]) -> None:
        try:
            kind, sub = control[0], str(control[1])
            if kind == "d":
                self._disconnectHere(sub)
            elif kind == "b":
                room, until = str(control[2]), float(control[3])
                self.bans.ban(room, sub, until / 1000)  # (the clock is the wall clock's, as Redis's times are)
                self._closeHere(sub, room)
            elif kind == "l":
                self.bans.lift(str(control[2]), sub)
        except (ValueError, TypeError, IndexError):
            return

    def loadBans(self) -> None:
        """Every ban Redis keeps, for this process's gate (at start, and when Redis is back)."""
        if self.cluster is None:
            return
        def loaded(bans: list[tuple[str, str, float]]) -> None:
            # Redis's set replaces this copy: a lift said while this process was cut off is
            # heard here too, and a ban said meanwhile closes its connections here.
            self.bans.replace({(room, sub): until / 1000 for room, sub, until in bans})
            for room, sub, _ in bans:
                self._closeHere(sub, room)

        self.cluster.bans().addCallbacks(loaded, lambda _: None)

    # -- read positions ------------------------------------------------------------------------

    def setRead(self, client: Member, epoch: str, seq: int) -> str | None:
        """A v2 client's C{read}: store it for a stable identity (never backwards) and tell the
        identity's other connections in the room. The refusal's reason (a bad request), or None."""
        room = client.room
        if room is None:
            return None
        if epoch != room.epoch:
            return "read: not the room's current epoch"
        if seq < 0 or seq > room.seq:
            return f"read: seq {seq} is ahead of the room's last message ({room.seq})"
        identity = client.sender
        if not stable(identity):
            return None  # a per-connection identity has nobody to share its position with
        before = self.reads.get(identity, room.name)
        kept = self.reads.set(identity, room.name, Head(epoch, seq))
        if kept == before:
            return None
        self._readSync(room, identity, kept, client)
        if self.cluster is not None:
            if self.log is None:
                self.cluster.setRead(identity, room.name, kept).addErrback(lambda _: None)
            self.cluster.tellRoom(room.name, ["r", self.cluster.process, identity, kept.epoch, kept.seq])
        return None

    def _readSync(self, room: Room, identity: str, position: Head, source: Member | None) -> None:
        """The identity's other JSON-speaking connections in the room hear of it, in order with
        what else they are sent (a seed client's stream is the gorilla chat's: never this)."""
        line = wire.read(position.epoch, position.seq)
        for connection in room.presence.people.connections(identity):
            if connection is not source and getattr(connection, "member", False) and getattr(connection, "v1", False):
                room.tellOne(connection, line)

    # -- moderation ---------------------------------------------------------------------------

    def disconnect(self, sub: str) -> Deferred[int | None]:
        """Close every connection of C{u:SUB} with 4003; how many here (None: told every process,
        which each closes its own)."""
        closed = self._disconnectHere(sub)
        if self.cluster is None:
            return succeed(closed)
        return self.cluster.tellAll(["d", sub]).addCallback(lambda _: None)

    def _disconnectHere(self, sub: str) -> int:
        return self._closeHere(sub, None, "disconnected by the server")

    def _closeHere(self, sub: str, roomName: str | None, reason: str = "banned from this room") -> int:
        identity = "u:" + sub
        gone = [c for c in self.hub.members()
                if c.sender == identity and c.member and (roomName is None or (c.room is not None and c.room.name == roomName))]
        for client in gone:
            client.leave(wire.CLOSE_MODERATED, reason)
        return len(gone)

    def ban(self, roomName: str, sub: str, seconds: int) -> Deferred[int]:
        """Refuse C{u:SUB}'s handshakes to the room for C{seconds}, and close their connections
        there; fires with how many were closed here."""
        self.bans.ban(roomName, sub, self.hub.clock.seconds() + seconds)
        closed = self._closeHere(sub, roomName)
        if self.cluster is None:
            return succeed(closed)
        until = _nowMs(self.hub) + seconds * 1000
        cluster = self.cluster

        def told(_: object) -> Deferred[int]:
            return cluster.tellAll(["b", sub, roomName, until]).addCallback(lambda _: closed)

        return cluster.ban(roomName, sub, seconds).addCallback(told)

    def lift(self, roomName: str, sub: str) -> Deferred[bool]:
        """Whether there was a ban to lift."""
        lifted = self.bans.lift(roomName, sub)
        if self.cluster is None:
            return succeed(lifted)
        cluster = self.cluster

        def told(there: bool) -> Deferred[bool]:
            return cluster.tellAll(["l", sub, roomName]).addCallback(lambda _: there or lifted)

        return cluster.lift(roomName, sub).addCallback(told)

    def banned(self, roomName: str, sub: str) -> bool:
        """For the gate."""
        return self.bans.banned(roomName, sub)

    def delete(self, roomName: str, epoch: str, seq: int) -> Deferred[bool]:
        """Remove a message from the log and the kept history, and tell the room's v1/v2
        members (over the room's channel in a cluster); whether it was there."""
        inLog = False
        if self.log is not None:
            try:
                inLog = self.log.delete(roomName, epoch, seq)
            except LogError as e:
                _log.warn("a message could not be deleted from the chat log: {error}", error=str(e))
        d = self.hub.broker.delete(roomName, epoch, seq)

        def deleted(kept: bool) -> bool:
            if (kept or inLog) and self.cluster is None:
                room = self.hub.rooms.get(roomName)
                if room is not None:
                    room.say(wire.delete(epoch, seq))
            elif inLog and self.cluster is not None:
                self.cluster.tellRoom(roomName, ["x", epoch, seq])  # (Redis's script told the room when it had it)
            return kept or inLog

        return d.addCallback(deleted)

    def members(self, roomName: str) -> Deferred[list[tuple[str, str]]]:
        """Everyone in the room, over every process (for the API)."""
        room = self.hub.rooms.get(roomName)
        here = room.presence.people.everyone() if room is not None else {}
        if self.cluster is None:
            return succeed(sorted(here.items()))

        def merged(everyone: dict[str, tuple[int, dict[str, str]]] | None) -> list[tuple[str, str]]:
            if everyone is None:
                raise ClusterDown()
            people: dict[str, str] = {}
            for process, (_, some) in everyone.items():
                if process != self._process:
                    people.update(some)
            people.update(here)
            return sorted(people.items())

        return self.cluster.readPeople(roomName).addCallback(merged)


class ClusterDown(Exception):
    """Redis, which knows the other processes' people, cannot be reached."""


def _nowMs(hub: Hub) -> int:
    return int(hub.clock.seconds() * 1000)

