"""Where accepted messages go before they are delivered: the seam for running several processes.

The hub publishes every accepted message to its broker and delivers only what the broker hands
back, so one process and many share the same path and the same single order.

- L{LocalBroker}: one process is the whole chat; publishing is delivering, and the hub numbers
  each room's messages itself.
- L{txchat.redisbroker.RedisBroker}: Redis numbers, keeps and publishes each room's messages,
  and carries each process's member counts to the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from twisted.internet.defer import Deferred, succeed

from txchat.rooms import Delivery

Deliver = Callable[[Delivery], None]
# (room, process, members there)
Presence = Callable[[str, str, int], None]


class NotPublished(Exception):
    """The broker refused a message (its backlog to Redis is full)."""


@dataclass(frozen=True)
class Snapshot:
    """A room as Redis keeps it: its epoch (None: no stream yet), newest number, kept messages,
    the members on each other process, and how long ago each of those said its count (a count
    read from Redis is as old as its last say, not new: else a joiner's read would keep a dead
    process counting for longer)."""

    epoch: str | None
    seq: int
    history: list[Delivery]
    others: dict[str, int]
    ages: dict[str, float] = field(default_factory=dict)


class Broker(Protocol):
    # Whether the hub numbers messages itself (one process) or the broker does.
    @property
    def numbersHere(self) -> bool:
        """True when the process is the whole chat and numbers its rooms' messages itself."""

    # For /healthz and /metrics.
    @property
    def state(self) -> str | None:
        """None where there is nothing to connect to; else "starting", "up" or "down"."""

    @property
    def up(self) -> bool:
        """Whether messages reach the other processes."""

    @property
    def backlog(self) -> int:
        """Messages published and not yet acknowledged."""

    @property
    def dropped(self) -> int:
        """Messages refused, in all, for a full backlog."""

    def start(self, deliver: Deliver, presence: Presence, reconnected: Callable[[], None] = lambda: None) -> None:
        """Begin handing published messages, in their one order, to C{deliver}, and other
        processes' member counts to C{presence}; call C{reconnected} each time the broker is
        back after an outage (what was published meanwhile did not come here)."""

    def publish(self, message: Delivery) -> None:
        """Send an accepted message to every process of the chat, this one included."""

    def post(self, message: Delivery) -> Deferred[tuple[str, int] | None]:
        """Publish, and fire with the (epoch, number) the broker gave the message; None where
        it does not number (one process: the hub does), or delivered it here unnumbered (Redis
        away); L{NotPublished} where it refused the message."""

    def stop(self) -> Deferred[None]:
        """Let go of any connection; fires when done."""

    def watch(self, room: str) -> None:
        """This process has members in C{room}: deliver its messages here."""

    def unwatch(self, room: str) -> None:
        """This process has no members left in C{room}."""

    def snapshot(self, room: str) -> Deferred[Snapshot | None]:
        """The room as the broker keeps it (once its messages are delivered here), or None
        where the process itself is the keeper."""

    def setOnline(self, room: str, count: int) -> None:
        """Tell the other processes how many members this one has in C{room}."""


class LocalBroker:
    """The in-process broker: one process is the whole chat, so publishing is delivering."""

    numbersHere = True
    state = None
    up = True
    backlog = 0
    dropped = 0

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    def start(self, deliver: Deliver, presence: Presence, reconnected: Callable[[], None] = lambda: None) -> None:
        self._deliver = deliver

    def publish(self, message: Delivery) -> None:
        if self._deliver is not None:
            self._deliver(message)

    def post(self, message: Delivery) -> Deferred[tuple[str, int] | None]:
        self.publish(message)
        return succeed(None)

    def stop(self) -> Deferred[None]:
        self._deliver = None
        return succeed(None)

    def watch(self, room: str) -> None:
        pass

    def unwatch(self, room: str) -> None:
        pass

    def snapshot(self, room: str) -> Deferred[Snapshot | None]:
        return succeed(None)

    def setOnline(self, room: str, count: int) -> None:
        pass


