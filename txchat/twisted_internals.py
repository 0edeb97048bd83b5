"""Every private part of Twisted that txchat relies on, fenced in here.

Private here means an attribute or method that Twisted does not document for users (or says is
"not intended for users"), or internal state read or set under its feet. Each is used for a
reason its docstring gives, and test_twisted_internals.py (in tests/unit and tests/live) checks
each one directly against the real Twisted, so that a release that changes them fails those
tests by name, not the chat in production. setup.py caps twisted at the versions tested.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IProtocol, ISSLTransport, ITransport
from twisted.internet.tcp import Connection
from twisted.protocols.policies import ProtocolWrapper
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.server import Request


def directSend(transport: ITransport) -> Callable[[bytes], int] | None:
    """The socket's own send, for a plain TCP or UNIX connection; None where bytes must go
    through the transport (TLS, or a reactor of another kind).

    One send call per client and flush, with no round through the reactor. It writes under
    the transport's feet, so it is safe only while the transport holds nothing: the caller
    knows when that is by being the transport's pull producer, which a Twisted transport
    resumes once at registration and again each time its buffer has drained."""
    if isinstance(transport, Connection) and not ISSLTransport.providedBy(transport):
        return transport.getHandle().send
    return None


def handOver(transport: ITransport, protocol: IProtocol) -> None:
    """Make C{protocol} the one that a live C{transport} delivers to from now on, and connect
    it (a TLS transport is a wrapper around the TCP one).

    Twisted has no public way to change a connection's protocol; this sets what its
    transports read, as Autobahn's WebSocketResource does for a handshake through twisted.web."""
    current: Any = transport
    if isinstance(current, ProtocolWrapper):
        current.wrappedProtocol = protocol
    elif isinstance(current.protocol, ProtocolWrapper):
        current.protocol.wrappedProtocol = protocol
    else:
        current.protocol = protocol
    protocol.makeConnection(transport)


def limitHeaders(channel: HTTPChannel, size: int) -> None:
    """Answer 400 to a request whose request line and headers pass C{size} bytes in all.

    HTTPChannel counts them against C{totalHeadersSize}, and its LineReceiver drops a single
    line longer than C{MAX_LENGTH} before that count sees it; both are set per channel here,
    the line bound never below Twisted's own."""
    channel.totalHeadersSize = size
    channel.MAX_LENGTH = max(size, HTTPChannel.MAX_LENGTH)


class ChannelHooks(HTTPChannel):
    """HTTPChannel with the two points of a request's life that a request deadline needs.

    Twisted's own timeout restarts at every byte received; a deadline for a whole request
    (headers and body) needs to know when the request is in (C{allContentReceived}, called
    just before it runs) and when the next one may start (C{requestDone}, which then runs
    the requests that came meanwhile), two undocumented methods of HTTPChannel, and whether
    the connection stays open for another (its undocumented C{persistent})."""

    transport: Any  # a TCP, TLS or UNIX connection; None once it is lost

    def contentReceived(self) -> None:
        """The request is in whole, headers and body; it runs next."""

    def awaitingRequest(self) -> None:
        """A request is answered and the connection stays open for another."""

    def allContentReceived(self) -> None:
        self.contentReceived()  # first: a request that is answered at once awaits the next
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        # Before the requests that were pipelined behind this one run (in super's call), so
        # that the first of them is in before the next is awaited. Not persistent: the
        # channel closes the connection.
        if self.persistent and self.transport is not None and not self.transport.disconnecting:
            self.awaitingRequest()
        super().requestDone(request)


class BodyLimit(Request):
    """A request that refuses a body over C{maxBodySize} bytes before it is read in full.

    HTTPChannel tells a request the body's declared length (C{gotLength}), hands it the body
    chunk by chunk (C{handleContentChunk}), then runs it (C{requestReceived}): three methods
    Twisted says are not intended for users. A refused request is not run."""

    maxBodySize: int
    _received = 0
    _refused = False

    def bodyTooLarge(self) -> None:
        """The body is over the bound (declared so, or has passed it): answer, and close."""
        raise NotImplementedError

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.maxBodySize:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.maxBodySize:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        self._refused = True
        self.bodyTooLarge()


class _AsLogged:
    """A request as the access log formatter reads it, with two answers of its own."""

    def __init__(self, request: http.Request, uri: bytes, referrer: bytes | None) -> None:
        self._request = request
        self._referrer = referrer
        self.uri = uri

    def getHeader(self, name: bytes) -> bytes | None:
        return self._referrer if name.lower() == b"referer" else self._request.getHeader(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def combinedLogLine(timestamp: str, request: http.Request, uri: bytes, referrer: bytes | None) -> str:
    """Twisted's combined access-log line for C{request}, showing C{uri} and C{referrer} in
    place of the request's own.

    C{combinedLogFormatter} takes the request alone and reads them from its C{uri} attribute
    and its C{getHeader(b"referer")}: it is given a stand-in that answers those two. A release
    that read them some other way would log what the stand-in hides."""
    return http.combinedLogFormatter(timestamp, _AsLogged(request, uri, referrer))
