"""Presence: how many are in each room, on every process, told to v1 members and to the other
processes at most once a room a second.

Plain code on an injected clock. A storm of joins costs one presence line and one broker call
a second, not one each; the last change always arrives; a process that stops saying its counts
(it died) stops counting after C{stale} seconds.

How late a dead process leaves C{online} at worst, from its last say (just before it died): its
count goes stale C{stale} seconds later, the check that runs every C{CHECK_INTERVAL} seconds
sees that at most one interval after, and the presence line may wait one C{interval} more. With
L{txchat.config.Config}'s 20 s and these two 1 s: 22 s, under SPEC's 30 s.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, Protocol, Sized, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from txchat.people import RoomPeople

# At most one presence line a room a second.
PRESENCE_INTERVAL = 1.0
# How often the other processes' counts are checked for staleness: on its own timer, not on
# the refresh tick, so a dead process's count goes at most this long after it is stale.
CHECK_INTERVAL = 1.0


class RoomPresence:
    """One room's presence: the other processes' counts and what was last said of this one's."""

    def __init__(self) -> None:
        self.remote: dict[str, tuple[int, float]] = {}  # other processes' members: (count, when said)
        self.published = 0  # the count of members here last told to the other processes
        self.sent = -1  # the online count last sent to v1 members
        self.at = float("-inf")  # when that was
        self.call: IDelayedCall | None = None  # the next presence line, when one waits
        self.people = RoomPeople()  # who they are (SPEC §18)

    @property
    def elsewhere(self) -> int:
        """Members on the other processes."""
        return sum(count for count, _ in self.remote.values())

    def heard(self, process: str, count: int, when: float) -> None:
        """Another process said its count at C{when} (now, or earlier as Redis timed it); an
        older say than the one known (a joiner's read, overtaken on the channel) is not news."""
        if count:
            known = self.remote.get(process)
            if known is None or known[1] <= when:
                self.remote[process] = (count, when)
        else:
            self.remote.pop(process, None)
            self.people.gone(process)

    def silent(self, since: float) -> list[str]:
        """Forget the processes not heard from since C{since}; which they were."""
        dead = [process for process, (_, said) in self.remote.items() if said < since]
        for process in dead:
            del self.remote[process]
            self.people.gone(process)
        return dead


class Counted(Protocol):
    """What presence needs of a room."""

    @property
    def name(self) -> str: ...

    @property
    def watched(self) -> bool:
        """The broker delivers this room here (so the other processes share it)."""

    @property
    def v1Members(self) -> Sized:
        """The v1 members here, who are told."""

    @property
    def online(self) -> int: ...

    @property
    def presence(self) -> RoomPresence: ...

    def __len__(self) -> int:
        """Members on this process."""


R = TypeVar("R", bound=Counted)
R_co = TypeVar("R_co", bound=Counted, covariant=True)


class Directory(Protocol[R_co]):
    """The rooms this process knows."""

    def get(self, name: str) -> R_co | None: ...

    def __iter__(self) -> Iterator[R_co]: ...


class Presence(Generic[R]):
    """
    @param setOnline: tell the other processes this one's count in a room.
    @param tell: send a presence line to a room's v1 members.
    @param shared: other processes may share the rooms (with Redis): they are told even of
        rooms without v1 members.
    @param refresh: how often this process says its counts again (else they go stale elsewhere).
    @param stale: how long another process's count holds without being said again.
    @param check: how often the other processes' counts are checked for staleness.
    @param membersLimit: above this many people a room's members are told counts only.
    @param sayPeople: tell the other processes this one's count and people in a room (with
        whether to say the whole set, else the changes); instead of C{setOnline}.
    """

    def __init__(
        self, clock: IReactorTime, rooms: Directory[R], setOnline: Callable[[str, int], None],
        tell: Callable[[R, bytes], None], shared: bool, refresh: float, stale: float,
        interval: float = PRESENCE_INTERVAL, check: float = CHECK_INTERVAL, membersLimit: int = 200,
        sayPeople: Callable[[str, int, bool], None] | None = None,
    ) -> None:
        self._clock = clock
        self._rooms = rooms
        self._setOnline = setOnline
        self._tell = tell
        self.shared = shared
        self.refresh = refresh
        self.stale = stale
        self.interval = interval
        self.check = check
        self.membersLimit = membersLimit
        self._sayPeople = sayPeople
        self._refreshCall: IDelayedCall | None = None
        self._checkCall: IDelayedCall | None = None

    def changed(self, room: R) -> None:
        """The room's count may have changed: say so at once if the last time was C{interval}
        ago, else when it is, with the count as it is by then."""
        state = room.presence
        if state.call is not None:
            return
        if not room.v1Members and not self.shared:
            state.people.quiet()
            return  # (in one process, a room of plain-protocol clients has nobody to tell)
        wait = state.at + self.interval - self._clock.seconds()
        if wait <= 0:
            self._send(room)
        else:
            state.call = self._clock.callLater(wait, self._send, room)

    def _send(self, room: R) -> None:
        """Tell what changed; only what was told starts the next second (a call that finds
        nothing to tell, as when the other processes' people are first read, delays nothing)."""
        state = room.presence
        state.call = None
        now = self._clock.seconds()
        if self.shared and room.watched and (len(room) != state.published or state.people.saying):
            state.at = now
            state.published = len(room)
            self._say(room.name, len(room), False)
        online = room.online
        if not room.v1Members:
            state.people.quiet()
            return
        lines = state.people.news(online, online != state.sent, self.membersLimit)
        state.sent = online
        if lines:
            state.at = now
        for line in lines:
            self._tell(room, line)

    def _say(self, room: str, count: int, whole: bool) -> None:
        if self._sayPeople is not None:
            self._sayPeople(room, count, whole)
        else:
            self._setOnline(room, count)

    def heard(self, roomName: str, process: str, count: int) -> None:
        """Another process's member count in a room this one has members in."""
        room = self._rooms.get(roomName)
        if room is None or not room.watched:
            return
        room.presence.heard(process, count, self._clock.seconds())
        self.changed(room)

    def unwatched(self, room: R) -> None:
        """The room is no longer shared from here: its count here is 0 for the others, and
        theirs are no longer heard."""
        state = room.presence
        if state.published:
            state.published = 0
            self._say(room.name, 0, True)
        state.remote.clear()
        state.people.forgetRemote()

    def forget(self, room: R) -> None:
        state = room.presence
        if state.call is not None and state.call.active():
            state.call.cancel()
        state.call = None

    def start(self) -> None:
        """Say this process's counts every C{refresh} seconds; every C{check} seconds, stop
        counting the processes silent for C{stale}."""
        if self._refreshCall is None:
            self._refreshCall = self._clock.callLater(self.refresh, self._refresh)
        if self._checkCall is None:
            self._checkCall = self._clock.callLater(self.check, self._check)

    def stop(self) -> None:
        for call in (self._refreshCall, self._checkCall):
            if call is not None and call.active():
                call.cancel()
        self._refreshCall = self._checkCall = None

    def _refresh(self) -> None:
        self._refreshCall = self._clock.callLater(self.refresh, self._refresh)
        for room in self._rooms:
            if room.watched and len(room):
                room.presence.published = len(room)
                self._say(room.name, len(room), True)

    def _check(self) -> None:
        self._checkCall = self._clock.callLater(self.check, self._check)
        stale = self._clock.seconds() - self.stale
        for room in self._rooms:
            if room.presence.remote and room.presence.silent(stale):
                self.changed(room)
