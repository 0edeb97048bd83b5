"""People (SPEC §18): who is in a room, by identity (a connection's C{from}), over every process.

Plain code with no clock of its own: L{txchat.presence} decides when a room's line goes out (at
most once a second) and asks this for it. A person is an identity, whatever the number of its
connections: three tabs count once, and the person leaves when the last tab does.

What the members are told is one sequence of states. A member list (a C{members} line) sets a
client's view; each C{presence} line then names, with C{joined} and C{left}, every identity whose
state may differ from that view, as sets: a client adds what joined and removes what left, so a
repeated entry is harmless, and a joiner, whose list is the state at its join, is brought up to
date by the next line like everyone else. Above the members limit the room tells counts only; a
C{members} line without a list says so, and one with a list says the room is back under it.

The other processes' people arrive as numbered changes (L{heardChanges}); a change that does not
follow the last one known from that process means some were missed, and the caller reads the
process's whole set again (L{heardAll}).
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable

from txchat import wire

# Identities whose read positions are kept: signed users and clients with their own ID (SPEC §18).
STABLE = ("u:", "a:")


def stable(identity: str) -> bool:
    return identity.startswith(STABLE)


def validIdentity(text: str) -> bool:
    """A C{from} as the member list API takes it: a kind, a colon, then up to 256 printable characters."""
    kind, colon, rest = text.partition(":")
    return bool(colon) and len(kind) == 1 and kind.isalpha() and 0 < len(rest) <= 256 and rest.isprintable()


class RoomPeople:
    """One room's people: here (with their connections), on the other processes, and what the
    members and the other processes were last told."""

    def __init__(self) -> None:
        self.here: dict[str, list[Hashable]] = {}  # identity -> its connections here, oldest first
        self._hereNames: dict[str, str] = {}
        self.remote: dict[str, dict[str, str]] = {}  # process -> {identity: name}
        self.versions: dict[str, int] = {}  # process -> the number of its last change applied here
        self._names: dict[str, str] = {}  # every identity present anywhere -> its name
        self._places: dict[str, int] = {}  # identity -> in how many processes it is present
        # Told to the members: identities that may have changed since the last line, the
        # state that line told, whether it was a list (else counts only).
        self._touched: set[str] = set()
        self._announced: dict[str, str] = {}
        self.listed = True
        self._joiners = False  # a member got the state as it is since the last line
        self._resync = False  # one of them got a list where the others have counts, or the reverse
        self.sentUsers = -1
        # Told to the other processes: who they were told is here, who may have changed since,
        # and how many changes were said so far.
        self._said: dict[str, str] = {}
        self._unsaid: set[str] = set()
        self.version = 0

    @property
    def users(self) -> int:
        """Distinct identities present, over every process."""
        return len(self._places)

    def __contains__(self, identity: str) -> bool:
        return identity in self._places

    def members(self) -> list[tuple[str, str]]:
        """(identity, name) of everyone present, in no particular order."""
        return list(self._names.items())

    def connections(self, identity: str) -> list[Hashable]:
        return list(self.here.get(identity, ()))

    # -- this process's connections -----------------------------------------------------------

    def add(self, identity: str, name: str, connection: Hashable) -> bool:
        """A connection joined; whether it is its identity's first here."""
        connections = self.here.get(identity)
        if connections is not None:
            connections.append(connection)
            return False
        self.here[identity] = [connection]
        self._hereNames[identity] = name
        self._arrive(identity, name)
        self._unsaid.add(identity)
        return True

    def remove(self, identity: str, connection: Hashable) -> bool:
        """A connection left; whether it was its identity's last here."""
        connections = self.here.get(identity)
        if connections is None or connection not in connections:
            return False
        connections.remove(connection)
        if connections:
            return False
        del self.here[identity]
        del self._hereNames[identity]
        self._depart(identity)
        if identity in self._said:
            self._unsaid.add(identity)
        else:
            self._unsaid.discard(identity)  # came and went unsaid: nothing to tell (and nothing kept)
        return True

    def _arrive(self, identity: str, name: str) -> None:
        places = self._places.get(identity, 0)
        self._places[identity] = places + 1
        if not places or self._names.get(identity) != name:
            self._names[identity] = name
            self._touched.add(identity)

    def _depart(self, identity: str) -> None:
        places = self._places.get(identity, 0) - 1
        if places > 0:
            self._places[identity] = places
            if identity in self._hereNames:
                self._names[identity] = self._hereNames[identity]
            return
        self._places.pop(identity, None)
        self._names.pop(identity, None)
        self._touched.add(identity)

    # -- the other processes ------------------------------------------------------------------

    def heardChanges(self, process: str, version: int, joined: dict[str, str], left: Iterable[str]) -> bool:
        """Another process's change number C{version}; False when it does not follow the last
        one known, and the process's whole set must be read (L{heardAll})."""
        known = self.versions.get(process)
        if known is not None and version <= known:
            return True  # already in what was read
        if version != (known or 0) + 1:
            return False  # (a process's first change is all of it: it starts from nobody)
        self.versions[process] = version
        people = self.remote.setdefault(process, {})
        for identity in left:
            if people.pop(identity, None) is not None:
                self._depart(identity)
        for identity, name in joined.items():
            before = people.get(identity)
            people[identity] = name
            if before is None:
                self._arrive(identity, name)
            elif before != name:
                self._names[identity] = name
                self._touched.add(identity)
        return True

    def heardAll(self, process: str, version: int, people: dict[str, str]) -> None:
        """Another process's whole set as of its change C{version}; older than what is known
        here, it is not news."""
        known = self.versions.get(process)
        if known is not None and version < known:
            return
        before = self.remote.get(process, {})
        self.versions[process] = version
        for identity in before:
            self._depart(identity)
        self.remote[process] = dict(people)
        for identity, name in people.items():
            self._arrive(identity, name)

    def gone(self, process: str) -> None:
        """Another process has no members here any more (or stopped saying so: it died)."""
        self.versions.pop(process, None)
        for identity in self.remote.pop(process, {}):
            self._depart(identity)

    def forgetRemote(self) -> None:
        for process in list(self.remote):
            self.gone(process)
        self.versions.clear()

    # -- what the others are told ----------------------------------------------------------

    @property
    def saying(self) -> bool:
        """This process's people changed since it last said them."""
        said, here = self._said, self._hereNames
        return any(here.get(identity) != said.get(identity) for identity in self._unsaid)

    def changes(self) -> tuple[int, dict[str, str], list[str]]:
        """This process's changes for the others since the last, numbered (the number stays
        when there are none); from now on they count as said."""
        joined: dict[str, str] = {}
        left: list[str] = []
        said, here = self._said, self._hereNames
        for identity in sorted(self._unsaid):
            now = here.get(identity)
            if now == said.get(identity):
                continue
            if now is None:
                left.append(identity)
                del said[identity]
            else:
                joined[identity] = said[identity] = now
        self._unsaid.clear()
        if joined or left:
            self.version += 1
        return self.version, joined, left

    def everyone(self) -> dict[str, str]:
        """This process's whole set (identity -> name)."""
        return dict(self._hereNames)

    # -- what the members are told ----------------------------------------------------------

    def quiet(self) -> None:
        """Nobody here is told (no v1 members): what changed need not be remembered."""
        self._touched.clear()

    def membersLine(self, limit: int) -> bytes:
        """A joiner's view: the room as it is now (counts only above C{limit})."""
        self._joiners = True
        listed = self.users <= limit
        if listed != self.listed:
            self._resync = True
        return wire.members(self._list() if listed else None, self.users)

    def _list(self) -> list[dict[str, str]]:
        return [{"from": identity, "name": name} for identity, name in self._names.items()]

    def news(self, online: int, onlineChanged: bool, limit: int) -> list[bytes]:
        """The lines for the room's members now, if anything changed: a C{members} line when
        the room crossed the limit, then a C{presence} line."""
        users = self.users
        listed = users <= limit
        lines: list[bytes] = []
        if listed != self.listed or self._resync:
            self.listed, self._resync = listed, False
            self._touched.clear()
            self._announced = dict(self._names) if listed else {}
            lines.append(wire.members(self._list() if listed else None, users))
            joined: list[dict[str, str]] | None = [] if listed else None
            left: list[str] | None = [] if listed else None
        elif listed:
            joined, left = self._diff()
        else:
            joined = left = None
            self._touched.clear()
        self._joiners = False
        if not (lines or onlineChanged or users != self.sentUsers or joined or left):
            return []
        self.sentUsers = users
        lines.append(wire.presence(online, users, joined, left))
        return lines

    def _diff(self) -> tuple[list[dict[str, str]], list[str]]:
        joined: list[dict[str, str]] = []
        left: list[str] = []
        announced, names = self._announced, self._names
        for identity in sorted(self._touched):
            now, before = names.get(identity), announced.get(identity)
            if now == before and not self._joiners:
                continue  # back as it was told: nobody's view differs
            if now is None:
                left.append(identity)
                announced.pop(identity, None)
            else:
                joined.append({"from": identity, "name": now})
                announced[identity] = now
        self._touched.clear()
        return joined, left


def page(people: Iterable[tuple[str, str]], after: str | None, limit: int) -> tuple[list[tuple[str, str]], bool]:
    """Up to C{limit} of C{people} by identity after C{after}, and whether more follow: the
    member list API's pages, in a stable order whatever comes and goes between them."""
    ordered = sorted(p for p in people if after is None or p[0] > after)
    return ordered[:limit], len(ordered) > limit


def describe(members: Any) -> list[dict[str, str]]:
    return [{"from": identity, "name": name} for identity, name in members]
