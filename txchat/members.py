"""A chat connection as the hub sees it: a small typing.Protocol, so that the hub needs nothing
of the WebSocket protocol's module (txchat/protocol.py imports the hub, not the other way)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from txchat.rooms import Room


class Resuming(Protocol):
    """A client as far as resuming goes: its protocol, and where it resumes (if it does)."""

    @property
    def v1(self) -> bool: ...

    @property
    def since(self) -> tuple[str, int] | None: ...


class Member(Resuming, Protocol):
    """What the hub needs of a chat connection (L{txchat.protocol.ChatProtocol})."""

    room: Room | None  # the room it was admitted to, until it has gone

    @property
    def displayName(self) -> str: ...

    @property
    def sender(self) -> str:
        """Who it is (SPEC §17 C{from}): C{u:SUB}, C{a:CID} or one of its own."""

    @property
    def v2(self) -> bool:
        """Speaks txchat.v2 (and so txchat.v1's lines too)."""

    @property
    def peerName(self) -> str: ...

    @property
    def member(self) -> bool:
        """Open, and not yet leaving."""

    @property
    def behind(self) -> bool:
        """Output waits in its transport."""

    @property
    def transport(self) -> Any: ...

    def write(self, data: bytes) -> None: ...

    def leave(self, code: int, reason: str) -> None: ...
