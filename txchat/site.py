"""The HTTP side of a connection, before any WebSocket: deadlines and size limits on requests,
an access log without query strings, and the fast lane that hands a WebSocket handshake straight to its factory.

A connection's first request is usually a WebSocket handshake (a page load is one request, its
chat a new connection). Through twisted.web, that handshake is parsed by HTTPChannel, becomes a
Request, walks the resource tree to autobahn's WebSocketResource, which writes the request out
again for Autobahn to parse a second time: most of the cost of a connect, and what makes a
reconnection storm slow. The site sorts each connection's first request instead: a complete
``GET`` of a WebSocket path with an ``Upgrade: websocket`` header goes to the WebSocket factory
at once (Autobahn parses it, once, and checks everything a handshake needs); anything else, and
every later request on the connection, goes through twisted.web as before.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Site

from txchat.config import Config
from txchat.twisted_internals import BodyLimit, ChannelHooks, combinedLogLine, handOver, limitHeaders
from txchat.webapp import asksForWebSocket
from txchat.wire import describePeer

_log = Logger()


class _Channel(ChannelHooks):
    """An HTTP connection that must send each request, headers and body, within a deadline.

    Twisted's own timeout restarts at every byte, so a client that trickles a header or a body
    a byte at a time (slowloris), or never sends the body it announced, would hold the
    connection for minutes; this deadline is counted from the request's start to its last byte.
    The site sets C{clock} and C{requestTimeout} on each (L{ChatSite.httpChannel})."""

    clock: IReactorTime
    requestTimeout = Config.handshakeTimeout
    # What is left of the first request's deadline, when the fast lane has used some of it.
    firstTimeout: float | None = None
    _deadline: IDelayedCall | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._startDeadline(self.firstTimeout)

    def _startDeadline(self, timeout: float | None = None) -> None:
        self._stopDeadline()
        self._deadline = self.clock.callLater(self.requestTimeout if timeout is None else timeout, self._tooSlow)

    def _stopDeadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def contentReceived(self) -> None:
        self._stopDeadline()

    def awaitingRequest(self) -> None:
        self._startDeadline()  # the next request on this connection gets its own

    def lineLengthExceeded(self, line: bytes) -> None:
        # LineReceiver's documented hook for a line over MAX_LENGTH. As Twisted answers
        # headers that are too large in all: a 400, not a silent close.
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.transport.loseConnection()

    def _tooSlow(self) -> None:
        self._deadline = None
        _cut(self.transport, self.requestTimeout)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopDeadline()
        super().connectionLost(reason)


def _upgradeHeader(head: bytes) -> bytes | None:
    """The value of a request head's C{Upgrade} header, if it has one."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade":
            return value
    return None


def _cut(transport: Any, seconds: float) -> None:
    # Debug: browsers open spare connections they may never use (Chromium's preconnects).
    _log.debug("cut {peer}: no complete request within {seconds}s", peer=describePeer(transport.getPeer()),
              seconds=seconds)
    transport.abortConnection()


class _FirstRequest(Protocol):
    """A new connection until its first request head shows whether it takes the fast lane."""

    transport: Any

    def __init__(self, site: ChatSite, address: IAddress | None) -> None:
        self.site = site
        self.address = address
        self._buffer = b""
        self._deadline: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self._deadline = self.site.reactor.callLater(self.site.requestTimeout, self._tooSlow)

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        prefix = self.site.fastLanePrefix
        if not (buffer.startswith(prefix) or prefix.startswith(buffer)):
            self._hand(buffer, None)  # not a GET of a WebSocket path: plain HTTP
            return
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > self.site.maxHeaderSize:
                self._hand(buffer, None)  # twisted.web answers 400
            else:
                self._buffer = buffer
            return
        path = buffer[4 : buffer.find(b" ", 4)].partition(b"?")[0]
        # Not "lane or None": the hub is a container of rooms, and its truth would count them.
        lane = self.site.fastLaneFactory(path, buffer[:end]) if end <= self.site.maxHeaderSize else None
        self._hand(buffer, lane)

    def _hand(self, data: bytes, factory: IProtocolFactory | None) -> None:
        left = self._deadline.getTime() - self.site.reactor.seconds() if self._deadline is not None else None
        self._stopDeadline()
        transport, self.transport = self.transport, None
        protocol: Any = factory.buildProtocol(self.address) if factory is not None else None  # type: ignore[arg-type]
        if protocol is None:
            protocol = self.site.httpChannel(self.address)
            protocol.firstTimeout = left  # the request's deadline runs on, not over again
        handOver(transport, protocol)
        protocol.dataReceived(data)

    def _stopDeadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _tooSlow(self) -> None:
        self._deadline = None
        _cut(self.transport, self.site.requestTimeout)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopDeadline()


class _Request(BodyLimit):
    """A request whose body may be at most C{maxBodySize} bytes: a larger one is answered 413
    and its connection closed, before the body is read, or as soon as it passes the bound
    (chunked). The site sets C{maxBodySize} on each (L{ChatSite.buildRequest})."""

    maxBodySize = Config.maxBodySize

    def bodyTooLarge(self) -> None:
        transport: Any = self.channel.transport
        # JSON, as every answer of the API (the only part that takes a body) is.
        body = b'{"error":"the request body is more than %d bytes"}\n' % self.maxBodySize
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        self.channel.loseConnection()


def accessLine(timestamp: str, request: http.Request) -> str:
    """The access log's line: the URI and referrer without their query strings, which may
    carry a token (nothing txchat logs ever shows one)."""
    referrer = request.getHeader(b"referer")
    return combinedLogLine(timestamp, request, request.uri.partition(b"?")[0],
                           referrer.partition(b"?")[0] if referrer is not None else None)


class ChatSite(Site):
    """The site, with a deadline for each request (headers and body), a bound on the size of
    its headers, and a fast lane for WebSocket handshakes."""

    quietPaths = (b"/healthz",)  # a load balancer's probes would drown the access log
    noisy = False  # no "Starting factory <...>" lines: the listener says where the chat is
    protocol = _Channel  # type: ignore[assignment]

    def __init__(
        self,
        root: Resource,
        reactor: Any,
        config: Config = Config(),
        webSockets: tuple[bytes, IProtocolFactory] | None = None,
    ) -> None:
        """
        @param webSockets: (path, factory): handshakes for C{path} and the paths below it
            take the fast lane to C{factory}; the same path must lead to the factory in
            C{root} too, for handshakes that come later on a kept-alive connection.
        """
        super().__init__(root, requestFactory=self.buildRequest, reactor=reactor, logFormatter=accessLine)
        self.displayTracebacks = False
        self.requestTimeout = config.handshakeTimeout
        self.maxHeaderSize = config.maxHeaderSize
        self.maxBodySize = config.maxBodySize
        self._webSockets = webSockets
        self.fastLanePrefix = b"GET " + webSockets[0] if webSockets is not None else b""

    # Not always an HTTP channel: a _FirstRequest, which hands over to one or to a WebSocket.
    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:  # type: ignore[override]
        if self._webSockets is None:
            return self.httpChannel(addr)
        return _FirstRequest(self, addr)

    def httpChannel(self, addr: IAddress | None) -> Any:
        """An HTTP channel (of C{protocol}, L{_Channel} or a subclass) with this site's limits."""
        channel: Any = super().buildProtocol(addr)
        channel.clock = self.reactor
        channel.requestTimeout = self.requestTimeout
        limitHeaders(channel, self.maxHeaderSize)
        return channel

    def buildRequest(self, *args: Any) -> _Request:
        """The site's requestFactory: a request with this site's bound on bodies."""
        request = _Request(*args)
        request.maxBodySize = self.maxBodySize
        return request

    def fastLaneFactory(self, path: bytes, head: bytes) -> IProtocolFactory | None:
        """The factory for a GET of C{path} that may take the fast lane, or None."""
        assert self._webSockets is not None
        where, factory = self._webSockets
        if (path == where or path.startswith(where + b"/")) and asksForWebSocket(_upgradeHeader(head)):
            return factory
        return None

    def log(self, request: http.Request) -> None:
        if request.path not in self.quietPaths:
            super().log(request)
