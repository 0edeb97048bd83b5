"""In-memory chat clients: a hub on a task.Clock, each client a protocol on a string transport.

The fake transport models the two ways out of a real one: C{send}, the socket, which takes
everything while the peer reads and nothing when it does not; and C{write}, Twisted's buffer,
which holds bytes until the reactor's next turn (here: until the test reads) and then tells
its pull producer that it has drained.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Callable

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IPullProducer, IPushProducer
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from bench import frames
from txchat.config import Config
from txchat.hub import ChatHub
from txchat.protocol import ChatProtocol
from txchat.rooms import Room


class MemoryProtocol(ChatProtocol):
    directSend = staticmethod(lambda transport: transport.send)


class MemoryHub(ChatHub):
    protocol = MemoryProtocol

_ports = itertools.count(40000)


class Transport(StringTransport):
    def __init__(self, protocol: ChatProtocol, address: IPv4Address) -> None:
        super().__init__(peerAddress=address)
        self.protocol = protocol
        self.aborted = False
        self.reading = True
        self.held: list[bytes] = []

    def send(self, data: bytes) -> int:
        if not self.reading:
            raise BlockingIOError()
        self.io.write(data)
        return len(data)

    def write(self, data: bytes) -> None:
        if self.connected:
            self.held.append(data)

    def flush(self) -> None:
        """The reactor's turn to write what the transport holds, if the peer takes it."""
        if self.reading and self.held:
            self.io.write(b"".join(self.held))
            self.held = []
            if self.producer is not None and not self.streaming:
                self.producer.resumeProducing()

    def registerProducer(self, producer: IPushProducer | IPullProducer, streaming: bool) -> None:
        super().registerProducer(producer, streaming)
        if not streaming:
            producer.resumeProducing()  # as Twisted does for a pull producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def loseConnection(self) -> None:
        self.flush()
        self._lose(ConnectionDone())

    def abortConnection(self) -> None:
        self.aborted = True
        self._lose(ConnectionAborted())

    def _lose(self, reason: Exception) -> None:
        if self.connected:
            self.connected = False
            self.disconnecting = True
            if self.producer is not None:
                self.producer.stopProducing()
                self.producer = None
            protocol = self.protocol
            del self.protocol  # as Twisted's TCP transport lets its protocol go
            protocol.connectionLost(Failure(reason))


class Peer:
    """One client: handshake on creation, then frames in and frames out."""

    def __init__(
        self, hub: ChatHub, origin: str | None = None, host: str = "127.0.0.1", address: str = "127.0.0.1",
        headers: dict[str, str] | None = None, path: str = "/ws",
    ) -> None:
        peer = IPv4Address("TCP", address, next(_ports))
        protocol = hub.buildProtocol(peer)
        assert isinstance(protocol, ChatProtocol)
        self.protocol: ChatProtocol = protocol
        self.transport: Transport = Transport(self.protocol, peer)
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(frames.handshake(path, host=host, origin=origin, headers=headers))
        if len(hub.lobby):  # messages are due to go out first (txchat.lobby): the reactor's next turn
            assert isinstance(hub.clock, Clock)
            hub.clock.advance(0)
        self.transport.flush()
        head, _, rest = self.transport.value().partition(b"\r\n\r\n")
        self.status: int = int(head.split(b" ")[1])
        self.head: str = head.decode("latin-1")
        self.transport.clear()
        self._pending: bytes = rest
        self.received: list[tuple[int, bytes]] = []

    @property
    def open(self) -> bool:
        return self.transport.connected

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def say(self, message: str | bytes) -> None:
        self.send(frames.text(message))

    def stopReading(self) -> None:
        self.transport.reading = False

    def startReading(self) -> None:
        self.transport.reading = True
        self.transport.flush()

    def read(self) -> list[tuple[int, bytes]]:
        """Frames written to this client since the last read."""
        self.transport.flush()
        got, self._pending = frames.parseFrames(self._pending + self.transport.value())
        self.transport.clear()
        self.received.extend(got)
        return got

    def frameTexts(self) -> list[str]:
        return [payload.decode() for opcode, payload in self.read() if opcode == frames.TEXT]

    def messages(self) -> list[str]:
        return [line for frame in self.frameTexts() for line in frame.split("\n")]

    def closeCode(self) -> int | None:
        codes = [frames.closeCode(p) for op, p in self.received + self.read() if op == frames.CLOSE]
        return codes[0] if codes else None


def makeHub(giveBack: Callable[[], None] = lambda: None, freeze: Callable[[], None] = lambda: None,
            **config: Any) -> tuple[MemoryHub, Clock]:
    """A hub on a Clock; without history unless asked (a room with history outlives its
    members, and its expiry timer would outlive the test)."""
    clock = Clock()
    hub = MemoryHub(Config(**{"history": 0, **config}), clock, None, giveBack, freeze=freeze)
    hub.startBroker()
    return hub, clock


def roomOf(hub: ChatHub, name: str) -> Room:
    """The hub's room of that name, which the test expects to exist."""
    room = hub.room(name)
    assert room is not None, f"no room {name!r}"
    return room


class V1Peer(Peer):
    """A txchat.v1 client: its lines are JSON objects."""

    def __init__(self, hub: ChatHub, room: str = "", query: str = "", **kwargs: Any) -> None:
        headers = {"Sec-WebSocket-Protocol": "txchat.v1", **kwargs.pop("headers", {})}
        path = (f"/ws/{room}" if room else "/ws") + (f"?{query}" if query else "")
        super().__init__(hub, headers=headers, path=path, **kwargs)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.messages()]


class V2Peer(V1Peer):
    """A txchat.v2 client (offering v1 too, as a client that falls back would): commands out,
    JSON lines in."""

    def __init__(self, hub: ChatHub, room: str = "", query: str = "", **kwargs: Any) -> None:
        headers = {"Sec-WebSocket-Protocol": "txchat.v1, txchat.v2", **kwargs.pop("headers", {})}
        super().__init__(hub, room, query, headers=headers, **kwargs)

    def command(self, **fields: Any) -> None:
        self.say(json.dumps(fields, separators=(",", ":")))

    def post(self, ref: str, text: str) -> None:
        self.command(type="send", id=ref, text=text)
