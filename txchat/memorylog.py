"""The chat log in memory (`--store memory`): nothing outlives the process.

It answers every question exactly as L{txchat.sqlitelog.SqliteLog} does (the tests run one set
of behaviour tests, and a property test, against both), so that what a client sees does not
depend on the store. Each message gets a number in write order, as SQLite's row id; each
stream (room and epoch) one in the order it began. Per room, the numbers of its messages in a
sorted list, so that a page anywhere in a room of millions is two bisections and a slice.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Sequence

from txchat.chatlog import Head, Page
from txchat.stream import Delivery

__all__ = ["MemoryLog"]

_UNKNOWN = float("inf")  # the rank of an epoch the log has no message of: newer than any


class _Room:
    __slots__ = ("ids", "messages", "newest")

    def __init__(self) -> None:
        self.ids: list[int] = []  # ascending: write order
        self.messages: dict[int, Delivery] = {}
        self.newest = ""  # the epoch of the stream begun last


class _Stream:
    __slots__ = ("order", "seq", "seqs", "ids", "deleted")

    def __init__(self, order: int) -> None:
        self.order = order  # when it began, among every stream
        self.seq = 0  # the newest number written in it (deleted ones too)
        self.seqs: list[int] = []  # the numbers here, ascending
        self.ids: dict[int, int] = {}  # number -> message id
        self.deleted: dict[int, int] = {}  # number -> time, of each message deleted (kept when pruned)


class MemoryLog:
    durable = False

    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._sent: dict[tuple[str, str], list[tuple[str, int]]] = {}  # (sender, ref) -> (room, id)
        self._reads: dict[tuple[str, str], Head] = {}
        self._lastId = 0
        self._lastStream = 0
        # No message older than this (a prune before it has nothing to do).
        self._oldest: float = _UNKNOWN

    def heads(self) -> dict[str, Head]:
        return {
            name: Head(room.newest, self._streams[name, room.newest].seq)
            for name, room in self._rooms.items() if room.newest
        }

    def append(self, messages: Sequence[Delivery]) -> None:
        for message in messages:
            epoch, seq = message.epoch, message.seq
            if epoch is None or seq is None:
                continue
            room = self._rooms.get(message.room)
            if room is None:
                room = self._rooms[message.room] = _Room()
            stream = self._streams.get((message.room, epoch))
            if stream is None:
                self._lastStream += 1
                stream = self._streams[message.room, epoch] = _Stream(self._lastStream)
                room.newest = epoch
            if seq > stream.seq:
                stream.seq = seq
            if seq in stream.ids or seq in stream.deleted:
                continue
            self._lastId += 1
            id = self._lastId
            room.ids.append(id)
            room.messages[id] = message
            stream.ids[seq] = id
            if not stream.seqs or seq > stream.seqs[-1]:
                stream.seqs.append(seq)
            else:
                insort(stream.seqs, seq)
            if message.ref is not None:
                self._sent.setdefault((message.sender, message.ref), []).append((message.room, id))
            if message.time < self._oldest:
                self._oldest = message.time

    def recent(self, room: str, epoch: str, limit: int) -> list[Delivery]:
        stream = self._streams.get((room, epoch))
        if stream is None or limit <= 0:
            return []
        messages = self._rooms[room].messages
        return [messages[stream.ids[seq]] for seq in stream.seqs[-limit:]]

    def after(self, room: str, epoch: str, seq: int, limit: int) -> list[Delivery] | None:
        stream = self._streams.get((room, epoch))
        if stream is None or seq > stream.seq:
            return None
        first = bisect_right(stream.seqs, seq)
        present = len(stream.seqs) - first
        if present > limit:
            return None
        deleted = sum(1 for number in stream.deleted if number > seq)
        if present + deleted != stream.seq - seq:
            return None
        messages = self._rooms[room].messages
        return [messages[stream.ids[number]] for number in stream.seqs[first:]]

    def page(self, room: str, before: Head | None, limit: int) -> Page:
        kept = self._rooms.get(room)
        if kept is None:
            return Page([], False)
        ids = kept.ids
        if before is None:
            end = len(ids)
        else:
            stream = self._streams.get((room, before.epoch))
            if stream is None:
                return Page([], False)
            at = bisect_left(stream.seqs, before.seq)
            if at < len(stream.seqs):  # the first message at or after it: the page ends before that
                end = bisect_left(ids, stream.ids[stream.seqs[at]])
            elif at > 0:  # else the last message before it: the page ends with that
                end = bisect_right(ids, stream.ids[stream.seqs[at - 1]])
            else:
                return Page([], False)
        start = max(0, end - max(limit, 0))
        messages = kept.messages
        return Page([messages[id] for id in ids[start:end]], start > 0)

    def sent(self, sender: str, ref: str, notBefore: int) -> Head | None:
        for room, id in self._sent.get((sender, ref), ()):
            message = self._rooms[room].messages[id]
            if message.time >= notBefore:
                assert message.epoch is not None and message.seq is not None
                return Head(message.epoch, message.seq)
        return None

    def delete(self, room: str, epoch: str, seq: int) -> bool:
        stream = self._streams.get((room, epoch))
        if stream is None or seq not in stream.ids:
            return False
        message = self._remove(self._rooms[room], stream, seq)
        stream.deleted[seq] = message.time
        return True

    def setRead(self, identity: str, room: str, position: Head) -> Head:
        stored = self._reads.get((identity, room))
        if stored is not None:
            if stored.epoch == position.epoch:
                behind = position.seq <= stored.seq
            else:
                behind = self._rank(room, position.epoch) < self._rank(room, stored.epoch)
            if behind:
                return stored
        position = Head(position.epoch, position.seq)
        self._reads[identity, room] = position
        return position

    def read(self, identity: str, room: str) -> Head | None:
        return self._reads.get((identity, room))

    def prune(self, olderThan: int) -> int:
        if olderThan <= self._oldest:
            return 0
        pruned = 0
        oldest: float = _UNKNOWN
        for name, room in self._rooms.items():
            old = [(id, message) for id, message in room.messages.items() if message.time < olderThan]
            for id, message in old:
                assert message.epoch is not None and message.seq is not None
                self._remove(room, self._streams[name, message.epoch], message.seq)
            pruned += len(old)
            for message in room.messages.values():
                if message.time < oldest:
                    oldest = message.time
        self._oldest = oldest
        return pruned

    def close(self) -> None:
        pass

    def _rank(self, room: str, epoch: str) -> float:
        stream = self._streams.get((room, epoch))
        return _UNKNOWN if stream is None else stream.order

    def _remove(self, room: _Room, stream: _Stream, seq: int) -> Delivery:
        id = stream.ids.pop(seq)
        del stream.seqs[bisect_left(stream.seqs, seq)]
        del room.ids[bisect_left(room.ids, id)]
        message = room.messages.pop(id)
        if message.ref is not None:
            key = (message.sender, message.ref)
            sent = self._sent[key]
            sent.remove((message.room, id))
            if not sent:
                del self._sent[key]
        return message
