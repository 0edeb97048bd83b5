"""Real sockets on 127.0.0.1: a txchat server on port 0 and Autobahn clients, one reactor."""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.web.http import HTTPChannel

from txchat.config import Config
from txchat.hub import ChatHub
from txchat.site import ChatSite
from txchat.webapp import makeRoot

TIMEOUT = 10


def within(d: Deferred, seconds: float = TIMEOUT) -> Deferred:
    return d.addTimeout(seconds, reactor)


class Tracker:
    """The server side's open connections, so that a test can wait until the server has closed
    them all (the client side closing first proves nothing about the server's)."""

    def __init__(self) -> None:
        self.open: set = set()
        self._waiting: list[Deferred] = []

    def opened(self, connection) -> None:
        self.open.add(connection)

    def closed(self, connection) -> None:
        self.open.discard(connection)
        if not self._pending():
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def _pending(self) -> list:
        # An HTTP channel whose transport a WebSocket took over never closes itself.
        return [c for c in self.open if not (isinstance(c, HTTPChannel) and c.transport is None)]

    def allClosed(self) -> Deferred:
        if not self._pending():
            return succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        return within(d)


class _TrackedChannel(HTTPChannel):
    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.tracker.opened(self)

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        self.site.tracker.closed(self)


class _TrackedHub(ChatHub):
    def __init__(self, tracker: Tracker, *args) -> None:
        super().__init__(*args)
        self.tracker = tracker

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        self.tracker.opened(protocol)
        return protocol

    def disconnected(self, client, admittedAs) -> None:
        super().disconnected(client, admittedAs)
        self.tracker.closed(client)


class Server:
    """A hub and its site listening on a free port of 127.0.0.1, on real TCP transports."""

    def __init__(self, **config) -> None:
        self.tracker = Tracker()
        self.hub = _TrackedHub(self.tracker, Config(**config), reactor)
        self.hub.startBroker()
        # As twistd runs it: WebSocket handshakes take the site's fast lane to the hub.
        self.site = ChatSite(makeRoot(self.hub, health=self.hub.health), reactor, Config(**config),
                             webSockets=(b"/ws", self.hub))
        self.site.protocol = type("Tracked", (_TrackedChannel, self.site.protocol), {})
        self.site.tracker = self.tracker
        self.port = None

    @inlineCallbacks
    def start(self):
        self.port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.site)
        return self

    @property
    def number(self) -> int:
        return self.port.getHost().port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.number}"

    @inlineCallbacks
    def stop(self):
        yield self.port.stopListening()
        yield self.hub.closeAll()
        yield self.tracker.allClosed()


class ChatClient(WebSocketClientProtocol):
    """Collects every line it receives; its closing code and reason land in C{closed}."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: DeferredQueue = DeferredQueue()
        self.frames = 0
        self.opened: Deferred = Deferred()
        self.closed: Deferred = Deferred()

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.frames += 1
        for line in payload.decode("utf-8").split("\n"):
            self.lines.put(line)

    def onClose(self, wasClean, code, reason) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"handshake failed: {reason}"))
        self.closed.callback((code, reason))

    def say(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"))

    @inlineCallbacks
    def receive(self, count: int):
        got = []
        for _ in range(count):
            got.append((yield within(self.lines.get())))
        return got

    @inlineCallbacks
    def close(self):
        if not self.closed.called:
            self.sendClose(1000)
        yield within(self.closed)


@inlineCallbacks
def connect(server: Server, origin: str | None = None, protocol=ChatClient, path: str = "/ws",
            protocols: list[str] | None = None):
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{server.number}{path}", origin=origin, protocols=protocols)
    factory.protocol = protocol
    factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0)
    client = yield TCP4ClientEndpoint(reactor, "127.0.0.1", server.number).connect(factory)
    yield within(client.opened)
    return client
