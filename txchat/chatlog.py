"""The chat log (SPEC §16): every numbered message, kept durably, the seam for the stores.

One process numbers with its L{txchat.broker.MemoryBroker} and writes each batch here before it
delivers it, so a restart goes on where the log ends. The calls are synchronous: SQLite in WAL
mode with synchronous=NORMAL commits a batch in tens of microseconds without an fsync, and a
synchronous write is what makes "in the log before delivered" simple. (A cluster's log,
PostgreSQL, is written behind Redis by L{txchat.pglog}, and read through Deferreds.)

- L{txchat.memorylog.MemoryLog}: nothing survives a restart (`--store memory`); behaves as the
  others do in every other way, for the tests and for `--redis` without a store.
- L{txchat.sqlitelog.SqliteLog}: `--store sqlite:PATH`, the default of one process.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence

from twisted.internet.defer import Deferred

from txchat.stream import Delivery

__all__ = ["Archive", "ChatLog", "Head", "LogError", "Page", "StoreError"]


class LogError(Exception):
    """The log could not do what was asked (the disk is full, the file went away): the
    caller goes on without it, and counts what was not written."""


class StoreError(LogError):
    """The store cannot be opened (not a log, not writable, held by another txchat, the
    server refuses): start-up stops with one line naming C{--store} and this reason."""


class Head(NamedTuple):
    """Where a room's stream stands in the log: its newest epoch and the newest number in it."""

    epoch: str
    seq: int


class Page(NamedTuple):
    messages: list[Delivery]  # oldest first, each with its epoch
    more: bool  # older messages exist before the first of these


class ChatLog(Protocol):
    @property
    def durable(self) -> bool:
        """Whether what is written outlives the process (else the start-up line says so)."""

    def heads(self) -> dict[str, Head]:
        """Every room's newest stream, to go on numbering after a restart. A room whose newest
        numbers may have been lost (the machine went down since they were written, not just
        the process) is left out, so that it starts a new epoch rather than reuse a number."""

    def append(self, messages: Sequence[Delivery]) -> None:
        """Write a batch of numbered messages (each with room, epoch, seq) in one transaction;
        a message already there (same room, epoch and seq) is left as it is. Raises
        L{LogError} when nothing of the batch could be written."""

    def recent(self, room: str, epoch: str, limit: int) -> list[Delivery]:
        """The newest C{limit} messages of the room's stream C{epoch}, oldest first."""

    def after(self, room: str, epoch: str, seq: int, limit: int) -> list[Delivery] | None:
        """Every message of stream C{epoch} after number C{seq}, oldest first; None when those
        are more than C{limit}, or the log lacks any of them (deleted ones aside), or it knows
        no such stream or no number C{seq} in it. Complete up to the newest number the log
        holds for the stream: a caller whose own newest number is higher (a write that
        failed) compares."""

    def page(self, room: str, before: Head | None, limit: int) -> Page:
        """Up to C{limit} messages older than C{before} (None: the newest), across epochs in
        the order they were written. C{before} need not be there (deleted, pruned): the page
        ends where it would have been in its stream; a stream the log has no message of gives
        an empty page."""

    def sent(self, sender: str, ref: str, notBefore: int) -> Head | None:
        """The (epoch, seq) given to the message C{sender} sent with ID C{ref}, if it was
        accepted at or after C{notBefore} (ms since the Unix epoch): a resend's answer."""

    def delete(self, room: str, epoch: str, seq: int) -> bool:
        """Remove one message; whether it was there."""

    def setRead(self, identity: str, room: str, position: Head) -> Head:
        """Store a reader's position in a room unless it is behind the one stored; the position
        now stored. Positions in two epochs compare by the order the log began them (an epoch
        it has no message of yet counts as newer than every one it has)."""

    def read(self, identity: str, room: str) -> Head | None:
        """The reader's stored position in the room."""

    def prune(self, olderThan: int) -> int:
        """Delete messages accepted before C{olderThan} (ms since the Unix epoch); how many."""

    def close(self) -> None:
        """Write what is pending and let go of the store (a clean stop: the next start goes on)."""


class Archive(Protocol):
    """A cluster's chat log as its readers see it: written behind Redis, read through Deferreds."""

    def page(self, room: str, before: Head | None, limit: int) -> Deferred[Page]:
        """As L{ChatLog.page}."""

    def after(self, room: str, epoch: str, seq: int, limit: int) -> Deferred[list[Delivery] | None]:
        """As L{ChatLog.after}; what is not written yet is missing."""

    def delete(self, room: str, epoch: str, seq: int, known: bool = False) -> Deferred[bool]:
        """As L{ChatLog.delete}; with C{known} (the message exists, maybe not written yet) a
        mark is left that keeps it out of the log when it comes."""

    def setRead(self, identity: str, room: str, position: Head) -> Deferred[Head]:
        """As L{ChatLog.setRead}."""

    def read(self, identity: str, room: str) -> Deferred[Head | None]:
        """As L{ChatLog.read}."""

    def prune(self, olderThan: int) -> Deferred[int]:
        """As L{ChatLog.prune}."""
