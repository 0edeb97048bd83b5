"""Where accepted messages go before they are delivered: the seam for running several processes.

The hub publishes every accepted message to its broker and delivers only what the broker hands
back, numbered, so one process and many share the same path and the same single order.

- L{MemoryBroker}: one process is the whole chat; it numbers and keeps each room's messages
  in memory, as Redis does for several, and with a chat log (L{txchat.chatlog}) writes each
  batch there before delivering it, so a restart goes on where the log ends.
- L{txchat.redisbroker.RedisBroker}: Redis numbers, keeps and publishes each room's messages,
  and carries each process's member counts to the others.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txchat.chatlog import ChatLog, Head, LogError, Page
from txchat.history import History
from txchat.sent import SENT_FOR, SentIds
from txchat.stream import Delivery, Snapshot, newEpoch

__all__ = ["Broker", "Deliver", "MemoryBroker", "NotPublished", "Presence", "Snapshot", "pageOf"]

_log = Logger()

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

    def snapshot(self, room: str, since: tuple[str, int] | None = None) -> Deferred[Snapshot | None]:
        """The room as the broker keeps it (once its messages are delivered here), starting its
        stream if it has none and this process watches it; None while the broker is away.
        With C{since} in the room's stream, the history reaches back to it when the chat log
        still holds all that followed (up to C{--recovery-max} messages), for an exact recovery."""

    def page(self, room: str, before: tuple[str, int] | None, limit: int) -> Deferred[Page]:
        """Scrollback: up to C{limit} messages before C{before} (None: the newest), across
        epochs, from the chat log (without one, from what is kept)."""

    def keeps(self, room: str) -> bool:
        """Whether this process holds the room's kept messages (so the room outlives its members)."""

    def forget(self, room: str) -> None:
        """This process forgets the room: what it holds of it here may go."""

    def setOnline(self, room: str, count: int) -> None:
        """Tell the other processes how many members this one has in C{room}."""

    def delete(self, room: str, epoch: str, seq: int) -> Deferred[bool]:
        """Take a message out of the room's kept messages (SPEC §18); whether it was kept. In
        a cluster, the room's members on every process are told."""


class _Kept:
    """One room's stream in memory: its epoch, newest numbers and newest messages."""

    __slots__ = ("epoch", "seq", "next", "messages", "last", "expiry")

    def __init__(self, limit: int, now: float, head: Head | None = None) -> None:
        self.epoch = head.epoch if head is not None else newEpoch()
        self.seq = head.seq if head is not None else 0  # the newest delivered (and logged)
        self.next = self.seq  # the newest handed out, maybe still being written
        self.messages: History[Delivery] = History(limit)
        self.last = now  # when the newest message came
        self.expiry: IDelayedCall | None = None


class MemoryBroker:
    """One process is the whole chat: each room's messages are numbered and kept here, the
    newest C{history} of them until C{ttl} seconds after the last; a room with neither members
    here nor kept messages is forgotten, and its next message starts a new epoch.

    With a chat log, the messages numbered in one reactor turn are written to it in one
    transaction before any is delivered, and numbering goes on from the log after a restart
    (a room forgotten here goes on too: the log keeps it). A batch the log refuses (a full
    disk) is delivered unnumbered, as messages are while Redis is away: the numbers it had
    were seen by nobody, so none is ever given twice, and the chat goes on."""

    state = None
    up = True
    backlog = 0
    dropped = 0

    def __init__(
        self, clock: IReactorTime, history: int, ttl: float, log: ChatLog | None = None,
        recoveryMax: int = 1000,
    ) -> None:
        self._clock = clock
        self._limit = history
        self._ttl = ttl
        self._log = log
        self._recoveryMax = recoveryMax
        self._heads: dict[str, Head] = log.heads() if log is not None else {}
        self._rooms: dict[str, _Kept] = {}
        self._watched: set[str] = set()
        self._deliver: Deliver | None = None
        self._forgotten: Callable[[str], None] = lambda room: None
        self._sent = SentIds(clock)
        self._started = clock.seconds()
        # Numbered and not yet written: each with what waits for its number (a post).
        self._pending: list[tuple[Delivery, Deferred[tuple[str, int] | None] | None]] = []
        self._writing: IDelayedCall | None = None
        self.unlogged = 0  # messages the log could not take (delivered unnumbered)
        self._failing = False

    def start(
        self, deliver: Deliver, presence: Presence, reconnected: Callable[[], None] = lambda: None,
        forgotten: Callable[[str], None] = lambda room: None,
    ) -> None:
        self._deliver = deliver
        self._forgotten = forgotten

    # -- numbering --------------------------------------------------------------------------

    def publish(self, message: Delivery) -> None:
        self._number(message, None)

    def post(self, message: Delivery) -> Deferred[tuple[str, int] | None]:
        """Fires with the message's number once delivered; a resend of a message accepted in
        the last ten minutes (by its sender's ID) fires with the first one's, undelivered."""
        if message.ref is not None:
            known = self._sent.get(message.sender, message.ref)
            if known is None and self._log is not None and self._clock.seconds() - self._started < SENT_FOR:
                # After a restart the log remembers what was sent before it.
                notBefore = int((self._clock.seconds() - SENT_FOR) * 1000)
                known = self._log.sent(message.sender, message.ref, notBefore)
            if isinstance(known, Deferred):
                return _follow(known)  # the first is being written: its number is the answer
            if known is not None:
                return succeed(None if known[1] is None else (known[0], known[1]))
        d: Deferred[tuple[str, int] | None] = Deferred()
        if message.ref is not None:
            self._sent.wait(message.sender, message.ref, d)
        self._number(message, d)
        return d

    def _number(self, message: Delivery, waiter: Deferred[tuple[str, int] | None] | None) -> None:
        kept = self._room(message.room, True)
        assert kept is not None
        kept.next += 1
        numbered = Delivery(message.room, message.text, message.name, message.time, kept.next, kept.epoch,
                            message.sender, message.ref)
        if self._log is None:
            self._commit(numbered, waiter)
            return
        self._pending.append((numbered, waiter))
        if self._writing is None:
            self._writing = self._clock.callLater(0, self._write)

    def _write(self) -> None:
        """Write what was numbered in the last turn, in one transaction, then deliver it."""
        self._writing = None
        batch, self._pending = self._pending, []
        assert self._log is not None
        try:
            self._log.append([message for message, _ in batch])
        except LogError as e:
            self.unlogged += len(batch)
            if not self._failing:
                self._failing = True
                _log.error("the chat log cannot be written ({error}): messages go out unnumbered and are "
                           "not kept until it can", error=str(e))
            for message, waiter in batch:
                kept = self._rooms.get(message.room)
                if kept is not None:
                    kept.next = kept.seq  # nobody saw those numbers: they are handed out again
                self._hand(Delivery(message.room, message.text, message.name, message.time, None, None,
                                    message.sender, message.ref), waiter)
            return
        if self._failing:
            self._failing = False
            _log.info("the chat log is written again; {count} messages could not be, in all", count=self.unlogged)
        for message, waiter in batch:
            self._commit(message, waiter)

    def _commit(self, message: Delivery, waiter: Deferred[tuple[str, int] | None] | None) -> None:
        name = message.room
        kept = self._room(name, True)
        assert kept is not None and message.seq is not None
        kept.seq = message.seq
        if self._limit:
            kept.messages.append(message.seq, message)
            kept.last = self._clock.seconds()
            if kept.expiry is None:
                kept.expiry = self._clock.callLater(self._ttl, self._expire, name)
        self._hand(message, waiter)
        if not self._limit and name not in self._watched:
            self._drop(name)  # nobody to keep it for: the next message starts a new stream

    def _hand(self, message: Delivery, waiter: Deferred[tuple[str, int] | None] | None) -> None:
        if message.ref is not None:
            # (Unnumbered too: a resend of it is not delivered again, and is acked unnumbered.)
            self._sent.add(message.sender, message.ref, message.epoch, message.seq)
        if self._deliver is not None:
            self._deliver(message)
        if waiter is not None:
            waiter.callback(None if message.seq is None else (message.epoch or "", message.seq))

    def _room(self, name: str, create: bool) -> _Kept | None:
        kept = self._rooms.get(name)
        if kept is not None:
            return kept
        head = self._heads.get(name)
        if head is None and not create:
            return None
        now = self._clock.seconds()
        kept = self._rooms[name] = _Kept(self._limit, now, head)
        if head is not None and self._log is not None and self._limit:
            # The room goes on from the log: its history is the log's newest, as old as --history-ttl.
            notBefore = (now - self._ttl) * 1000
            for message in self._log.recent(name, head.epoch, self._limit):
                if message.time >= notBefore and message.seq is not None:
                    kept.messages.append(message.seq, message)
                    kept.last = message.time / 1000
            if kept.messages:
                kept.expiry = self._clock.callLater(max(0.0, kept.last + self._ttl - now), self._expire, name)
        return kept

    # -- rooms ------------------------------------------------------------------------------

    def _expire(self, name: str) -> None:
        kept = self._rooms[name]
        kept.expiry = None
        left = kept.last + self._ttl - self._clock.seconds()
        if left > 0:
            kept.expiry = self._clock.callLater(left, self._expire, name)
            return
        kept.messages.clear()
        if name not in self._watched and self._drop(name):
            self._forgotten(name)

    def _drop(self, name: str) -> bool:
        """Forget what is kept here of the room, unless some of its numbers are being written."""
        kept = self._rooms.get(name)
        if kept is None:
            return True
        if kept.next != kept.seq:
            return False  # (its write delivers them, and then it is kept)
        del self._rooms[name]
        if kept.expiry is not None and kept.expiry.active():
            kept.expiry.cancel()
        if self._log is not None and kept.seq:
            self._heads[name] = Head(kept.epoch, kept.seq)  # the log goes on with it
        return True

    def snapshot(self, room: str, since: tuple[str, int] | None = None) -> Deferred[Snapshot | None]:
        kept = self._room(room, room in self._watched)
        if kept is None:
            return succeed(Snapshot(None, 0, [], {}))
        history = kept.messages.lines()
        if since is not None and self._log is not None:
            history = self._reachBack(room, kept, since, history)
        return succeed(Snapshot(kept.epoch, kept.seq, history, {}))

    def _reachBack(self, room: str, kept: _Kept, since: tuple[str, int], history: list[Delivery]) -> list[Delivery]:
        """The history from C{since} on, out of the log, when what is kept here starts after it."""
        epoch, seq = since
        if epoch != kept.epoch or seq >= kept.seq or kept.seq - seq > self._recoveryMax:
            return history
        if history and (history[0].seq or 0) <= seq + 1:
            return history
        assert self._log is not None
        missed = self._log.after(room, epoch, seq, self._recoveryMax)
        if missed is None or not missed or missed[-1].seq != kept.seq:
            return history
        return missed

    def page(self, room: str, before: tuple[str, int] | None, limit: int) -> Deferred[Page]:
        if self._log is not None:
            return succeed(self._log.page(room, Head(*before) if before is not None else None, limit))
        kept = self._rooms.get(room)
        return succeed(pageOf(kept.messages.lines() if kept is not None else [], before, limit))

    def kept(self, room: str) -> list[Delivery]:
        """The room's kept messages, oldest first."""
        kept = self._rooms.get(room)
        return kept.messages.lines() if kept is not None else []

    def keeps(self, room: str) -> bool:
        kept = self._rooms.get(room)
        return kept is not None and (bool(kept.messages) or kept.next != kept.seq)

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

    def delete(self, room: str, epoch: str, seq: int) -> Deferred[bool]:
        kept = self._rooms.get(room)
        return succeed(kept is not None and kept.epoch == epoch and kept.messages.remove(seq))

    def stop(self) -> Deferred[None]:
        if self._writing is not None:
            self._writing.cancel()
            self._write()
        self._deliver = None
        for name in list(self._rooms):
            self._drop(name)
        self._sent.clear()
        return succeed(None)


def pageOf(kept: list[Delivery], before: tuple[str, int] | None, limit: int) -> Page:
    """A page of scrollback out of a room's kept messages (where there is no chat log)."""
    if before is not None:
        kept = [m for m in kept if m.epoch == before[0] and (m.seq or 0) < before[1]]
    return Page(kept[-limit:] if limit else [], len(kept) > limit)


def _follow(first: Deferred[tuple[str, int] | None]) -> Deferred[tuple[str, int] | None]:
    """A Deferred that fires with C{first}'s result, leaving C{first}'s own callbacks alone."""
    d: Deferred[tuple[str, int] | None] = Deferred()

    def both(result: Any) -> Any:
        d.callback(None if isinstance(result, Failure) else result)
        return result

    first.addBoth(both)
    return d
