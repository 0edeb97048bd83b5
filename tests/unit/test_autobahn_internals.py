"""The private parts of Autobahn that txchat uses (txchat/autobahn_internals.py), checked one by
one: when an Autobahn release changes one of them, the test named for it fails here."""

from __future__ import annotations

import gc
import inspect
import weakref
from typing import Callable, TypeVar, cast

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from bench import frames
from tests.support.memory import Peer, makeHub
from txchat import autobahn_internals


def test_factory_takes_its_handshake_timers_from_batched_timer() -> None:
    factory = WebSocketServerFactory()
    assert hasattr(factory, "_batched_timer"), "Autobahn no longer keeps its timers in _batched_timer"
    clock = Clock()
    autobahn_internals.useClock(factory, clock)
    calls: list[int] = []
    factory._batched_timer.call_later(3, calls.append, 1)
    clock.advance(3)
    assert calls == [1]


def test_config_attrs_lists_the_options_autobahn_copies_onto_each_protocol() -> None:
    names = WebSocketServerProtocol.CONFIG_ATTRS
    assert {"maxMessagePayloadSize", "failByDrop", "openHandshakeTimeout", "closeHandshakeTimeout"} <= set(names)
    factory = WebSocketServerFactory()
    factory.setProtocolOptions(maxMessagePayloadSize=77, failByDrop=False)
    cls = autobahn_internals.protocolWithOptions(factory, WebSocketServerProtocol)
    # The options are class attributes made at run time, which Autobahn's annotations cannot know.
    assert cls.CONFIG_ATTRS == ()  # type: ignore[comparison-overlap]
    assert (cls.maxMessagePayloadSize, cls.failByDrop) == (77, False)  # type: ignore[attr-defined]
    assert all(hasattr(cls, name) for name in names)


def test_private_entry_points_exist_with_the_signatures_used() -> None:
    assert list(inspect.signature(WebSocketServerProtocol._dataReceived).parameters) == ["self", "data"]
    assert list(inspect.signature(WebSocketServerProtocol._fail_connection).parameters)[:3] == [
        "self", "code", "reason"]
    hub, _ = makeHub()
    peer = Peer(hub)
    assert hasattr(peer.protocol, "closeHandshakeTimeoutCall"), "Autobahn renamed its closing-handshake timer"
    peer.transport.abortConnection()


def test_the_internals_do_their_jobs_on_a_real_connection() -> None:
    """feed parses, failConnection sends its close code, the close timer is cancellable."""
    hub, clock = makeHub()
    peer = Peer(hub)
    autobahn_internals.feed(peer.protocol, frames.text("through feed"))
    clock.advance(0)
    assert peer.messages() == ["through feed"]
    autobahn_internals.failConnection(peer.protocol, 1003, "test")
    assert peer.closeCode() == 1003
    timer = peer.protocol.closeHandshakeTimeoutCall
    assert timer is not None and timer.active()
    autobahn_internals.cancelCloseTimer(peer.protocol)
    assert not timer.active()
    peer.transport.abortConnection()
    assert clock.getDelayedCalls() == []


# -- the protocol's overrides and the fence functions, on a bare ServerProtocol ------------

ENDS = b"<output ends>"


class _Recording(autobahn_internals.ServerProtocol):
    """A ServerProtocol that keeps what it is asked to write, and notes when output ends."""

    uri: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def outputEnds(self) -> None:
        self.out.append(ENDS)

    def onConnect(self, request: ConnectionRequest) -> None:
        self.uri = autobahn_internals.requestUri(self)
        return None


class _Transport(StringTransport):
    def unregisterProducer(self) -> None:
        self.producer = None  # as a TCP transport does, with or without a producer


class _Intercepted(_Recording):
    """A _Recording whose _dataReceived, once C{intercept} is set, hands the bytes to it alone."""

    intercept: Callable[[bytes], None] | None = None

    def _dataReceived(self, data: bytes) -> None:
        if self.intercept is None:
            super()._dataReceived(data)
        else:
            self.intercept(data)


_R = TypeVar("_R", bound=_Recording)


def _build(factory: WebSocketServerFactory, protocol: type[_R]) -> _R:
    factory.protocol = protocol
    built = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    assert isinstance(built, protocol)
    return built


def _connect(kind: type[_R], path: str = "/ws") -> tuple[_R, _Transport, Clock]:
    """A bare ServerProtocol of Autobahn's on a string transport, its handshake done."""
    clock = Clock()
    factory = WebSocketServerFactory()
    factory.setProtocolOptions(failByDrop=False, openHandshakeTimeout=5, closeHandshakeTimeout=1,
                               autoPingInterval=0)
    autobahn_internals.useClock(factory, clock)
    protocol = _build(factory, kind)
    transport = _Transport()
    protocol.makeConnection(transport)
    protocol.dataReceived(frames.handshake(path))
    return protocol, transport, clock


def _written(protocol: _Recording) -> list[tuple[int, bytes] | bytes]:
    """The protocol's output after the handshake response: frames, and where output ended."""
    out: list[tuple[int, bytes] | bytes] = []
    for chunk in protocol.out[1:]:
        if chunk == ENDS:
            out.append(ENDS)
        else:
            parsed, rest = frames.parseFrames(chunk)
            assert rest == b""
            out.extend(parsed)
    return out


def test_sendData_carries_every_frame_autobahn_writes() -> None:
    protocol, transport, clock = _connect(_Recording)
    assert protocol.out[0].startswith(b"HTTP/1.1 101 "), "the handshake's answer did not pass sendData"
    protocol.sendPing(b"p")
    protocol.dataReceived(frames.clientFrame(frames.PING, b"q"))
    protocol.sendClose(1000)
    assert _written(protocol) == [(frames.PING, b"p"), (frames.PONG, b"q"), ENDS,
                                  (frames.CLOSE, b"\x03\xe8")]
    assert transport.value() == b"", "Autobahn wrote around sendData"
    protocol.connectionLost(Failure(ConnectionDone()))
    autobahn_internals.cancelCloseTimer(protocol)
    assert clock.getDelayedCalls() == []


def test_sendCloseFrame_sends_the_close_codes_sendClose_refuses() -> None:
    protocol, transport, clock = _connect(_Recording)
    with pytest.raises(Exception, match="invalid close code"):
        protocol.sendClose(1008, "policy")
    autobahn_internals.sendCloseFrame(protocol, 1008, "policy")
    assert _written(protocol) == [ENDS, (frames.CLOSE, b"\x03\xf0policy")]
    assert not autobahn_internals.isOpen(protocol)
    clock.advance(1)  # the client does not answer: Autobahn drops the connection
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


def test_sendCloseFrame_replies_to_the_clients_close() -> None:
    """The reply to a client's close passes the override too, output ended before it (and
    again as the server then drops the connection, as a server closes TCP first)."""
    protocol, transport, clock = _connect(_Recording)
    protocol.dataReceived(frames.clientFrame(frames.CLOSE, b"\x03\xe9"))
    assert _written(protocol) == [ENDS, (frames.CLOSE, b"\x03\xe8"), ENDS]
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


def test_dropConnection_is_how_autobahn_gives_up_on_a_connection() -> None:
    """Autobahn's opening-handshake timeout drops through the override; the fence function
    aborts."""
    clock = Clock()
    factory = WebSocketServerFactory()
    factory.setProtocolOptions(openHandshakeTimeout=5)
    autobahn_internals.useClock(factory, clock)
    silent = _build(factory, _Recording)
    transport = _Transport()
    silent.makeConnection(transport)
    clock.advance(5)
    assert silent.out == [ENDS] and transport.disconnecting
    silent.connectionLost(Failure(ConnectionDone()))

    protocol, transport, clock = _connect(_Recording)
    autobahn_internals.dropConnection(protocol)
    assert _written(protocol) == [ENDS]
    assert transport.disconnecting and not autobahn_internals.isOpen(protocol)
    protocol.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


def test_isOpen_reads_autobahns_state() -> None:
    clock = Clock()
    factory = WebSocketServerFactory()
    autobahn_internals.useClock(factory, clock)
    protocol = _build(factory, _Recording)
    protocol.makeConnection(_Transport())
    assert not autobahn_internals.isOpen(protocol)  # still connecting
    protocol.dataReceived(frames.handshake())
    assert autobahn_internals.isOpen(protocol)
    protocol.sendClose(1000)
    assert not autobahn_internals.isOpen(protocol)
    protocol.connectionLost(Failure(ConnectionDone()))
    assert not autobahn_internals.isOpen(protocol)
    for call in clock.getDelayedCalls():
        call.cancel()


def test_requestUri_is_the_request_target_as_sent_when_onConnect_runs() -> None:
    protocol, transport, clock = _connect(_Recording, "/ws/room?name=%FF%20x&since=a%3A1")
    assert protocol.uri == "/ws/room?name=%FF%20x&since=a%3A1"
    protocol.connectionLost(Failure(ConnectionDone()))


def test_framedText_is_prepareMessage_payloadHybi_one_unmasked_text_frame() -> None:
    factory = WebSocketServerFactory()
    assert autobahn_internals.framedText(factory, b"hi") == b"\x81\x02hi"
    long = b"x" * 300
    assert autobahn_internals.framedText(factory, long) == b"\x81\x7e\x01\x2c" + long

    class Hub(WebSocketServerFactory):
        frame = autobahn_internals.framedText  # as a method, the way the hub uses it

    assert Hub().frame(b"hi") == b"\x81\x02hi"


def test_feed_skips_nothing_of_dataReceived_but_its_debug_line() -> None:
    """ChatProtocol.dataReceived calls feed instead of Autobahn's dataReceived: that must do
    no more than hand the bytes to _dataReceived (a counter or a timer there would be lost)."""
    protocol, transport, clock = _connect(_Intercepted)
    fed: list[bytes] = []
    protocol.intercept = fed.append
    before = dict(vars(protocol))
    WebSocketServerProtocol.dataReceived(protocol, b"bytes")
    assert fed == [b"bytes"]
    assert vars(protocol) == before, "Autobahn's dataReceived now changes the protocol's state"
    assert clock.getDelayedCalls() == [] and transport.value() == b""
    protocol.intercept = None
    protocol.connectionLost(Failure(ConnectionDone()))


def test_closedWith_is_the_close_frame_this_side_opened_the_closing_handshake_with() -> None:
    """Ours (through the fence), Autobahn's own (failing a connection), not a reply."""
    protocol, transport, clock = _connect(_Recording)
    assert protocol.closedWith is None
    autobahn_internals.sendCloseFrame(protocol, 1008, "policy")
    assert protocol.closedWith == (1008, "policy")
    protocol.connectionLost(Failure(ConnectionDone()))
    autobahn_internals.cancelCloseTimer(protocol)

    protocol, transport, clock = _connect(_Recording)
    protocol.dataReceived(frames.clientFrame(frames.CLOSE, b"\x03\xe7"))  # 999: Autobahn fails with 1002
    assert protocol.closedWith == (1002, "invalid close code 999")
    assert _written(protocol)[1] == (frames.CLOSE, b"\x03\xea" + b"invalid close code 999")
    protocol.connectionLost(Failure(ConnectionDone()))
    autobahn_internals.cancelCloseTimer(protocol)

    protocol, transport, clock = _connect(_Recording)
    protocol.dataReceived(frames.clientFrame(frames.CLOSE, b"\x03\xe9"))  # the client's 1001: a reply
    assert protocol.closedWith is None
    protocol.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


class _Refusing(_Recording):
    def __init__(self) -> None:
        super().__init__()
        self.refused: list[tuple[int, str]] = []

    def handshakeRefused(self, status: int, reason: str) -> None:
        self.refused.append((status, reason))

    def onConnect(self, request: ConnectionRequest) -> None:
        if request.path == "/deny":
            raise ConnectionDeny(403, "not you")
        return None


@pytest.mark.parametrize("path, extra, refused", [
    ("/deny", {}, (403, "not you")),  # onConnect's refusal
    ("/ws", {"Sec-WebSocket-Version": "8"}, None),  # Autobahn's own: a second version header
    ("/ws", {}, "none"),
])
def test_failHandshake_is_where_every_refusal_passes(
    path: str, extra: dict[str, str], refused: tuple[int, str] | str | None,
) -> None:
    clock = Clock()
    factory = WebSocketServerFactory()
    factory.protocol = _Refusing
    autobahn_internals.useClock(factory, clock)
    protocol = cast(_Refusing, factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)))
    protocol.makeConnection(_Transport())
    protocol.dataReceived(frames.handshake(path, headers=extra))
    if refused == "none":
        assert protocol.refused == [] and autobahn_internals.isOpen(protocol)
    elif refused is None:
        assert [status for status, _ in protocol.refused] == [400]
    else:
        assert protocol.refused == [refused]
    assert protocol.out[0].startswith(b"HTTP/1.1 %d " % (protocol.refused[0][0] if protocol.refused else 101))
    protocol.connectionLost(Failure(ConnectionDone()))
    for call in clock.getDelayedCalls():
        call.cancel()


def test_setMaxMessageSize_gives_one_connection_its_own_limit() -> None:
    """The option lives on the protocol class (protocolWithOptions); an instance's attribute
    shadows it for that connection alone, and Autobahn reads it at every frame."""
    hub, clock = makeHub(maxMessageSize=16)
    wide, narrow = Peer(hub), Peer(hub)
    autobahn_internals.setMaxMessageSize(wide.protocol, 1000)
    assert getattr(type(wide.protocol), "maxMessagePayloadSize") == 16
    assert getattr(wide.protocol, "maxMessagePayloadSize") == 1000
    assert getattr(narrow.protocol, "maxMessagePayloadSize") == 16
    wide.say("x" * 1000)
    clock.advance(0)
    assert wide.messages() == ["x" * 1000] and wide.closeCode() is None
    wide.say("x" * 1001)
    narrow.say("x" * 17)
    clock.advance(0)
    assert wide.closeCode() == 1009 and narrow.closeCode() == 1009
    clock.advance(hub.config.closeTimeout)


def test_connectionLost_lets_go_of_is_closed_so_a_closed_connection_needs_no_collector() -> None:
    """Autobahn resolves is_closed with the protocol itself; connectionLost cuts that cycle, so
    connections coming and going leave nothing for the collector's passes to find."""
    hub, clock = makeHub()
    peer = Peer(hub)
    protocol = weakref.ref(peer.protocol)
    gc.disable()
    try:
        peer.transport.abortConnection()
        del peer
        assert protocol() is None
    finally:
        gc.enable()
    hub.closeAll()
