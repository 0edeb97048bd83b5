"""Just the part of Redis's wire protocol (RESP2) that pub/sub needs.

Commands are pipelined: each one gets a Deferred, fired by the replies in the order the
commands were sent. On a subscribed connection, published messages arrive as pushes and go
to ``onMessage`` instead.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure


class RedisError(Exception):
    """An error reply from Redis."""


class Incomplete(Exception):
    """The buffer ends in the middle of a reply."""


def encodeCommand(*args: bytes | str | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode("utf-8")
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def parseReply(data: bytes, start: int = 0) -> tuple[Any, int]:
    """One reply from C{data} at C{start}: (value, where the next reply starts)."""
    end = data.find(b"\r\n", start)
    if end < 0:
        raise Incomplete()
    kind, line = data[start : start + 1], data[start + 1 : end]
    after = end + 2
    if kind == b"+":
        return line, after
    if kind == b"-":
        return RedisError(line.decode("utf-8", "replace")), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, after
        if len(data) < after + length + 2:
            raise Incomplete()
        return data[after : after + length], after + length + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parseReply(data, after)
            items.append(item)
        return items, after
    raise ValueError(f"not a RESP reply: {data[start:end + 2]!r}")


class RedisConnection(Protocol):
    onMessage: Callable[[bytes, bytes], None] | None = None
    onLost: Callable[[Failure], None] | None = None

    def __init__(self) -> None:
        self._buffer = b""
        self._waiting: deque[Deferred[Any]] = deque()
        self.lost: Deferred[None] = Deferred()

    def command(self, *args: bytes | str | int) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._waiting.append(d)
        self.transport.write(encodeCommand(*args))
        return d

    @property
    def pending(self) -> int:
        """Commands sent and not yet answered."""
        return len(self._waiting)

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        position = 0
        try:
            while position < len(buffer):
                reply, position = parseReply(buffer, position)
                self._replyReceived(reply)
        except Incomplete:
            pass
        except ValueError:
            self.transport.abortConnection()
            return
        self._buffer = buffer[position:]

    def _replyReceived(self, reply: Any) -> None:
        if (
            isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message"
            and self.onMessage is not None
        ):
            self.onMessage(reply[1], reply[2])
            return
        if not self._waiting:
            return
        d = self._waiting.popleft()
        if isinstance(reply, RedisError):
            d.errback(reply)
        else:
            d.callback(reply)

    def connectionLost(self, reason: Failure = Failure(ConnectionLost())) -> None:
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(ConnectionLost("Redis connection lost"))
        if self.onLost is not None:
            self.onLost(reason)
        self.lost.callback(None)
