"""Broadcast bookkeeping: who gets the shared frame, who is behind, who must go.

Plain code with no network or Autobahn in it, so the output rules (docs/protocol.md, "What a client
sees") are unit tested directly.

A member is *ready* while its transport accepts data: a flush hands it the batch's one shared
frame (one call per member). When its transport pauses it (the kernel buffer and Twisted's
own buffer are full, so the peer is not reading), the member is *behind*: it gets no frame,
and the batch's messages are kept for it instead, up to ``limit``. When the transport resumes
it, everything it missed goes out as one frame. A member whose backlog would pass ``limit``
is dropped. Every member therefore sees the messages in the order they were queued.

Lines for one member only (a txchat.v2 client's acks, errors, answers; others' typing) go out
in the same flush, after the batch: a ready member gets the shared frame and a small frame of
its own in one write; a member that is behind gets them in its backlog. Lines for a member not
(yet) added wait until it is, so that a joiner's welcome, written when it is added, comes first.
"""

from __future__ import annotations

from typing import Callable, Generic, Hashable, Iterator, Sequence, TypeVar

Writer = Callable[[bytes], object]
M = TypeVar("M", bound=Hashable)


class Fanout(Generic[M]):
    def __init__(self, limit: int, frame: Callable[[bytes], bytes]) -> None:
        """
        @param limit: how many messages a member that is behind may have waiting.
        @param frame: turns a payload into the bytes of one WebSocket text frame.
        """
        self._limit = limit
        self._frame = frame
        self._ready: dict[M, Writer] = {}
        self._behind: dict[M, tuple[Writer, list[bytes]]] = {}
        self._batch: list[bytes] = []
        self._waiting = False  # the batch began with lines that wait for a flush someone schedules
        self._own: dict[M, list[bytes]] = {}  # lines for one member each, for the next flush

    def __len__(self) -> int:
        return len(self._ready) + len(self._behind)

    @property
    def pending(self) -> int:
        """Messages waiting for the next flush."""
        return len(self._batch)

    @property
    def ready(self) -> int:
        """Members that the next flush writes to."""
        return len(self._ready)

    def __contains__(self, member: M) -> bool:
        return member in self._ready or member in self._behind

    def __iter__(self) -> Iterator[M]:
        return iter([*self._ready, *self._behind])

    def add(self, member: M, write: Writer) -> None:
        self._ready[member] = write

    def remove(self, member: M) -> None:
        self._ready.pop(member, None)
        self._behind.pop(member, None)
        self._own.pop(member, None)

    def pause(self, member: M) -> None:
        write = self._ready.pop(member, None)
        if write is not None:
            self._behind[member] = (write, [])

    def resume(self, member: M) -> int:
        """The member takes data again: send its backlog; return how many messages that was."""
        entry = self._behind.pop(member, None)
        if entry is None:
            return 0
        write, backlog = entry
        # Ready again before writing: the write itself may pause the member anew.
        self._ready[member] = write
        if backlog:
            write(self._frame(b"\n".join(backlog)))
        return len(backlog)

    def backlog(self, member: M) -> int:
        entry = self._behind.get(member)
        return len(entry[1]) if entry is not None else 0

    def queue(self, message: bytes) -> bool:
        """Add a message to the next flush; True when it starts a new batch, or is the first
        after lines queued to wait (L{queueToWait}), so that the caller knows to schedule that
        flush."""
        self._batch.append(message)
        if self._waiting:
            self._waiting = False
            return True
        return len(self._batch) == 1

    def queueToWait(self, message: bytes) -> None:
        """Add a line to leave with the next flush someone else schedules (the caller makes
        sure one comes)."""
        self._batch.append(message)
        if len(self._batch) == 1:
            self._waiting = True

    def queueTo(self, member: M, line: bytes) -> None:
        """Add a line for C{member} alone to the next flush (or the first after it is added);
        the caller schedules that flush."""
        lines = self._own.get(member)
        if lines is None:
            self._own[member] = [line]
        else:
            lines.append(line)

    def waiting(self, member: M) -> bool:
        """Whether lines of its own wait for C{member} (a flush is due once it is added)."""
        return member in self._own

    def flush(self) -> list[M]:
        """Send the batch; return the members dropped because their backlog overflowed."""
        batch = self._batch
        own = self._own
        if not batch and not own:
            return []
        self._batch = []
        self._waiting = False
        if own:
            self._own = {m: lines for m, lines in own.items() if m not in self}  # not added yet: they wait
        # Backlogs first: a member that a write below pauses must not be queued this batch too.
        dropped: list[M] = []
        limit = self._limit
        for member, (_, backlog) in self._behind.items():
            lines: Sequence[bytes] = own.pop(member, ()) if own else ()
            if len(backlog) + len(batch) + len(lines) > limit:
                dropped.append(member)
            else:
                backlog.extend(batch)
                backlog.extend(lines)
        for member in dropped:
            del self._behind[member]
        if self._ready:
            frame = self._frame(b"\n".join(batch)) if batch else b""
            if not own:
                # A write may pause its member, which moves it out of _ready: iterate over a copy.
                for write in list(self._ready.values()):
                    write(frame)
            else:
                for member, write in list(self._ready.items()):
                    mine = own.pop(member, None)
                    if mine is not None:
                        write(frame + self._frame(b"\n".join(mine)))
                    elif batch:
                        write(frame)
        return dropped
