"""The server API under ``/api/``, for an application's own backend: post into a room and read
a room's state (docs/integration.md is the reference).

Every call needs ``Authorization: Bearer KEY``; JSON in, JSON out, errors included. This
module is the HTTP side only: it knows the rooms by the three calls it answers with
(L{Backend}, which L{txchat.roomapi.RoomApi} implements).
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from txchat import people, wire
from txchat.broker import NotPublished
from txchat.chatlog import Page
from txchat.people import validIdentity
from txchat.redisbroker import BrokerAway
from txchat.roomapi import BrokerDown, RoomsFull, RoomView
from txchat.roster import ClusterDown, validSub

_log = Logger()

# Scrollback pages: messages in one, by default and at most.
PAGE = 50
MAX_PAGE = 200
# Member list pages: people in one, by default and at most.
MEMBERS_PAGE = 100
MAX_MEMBERS_PAGE = 1000
# A ban lasts at most this many seconds (a year).
MAX_BAN = 366 * 86400


class Backend(Protocol):
    def post(self, roomName: str, text: bytes, name: str) -> Deferred[tuple[str, int] | None]: ...

    def describe(self, roomName: str, since: int = 0) -> Deferred[RoomView]: ...

    def known(self) -> list[tuple[str, int]]: ...

    def history(self, roomName: str, before: tuple[str, int] | None, limit: int) -> Deferred[Page]: ...

    # People and moderation (SPEC §18; L{txchat.roster}).

    def members(self, roomName: str) -> Deferred[list[tuple[str, str]]]: ...

    def disconnect(self, sub: str) -> Deferred[int | None]: ...

    def ban(self, roomName: str, sub: str, seconds: int) -> Deferred[int]: ...

    def lift(self, roomName: str, sub: str) -> Deferred[bool]: ...

    def delete(self, roomName: str, epoch: str, seq: int) -> Deferred[bool]: ...


class ApiError(Exception):
    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


class Api(Resource):
    isLeaf = True

    def __init__(self, rooms: Backend, keys: tuple[str, ...], maxMessageSize: int) -> None:
        super().__init__()
        self.rooms = rooms
        self._keys = [key.encode("utf-8") for key in keys]
        self.maxMessageSize = maxMessageSize

    def render(self, request: Request) -> Any:
        request.setHeader(b"cache-control", b"no-store")
        try:
            self._authorize(request)
            handler = self._route(request)
            answer = handler(request)
        except ApiError as e:
            return _error(request, e)
        except Exception:
            # Twisted would answer with an HTML page; the API's callers read JSON.
            _log.failure("API call {method} {path} failed", method=request.method, path=request.path)
            return _error(request, ApiError(500, "internal error"))
        if not isinstance(answer, Deferred):
            return _respond(request, answer)
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)  # the caller hung up: nobody to answer

        def answered(body: bytes) -> None:
            if not gone:
                request.write(_respond(request, body))
                request.finish()

        def failed(failure: Failure) -> None:
            error = failure.value if isinstance(failure.value, ApiError) else _unavailable(failure, request)
            if not gone:
                request.write(_error(request, error))
                request.finish()

        answer.addCallbacks(answered, failed)
        return NOT_DONE_YET

    def _authorize(self, request: Request) -> None:
        """Constant-time comparison with every key (there may be two while one is rotated)."""
        scheme, _, given = (request.getHeader(b"authorization") or b"").partition(b" ")
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given.strip(), key)
        if scheme.lower() != b"bearer" or not matched:
            raise ApiError(401, "a valid API key is required (Authorization: Bearer KEY)", **{
                "WWW-Authenticate": 'Bearer realm="txchat"'})

    def _route(self, request: Request) -> Callable[[Request], Any]:
        raw = request.postpath or []
        path = [segment.decode("utf-8", "replace") for segment in raw]
        if path == ["rooms"]:
            return _only(request, "GET", self._list)
        if len(path) == 3 and path[0] == "users" and path[2] == "disconnect":
            sub = _sub(raw[1])
            return _only(request, "POST", lambda r: self._disconnect(r, sub))
        if len(path) in (2, 3, 4) and path[0] == "rooms" and wire.validRoom(path[1]):
            room = path[1]
            if len(path) == 2:
                return _only(request, "GET", lambda r: self._describe(r, room))
            if len(path) == 4:
                if path[2] == "messages":
                    return _only(request, "DELETE", lambda r: self._delete(r, room, path[3]))
                if path[2] == "bans":
                    sub = _sub(raw[3])
                    return _only(request, "DELETE", lambda r: self._lift(r, room, sub))
            elif path[2] == "history":
                return _only(request, "GET", lambda r: self._history(r, room))
            elif path[2] == "messages":
                return _only(request, "POST", lambda r: self._post(r, room))
            elif path[2] == "members":
                return _only(request, "GET", lambda r: self._members(r, room))
            elif path[2] == "bans":
                return _only(request, "POST", lambda r: self._ban(r, room))
        raise ApiError(404, "no such API path, or not a room name")

    # -- the calls ------------------------------------------------------------------------

    def _list(self, request: Request) -> bytes:
        return _json({"rooms": [{"room": name, "online": online} for name, online in self.rooms.known()]})

    def _describe(self, request: Request, room: str) -> Deferred[bytes]:
        return self.rooms.describe(room).addCallback(
            lambda view: _json({"room": view.room, "epoch": view.epoch, "seq": view.seq, "online": view.online}))

    def _history(self, request: Request, room: str) -> Deferred[bytes]:
        args = request.args or {}
        if b"before" in args or b"limit" in args:
            return self._scrollback(room, args)
        raw = args.get(b"since", [b"0"])[0]
        if not raw.isdigit():
            raise ApiError(400, "since: must be a message number (0 or more)")
        # The messages are txchat.v1 lines already: joined as they are, not parsed again.
        return self.rooms.describe(room, int(raw)).addCallback(
            lambda view: b'{"epoch":%s,"messages":[%s]}' % (_json(view.epoch), b",".join(view.lines)))

    def _scrollback(self, room: str, args: dict[bytes, list[bytes]]) -> Deferred[bytes]:
        """Older messages, across epochs, a page at a time (SPEC §16)."""
        before = None
        if b"before" in args:
            try:
                before = wire.since(args[b"before"][0], "before: must be EPOCH:SEQ, a message's epoch and seq")
            except wire.BadRequest as e:
                raise ApiError(400, str(e)) from None
        raw = args.get(b"limit", [b"%d" % PAGE])[0]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise ApiError(400, f"limit: must be a number from 1 to {MAX_PAGE}")
        return self.rooms.history(room, before, int(raw)).addCallback(
            lambda page: b'{"messages":[%s],"more":%s}' % (
                b",".join(wire.withEpoch(m.line, m.epoch) for m in page.messages), _json(page.more)))

    def _post(self, request: Request, room: str) -> Deferred[bytes]:
        text, name = self._message(request)
        request.setResponseCode(201)
        return self.rooms.post(room, text, name).addCallback(
            lambda numbered: _json(dict(zip(("epoch", "seq"), numbered or (None, None)))))

    # -- people and moderation (SPEC §18) ------------------------------------------------------

    def _members(self, request: Request, room: str) -> Deferred[bytes]:
        """Everyone in the room, a page at a time, ordered by identity: C{after} is the last
        C{from} of the page before."""
        args = request.args or {}
        after = None
        if b"after" in args:
            after = args[b"after"][0].decode("utf-8", "replace")
            if not validIdentity(after):
                raise ApiError(400, "after: must be a member's \"from\" (u:SUB, a:CID, ...), as the last page ended")
        raw = args.get(b"limit", [b"%d" % MEMBERS_PAGE])[0]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_MEMBERS_PAGE:
            raise ApiError(400, f"limit: must be a number from 1 to {MAX_MEMBERS_PAGE}")
        limit = int(raw)

        def paged(everyone: list[tuple[str, str]]) -> bytes:
            some, more = people.page(everyone, after, limit)
            return _json({"members": people.describe(some), "users": len(everyone), "more": more})

        return self.rooms.members(room).addCallback(paged)

    def _disconnect(self, request: Request, sub: str) -> Deferred[bytes]:
        def closed(count: int | None) -> bytes:
            if count is None:  # told every process; each closes its own
                request.setResponseCode(202)
                return _json({"disconnected": None})
            if not count:
                raise ApiError(404, "that user has no connection")
            return _json({"disconnected": count})

        return self.rooms.disconnect(sub).addCallback(closed)

    def _ban(self, request: Request, room: str) -> Deferred[bytes]:
        body = _body(request, 'the body must be JSON: {"sub": "...", "seconds": N}')
        sub, seconds = body.get("sub"), body.get("seconds")
        if not isinstance(sub, str) or not validSub(sub):
            raise ApiError(400, "sub: must be the user's token subject (1-256 characters, no control characters)")
        if type(seconds) is not int or not 1 <= seconds <= MAX_BAN:
            raise ApiError(400, f"seconds: must be a whole number from 1 to {MAX_BAN}")
        request.setResponseCode(201)
        return self.rooms.ban(room, sub, seconds).addCallback(
            lambda closed: _json({"room": room, "sub": sub, "seconds": seconds, "closed": closed}))

    def _lift(self, request: Request, room: str, sub: str) -> Deferred[bytes]:
        def lifted(was: bool) -> bytes:
            if not was:
                raise ApiError(404, "that user is not banned from this room")
            return _json({"room": room, "sub": sub, "lifted": True})

        return self.rooms.lift(room, sub).addCallback(lifted)

    def _delete(self, request: Request, room: str, rawSeq: str) -> Deferred[bytes]:
        if not rawSeq.isdigit() or rawSeq.startswith("0") or not rawSeq.isascii():
            raise ApiError(400, "the message number must be a whole number from 1")
        epochs = (request.args or {}).get(b"epoch")
        if not epochs or not epochs[0]:
            raise ApiError(400, "epoch: required (?epoch=E, the message's epoch)")
        epoch, seq = epochs[0].decode("utf-8", "replace"), int(rawSeq)

        def deleted(was: bool) -> bytes:
            if not was:
                raise ApiError(404, "no such message in this room (never there, or already gone)")
            return _json({"deleted": {"epoch": epoch, "seq": seq}})

        return self.rooms.delete(room, epoch, seq).addCallback(deleted)

    def _message(self, request: Request) -> tuple[bytes, str]:
        """The text (cleaned and normalised as a txchat.v1 member's is) and the name of a
        posted message."""
        body = _body(request, "the body must be JSON: {\"text\": \"...\", \"name\": \"...\"}")
        text, name = body.get("text"), body.get("name", "")
        if not isinstance(text, str) or not isinstance(name, str):
            raise ApiError(400, "text (required) and name must be strings")
        try:
            raw, rawName = text.encode("utf-8"), name.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, "text and name must be valid Unicode (no lone surrogates)") from None
        if len(raw) > self.maxMessageSize:
            raise ApiError(413, f"text is {len(raw)} bytes; at most {self.maxMessageSize}")
        message = wire.normaliseLines(raw)  # line breaks stay (SPEC §17)
        if not message:
            raise ApiError(400, "text is empty")
        try:
            return message, wire.displayName(rawName)
        except wire.BadRequest as e:
            raise ApiError(400, str(e)) from None


def _body(request: Request, shape: str) -> dict[str, Any]:
    """The request's JSON object; a 400 that says C{shape} when it is not one."""
    try:
        body = json.loads(request.content.read() if request.content is not None else b"")
    except ValueError:
        raise ApiError(400, shape) from None
    except RecursionError:  # nesting too deep for the parser: a few KB of brackets do it
        raise ApiError(400, shape + " (nested too deeply)") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _sub(segment: bytes) -> str:
    """A user's C{sub} from a path segment (percent-decoded already)."""
    try:
        sub = segment.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the user's sub must be UTF-8") from None
    if not validSub(sub):
        raise ApiError(400, "the user's sub: 1-256 characters, no control characters")
    return sub


def _only(request: Request, method: str, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
    allowed = [method, "HEAD"] if method == "GET" else [method]
    if request.method.decode("ascii", "replace") not in allowed:
        raise ApiError(405, f"use {method} here", Allow=", ".join(allowed))
    return handler


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _respond(request: Request, body: bytes) -> bytes:
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    return body + b"\n"


def _error(request: Request, error: ApiError) -> bytes:
    request.setResponseCode(error.status)
    for name, value in error.headers.items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))
    return _respond(request, _json({"error": str(error)}))


# What the hub's failures mean to an API caller.
_UNAVAILABLE = {
    RoomsFull: "every room has members and the server allows no more rooms",
    NotPublished: "the server is overloaded (its Redis backlog is full); try again shortly",
    BrokerDown: "Redis, which keeps the rooms, cannot be reached; try again shortly",
    BrokerAway: "Redis, which the processes share, cannot be reached; try again shortly",
    ClusterDown: "Redis, which knows the other processes' members, cannot be reached; try again shortly",
    ConnectionLost: "the connection to Redis was lost (or it stopped answering) while the message was being "
                    "published: it may or may not have been delivered",
}


def _unavailable(failure: Failure, request: Request) -> ApiError:
    known = failure.check(*_UNAVAILABLE)
    if known is None:
        _log.failure("API call {method} {path} failed", failure, method=request.method, path=request.path)
        return ApiError(500, "internal error")
    return ApiError(503, _UNAVAILABLE[known])
