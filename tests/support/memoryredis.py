"""A Redis in memory, on a task.Clock, for the heartbeat's tests: it answers what txchat asks
(PING, AUTH, SELECT, SUBSCRIBE, the broker's three scripts, told apart by their shape) after
C{lag} seconds, or not at all while C{silent}, as a stopped or cut-off Redis.

Its connections are StringTransports that end as TCP ones do: C{abortConnection} and
C{loseConnection} call C{connectionLost} in the next reactor turn."""

from __future__ import annotations

import json
from typing import Any

import hiredis
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure


def encode(reply: Any) -> bytes:
    if isinstance(reply, list):
        return b"*%d\r\n" % len(reply) + b"".join(encode(item) for item in reply)
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    if isinstance(reply, str):
        return b"+%s\r\n" % reply.encode()
    return b"$%d\r\n%s\r\n" % (len(reply), reply)


class MemoryRedis:
    def __init__(self, clock: Clock, lag: float = 0.001) -> None:
        self.clock = clock
        self.lag = lag
        self.silent = False
        self.seq = 0
        self.connections: list[Link] = []
        self.commands: list[list[bytes]] = []

    def connect(self, protocol: Protocol) -> Link:
        link = Link(self, protocol)
        self.connections.append(link)
        protocol.makeConnection(link)
        return link

    def accept(self, clock: MemoryReactorClock) -> int:
        """Connect every connection attempt made on a MemoryReactorClock; how many."""
        attempts = clock.tcpClients[:]
        del clock.tcpClients[:]
        for _, _, factory, _, _ in attempts:
            protocol = factory.buildProtocol(None)
            assert isinstance(protocol, Protocol)
            self.connect(protocol)
        return len(attempts)

    def publish(self, channel: bytes, payload: bytes) -> None:
        for link in self.connections:
            if channel in link.channels:
                link.send([b"message", channel, payload])

    def answer(self, link: Link, command: list[bytes]) -> Any:
        self.commands.append(command)
        name = command[0].upper()
        if name == b"PING":
            return [b"pong", b""] if link.channels else "PONG"
        if name == b"SUBSCRIBE":
            link.channels.add(command[1])
            return [b"subscribe", command[1], len(link.channels)]
        if name == b"UNSUBSCRIBE":
            link.channels.discard(command[1])
            return [b"unsubscribe", command[1], len(link.channels)]
        if name == b"EVALSHA":
            keys = int(command[2])
            args = command[3 + keys:]
            if keys == 3:  # SNAPSHOT
                return [b"E", self.seq, [], []]
            if keys == 4:  # PUBLISH: channel, limit, ttl, epoch, time, name, text, sender, ID, ...
                self.seq += 1
                message = ["m", "E", self.seq, int(args[4]), args[5].decode(), args[6].decode(), args[7].decode(),
                           args[8].decode()]
                self.publish(args[0], json.dumps(message).encode())
                return [b"E", self.seq, 0]
            self.publish(args[2], json.dumps(["p", args[0].decode(), int(args[1])]).encode())  # PRESENCE
            return 1
        return "OK"


class Link(StringTransport):
    """One client connection to the MemoryRedis."""

    def __init__(self, server: MemoryRedis, protocol: Protocol) -> None:
        super().__init__()
        self.server = server
        self.protocol = protocol
        self.channels: set[bytes] = set()
        self.reader = hiredis.Reader()
        self.closed = False
        self.inFlight: list[Any] = []  # replies on their way (dropped when the connection ends)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.server.silent:
            return  # lost on the way, as in a partition (TCP would hold it: the same to txchat)
        self.reader.feed(data)
        while (command := self.reader.gets()) is not False:
            self.send(self.server.answer(self, command))

    def send(self, reply: Any) -> None:
        if not self.server.silent:
            self.inFlight.append(self.server.clock.callLater(self.server.lag, self._deliver, encode(reply)))

    def _deliver(self, data: bytes) -> None:
        self.inFlight = [call for call in self.inFlight if call.active()]
        if not self.closed and not self.server.silent:
            self.protocol.dataReceived(data)

    def loseConnection(self) -> None:
        self._close(Failure(ConnectionDone()))

    def abortConnection(self) -> None:
        self._close(Failure(ConnectionAborted()))

    def _close(self, reason: Failure) -> None:
        if not self.closed:
            self.closed = True
            self.disconnecting = True
            self.server.connections.remove(self)
            for call in self.inFlight:
                if call.active():
                    call.cancel()
            self.server.clock.callLater(0, self.protocol.connectionLost, reason)
