"""The private parts of Twisted that txchat uses (txchat/twisted_internals.py), checked one by
one against the real Twisted: when a release changes one of them, the test named for it fails
here. These are the transport ones, on real sockets (the HTTP ones: tests/unit)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Generic, TypeVar

import pytest
import pytest_twisted
from twisted.internet import reactor, ssl
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol, serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IPullProducer, ITLSTransport, ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.tcp import Connection
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
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

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost.callback(None)


def _transport(protocol: Protocol) -> ITransport:
    assert protocol.transport is not None, "not connected"
    return protocol.transport


_Made = TypeVar("_Made")


class _Acceptor(Factory[Protocol], Generic[_Made]):
    """The server's factory: its protocol says through C{made} that it is connected. With
    C{startTLS}, the protocol starts TLS on its TCP transport as it connects (the transport
    then delivers to a TLS wrapper)."""

    def __init__(self, protocol: type[_Served[_Made]], startTLS: ssl.CertificateOptions | None = None) -> None:
        self.protocol = protocol
        self.startTLS = startTLS
        self.made: Deferred[_Made] = Deferred()


class _Served(_Inbox, Generic[_Made]):
    factory: _Acceptor[_Made]

    def connectionMade(self) -> None:
        if self.factory.startTLS is not None:
            ITLSTransport(_transport(self)).startTLS(self.factory.startTLS)


class _Accepted(_Served[_Inbox]):
    """The server side: tells its factory that it is connected."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.made.callback(self)


_Listen = Callable[[IProtocolFactory], "Deferred[IListeningPort]"]


async def _pair(listen: _Listen, factory: IProtocolFactory) -> tuple[IListeningPort, _Inbox]:
    """A listening port, and a client connected to it."""
    port = await listen(factory)
    address = port.getHost()
    assert isinstance(address, IPv4Address)
    client = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", address.port), _Inbox())
    return port, client


def _tcp(factory: IProtocolFactory) -> Deferred[IListeningPort]:
    return TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)


async def _close(port: IListeningPort, client: _Inbox, server: _Inbox) -> None:
    _transport(client).loseConnection()
    await within(client.lost)
    await within(server.lost)
    await maybeDeferred(port.stopListening)


@implementer(IPullProducer)
class _Producer:
    resumed = 0

    def resumeProducing(self) -> None:
        self.resumed += 1

    def stopProducing(self) -> None:
        pass


@pytest_twisted.ensureDeferred
async def test_directSend_is_the_sockets_send_safe_while_a_pull_producer_says_the_buffer_is_empty() -> None:
    factory = _Acceptor[_Inbox](_Accepted)
    port, client = await _pair(_tcp, factory)
    server: _Inbox = await within(factory.made)
    transport = server.transport
    assert isinstance(transport, Connection), "not TCP's own transport"
    send = twisted_internals.directSend(transport)
    assert send is not None and send == transport.getHandle().send, "not the socket's own send"
    transport.write(b"a")  # Twisted holds it until the reactor writes
    producer = _Producer()
    transport.registerProducer(producer, False)
    assert producer.resumed == 1, "a pull producer is no longer resumed when it registers"
    await client.receive(1)
    assert producer.resumed == 2, "a pull producer is no longer resumed when the buffer drains"
    assert send(b"b") == 1
    assert await client.receive(2) == b"ab"
    transport.unregisterProducer()
    await _close(port, client, server)


def _tlsListener(tmp_path: Path) -> _Listen:
    """Listen with TLS (an ssl: endpoint: a TLS wrapper around the TCP transport)."""
    key, cert = makeCertificate(tmp_path)

    def listen(factory: IProtocolFactory) -> Deferred[IListeningPort]:
        description = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        return serverFromString(reactor, description).listen(factory)

    return listen


def _serverTLS(tmp_path: Path) -> ssl.CertificateOptions:
    key, cert = makeCertificate(tmp_path)
    return ssl.PrivateCertificate.loadPEM(cert.read_text() + key.read_text()).options()


@pytest.mark.parametrize("how", ["tls-endpoint", "starttls"])
@pytest_twisted.ensureDeferred
async def test_directSend_is_none_under_tls(tmp_path: Path, how: str) -> None:
    if how == "tls-endpoint":
        factory = _Acceptor[_Inbox](_Accepted)
        port, client = await _pair(_tlsListener(tmp_path), factory)
    else:
        factory = _Acceptor[_Inbox](_Accepted, startTLS=_serverTLS(tmp_path))
        port, client = await _pair(_tcp, factory)
    server: _Inbox = await within(factory.made)
    assert twisted_internals.directSend(_transport(server)) is None, "directSend would write around TLS"
    assert twisted_internals.directSend(StringTransport()) is None
    await _close(port, client, server)


class _First(_Served[tuple[_Inbox, ITransport]]):
    """Hands its connection over to a new protocol at the first bytes, as the site does."""

    def dataReceived(self, data: bytes) -> None:
        second = _Inbox()
        transport = _transport(self)
        twisted_internals.handOver(transport, second)
        second.dataReceived(data)
        self.factory.made.callback((second, transport))


@pytest.mark.parametrize("how", ["tcp", "protocol-wrapper", "tls-endpoint", "starttls"])
@pytest_twisted.ensureDeferred
async def test_handOver_makes_a_live_connection_deliver_to_the_new_protocol(tmp_path: Path, how: str) -> None:
    """Each kind of transport the site hands over: TCP's own, a wrapper (TLS), and a TCP
    transport whose protocol is a wrapper (TLS started on it)."""
    factory = _Acceptor[tuple[_Inbox, ITransport]](
        _First, startTLS=_serverTLS(tmp_path) if how == "starttls" else None)
    if how == "tls-endpoint":
        port, client = await _pair(_tlsListener(tmp_path), factory)
    else:
        port, client = await _pair(_tcp, WrappingFactory(factory) if how == "protocol-wrapper" else factory)
    if how in ("tls-endpoint", "starttls"):
        ITLSTransport(_transport(client)).startTLS(ssl.CertificateOptions())
    _transport(client).write(b"one")
    second, transport = await within(factory.made)
    assert second.transport is transport
    _transport(client).write(b"two")
    assert await second.receive(6) == b"onetwo", "the transport still delivers to the old protocol"
    _transport(second).write(b"back")
    assert await client.receive(4) == b"back"
    await _close(port, client, second)
