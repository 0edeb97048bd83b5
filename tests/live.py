"""Real sockets on 127.0.0.1: a txchat server on port 0 and Autobahn clients, one reactor."""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.server import Site

from txchat.hub import ChatHub, HubConfig
from txchat.webapp import makeRoot

TIMEOUT = 10


def within(d: Deferred, seconds: float = TIMEOUT) -> Deferred:
    return d.addTimeout(seconds, reactor)


class _Tracked(ProtocolWrapper):
    def connectionLost(self, reason) -> None:
        # The wrapped protocol first, so that it is done when the factory reports "all closed".
        self.wrappedProtocol.connectionLost(reason)
        self.factory.unregisterProtocol(self)


class Tracking(WrappingFactory):
    """Knows its open connections, so that a test can wait until the server side has closed
    them all (the client side closing first proves nothing about the server's)."""

    protocol = _Tracked

    def __init__(self, factory) -> None:
        super().__init__(factory)
        self._waiting: list[Deferred] = []

    def unregisterProtocol(self, p) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def allClosed(self) -> Deferred:
        if not self.protocols:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        return within(d)


class Server:
    """A hub and its site listening on a free port of 127.0.0.1."""

    def __init__(self, **config) -> None:
        self.hub = ChatHub(HubConfig(**config), reactor)
        self.hub.startBroker()
        self.site = Site(makeRoot(self.hub))
        self.connections = Tracking(self.site)
        self.port = None

    @inlineCallbacks
    def start(self):
        self.port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.connections)
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
        yield self.connections.allClosed()


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
def connect(server: Server, origin: str | None = None, protocol=ChatClient):
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{server.number}/ws", origin=origin)
    factory.protocol = protocol
    factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0)
    client = yield TCP4ClientEndpoint(reactor, "127.0.0.1", server.number).connect(factory)
    yield within(client.opened)
    return client
