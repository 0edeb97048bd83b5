"""The private parts of Twisted that txchat uses (txchat/twisted_internals.py), checked one by
one against the real Twisted: when a release changes one of them, the test named for it fails
here. The HTTP ones run on a string transport; the transport ones on real sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol, serverFromString
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import WrappingFactory
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from tests.certs import makeCertificate
from tests.live import within
from txchat import twisted_internals

# -- on real sockets ------------------------------------------------------------------------


class _Inbox(Protocol):
    """Keeps what it receives; says when it has a given number of bytes, and when it is lost."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: Deferred[None] = Deferred()
        self._waiting: list[tuple[int, Deferred[bytes]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        ready = [(n, d) for n, d in self._waiting if len(self.data) >= n]
        self._waiting = [(n, d) for n, d in self._waiting if len(self.data) < n]
        for _, d in ready:
            d.callback(self.data)

    def receive(self, count: int) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self._waiting.append((count, d))
        self.dataReceived(b"")
        return within(d)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


class _Accepted(_Inbox):
    """The server side: tells its factory that it is connected."""

    def connectionMade(self) -> None:
        self.factory.made.callback(self)  # type: ignore[attr-defined]


def _acceptor(protocol: type[Protocol] = _Accepted) -> Factory:
    factory = Factory.forProtocol(protocol)
    factory.made = Deferred()  # type: ignore[attr-defined]
    return factory


async def _pair(listen: Any, factory: Any) -> tuple[Any, _Inbox, Any]:
    """A listening port, a client connected to it, and the server's factory."""
    port = await listen(factory)
    client = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), _Inbox())
    return port, client, factory


def _tcp(factory: Any) -> Deferred[Any]:
    return TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)


async def _close(port: Any, client: _Inbox, server: _Inbox) -> None:
    client.transport.loseConnection()
    await within(client.lost)
    await within(server.lost)
    await port.stopListening()


@implementer(IPullProducer)
class _Producer:
    resumed = 0

    def resumeProducing(self) -> None:
        self.resumed += 1

    def stopProducing(self) -> None:
        pass


@pytest.mark.live
@pytest_twisted.ensureDeferred
async def test_directSend_is_the_sockets_send_safe_while_a_pull_producer_says_the_buffer_is_empty():
    port, client, factory = await _pair(_tcp, _acceptor())
    server = await within(factory.made)
    send = twisted_internals.directSend(server.transport)
    assert send is not None and send.__self__ is server.transport.getHandle(), "not the socket's own send"
    server.transport.write(b"a")  # Twisted holds it until the reactor writes
    producer = _Producer()
    server.transport.registerProducer(producer, False)
    assert producer.resumed == 1, "a pull producer is no longer resumed when it registers"
    await client.receive(1)
    assert producer.resumed == 2, "a pull producer is no longer resumed when the buffer drains"
    assert send(b"b") == 1
    assert await client.receive(2) == b"ab"
    server.transport.unregisterProducer()
    await _close(port, client, server)


def _tlsListener(tmp_path: Path) -> Any:
    """Listen with TLS (an ssl: endpoint: a TLS wrapper around the TCP transport)."""
    key, cert = makeCertificate(tmp_path)

    def listen(factory: Any) -> Deferred[Any]:
        description = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        return serverFromString(reactor, description).listen(factory)

    return listen


def _startsTLS(base: type[Protocol], tmp_path: Path) -> type[Protocol]:
    """A protocol that starts TLS on its TCP transport as it connects (the transport then
    delivers to a TLS wrapper)."""
    key, cert = makeCertificate(tmp_path)
    options = ssl.PrivateCertificate.loadPEM(cert.read_text() + key.read_text()).options()

    class StartsTLS(base):  # type: ignore[valid-type, misc]
        def connectionMade(self) -> None:
            self.transport.startTLS(options)
            super().connectionMade()

    return StartsTLS


@pytest.mark.live
@pytest.mark.parametrize("how", ["tls-endpoint", "starttls"])
@pytest_twisted.ensureDeferred
async def test_directSend_is_none_under_tls(tmp_path: Path, how: str):
    if how == "tls-endpoint":
        port, client, factory = await _pair(_tlsListener(tmp_path), _acceptor())
    else:
        port, client, factory = await _pair(_tcp, _acceptor(_startsTLS(_Accepted, tmp_path)))
    server = await within(factory.made)
    assert twisted_internals.directSend(server.transport) is None, "directSend would write around TLS"
    assert twisted_internals.directSend(StringTransport()) is None
    await _close(port, client, server)


class _First(_Inbox):
    """Hands its connection over to a new protocol at the first bytes, as the site does."""

    def dataReceived(self, data: bytes) -> None:
        second = _Inbox()
        transport = self.transport
        twisted_internals.handOver(transport, second)
        second.dataReceived(data)
        self.factory.made.callback((second, transport))  # type: ignore[attr-defined]


@pytest.mark.live
@pytest.mark.parametrize("how", ["tcp", "protocol-wrapper", "tls-endpoint", "starttls"])
@pytest_twisted.ensureDeferred
async def test_handOver_makes_a_live_connection_deliver_to_the_new_protocol(tmp_path: Path, how: str):
    """Each kind of transport the site hands over: TCP's own, a wrapper (TLS), and a TCP
    transport whose protocol is a wrapper (TLS started on it)."""
    factory = _acceptor(_startsTLS(_First, tmp_path) if how == "starttls" else _First)
    if how == "tls-endpoint":
        port, client, _ = await _pair(_tlsListener(tmp_path), factory)
    else:
        port, client, _ = await _pair(_tcp, WrappingFactory(factory) if how == "protocol-wrapper" else factory)
    if how in ("tls-endpoint", "starttls"):
        client.transport.startTLS(ssl.CertificateOptions())
    client.transport.write(b"one")
    second, transport = await within(factory.made)
    assert second.transport is transport
    client.transport.write(b"two")
    assert await second.receive(6) == b"onetwo", "the transport still delivers to the old protocol"
    second.transport.write(b"back")
    assert await client.receive(4) == b"back"
    await _close(port, client, second)


# -- HTTP, on a string transport ------------------------------------------------------------


class _Echo(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.rendered: list[bytes] = []

    def render(self, request: Request) -> bytes:
        body = request.content.read() if request.content is not None else b""
        self.rendered.append(body)
        return body


def _channel(
    protocol: type[HTTPChannel] = HTTPChannel, requestFactory: Any = None,
) -> tuple[Any, StringTransport, _Echo]:
    resource = _Echo()
    site = Site(resource, requestFactory=requestFactory, reactor=Clock())
    site.protocol = protocol  # type: ignore[assignment]
    channel: Any = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport, resource


def _get(*headers: bytes) -> bytes:
    return b"\r\n".join([b"GET / HTTP/1.1", b"Host: x", *headers]) + b"\r\n\r\n"


@pytest.mark.unit
@pytest.mark.parametrize("limited", [True, False])
def test_limitHeaders_sets_what_HTTPChannel_counts_the_request_head_against(limited: bool):
    channel, transport, _ = _channel()
    if limited:
        twisted_internals.limitHeaders(channel, 100)
    channel.dataReceived(_get(*[b"X-%d: %s" % (i, b"a" * 40) for i in range(3)]))
    status = transport.value().split(b"\r\n")[0]
    assert status == (b"HTTP/1.1 400 Bad Request" if limited else b"HTTP/1.1 200 OK")
    channel.connectionLost(None)


@pytest.mark.unit
@pytest.mark.parametrize("length, answered", [(18000, True), (21000, False)])
def test_limitHeaders_raises_the_line_bound_MAX_LENGTH_with_it(length: int, answered: bool):
    """A line over Twisted's own MAX_LENGTH passes once the bound is raised; one over the new
    bound goes to LineReceiver's lineLengthExceeded, whose default closes the connection."""
    assert HTTPChannel.MAX_LENGTH < 18000
    channel, transport, _ = _channel()
    twisted_internals.limitHeaders(channel, 20000)
    channel.dataReceived(_get(b"X-Long: " + b"a" * length))
    assert transport.value().startswith(b"HTTP/1.1 200 OK") == answered
    assert transport.disconnecting != answered
    channel.connectionLost(None)


class _Hooks(twisted_internals.ChannelHooks):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def headersReceived(self) -> None:
        self.events.append("headers")

    def awaitingRequest(self) -> None:
        self.events.append("awaiting")


@pytest.mark.unit
def test_ChannelHooks_see_allHeadersReceived_and_requestDone():
    channel, transport, resource = _channel(_Hooks)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
    assert channel.events == ["headers"] and resource.rendered == []
    channel.dataReceived(b"abc")
    assert resource.rendered == [b"abc"]
    assert channel.events == ["headers", "awaiting"]
    channel.dataReceived(_get(b"Connection: close"))
    assert len(resource.rendered) == 2
    assert channel.events == ["headers", "awaiting", "headers"], "awaiting a request on a closing connection"
    assert transport.disconnecting
    channel.connectionLost(None)


class _Limited(twisted_internals.BodyLimit):
    maxBodySize = 10
    refused: list[int] = []

    def bodyTooLarge(self) -> None:
        self.refused.append(self._received)
        self.channel.loseConnection()


@pytest.mark.unit
@pytest.mark.parametrize("body, refusedAt", [(b"0123456789", None), (b"0123456789a", 0)])
def test_BodyLimit_sees_gotLength_before_the_body(body: bytes, refusedAt: int | None):
    _Limited.refused = []
    channel, transport, resource = _channel(requestFactory=_Limited)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    assert _Limited.refused == ([] if refusedAt is None else [refusedAt])
    channel.dataReceived(body)
    assert resource.rendered == ([body] if refusedAt is None else [])
    channel.connectionLost(None)


@pytest.mark.unit
def test_BodyLimit_counts_handleContentChunk_and_stops_requestReceived():
    _Limited.refused = []
    channel, transport, resource = _channel(requestFactory=_Limited)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    channel.dataReceived(b"6\r\n012345\r\n")
    assert _Limited.refused == []
    channel.dataReceived(b"6\r\n6789ab\r\n")
    assert _Limited.refused == [12]
    channel.dataReceived(b"0\r\n\r\n")
    assert resource.rendered == [], "a refused request was run"
    channel.connectionLost(None)


@pytest.mark.unit
def test_BodyLimit_passes_a_body_within_the_bound_in_chunks():
    _Limited.refused = []
    channel, transport, resource = _channel(requestFactory=_Limited)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"6\r\n012345\r\n4\r\n6789\r\n0\r\n\r\n")
    assert _Limited.refused == [] and resource.rendered == [b"0123456789"]
    channel.connectionLost(None)


class _Keeps(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render(self, request: Request) -> bytes:
        self.requests.append(request)
        return b"ok"


@pytest.mark.unit
def test_combinedLogLine_shows_the_uri_and_referrer_given_where_combinedLogFormatter_reads_them():
    resource = _Keeps()
    site = Site(resource, reactor=Clock())
    site.protocol = HTTPChannel  # type: ignore[assignment]
    channel: Any = site.buildProtocol(None)
    channel.makeConnection(StringTransport())
    channel.dataReceived(_get(b"Referer: http://x/room/a?token=secret-r", b"User-Agent: ua")
                         .replace(b"GET / ", b"GET /ws?token=secret-u "))
    [request] = resource.requests
    timestamp = "[30/Nov/2026:20:00:00 +0000]"
    assert twisted_internals.combinedLogLine(timestamp, request, request.uri, request.getHeader(b"referer")) \
        == http.combinedLogFormatter(timestamp, request), "the stand-in changed more than the two answers"
    line = twisted_internals.combinedLogLine(timestamp, request, b"/ws", b"http://x/room/a")
    assert '"GET /ws HTTP/1.1" 200 2 "http://x/room/a" "ua"' in line
    assert "secret" not in line
    channel.connectionLost(None)
