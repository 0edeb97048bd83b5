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

from txchat import wire
from txchat.broker import NotPublished
from txchat.roomapi import BrokerDown, RoomsFull, RoomView

_log = Logger()


class Backend(Protocol):
    def post(self, roomName: str, text: bytes, name: str) -> Deferred[tuple[str, int] | None]: ...

    def describe(self, roomName: str, since: int = 0) -> Deferred[RoomView]: ...

    def known(self) -> list[tuple[str, int]]: ...


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
            error = _unavailable(failure, request)
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
        path = [segment.decode("ascii", "replace") for segment in request.postpath or []]
        if path == ["rooms"]:
            return _only(request, "GET", self._list)
        if len(path) in (2, 3) and path[0] == "rooms" and wire.validRoom(path[1]):
            room = path[1]
            if len(path) == 2:
                return _only(request, "GET", lambda r: self._describe(r, room))
            if path[2] == "history":
                return _only(request, "GET", lambda r: self._history(r, room))
            if path[2] == "messages":
                return _only(request, "POST", lambda r: self._post(r, room))
        raise ApiError(404, "no such API path, or not a room name")

    # -- the calls ------------------------------------------------------------------------

    def _list(self, request: Request) -> bytes:
        return _json({"rooms": [{"room": name, "online": online} for name, online in self.rooms.known()]})

    def _describe(self, request: Request, room: str) -> Deferred[bytes]:
        return self.rooms.describe(room).addCallback(
            lambda view: _json({"room": view.room, "epoch": view.epoch, "seq": view.seq, "online": view.online}))

    def _history(self, request: Request, room: str) -> Deferred[bytes]:
        raw = request.args.get(b"since", [b"0"])[0] if request.args else b"0"
        if not raw.isdigit():
            raise ApiError(400, "since: must be a message number (0 or more)")
        # The messages are txchat.v1 lines already: joined as they are, not parsed again.
        return self.rooms.describe(room, int(raw)).addCallback(
            lambda view: b'{"epoch":%s,"messages":[%s]}' % (_json(view.epoch), b",".join(view.lines)))

    def _post(self, request: Request, room: str) -> Deferred[bytes]:
        text, name = self._message(request)
        request.setResponseCode(201)
        return self.rooms.post(room, text, name).addCallback(
            lambda numbered: _json(dict(zip(("epoch", "seq"), numbered or (None, None)))))

    def _message(self, request: Request) -> tuple[bytes, str]:
        """The text (cleaned and normalised as a txchat.v1 member's is) and the name of a
        posted message."""
        shape = "the body must be JSON: {\"text\": \"...\", \"name\": \"...\"}"
        try:
            body = json.loads(request.content.read() if request.content is not None else b"")
        except ValueError:
            raise ApiError(400, shape) from None
        except RecursionError:  # nesting too deep for the parser: a few KB of brackets do it
            raise ApiError(400, shape + " (nested too deeply)") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
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
    ConnectionLost: "the connection to Redis was lost (or it stopped answering) while the message was being "
                    "published: it may or may not have been delivered",
}


def _unavailable(failure: Failure, request: Request) -> ApiError:
    known = failure.check(*_UNAVAILABLE)
    if known is None:
        _log.failure("API call {method} {path} failed", failure, method=request.method, path=request.path)
        return ApiError(500, "internal error")
    return ApiError(503, _UNAVAILABLE[known])
