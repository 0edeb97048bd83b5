"""Every private part of Autobahn that txchat relies on, fenced in here.

Each is used for a reason its docstring gives, and tests/unit/test_autobahn_internals.py checks
each one directly, so that an Autobahn release that changes them fails those tests by name,
not the chat in production. setup.py caps autobahn at the versions tested.
"""

from __future__ import annotations

from types import FunctionType
from typing import Any, Callable, TypeVar

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

P = TypeVar("P", bound=WebSocketServerProtocol)


class ServerProtocol(WebSocketServerProtocol):
    """Autobahn's server protocol with its undocumented output and closing methods overridden
    in one place, for a subclass that owns its output.

    Autobahn writes every frame of its own (the handshake's response, pings, pongs, closes)
    through C{sendData}, sends every close frame (ours, or the reply to the client's) through
    C{sendCloseFrame}, ends every connection it gives up on (timeouts, protocol errors)
    through C{dropConnection}, and refuses every handshake through C{failHandshake}. None of
    the four is in its interfaces. And C{connectionLost} lets go of C{is_closed}, whose
    result is the protocol itself."""

    # The close frame this side opened the closing handshake with (code, reason), whoever
    # asked for it (the subclass, or Autobahn failing the connection): what the connection
    # was closed with, which Autobahn's onClose does not say (it gives the peer's code).
    closedWith: tuple[int | None, str] | None = None

    def write(self, data: bytes) -> None:
        """Where Autobahn's own frames go (the subclass's way out, in line with its own)."""
        raise NotImplementedError

    def outputEnds(self) -> None:
        """Called before any close frame is sent and before the connection is dropped."""

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # Autobahn's frames pass here: keep them in line with the subclass's own output.
        self.write(data)

    def handshakeRefused(self, status: int, reason: str) -> None:
        """Called as a handshake is refused with HTTP C{status}, by the subclass or Autobahn."""

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False) -> None:
        # Nothing may follow a close frame.
        self.outputEnds()
        if not isReply and self.state == WebSocketProtocol.STATE_OPEN:
            self.closedWith = (code, (reasonUtf8 or b"").decode("utf-8", "replace"))
        super().sendCloseFrame(code, reasonUtf8, isReply)

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        self.handshakeRefused(code, reason)
        super().failHandshake(reason, code, responseHeaders)

    def dropConnection(self, abort: bool = False) -> None:
        self.outputEnds()
        super().dropConnection(abort)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Autobahn resolves is_closed with the protocol itself, a reference cycle: each closed
        # connection then waited for a pass of the cyclic collector, and thousands of them made
        # those passes long (tens of milliseconds each with connections coming and going). What
        # waited on it has had its answer; a closed connection is then freed as it is let go.
        try:
            super().connectionLost(reason)
        finally:
            self.is_closed = None


class _ClockTimer:
    """Autobahn's handshake timers, on our injected clock instead of the global reactor."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> IDelayedCall:
        return self._clock.callLater(delay, func, *args, **kwargs)


def useClock(factory: WebSocketServerFactory, clock: IReactorTime) -> None:
    """Run the factory's handshake timers (opening and closing) on C{clock}: Autobahn takes
    them from the private C{_batched_timer}, built on the global reactor."""
    factory._batched_timer = _ClockTimer(clock)


def protocolWithOptions(factory: WebSocketServerFactory, base: type[P]) -> type[P]:
    """The protocol class with the factory's options set on the class itself.

    At every connect Autobahn copies some thirty options (the names in C{CONFIG_ATTRS}) from
    the factory onto the new protocol, and pretty-prints the lot for a debug line: a third of
    the cost of a connect, and memory on each connection. They are the same for every client,
    so they are set once here and the per-connection copy is left empty."""
    options = {}
    for name in base.CONFIG_ATTRS:
        value = getattr(factory, name)
        options[name] = staticmethod(value) if isinstance(value, FunctionType) else value
    return type(base.__name__, (base,), {**options, "CONFIG_ATTRS": ()})


def setMaxMessageSize(protocol: WebSocketServerProtocol, size: int) -> None:
    """Give one connection its own limit on the messages it may send (0: none), chosen once its
    handshake is taken: the factory's options are on the protocol class (L{protocolWithOptions}),
    and Autobahn reads the limit from the instance at every frame, so an attribute of the
    instance shadows the class's for this connection alone."""
    setattr(protocol, "maxMessagePayloadSize", size)  # (an option Autobahn sets from its factory, untyped)


def feed(protocol: WebSocketServerProtocol, data: bytes) -> None:
    """Hand received bytes to Autobahn's parser, skipping the public C{dataReceived}, which
    formats a debug line for every read."""
    protocol._dataReceived(data)


def failConnection(protocol: WebSocketServerProtocol, code: int, reason: str) -> None:
    """Autobahn's own way of failing a connection (as it does for 1007 and 1009): a close
    frame with C{code}, then the closing handshake."""
    protocol._fail_connection(code, reason)


def cancelCloseTimer(protocol: WebSocketServerProtocol) -> None:
    """Autobahn leaves its closing-handshake timer running when the connection is cut before
    the client answers; a timer left behind keeps the protocol alive until it fires."""
    timer = protocol.closeHandshakeTimeoutCall
    if timer is not None and timer.active():
        timer.cancel()


def isOpen(protocol: WebSocketServerProtocol) -> bool:
    """Whether the connection is open: handshake done, no close frame sent or received.

    Autobahn's public C{is_open} is a Deferred that fires once; the state it keeps is the
    only way to ask later."""
    return protocol.state == WebSocketProtocol.STATE_OPEN


def sendCloseFrame(protocol: WebSocketServerProtocol, code: int, reason: str) -> None:
    """Start the closing handshake with C{code}: Autobahn's public C{sendClose} refuses every
    code but 1000 and 3000-4999, and the chat closes with 1001, 1008 and 1013 too."""
    protocol.sendCloseFrame(code, reason.encode("utf-8"))


def dropConnection(protocol: WebSocketServerProtocol) -> None:
    """Abort the connection the way Autobahn does when it gives up on one (its state closed,
    C{onClose} called), for a connection that cannot be opened."""
    protocol.dropConnection(abort=True)


def requestUri(protocol: WebSocketServerProtocol) -> str:
    """The handshake's request target as the client sent it, query still percent-encoded.

    Autobahn's C{ConnectionRequest.params} has the query decoded to text already, invalid
    UTF-8 replaced; the raw query is what lets a bad name be refused rather than mangled."""
    return protocol.http_request_uri


def framedText(factory: WebSocketServerFactory, payload: bytes) -> bytes:
    """C{payload} as one server text frame, to be written as it is to every client.

    A prepared message's frame (its undocumented C{payloadHybi}) is framed once for all;
    Autobahn's public C{sendPreparedMessage} would pass it through C{sendData} per client.
    A hub uses this as its method (C{_frame = framedText}): no call is added per message."""
    return factory.prepareMessage(payload).payloadHybi
