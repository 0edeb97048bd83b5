"""One room's numbered stream as this process's members see it: explicit states, one buffer.

Pure: no clock, no network, no members. The hub feeds it what happens (a message delivered,
a broker snapshot read for a join, the broker back and its catch-up read, a stream followed
before resumed) and it answers with what the room's members must be sent, through the room's
L{Outlet}, and with what a joiner gets first (L{joinLines}). The broker going away needs no
input: what members send meanwhile comes unnumbered and passes as it is.

States:
  - L{LOCAL}: the epoch is this process's own and nobody numbers (a room made while the broker
    was away); the first numbered message brings the broker's epoch, after a welcome.
  - L{FOLLOWING}: epoch and numbers are the broker's.
  - L{SYNCING}: the broker is back after an outage and the room reads what it missed: what is
    delivered meanwhile waits in the buffer, and so do joins, until that read is answered.

The buffer is one list, merged by number: what was delivered while joins read their snapshot
(already sent to the members here; a joiner's snapshot may end before it), and, after the
index C{_held}, what was delivered while syncing (not yet sent: it comes after what was missed).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from txchat import wire

LOCAL = "local"
FOLLOWING = "following"
SYNCING = "syncing"


@dataclass(slots=True)
class Delivery:
    """A message as the broker hands it back: numbered by the broker, or not (seq None).
    Never changed once made (not frozen: a frozen dataclass costs three times as much to make,
    and every message makes two)."""

    room: str
    text: bytes  # normalised, UTF-8
    name: str
    time: int  # milliseconds since the Unix epoch, when accepted
    seq: int | None = None
    epoch: str | None = None
    # Who sent it (SPEC §17 "from": "u:SUB", "a:CID", a per-connection "c:..."; "api" for the API),
    # and the client's ID for the send (v2), by which a resend is known and not delivered twice.
    sender: str = ""
    ref: str | None = None
    _line: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def line(self) -> bytes:
        """The message's txchat.v1 line: encoded once, for every v1 member, the history and joins."""
        line = self._line
        if line is None:
            line = self._line = wire.message(self.seq, self.time, self.name, self.text.decode("utf-8"), self.sender)
        return line


@dataclass(frozen=True)
class Snapshot:
    """A room as the broker keeps it: its epoch (None: no stream yet), newest number, kept
    messages, the members on each other process, and how long ago (seconds) each of those said
    its count: a count read from the broker is as old as its last say, or a joiner's read would
    keep a dead process counting for longer."""

    epoch: str | None
    seq: int
    history: list[Delivery]
    others: dict[str, int]
    ages: dict[str, float] = field(default_factory=dict)


def newEpoch() -> str:
    return secrets.token_hex(6)


class Outlet(Protocol):
    """Where a room's stream goes: the members here."""

    def send(self, message: Delivery) -> None:
        """Queue the message for every member here."""

    def tell(self, epoch: str, seq: int) -> None:
        """Queue for the v1 members here a welcome that does not claim recovery: their stream
        goes on as C{epoch} after C{seq}."""


class RoomStream:
    def __init__(self, epoch: str, outlet: Outlet) -> None:
        self.epoch = epoch
        self.seq = 0
        self.following = False  # the epoch is the broker's (else this process's own)
        self.reads = 0  # joins reading the broker's snapshot
        self.waiting: list[Any] = []  # joins that wait for the catch-up to be answered
        self._buffer: list[Delivery] = []
        self._held: int | None = None  # while syncing: where the unsent part of the buffer begins
        self._outlet = outlet

    def resume(self, epoch: str, seq: int) -> None:
        """Begin as the broker's stream C{epoch}, at C{seq}, as this process last followed it."""
        self.epoch, self.seq, self.following = epoch, seq, True

    @property
    def state(self) -> str:
        if self._held is not None:
            return SYNCING
        return FOLLOWING if self.following else LOCAL

    # -- inputs ---------------------------------------------------------------------------

    def delivered(self, message: Delivery) -> None:
        """A message from the broker (numbered), or from this process while it is away (not)."""
        if self._held is not None:
            self._buffer.append(message)  # after what was missed, which is on its way
            return
        seq = message.seq
        if seq is not None:
            epoch = message.epoch
            if epoch == self.epoch:
                if seq <= self.seq:
                    return  # had already, from a snapshot that was read before the channel brought it
                if self.following and seq > self.seq + 1:
                    # Numbers this process never had (a catch-up that failed when the broker went
                    # again): the v1 members hear that their stream goes on from here.
                    self._outlet.tell(epoch, seq - 1)
            elif epoch is not None:
                # The broker's stream has another epoch: it started over (Redis lost its data),
                # or this room began here while the broker was away. The v1 members hear of it
                # before its first message here.
                self._outlet.tell(epoch, seq - 1)
                self.epoch, self.following = epoch, True
            self.seq = seq
        if self.reads:
            self._buffer.append(message)
        self._outlet.send(message)

    def reading(self) -> None:
        """A join asked the broker for the room's snapshot."""
        self.reads += 1

    def read(self, snapshot: Snapshot | None, members: bool) -> Sequence[Delivery]:
        """A join's snapshot came (None: the broker went meanwhile). Unless the room is syncing
        (its catch-up brings it up to date), the members here get what it shows they missed
        and the stream takes the broker's epoch and numbers. Returns the kept messages a joiner
        may be given (L{joinLines})."""
        self.reads -= 1
        kept: Sequence[Delivery] = ()
        if snapshot is not None and self._held is None:
            if members:
                self._catchUpWith(snapshot)
            kept = self._adopt(snapshot)
        self._trim()
        return kept

    def catchingUp(self) -> bool:
        """The broker is back after an outage: hold what is delivered until the room's snapshot
        is read (L{caughtUp}). False when already doing so."""
        if self._held is not None:
            return False
        self._held = len(self._buffer)
        return True

    def caughtUp(self, snapshot: Snapshot | None) -> tuple[Sequence[Delivery], list[Any]]:
        """The catch-up's snapshot came (None: it failed): the members here get what they
        missed, then what was held; returns the kept messages and the joins that waited."""
        held = self._buffer[self._held:] if self._held is not None else []
        if self._held is not None:
            del self._buffer[self._held:]
        self._held = None
        if snapshot is not None:
            self._catchUpWith(snapshot)
        for message in held:
            self.delivered(message)
        kept: Sequence[Delivery] = ()
        if snapshot is not None and snapshot.epoch == self.epoch:
            kept = [*snapshot.history, *(m for m in held if m.epoch == self.epoch and m.seq is not None
                                         and m.seq > snapshot.seq)]
        self._trim()
        waiting, self.waiting = self.waiting, []
        return kept, waiting

    def abandon(self) -> None:
        """The room is forgotten: nothing more is held or waits."""
        self._buffer, self._held, self.waiting = [], None, []

    # -- questions ------------------------------------------------------------------------

    def ahead(self, since: tuple[str, int] | None) -> bool:
        """Whether a client resuming with C{since} may have seen numbers this stream has not:
        further along this epoch; or, while this stream follows the broker's, any of another
        epoch. Which of two epochs is the newer only the broker knows, and should the broker's
        stream turn out to be the client's, one that started over, its messages come whole to
        the members here (L{_catchUpWith}): that client would get some twice."""
        if since is None:
            return False
        epoch, seq = since
        if epoch == self.epoch:
            return seq > self.seq
        return self.following and seq > 0

    def recovered(self, since: tuple[str, int], kept: Sequence[Delivery]) -> list[bytes] | None:
        """Exactly the lines a client resuming after C{since} missed, when they are all among
        C{kept}; None when some are gone (or never were)."""
        epoch, seq = since
        if epoch != self.epoch or seq > self.seq:
            return None
        if seq == self.seq:
            return []
        if not kept or (kept[0].seq or 0) > seq + 1:
            return None
        return [m.line for m in kept if m.seq is not None and m.seq > seq]

    # -- transitions ----------------------------------------------------------------------

    def _catchUpWith(self, snapshot: Snapshot) -> None:
        """Send the members here what the snapshot holds and they have not had: the rest of
        their stream (telling v1 members first of what is no longer kept), or all of a stream
        that started over (its first message brings its welcome). Not the kept messages of a
        stream they never followed: plain clients never get history, and v1 members are told
        of the stream when it reaches them."""
        if snapshot.epoch is None:
            return
        if snapshot.epoch == self.epoch:
            missed = [m for m in snapshot.history if m.seq is not None and m.seq > self.seq]
            resumeAt = missed[0].seq if missed and missed[0].seq is not None else snapshot.seq + 1
            if resumeAt > self.seq + 1:
                self.seq = resumeAt - 1
                self._outlet.tell(self.epoch, self.seq)
        else:
            missed = snapshot.history if self.following else []
        for message in missed:
            self.delivered(message)

    def _adopt(self, snapshot: Snapshot) -> Sequence[Delivery]:
        """Take the broker's epoch and numbers; the kept messages are the snapshot's and those
        delivered since it was read. v1 members here on another stream are told."""
        epoch = snapshot.epoch
        if epoch is None:
            return ()  # no stream in the broker yet: the first message will start one
        if epoch != self.epoch:
            self._outlet.tell(epoch, snapshot.seq)
        self.epoch, self.seq, self.following = epoch, snapshot.seq, True
        kept = [*snapshot.history,
                *(m for m in self._buffer if m.epoch == epoch and m.seq is not None and m.seq > snapshot.seq)]
        for message in kept:
            if message.seq is not None and message.seq > self.seq:
                self.seq = message.seq
        return kept

    def _trim(self) -> None:
        if not self.reads and self._held is None:
            self._buffer = []


def joinLines(
    stream: RoomStream, room: str, online: int, maxMessageSize: int, since: tuple[str, int] | None,
    kept: Sequence[Delivery], history: int, extra: dict[str, Any] | None = None,
) -> list[bytes]:
    """What a v1 member gets first: the welcome line, then the newest C{history} kept messages,
    or with C{since} exactly what it missed, when that is still kept (the chat log may have
    reached further back for it)."""
    if since is not None:
        missed = stream.recovered(since, kept)
        if missed is not None:
            return [wire.welcome(room, stream.epoch, stream.seq, online, maxMessageSize, True, extra), *missed]
    welcome = wire.welcome(room, stream.epoch, stream.seq, online, maxMessageSize, None if since is None else False,
                           extra)
    return [welcome, *(m.line for m in kept[max(0, len(kept) - history):])]
