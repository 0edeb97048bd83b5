"""Real sockets on 127.0.0.1: a txchat server on port 0 and Autobahn clients, one reactor."""

from __future__ import annotations

import typing
from typing import Any, Generator

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from txchat.config import Config
from txchat.factory import ChatFactory
from txchat.site import ChatSite
from txchat.webapp import makeRoot

TIMEOUT = 10


def within(d: Deferred[Any], seconds: float = TIMEOUT) -> Deferred[Any]:
    return d.addTimeout(seconds, reactor)


class Tracker:
    """The server side's open connections, so that a test can wait until the server has closed
    them all (the client side closing first proves nothing about the server's)."""

    def __init__(self) -> None:
        self.open: set[object] = set()
        self._waiting: list[Deferred[None]] = []

    def opened(self, connection: object) -> None:
        self.open.add(connection)

    def closed(self, connection: object) -> None:
        self.open.discard(connection)
        if not self._pending():
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def _pending(self) -> list[object]:
        # An HTTP channel whose transport a WebSocket took over never closes itself.
        return [c for c in self.open if not (isinstance(c, HTTPChannel) and c.transport is None)]

    def allClosed(self) -> Deferred[None]:
        if not self._pending():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return within(d)


class _TrackedChannel(HTTPChannel):
    site: TrackedSite

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.tracker.opened(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.site.tracker.closed(self)


class _TrackedHub(ChatFactory):
    def __init__(self, tracker: Tracker, *args: Any) -> None:
        super().__init__(*args)
        self.tracker = tracker

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        protocol = super().buildProtocol(addr)
        assert isinstance(protocol, Protocol)
        self.tracker.opened(protocol)
        return protocol

    def disconnected(self, client: Any, admittedAs: Any) -> None:
        super().disconnected(client, admittedAs)
        self.tracker.closed(client)


class TrackedSite(ChatSite):
    tracker: Tracker


class Server:
    """A hub and its site listening on a free port of 127.0.0.1, on real TCP transports."""

    def __init__(self, **config: Any) -> None:
        self.tracker = Tracker()
        self.hub = _TrackedHub(self.tracker, Config(**config), reactor)
        self.hub.startBroker()
        # As twistd runs it: WebSocket handshakes take the site's fast lane to the hub.
        self.site = TrackedSite(makeRoot(self.hub, health=self.hub.health), reactor, Config(**config),
                             webSockets=(b"/ws", self.hub))
        channel = self.site.protocol
        tracked = type("Tracked", (_TrackedChannel, channel), {})
        assert issubclass(tracked, channel)
        self.site.protocol = tracked
        self.site.tracker = self.tracker
        self.port: IListeningPort | None = None

    @inlineCallbacks
    def start(self) -> Generator[Deferred[Any], Any, Server]:
        self.port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.site)
        return self

    @property
    def number(self) -> int:
        assert self.port is not None
        address = self.port.getHost()
        assert isinstance(address, IPv4Address)
        return address.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.number}"

    @inlineCallbacks
    def stop(self) -> Generator[Deferred[Any], Any, None]:
        assert self.port is not None
        yield maybeDeferred(self.port.stopListening)
        yield self.hub.closeAll()
        yield self.tracker.allClosed()


class Listening(typing.Protocol):
    """What connect() needs of a server: its port."""

    @property
    def number(self) -> int: ...


class ChatClient(WebSocketClientProtocol):
    """Collects every line it receives; its closing code and reason land in C{closed}."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: DeferredQueue[str] = DeferredQueue()
        self.frames = 0
        self.opened: Deferred[ChatClient] = Deferred()
        self.closed: Deferred[tuple[int | None, str | None]] = Deferred()

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.frames += 1
        for line in payload.decode("utf-8").split("\n"):
            self.lines.put(line)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"handshake failed: {reason}"))
        self.closed.callback((code, reason))

    def say(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"))

    @inlineCallbacks
    def receive(self, count: int) -> Generator[Deferred[Any], Any, list[str]]:
        got = []
        for _ in range(count):
            got.append((yield within(self.lines.get())))
        return got

    @inlineCallbacks
    def close(self) -> Generator[Deferred[Any], Any, None]:
        if not self.closed.called:
            self.sendClose(1000)
        yield within(self.closed)


@inlineCallbacks
def connect(server: Listening, origin: str | None = None, protocol: type[ChatClient] = ChatClient, path: str = "/ws",
            protocols: list[str] | None = None) -> Generator[Deferred[Any], Any, Any]:
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{server.number}{path}", origin=origin, protocols=protocols)
    factory.protocol = protocol
    factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0)
    client = yield TCP4ClientEndpoint(reactor, "127.0.0.1", server.number).connect(factory)
    yield within(client.opened)
    return client
