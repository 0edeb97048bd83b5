"""The hub: the one WebSocketServerFactory that registers every chat client and broadcasts.

It knows nothing of HTTP: the web resource hands it connections, admitted by its L{Gate}, and
it sees them as L{Member}s. Broadcasting is batched: every message accepted while the reactor
is busy goes out in one flush, as soon as the reactor is free, framed once for all clients that
keep up (see L{txchat.fanout}).
"""

from __future__ import annotations

from time import perf_counter
from typing import Any, Callable, Iterator, Sequence, cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txchat import memory, wire
from txchat.autobahn_internals import framedText, protocolWithOptions, useClock
from txchat.broker import Broker, MemoryBroker, NotPublished
from txchat.chatlog import ChatLog, Page
from txchat.config import Config
from txchat.gate import Claim, Gate
from txchat.limits import ConnectionLimits, RateLimits, TrustedProxies
from txchat.lobby import PATIENCE, Lobby
from txchat.members import Member, Resuming
from txchat.metrics import Metrics
from txchat.origin import OriginPolicy
from txchat.presence import Presence
from txchat.rooms import Room, RoomTable
from txchat.roster import Cluster, Roster
from txchat.stream import LOCAL, SYNCING, Delivery, Snapshot, newEpoch
from txchat.tokens import tokenChecker
from txchat.wire import CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TRY_AGAIN

_log = Logger()

# How many forgotten rooms' streams (epoch, number) are remembered, for a room made again while
# the broker is away.
FOLLOWED = 10000
# In a room that had a message this recently (seconds), a presence line waits, at most as long,
# for the room's next messages, and leaves with them: one frame to each member, not two.
RIDE = 0.5


class ChatHub(WebSocketServerFactory):
    """The registering hub: it holds the gate and the rooms. The protocol it builds is bound
    where both are known (L{txchat.factory.ChatFactory}); it sees its members as L{Member}s."""

    protocol: type[WebSocketServerProtocol]

    def __init__(
        self, config: Config, reactor: IReactorTime, broker: Broker | None = None,
        giveBack: Callable[[], None] = lambda: None, log: ChatLog | None = None,
        freeze: Callable[[], None] = lambda: None,
    ) -> None:
        """
        @param giveBack: called after rooms have expired, or connections have gone, to return
            their memory to the system (L{txchat.memory.giveBack}), at most every
            C{memory.INTERVAL} seconds.
        @param freeze: called when connections that may live long have come, to spare the
            collector's passes walking them (L{txchat.memory.freeze}).
        @param log: the chat log (SPEC §16), opened and closed by its owner
            (L{txchat.logservice.LogService}); None: none is kept.
        """
        super().__init__(reactor=reactor)
        self.config = config
        self.clock = reactor
        self.metrics = Metrics()
        self.gate: Gate[Room] = Gate(
            OriginPolicy(config.allowedOrigins), TrustedProxies(config.trustedProxies),
            ConnectionLimits(config.maxConnections, config.maxConnectionsPerIp),
            tokenChecker(config.tokenSecret, config.tokenPublicKey), self.metrics.handshakes, self.hold,
        )
        self.rateLimits = RateLimits(config.rateLimit, config.rateBurst)  # its members' buckets
        self.setProtocolOptions(
            versions=[13],
            webStatus=False,
            # Close frames with 1009/1007/1003 for bad messages; Autobahn's default would drop
            # the TCP connection, and the client would see only 1006.
            failByDrop=False,
            maxMessagePayloadSize=config.maxMessageSize,
            # No timer of Autobahn's for the opening handshake: the site hands it a complete
            # request head, within the site's own deadline (--handshake-timeout); one that then
            # queues in the lobby longer than that is answered 503, and the rest is done as it is
            # parsed.
            # A timer would be a callLater and a cancel on every connect.
            openHandshakeTimeout=0,
            closeHandshakeTimeout=config.closeTimeout,
            autoPingInterval=0,
            # Autobahn would refuse "Origin: null" itself, with a 400; txchat's OriginPolicy
            # (in onConnect) refuses it as any foreign origin, with a 403.
            allowNullOrigin=True,
        )
        useClock(self, reactor)
        self.protocol = protocolWithOptions(self, type(self).protocol)
        self.rooms = RoomTable(config.maxRooms, self._newRoom)
        self._dirty: dict[str, Room] = {}
        # The broker's stream (epoch, newest number) of rooms forgotten here, oldest first.
        self._followed: dict[str, tuple[str, int]] = {}
        self._flushCall: IDelayedCall | None = None
        self.lobby = Lobby(reactor, lambda: self._flushCall is not None, config.handshakesPerTurn,
                           min(PATIENCE, config.handshakeTimeout / 2))
        self._riding: dict[str, IDelayedCall] = {}  # rooms whose presence lines wait for messages
        self._giveBack = giveBack
        self._freeze = freeze
        self._giveBackCall: IDelayedCall | None = None
        self._heap = memory.Heap()
        self.log = log
        self.broker: Broker = broker if broker is not None else MemoryBroker(
            reactor, config.history, config.historyTtl, log, config.recoveryMax)
        # People (SPEC §18): with Redis, the roster hears the other processes' people.
        cluster = cast(Cluster, self.broker) if hasattr(self.broker, "listenPeople") else None
        self.roster = Roster(self, cluster, log)
        self.gate.banned = self.roster.banned
        self.presence = Presence(reactor, self.rooms, self.broker.setOnline, self._tellPresence,
                                 self.broker.state is not None, config.presenceRefresh, config.presenceStale,
                                 membersLimit=config.membersLimit,
                                 sayPeople=self.roster.sayPeople if cluster is not None else None)
        self._connections: set[Member] = set()
        self._closing = False
        self._allGone: list[Deferred[None]] = []
        self.metrics.watch(
            connections=lambda: len(self._connections),
            brokerUp=lambda: float(self.broker.up),
            backlog=lambda: self.broker.backlog,
            refused=lambda: self.broker.dropped,
            queued=lambda: len(self.lobby),
        )
        self.metrics.logUnwritten.set_function(lambda: getattr(self.broker, "unlogged", 0))

    _frame = framedText

    # -- membership -----------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(len(room) for room in self.rooms)

    def room(self, name: str) -> Room | None:
        return self.rooms.get(name)

    def members(self) -> Iterator[Member]:
        """Every open connection (for moderation, L{txchat.roster})."""
        return iter(list(self._connections))

    def hold(self, claim: Claim) -> Room | str:
        """Hold a place in the room a handshake asks for (for the gate), or say why not."""
        room = self.openRoom(claim.room)
        if room is None:
            return "max-rooms"
        self._resume(claim, room)
        if self._cannotServe(claim, room):
            self.settle(room)  # (made for this claim, it may hold nothing)
            return "catching-up"
        room.reserved += 1
        self._watch(room)
        return room

    def _resume(self, claim: Claim, room: Room) -> None:
        """A room made again while the broker is away goes on with the stream this process last
        followed in it, for a client that resumes in that stream (not an epoch of this process's
        own, which would cost it its place). Not for another: which of the two streams is the
        newer, only the broker knows."""
        followed = self._followed.pop(claim.room, None)
        since = claim.since
        if (followed is not None and claim.v1 and since is not None and since[0] == followed[0]
                and not self.broker.up and room.stream.state == LOCAL and not room.seq):
            room.stream.resume(*followed)

    def _cannotServe(self, client: Resuming, room: Room) -> bool:
        """Whether this process, cut off from Redis, cannot serve a v1 client that resumes here:
        the client may have seen numbers this process has not, and would be sent some twice. It is
        refused (503, or 1013 once open) and retries; by then Redis is back, or it has found
        another process."""
        return not self.broker.up and self._ahead(client, room)

    @staticmethod
    def _ahead(client: Resuming, room: Room) -> bool:
        """Whether a v1 client resumes after a number the room's stream here may not have
        reached (L{RoomStream.ahead})."""
        return client.v1 and room.stream.ahead(client.since)

    def health(self) -> tuple[int, str]:
        """For load balancers: 200 while serving; what the broker is doing, if there is one."""
        if self._closing:
            return 503, "shutting down"
        state = self.broker.state
        return 200, "ok" if state is None else f"ok\nredis: {state}"

    def register(self, client: Member) -> None:
        """The client's handshake is done: it becomes a member of the room it was admitted to.

        A v1 member first gets its welcome and the room's history (or what it missed) in one
        frame; the room's pending batch is flushed before, so nothing comes twice or not at all."""
        self._connections.add(client)
        if self._heap.joined(client, len(self._connections)):
            self._freeze()
        room = client.room
        assert room is not None, "registered without being admitted"
        room.reserved -= 1
        if self._closing:
            client.leave(CLOSE_GOING_AWAY, "server shutting down")
            return
        if client.v1 and self.broker.up:
            # The room's history and numbers are the broker's: read them once this process is
            # subscribed; the room's stream keeps what arrives meanwhile to merge by number.
            room.stream.reading()
            snapshot = self.roster.withRead(client, room.name, self.broker.snapshot(room.name, client.since))
            snapshot.addBoth(self._snapshotted, client, room)
            return
        self._join(client, room, ())

    def _snapshotted(self, result: Snapshot | None | Failure, client: Member, room: Room) -> None:
        snapshot = result if isinstance(result, Snapshot) else None
        if snapshot is not None:
            now = self.clock.seconds()
            for process, count in snapshot.others.items():
                room.presence.heard(process, count, now - snapshot.ages.get(process, 0.0))
        kept = room.stream.read(snapshot, len(room) > 0)
        if client.room is room and client.member:
            if snapshot is None and self._ahead(client, room):
                client.leave(CLOSE_TRY_AGAIN, "catching up with Redis: try again")  # (Redis went)
            elif room.stream.state == SYNCING:
                room.stream.waiting.append(client)  # after the room has caught up, as all its members
            else:
                self._join(client, room, kept)
        elif not self._closing:
            self._vacated(room)  # it left while its history was being read

    def _join(self, client: Member, room: Room, kept: Sequence[Delivery]) -> None:
        fanout = room.fanout(client.v1)
        if client.v1 and room.name in self._dirty:
            self._flushRoom(self._dirty.pop(room.name))
        fanout.add(client, client.write)
        if client.behind:
            fanout.pause(client)
        read = self.roster.joining(client, room)
        if client.v1:
            lines = room.joinLines(client.since, kept, self.config.history, read)
            members = self.roster.membersLine(client, room)
            if members is not None:
                lines.insert(1, members)  # a v2 member's list, right after its welcome
            client.write(self._frame(b"\n".join(lines)))
            if fanout.waiting(client):  # v2 answers to what it sent before it had joined
                self._scheduleFlush(room)
        self.presence.changed(room)

    def unregister(self, client: Member) -> None:
        """Stop all output to the client; it is closing."""
        if client.room is not None:
            client.room.fanout(client.v1).remove(client)

    def disconnected(self, client: Member, admittedAs: str | None) -> None:
        room, client.room = client.room, None
        registered = client in self._connections
        if room is not None:
            if client in room.stream.waiting:
                room.stream.waiting.remove(client)
            if registered:
                room.fanout(client.v1).remove(client)
                self.roster.left(client, room)
            else:
                room.reserved -= 1  # admitted, never opened
            if not self._closing:  # else every room is going: no more presence lines or timers
                self._vacated(room)
        self._connections.discard(client)
        if admittedAs is not None:
            self.gate.release(admittedAs)
        if registered and self._heap.left(client, len(self._connections)) and not self._closing:
            self._scheduleGiveBack()
        if self._closing and not self._connections:
            waiting, self._allGone = self._allGone, []
            for d in waiting:
                if not d.called:  # not already fired by the shutdown timeout
                    d.callback(None)

    def paused(self, client: Member) -> None:
        if client.room is not None:
            client.room.fanout(client.v1).pause(client)

    def resumed(self, client: Member) -> None:
        if client.room is None:
            return
        sent = client.room.fanout(client.v1).resume(client)
        if sent:
            self.metrics.deliveries.inc(sent)
            self.metrics.frames.inc()

    # -- rooms ----------------------------------------------------------------------------

    def _newRoom(self, name: str) -> Room:
        config = self.config
        return Room(name, newEpoch(), config.sendQueue, self._frame, int(self.clock.seconds() * 1000),
                    config.maxMessageSize, self._scheduleFlush)

    def openRoom(self, name: str) -> Room | None:
        """The room, made if new; None when every room has members and --max-rooms allows no
        more (an empty room is forgotten to make space)."""
        room, evicted = self.rooms.open(name)
        if evicted is not None:
            self._forget(evicted)
        return room

    def settle(self, room: Room) -> bool:
        """Forget the room if nothing is left of it here: no members, none coming, nothing kept.
        Returns whether it was forgotten."""
        if room.occupied or self.broker.keeps(room.name):
            return False
        self._forget(room)
        return True

    def _vacated(self, room: Room) -> None:
        """Someone left: forget the room if nothing is left of it, stop receiving its messages
        if only its history is, and tell the others."""
        if self.settle(room):
            return
        if not room.occupied:
            self._unwatch(room)
        self.presence.changed(room)

    def _watch(self, room: Room) -> None:
        if not room.watched:
            room.watched = True
            self.broker.watch(room.name)
            self.roster.readPeople(room)

    def _unwatch(self, room: Room) -> None:
        if room.watched:
            room.watched = False
            self.broker.unwatch(room.name)
            self.presence.unwatched(room)

    def _forget(self, room: Room) -> None:
        if not self._closing:
            self._unwatch(room)
        self.broker.forget(room.name)
        stream = room.stream
        if stream.following and self.broker.state is not None:  # (a broker that can go away)
            self._followed[room.name] = (stream.epoch, stream.seq)
            while len(self._followed) > FOLLOWED:
                del self._followed[next(iter(self._followed))]
        stream.abandon()
        self.presence.forget(room)
        self._dirty.pop(room.name, None)
        if not self._dirty and self._flushCall is not None:
            self._flushCall.cancel()
            self._flushCall = None
        riding = self._riding.pop(room.name, None)
        if riding is not None and riding.active():
            riding.cancel()
        self.rooms.forget(room)

    def _tellPresence(self, room: Room, line: bytes) -> None:
        now = self.clock.seconds()
        if now * 1000 - room.lastMessage >= RIDE * 1000:
            room.say(line)
        elif room.sayWithNext(line) and room.name not in self._riding:
            self._riding[room.name] = self.clock.callLater(RIDE, self._rideOver, room.name)

    def _rideOver(self, name: str) -> None:
        """No message came to take the room's presence lines: they leave on their own."""
        del self._riding[name]
        room = self.rooms.get(name)
        if room is not None and room.v1Members.pending:
            self._scheduleFlush(room)

    def _expired(self, roomName: str) -> None:
        """The broker let the room's history go, C{--history-ttl} after its last message, and
        nobody is in it: forget it."""
        room = self.rooms.get(roomName)
        if room is not None and not room.occupied:
            self._forget(room)
        self._scheduleGiveBack()

    def _scheduleGiveBack(self) -> None:
        if self._giveBackCall is None:
            self._giveBackCall = self.clock.callLater(memory.INTERVAL, self._gaveBack)

    def _gaveBack(self) -> None:
        self._giveBackCall = None
        self._giveBack()
        self._heap.gaveBack(len(self._connections))

    # -- messages -------------------------------------------------------------------------

    def startBroker(self) -> None:
        self.broker.start(self.deliver, self.presence.heard, self._catchUp, self._expired)
        self.roster.start()
        if self.broker.state is not None:  # other processes to tell
            self.presence.start()

    def broadcast(self, client: Member, text: bytes) -> None:
        """Accept a normalised message from a client."""
        self.metrics.messagesIn.inc()
        room = client.room
        if room is not None:
            self.broker.publish(self._accepted(room, client, text))

    def _accepted(self, room: Room, client: Member, text: bytes, ref: str | None = None) -> Delivery:
        """A member's message as the broker takes it: stamped now, with who sent it."""
        return Delivery(room.name, text, client.displayName, int(self.clock.seconds() * 1000), sender=client.sender,
                        ref=ref)

    def deliver(self, delivery: Delivery) -> None:
        """Queue a message from the broker for its room's members; one flush per reactor turn."""
        room = self.rooms.get(delivery.room)
        if room is None:
            return  # nobody here is in that room any more
        room.stream.delivered(delivery)
        if delivery.seq is not None:
            room.lastMessage = delivery.time

    def setRead(self, client: Member, epoch: str, seq: int) -> str | None:
        """A v2 client's read position (SPEC §18); why it is refused (a bad request), or None."""
        return self.roster.setRead(client, epoch, seq)

    def history(self, room: str, before: tuple[str, int] | None, limit: int) -> Deferred[Page]:
        """Scrollback (SPEC §16): up to C{limit} messages before C{before}, oldest first."""
        return self.broker.page(room, before, limit)

    def _catchUp(self) -> None:
        """The broker is back after this process lost it: what the other processes published
        meanwhile never came here. Read each room's kept messages and deliver the missed ones
        first, holding what arrives live until then, so members see one unbroken stream."""
        for room in self.rooms:
            if room.watched and room.stream.catchingUp():
                self.broker.snapshot(room.name).addBoth(self._caughtUp, room)
        self.roster.reconnected()

    def _caughtUp(self, result: Snapshot | None | Failure, room: Room) -> None:
        if self.rooms.get(room.name) is not room:
            room.stream.abandon()
            return  # forgotten meanwhile
        snapshot = result if isinstance(result, Snapshot) else None
        kept, waiting = room.stream.caughtUp(snapshot)
        for client in waiting:
            if client.room is room and client.member:
                if snapshot is None and self._ahead(client, room):
                    client.leave(CLOSE_TRY_AGAIN, "catching up with Redis: try again")  # (Redis went again)
                else:
                    self._join(client, room, kept)

    def _scheduleFlush(self, room: Room) -> None:
        self._dirty[room.name] = room
        if self._flushCall is None:
            self._flushCall = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flushCall = None
        dirty, self._dirty = self._dirty, {}
        for room in dirty.values():
            self._flushRoom(room)
        self.lobby.flushed()

    def _flushRoom(self, room: Room) -> None:
        started = perf_counter()
        metrics = self.metrics
        plain, v1 = room.plainMembers, room.v1Members
        deliveries = plain.pending * plain.ready + v1.pending * v1.ready
        frames = (plain.ready if plain.pending else 0) + (v1.ready if v1.pending else 0)
        dropped = room.flush()
        metrics.flushSeconds.observe(perf_counter() - started)
        metrics.deliveries.inc(deliveries)
        metrics.frames.inc(frames)
        for client in dropped:
            metrics.slowDropped.inc()
            _log.info(
                "dropped slow client {peer}: more than {limit} messages waiting",
                peer=client.peerName,
                limit=self.config.sendQueue,
            )
            if client.v1:  # (and v2) it resumes with since, and misses nothing
                client.leave(CLOSE_TRY_AGAIN, "too slow; resume with since")
            else:
                client.leave(CLOSE_POLICY, "too slow: send queue full")

    # -- txchat.v2 (SPEC §17): what a v2 member's commands ask of the hub --------------------

    def post(self, client: Member, text: bytes, ref: str) -> Deferred[tuple[str, int] | None]:
        """Accept a v2 member's send of a normalised message with the client's ID C{ref}.
        Fires with the (epoch, number) the broker gave it, or the first one's for a resend
        (the broker remembers sends by sender and ID, and does not deliver a resend again);
        None when it went out unnumbered (Redis away); fails with L{NotPublished} when the
        broker refused it."""
        room = client.room
        if room is None:
            return fail(NotPublished("the client has left"))
        self.metrics.messagesIn.inc()
        return self.broker.post(self._accepted(room, client, text, ref))

    def reply(self, client: Member, line: bytes) -> None:
        """A line for one v2 member (an ack, an error, an answer), in order with its messages."""
        room = client.room
        if room is not None and client.member:
            room.tellOne(client, line)

    def typing(self, client: Member) -> None:
        """The member is typing: tell the room's other v2 members (the protocol throttles)."""
        room = client.room
        if room is not None:
            room.tellOthers(client, wire.typing(client.sender, client.displayName))

    # -- shutdown -------------------------------------------------------------------------

    def closeAll(self) -> Deferred[None]:
        """Send what is pending, close every client with 1001, and fire once all are gone."""
        self._closing = self.gate.closed = True
        self.lobby.admitAll()
        self.presence.stop()
        if self._giveBackCall is not None and self._giveBackCall.active():
            self._giveBackCall.cancel()
        self._giveBackCall = None
        if self._flushCall is not None:
            self._flushCall.cancel()
            self._flush()
        for room in self.rooms:
            self._forget(room)
        for client in list(self._connections):
            client.leave(CLOSE_GOING_AWAY, "server shutting down")
        if not self._connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._allGone.append(d)
        d.addTimeout(self.config.shutdownTimeout, self.clock, onTimeoutCancel=self._cutRemaining)
        return d

    def _cutRemaining(self, result: Any, timeout: float) -> None:
        for client in list(self._connections):
            _log.info("cut {peer}: no close reply within {timeout}s", peer=client.peerName, timeout=timeout)
            client.transport.abortConnection()


class HubService(Service):
    """Starts the hub's broker with the service and closes every client when it stops."""

    def __init__(self, hub: ChatHub) -> None:
        self.hub = hub

    def startService(self) -> None:
        super().startService()
        self.hub.startBroker()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        d = self.hub.closeAll()
        d.addCallback(lambda _: self.hub.broker.stop())
        return d
