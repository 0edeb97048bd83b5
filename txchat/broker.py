"""Where accepted messages go before they are delivered: the seam for running several processes.

The hub publishes every accepted message to its broker and delivers only what the broker hands
back, so one process and many share the same path and the same single order.
"""

from __future__ import annotations

from typing import Callable, Protocol

from twisted.internet.defer import Deferred, succeed

Deliver = Callable[[bytes], None]


class Broker(Protocol):
    def start(self, deliver: Deliver) -> None:
        """Begin handing published messages, in their one order, to C{deliver}."""

    def publish(self, message: bytes) -> None:
        """Send an accepted message to every process of the chat, this one included."""

    def stop(self) -> Deferred[None]:
        """Let go of any connection; fires when done."""


class LocalBroker:
    """The in-process broker: one process is the whole chat, so publishing is delivering."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def publish(self, message: bytes) -> None:
        if self._deliver is not None:
            self._deliver(message)

    def stop(self) -> Deferred[None]:
        self._deliver = None
        return succeed(None)
