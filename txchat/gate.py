"""Admission: a WebSocket handshake's facts in, a L{Ticket} or a L{Refusal} out.

Plain code, no Autobahn: the protocol gathers the facts and turns a refusal into its HTTP
answer; every refusal is counted here, once, by its label. What needs the rooms (a place in
one, or a resuming client this process cannot serve yet) is the hub's, asked through C{hold}.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Callable, Generic, Protocol, Sequence, TypeVar

from twisted.logger import Logger

from txchat import wire
from txchat.limits import ConnectionLimits, TrustedProxies
from txchat.origin import OriginPolicy
from txchat.tokens import TokenChecker, TokenRefused

_log = Logger()

Place = TypeVar("Place")


class Outcomes(Protocol):
    """Where outcomes are counted: a Prometheus counter with an C{outcome} label."""

    def labels(self, outcome: str) -> _Count: ...


class _Count(Protocol):
    def inc(self) -> None: ...


@dataclass(frozen=True)
class Handshake:
    """What the gate is told of a handshake."""

    path: str  # the raw request path
    protocols: Sequence[str]  # the subprotocols the client offers
    uri: str  # the request URI, with its query
    origin: str | None
    host: str | None  # the Host header
    peerHost: str  # the TCP peer's address ("unix" on a UNIX socket)
    forwardedFor: str | None  # the X-Forwarded-For header
    peerName: str  # the peer as log lines name it


@dataclass(frozen=True)
class Claim:
    """What a handshake asks of the rooms: which, in which protocol, resuming where."""

    room: str
    v1: bool
    since: tuple[str, int] | None


@dataclass(frozen=True)
class Ticket(Generic[Place]):
    """An admitted handshake: what the connection is and may do."""

    room: str
    v1: bool  # speaks txchat.v1 (else the seed's plain protocol)
    subprotocol: str | None  # the one to answer with
    name: str  # the display name (the token's, with signed identities)
    since: tuple[str, int] | None
    subject: str | None  # who the signed identity is (the token's C{sub}); None without signed identities
    expires: float  # when the signed identity expires (seconds since the Unix epoch), or infinity
    address: str  # the client's address, which the connection counts against
    peerName: str  # the peer as log lines name it from now on ("CLIENT via PROXY" behind a proxy)
    place: Place  # what the rooms hold for it
    v2: bool = False  # speaks txchat.v2 (and so every line of txchat.v1 too: v1 is true as well)
    sender: str = ""  # who its messages are from (SPEC §17): "u:SUB", "a:CID" or "c:" and a random value


@dataclass(frozen=True)
class Refusal:
    """A refused handshake: its HTTP status, the reason sent, the metrics label."""

    status: int
    reason: str | None
    label: str


class Gate(Generic[Place]):
    """The admission desk: the room path, parameters, token, Origin, connection limits, then
    a place in the room (C{hold}: the place, or why there is none). Admitted connections count
    against their address until L{release}d."""

    def __init__(
        self, origins: OriginPolicy, proxies: TrustedProxies, limits: ConnectionLimits,
        tokens: TokenChecker | None, outcomes: Outcomes, hold: Callable[[Claim], Place | str],
    ) -> None:
        self.origins = origins
        self.proxies = proxies
        self.limits = limits
        self.tokens = tokens
        self._outcomes = outcomes
        self._counts: dict[str, _Count] = {}  # by outcome: a counter's labels() is slow for every handshake
        self._hold = hold
        self.closed = False  # shutting down: nobody comes in any more
        # Whether a signed user is banned from a room (SPEC §18; the hub's roster says).
        self.banned: Callable[[str, str], bool] = lambda room, subject: False

    @property
    def full(self) -> bool:
        """Every handshake now is refused (shutting down, or --max-connections reached)."""
        limits = self.limits
        return self.closed or bool(limits.total and limits.open >= limits.total)

    def admit(self, handshake: Handshake) -> Ticket[Place] | Refusal:
        verdict = self._admit(handshake)
        outcome = "refused-" + verdict.label if isinstance(verdict, Refusal) else "accepted"
        count = self._counts.get(outcome)
        if count is None:
            count = self._counts[outcome] = self._outcomes.labels(outcome)
        count.inc()
        return verdict

    def release(self, address: str) -> None:
        """An admitted connection has gone."""
        self.limits.release(address)

    def _admit(self, handshake: Handshake) -> Ticket[Place] | Refusal:
        peer = handshake.peerName
        roomName = wire.roomFromPath(handshake.path)
        if roomName is None:
            _log.info("refused {peer}: no such room {path!r}", peer=peer, path=handshake.path)
            return Refusal(404, "no such room", "not-found")
        v2 = wire.SUBPROTOCOL_V2 in handshake.protocols
        v1 = v2 or wire.SUBPROTOCOL in handshake.protocols
        tokens = self.tokens
        name, since, subject, expires, cid = "", None, None, math.inf, None
        if v1 or tokens is not None:
            try:
                asked = wire.handshakeParams(handshake.uri, v1, tokens is not None)
            except wire.BadRequest as e:
                _log.info("refused {peer}: {reason}", peer=peer, reason=str(e))
                return Refusal(400, str(e), "bad-request")
            name, since, cid = asked.name, asked.since, asked.cid
            if tokens is not None:
                try:
                    identity = tokens.check(asked.token, roomName)
                except TokenRefused as e:
                    _log.info("refused {peer}: {reason}", peer=peer, reason=str(e))
                    return Refusal(e.status, str(e), "token")
                name, subject, expires = identity.name, identity.subject, identity.expires
                if self.banned(roomName, subject):
                    _log.info("refused {peer}: banned from room {room}", peer=peer, room=roomName)
                    return Refusal(403, "banned from this room", "banned")
        origin = handshake.origin
        try:
            allowed = self.origins.allows(origin, handshake.host)
            address = self.proxies.clientAddress(handshake.peerHost, handshake.forwardedFor)
        except Exception:
            # Autobahn would swallow this; say what happened.
            _log.failure("handshake check failed for {peer}", peer=peer)
            return Refusal(500, None, "error")
        if not allowed:
            _log.info("refused {peer}: origin {origin} is not allowed", peer=peer, origin=origin)
            return Refusal(403, "origin not allowed", "origin")
        reason = "shutting-down" if self.closed else self.limits.admit(address)
        if reason is None:
            try:
                place = self._hold(Claim(roomName, v1, since))
            except Exception:
                self.limits.release(address)
                _log.failure("holding a place in {room} failed for {peer}", room=roomName, peer=peer)
                return Refusal(500, None, "error")
            if not isinstance(place, str):
                if address != handshake.peerHost:
                    peer = f"{address} via {peer}"
                subprotocol = wire.SUBPROTOCOL_V2 if v2 else wire.SUBPROTOCOL if v1 else None
                return Ticket(roomName, v1, subprotocol, name, since, subject, expires, address, peer, place,
                              v2, _sender(subject, cid))
            self.limits.release(address)
            reason = place
        _log.info("refused {peer} ({address}): {reason}", peer=peer, address=address, reason=reason)
        return Refusal(503, reason, reason)


def _sender(subject: str | None, cid: str | None) -> str:
    """A connection's "from": the signed user, else the client's own ID, else one of its own
    (random, so that it says nothing of the peer and cannot be guessed to pose as another)."""
    if subject is not None:
        return "u:" + subject
    if cid is not None:
        return "a:" + cid
    return "c:" + secrets.token_hex(6)
