"""Every private part of Autobahn that txchat relies on, fenced in here.

Each is used for a reason its docstring gives, and tests/test_autobahn_internals.py checks
each one directly, so that an Autobahn release that changes them fails those tests by name,
not the chat in production. setup.py caps autobahn at the versions tested.
"""

from __future__ import annotations

from types import FunctionType
from typing import Any, Callable, TypeVar

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime

P = TypeVar("P", bound=WebSocketServerProtocol)


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
