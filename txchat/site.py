"""The HTTP side of a connection, before any WebSocket: deadlines and size limits on requests."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.internet.protocol import connectionDone
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from txchat.config import Config
from txchat.protocol import describePeer

_log = Logger()


class _Channel(HTTPChannel):
    """An HTTP connection that must send each request's headers within a deadline.

    Twisted's own timeout restarts at every byte, so a client that trickles a header a byte at
    a time (slowloris) would never meet it; this one is counted from the request's start."""

    transport: Any  # a TCP, TLS or UNIX connection
    headerTimeout = Config.handshakeTimeout
    _deadline: IDelayedCall | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._startDeadline()

    def _startDeadline(self) -> None:
        self._deadline = self.callLater(self.headerTimeout, self._tooSlow)

    def _stopDeadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def allHeadersReceived(self) -> None:
        self._stopDeadline()
        super().allHeadersReceived()

    def requestDone(self, request: Request) -> None:
        super().requestDone(request)
        if self.transport is not None and not self.transport.disconnecting:
            self._startDeadline()  # the next request on this connection gets its own

    def lineLengthExceeded(self, line: bytes) -> None:
        # As Twisted answers headers that are too large in all: a 400, not a silent close.
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.transport.loseConnection()

    def _tooSlow(self) -> None:
        self._deadline = None
        _log.info("cut {peer}: no complete request within {seconds}s", peer=describePeer(self.transport.getPeer()),
                  seconds=self.headerTimeout)
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopDeadline()
        super().connectionLost(reason)


class ChatSite(Site):
    """The site, with a deadline for request headers and a bound on their size."""

    quietPaths = (b"/healthz",)  # a load balancer's probes would drown the access log
    noisy = False  # no "Starting factory <...>" lines: the listener says where the chat is

    def __init__(self, root: Resource, reactor: Any, config: Config = Config()) -> None:
        super().__init__(root, reactor=reactor)
        self.displayTracebacks = False
        self.protocol = type(  # type: ignore[method-assign]
            "Channel", (_Channel,),
            {"headerTimeout": config.handshakeTimeout, "totalHeadersSize": config.maxHeaderSize,
             "MAX_LENGTH": max(config.maxHeaderSize, HTTPChannel.MAX_LENGTH)},
        )

    def log(self, request: http.Request) -> None:
        if request.path not in self.quietPaths:
            super().log(request)
