"""The private parts of Twisted that txchat uses (txchat/twisted_internals.py), checked one by
one against the real Twisted: when a release changes one of them, the test named for it fails
here. These are the transport ones, on real sockets (the HTTP ones: tests/unit)."""

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

from tests.support.certs import makeCertificate
from tests.support.live import within
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
