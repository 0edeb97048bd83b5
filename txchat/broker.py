"""Where accepted messages go before they are delivered: the seam for running several processes.

The hub publishes every accepted message to its broker and delivers only what the broker hands
back, numbered, so one process and many share the same path and the same single order.

- L{MemoryBroker}: one process is the whole chat; it numbers and keeps each room's messages
  in memory, as Redis does for several.
- L{txchat.redisbroker.RedisBroker}: Redis numbers, keeps and publishes each room's messages,
  and carries each process's member counts to the others.
"""

from __future__ import annotations

from typing import Callable, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from txchat.history import History
from txchat.sent import SentIds
from txchat.stream import Delivery, Snapshot, newEpoch

__all__ = ["Broker", "Deliver", "MemoryBroker", "NotPublished", "Presence", "Snapshot"]

Deliver = Callable[[Delivery], None]
# (room, process, members there)
Presence = Callable[[str, str, int], None]


class NotPublished(Exception):
    """The broker refused a message (its backlog to Redis is full)."""


class Broker(Protocol):
    # For /healthz and /metrics.
    @property
    def state(self) -> str | None:
        """None where there is nothing to connect to (one process); else "starting", "up" or "down"."""

    @property
    def up(self) -> bool:
        """Whether the broker numbers and delivers (else each process delivers its own, unnumbered)."""

    @property
    def backlog(self) -> int:
        """Messages published and not yet acknowledged."""

    @property
    def dropped(self) -> int:
        """Messages refused, in all, for a full backlog."""

    def start(
        self, deliver: Deliver, presence: Presence, reconnected: Callable[[], None] = lambda: None,
        forgotten: Callable[[str], None] = lambda room: None,
    ) -> None:
        """Begin handing published messages, in their one order, to C{deliver}, and other
        processes' member counts to C{presence}; call C{reconnected} each time the broker is
        back after an outage (what was published meanwhile did not come here), before it
        delivers anything published after, so that the rooms can hold that until they have
        read what they missed; and C{forgotten} when a room it kept here, with no members
        here, has expired."""

    def publish(self, message: Delivery) -> None:
        """Number, keep and send an accepted message to every process of the chat, this one included."""

    def post(self, message: Delivery) -> Deferred[tuple[str, int] | None]:
        """Publish, and fire with the (epoch, number) the broker gave the message; None when it
        was delivered here unnumbered (Redis away); L{NotPublished} where it refused the message."""

    def stop(self) -> Deferred[None]:
        """Let go of any connection; fires when done."""

    def watch(self, room: str) -> None:
        """This process has members in C{room}: deliver its messages here."""

    def unwatch(self, room: str) -> None:
        """This process has no members left in C{room}."""

    def snapshot(self, room: str) -> Deferred[Snapshot | None]:
        """The room as the broker keeps it (once its messages are delivered here), starting its
        stream if it has none and this process watches it; None while the broker is away."""

    def keeps(self, room: str) -> bool:
        """Whether this process holds the room's kept messages (so the room outlives its members)."""

    def forget(self, room: str) -> None:
        """This process forgets the room: what it holds of it here may go."""

    def setOnline(self, room: str, count: int) -> None:
        """Tell the other processes how many members this one has in C{room}."""


class _Kept:
    """One room's stream in memory: its epoch, newest number and newest messages."""

    __slots__ = ("epoch", "seq", "messages", "last", "expiry")

    def __init__(self, limit: int, now: float) -> None:
        self.epoch = newEpoch()
        self.seq = 0
        self.messages: History[Delivery] = History(limit)
        self.last = now  # when the newest message came
        self.expiry: IDelayedCall | None = None


class MemoryBroker:
    """One process is the whole chat: each room's messages are numbered and kept here, the
    newest C{history} of them until C{ttl} seconds after the last; a room with neither members
    here nor kept messages is forgotten, and its next message starts a new epoch."""

    state = None
    up = True
    backlog = 0
    dropped = 0

    def __init__(self, clock: IReactorTime, history: int, ttl: float) -> None:
        self._clock = clock
        self._limit = history
        self._ttl = ttl
        self._rooms: dict[str, _Kept] = {}
        self._watched: set[str] = set()
        self._deliver: Deliver | None = None
        self._forgotten: Callable[[str], None] = lambda room: None
        self._sent = SentIds(clock)  # v2 sends numbered lately, by (sender, ID)

    def start(
        self, deliver: Deliver, presence: Presence, reconnected: Callable[[], None] = lambda: None,
        forgotten: Callable[[str], None] = lambda room: None,
    ) -> None:
        self._deliver = deliver
        self._forgotten = forgotten

    def publish(self, message: Delivery) -> None:
        self._number(message)

    def post(self, message: Delivery) -> Deferred[tuple[str, int] | None]:
        # -- v2 dedupe (h-v2, a stand-in: main's MemoryBroker.post does this with the log) --
        if message.ref is not None:
            known = self._sent.get(message.sender, message.ref)
            if known is not None:  # a resend: answered as the first, not delivered again
                return succeed(None if known[1] is None else (known[0], known[1]))
        numbered = self._number(message)
        if message.ref is not None:
            self._sent.add(message.sender, message.ref, numbered.epoch, numbered.seq)
        # -- end v2 dedupe --
        return succeed((numbered.epoch or "", numbered.seq or 0))

    def _number(self, message: Delivery) -> Delivery:
        name = message.room
        kept = self._rooms.get(name)
        if kept is None:
            kept = self._rooms[name] = _Kept(self._limit, self._clock.seconds())
        kept.seq += 1
        numbered = Delivery(name, message.text, message.name, message.time, kept.seq, kept.epoch, message.sender,
                            message.ref)
        if self._limit:
            kept.messages.append(kept.seq, numbered)
            kept.last = self._clock.seconds()
            if kept.expiry is None:
                kept.expiry = self._clock.callLater(self._ttl, self._expire, name)
        elif name not in self._watched:
            self._drop(name)  # nobody to keep it for: the next message starts a new stream
        if self._deliver is not None:
            self._deliver(numbered)
        return numbered

    def _expire(self, name: str) -> None:
        kept = self._rooms[name]
        kept.expiry = None
        left = kept.last + self._ttl - self._clock.seconds()
        if left > 0:
            kept.expiry = self._clock.callLater(left, self._expire, name)
            return
        kept.messages.clear()
        if name not in self._watched:
            self._drop(name)
            self._forgotten(name)

    def _drop(self, name: str) -> None:
        kept = self._rooms.pop(name, None)
        if kept is not None and kept.expiry is not None and kept.expiry.active():
            kept.expiry.cancel()

    def snapshot(self, room: str) -> Deferred[Snapshot | None]:
        kept = self._rooms.get(room)
        if kept is None:
            if room not in self._watched:
                return succeed(Snapshot(None, 0, [], {}))
            kept = self._rooms[room] = _Kept(self._limit, self._clock.seconds())
        return succeed(Snapshot(kept.epoch, kept.seq, kept.messages.lines(), {}))

    def kept(self, room: str) -> list[Delivery]:
        """The room's kept messages, oldest first."""
        kept = self._rooms.get(room)
        return kept.messages.lines() if kept is not None else []

    def keeps(self, room: str) -> bool:
        kept = self._rooms.get(room)
        return kept is not None and bool(kept.messages)

    def watch(self, room: str) -> None:
        self._watched.add(room)

    def unwatch(self, room: str) -> None:
        self._watched.discard(room)
        if not self.keeps(room):
            self._drop(room)

    def forget(self, room: str) -> None:
        self._watched.discard(room)
        self._drop(room)

    def setOnline(self, room: str, count: int) -> None:
        pass

    def stop(self) -> Deferred[None]:
        self._deliver = None
        for name in list(self._rooms):
            self._drop(name)
        return succeed(None)
