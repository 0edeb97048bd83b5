"""The server API's handlers, in memory: real HTTP requests parsed by the site's own channel on a
string transport, a hub on a task.Clock, and chat clients in the rooms the API posts to."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.support.memory import Peer, V1Peer, makeHub
from txchat.api import Api
from txchat.roomapi import RoomApi
from txchat.site import ChatSite
from txchat.webapp import makeRoot


KEY = "k3y-for-the-backend-0123456789"


class Http:
    def __init__(self, **config: Any) -> None:
        self.hub, self.clock = makeHub(**{"history": 50, **config})
        self.rooms = RoomApi(self.hub)
        api = Api(self.rooms, (KEY, "an-older-key-still-valid-42"), self.hub.config.maxMessageSize)
        self.site = ChatSite(makeRoot(self.hub, api=api), self.clock, self.hub.config)

    def call(self, method: str, path: str, body: object = None, key: str | None = KEY,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body or b""
        assert isinstance(raw, bytes)
        head = {"Host": "chat.example", "Content-Length": str(len(raw)), **(headers or {})}
        if key is not None:
            head["Authorization"] = f"Bearer {key}"
        request = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
        transport = StringTransport()
        channel = self.site.buildProtocol(None)
        assert channel is not None
        channel.makeConnection(transport)
        channel.dataReceived(request.encode() + raw)
        response = transport.value()
        channel.connectionLost(Failure(ConnectionDone()))
        status, headers_, payload = _parse(response)
        return status, headers_, payload


def _parse(response: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        chunks, rest = [], body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            if int(size, 16) == 0:
                break
            chunks.append(rest[: int(size, 16)])
            rest = rest[int(size, 16) + 2 :]
        body = b"".join(chunks)
    return int(lines[0].split(" ")[1]), headers, json.loads(body) if body.strip() else None


def test_a_posted_message_reaches_plain_and_v1_members_with_its_number() -> None:
    http = Http()
    plain, v1 = Peer(http.hub, path="/ws/garden"), V1Peer(http.hub, "garden")
    v1.say("from a member")
    http.clock.advance(0)
    status, headers, answer = http.call("POST", "/api/rooms/garden/messages", {"text": " Your order\nshipped ", "name": "Shop"})
    http.clock.advance(0)
    assert status == 201 and headers["content-type"] == "application/json; charset=utf-8"
    lines = v1.lines()
    assert answer == {"epoch": lines[0]["epoch"], "seq": 2}
    assert plain.messages() == ["from a member", "Your order shipped"]
    # The posted text keeps its line break for v1 members (SPEC §17), from the application.
    assert [(m["seq"], m["name"], m["text"], m["from"]) for m in lines if m["type"] == "message"] == [
        (1, "", "from a member", v1.protocol.sender), (2, "Shop", "Your order\nshipped", "api")]


def test_a_posted_text_loses_its_controls_and_a_name_its_format_characters() -> None:
    http = Http()
    v1, plain = V1Peer(http.hub, "r"), Peer(http.hub, path="/ws/r")
    status, _, _ = http.call("POST", "/api/rooms/r/messages", {"text": "nul\u0000 bell\u0007\tok", "name": "Shop\u200b\u202e"})
    http.clock.advance(0)
    assert status == 201
    assert [(m["name"], m["text"]) for m in v1.lines() if m["type"] == "message"] == [("Shop", "nul bell\tok")]
    assert plain.messages() == ["nul bell\tok"]
    assert http.call("POST", "/api/rooms/r/messages", {"text": "\u0000\u0007"})[2] == {"error": "text is empty"}


def test_a_room_s_state_history_and_the_rooms_this_process_knows() -> None:
    http = Http()
    member = V1Peer(http.hub, "porch")
    for text in ("one", "two", "three"):
        http.call("POST", "/api/rooms/porch/messages", {"text": text})
    epoch = member.lines()[0]["epoch"]
    assert http.call("GET", "/api/rooms/porch")[2] == {"room": "porch", "epoch": epoch, "seq": 3, "online": 1}
    status, _, history = http.call("GET", "/api/rooms/porch/history?since=1")
    assert status == 200 and history["epoch"] == epoch
    assert [(m["type"], m["seq"], m["text"]) for m in history["messages"]] == [("message", 2, "two"), ("message", 3, "three")]
    assert len(http.call("GET", "/api/rooms/porch/history")[2]["messages"]) == 3
    assert http.call("GET", "/api/rooms/empty")[2] == {"room": "empty", "epoch": None, "seq": 0, "online": 0}
    assert http.call("GET", "/api/rooms")[2] == {"rooms": [{"room": "porch", "online": 1}]}


def test_scrollback_pages_back_from_the_newest_with_each_message_s_epoch() -> None:
    http = Http(history=5)
    for text in ("one", "two", "three", "four"):
        assert http.call("POST", "/api/rooms/porch/messages", {"text": text})[0] == 201
    status, _, newest = http.call("GET", "/api/rooms/porch/history?limit=3")
    assert status == 200 and newest["more"] is True
    epoch = newest["messages"][0]["epoch"]
    assert [(m["seq"], m["text"], m["epoch"]) for m in newest["messages"]] == [
        (2, "two", epoch), (3, "three", epoch), (4, "four", epoch)]
    _, _, older = http.call("GET", f"/api/rooms/porch/history?before={epoch}:2&limit=3")
    assert [m["text"] for m in older["messages"]] == ["one"] and older["more"] is False


def test_a_post_to_a_room_nobody_is_in_is_kept_and_numbered() -> None:
    http = Http()
    assert http.call("POST", "/api/rooms/later/messages", {"text": "for whoever comes"})[0] == 201
    joiner = V1Peer(http.hub, "later")
    assert [m["text"] for m in joiner.lines() if m["type"] == "message"] == ["for whoever comes"]


@pytest.mark.parametrize("method, path, body, key, status, error", [
    ("POST", "/api/rooms/r/messages", {"text": "x"}, None, 401, "a valid API key is required"),
    ("POST", "/api/rooms/r/messages", {"text": "x"}, "wrong-key-but-long-enough", 401, "a valid API key is required"),
    ("GET", "/api/rooms", None, "", 401, "a valid API key is required"),
    ("POST", "/api/rooms/r/messages", b"{not json", KEY, 400, "the body must be JSON"),
    ("POST", "/api/rooms/r/messages", b"[1, 2]", KEY, 400, "the body must be a JSON object"),
    ("POST", "/api/rooms/r/messages", {"name": "no text"}, KEY, 400, "text (required) and name must be strings"),
    ("POST", "/api/rooms/r/messages", {"text": 5}, KEY, 400, "text (required) and name must be strings"),
    ("POST", "/api/rooms/r/messages", {"text": " \n "}, KEY, 400, "text is empty"),
    ("POST", "/api/rooms/r/messages", {"text": "\ud800"}, KEY, 400, "text and name must be valid Unicode"),
    ("POST", "/api/rooms/r/messages", {"text": "é" * 257}, KEY, 413, "text is 514 bytes; at most 512"),
    ("POST", "/api/rooms/r/messages", {"text": "x", "name": "n" * 33}, KEY, 400, "name: more than 32 characters"),
    ("POST", "/api/rooms/bad%20name/messages", {"text": "x"}, KEY, 404, "no such API path"),
    ("POST", "/api/rooms/../messages", {"text": "x"}, KEY, 404, "no such API path"),
    ("GET", "/api/rooms/.", None, KEY, 404, "no such API path"),
    ("POST", "/api/rooms/" + "r" * 65 + "/messages", {"text": "x"}, KEY, 404, "no such API path"),
    ("GET", "/api/nothing/here", None, KEY, 404, "no such API path"),
    ("GET", "/api/", None, KEY, 404, "no such API path"),
    ("GET", "/api/rooms/r/messages", None, KEY, 405, "use POST here"),
    ("DELETE", "/api/rooms/r", None, KEY, 405, "use GET here"),
    ("GET", "/api/rooms/r/history?since=-1", None, KEY, 400, "since: must be a message number"),
    ("GET", "/api/rooms/r/history?before=12", None, KEY, 400, "before: must be EPOCH:SEQ"),
    ("GET", "/api/rooms/r/history?before=e:x", None, KEY, 400, "before: must be EPOCH:SEQ"),
    ("GET", "/api/rooms/r/history?before=:3", None, KEY, 400, "before: must be EPOCH:SEQ"),
    ("GET", "/api/rooms/r/history?before=e:-3", None, KEY, 400, "before: must be EPOCH:SEQ"),
    ("GET", "/api/rooms/r/history?limit=201", None, KEY, 400, "limit: must be a number from 1 to 200"),
    ("GET", "/api/rooms/r/history?before=e:3&limit=0", None, KEY, 400, "limit: must be a number from 1 to 200"),
    ("GET", "/api/rooms/r/history?limit=ten", None, KEY, 400, "limit: must be a number from 1 to 200"),
])
def test_bad_calls_get_their_documented_answer_and_nothing_is_delivered(method: str, path: str, body: object,
                                                                        key: str | None, status: int,
                                                                        error: str) -> None:
    http = Http()
    member, other = Peer(http.hub, path="/ws/r"), Peer(http.hub, path="/ws/r")
    got, headers, answer = http.call(method, path, body, key=key)
    assert got == status and answer["error"].startswith(error), answer
    assert headers["content-type"] == "application/json; charset=utf-8"
    if status == 401:
        assert headers["www-authenticate"] == 'Bearer realm="txchat"'
    if status == 405:
        assert headers["allow"] in ("POST", "GET, HEAD")
    http.clock.advance(0)
    assert member.messages() == [], "nothing delivered"
    other.say("still chatting")
    http.clock.advance(0)
    assert member.messages() == ["still chatting"]


def test_either_key_of_a_rotation_is_accepted() -> None:
    http = Http()
    assert http.call("GET", "/api/rooms", key="an-older-key-still-valid-42")[0] == 200
    assert http.call("GET", "/api/rooms", key=KEY)[0] == 200
    assert http.call("GET", "/api/rooms", key=KEY[:-1])[0] == 401


def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    http = Http(maxBodySize=1024)
    status, headers, _ = http.call("POST", "/api/rooms/r/messages", b"x" * 2000)
    assert status == 413 and headers["connection"] == "close"


def test_without_keys_there_is_no_api() -> None:
    hub, clock = makeHub()
    site = ChatSite(makeRoot(hub), clock, hub.config)
    transport = StringTransport()
    channel = site.buildProtocol(None)
    assert channel is not None
    channel.makeConnection(transport)
    channel.dataReceived(b"GET /api/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n\r\n")
    status, headers, answer = _parse(transport.value())
    channel.connectionLost(Failure(ConnectionDone()))
    assert status == 404 and headers["content-type"] == "application/json; charset=utf-8"
    assert answer == {"error": "the server API is off (txchat was started without --api-key)"}


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit() -> None:
    http = Http(maxBodySize=1024)
    transport = StringTransport()
    channel = http.site.buildProtocol(None)
    assert channel is not None
    channel.makeConnection(transport)
    channel.dataReceived(b"POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                         + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    channel.dataReceived(b"200\r\n" + b"x" * 512 + b"\r\n")
    assert transport.value() == b"", "within the limit: still reading"
    channel.dataReceived(b"400\r\n" + b"x" * 1024 + b"\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    assert transport.disconnecting
    channel.connectionLost(Failure(ConnectionDone()))


@implementer(ILogObserver)
class _ErrorEvents:
    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical) or "log_failure" in event:
            self.events.append(event)


def _errorsLogged() -> tuple[list[LogEvent], Callable[[], None]]:
    """Every error-level event (a failure's traceback included) logged while it is open."""
    observe = _ErrorEvents()
    globalLogPublisher.addObserver(observe)
    return observe.events, lambda: globalLogPublisher.removeObserver(observe)


def test_deeply_nested_json_is_a_400_with_a_json_error_and_nothing_in_the_error_log() -> None:
    http = Http()
    member, other = Peer(http.hub, path="/ws/r"), Peer(http.hub, path="/ws/r")
    body = b'{"text":"x","name":' + b"[" * 1200 + b"]" * 1200 + b"}"
    assert len(body) < 2500
    errors, stop = _errorsLogged()
    try:
        status, headers, answer = http.call("POST", "/api/rooms/r/messages", body)
    finally:
        stop()
    assert status == 400 and headers["content-type"] == "application/json; charset=utf-8"
    assert answer == {"error": "the body must be JSON: {\"text\": \"...\", \"name\": \"...\"} (nested too deeply)"}
    assert errors == [], "a bad body is the caller's mistake, not the server's"
    http.clock.advance(0)
    assert member.messages() == [], "nothing delivered"
    other.say("still chatting")
    http.clock.advance(0)
    assert member.messages() == ["still chatting"]
    assert http.call("POST", "/api/rooms/r/messages", {"text": "and the API too"})[0] == 201


def test_an_unexpected_failure_is_a_json_500_and_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    http = Http()

    def broken(roomName: str, text: bytes, name: str) -> Deferred[tuple[str, int] | None]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(http.rooms, "post", broken)
    errors, stop = _errorsLogged()
    try:
        status, headers, answer = http.call("POST", "/api/rooms/r/messages", {"text": "x"})
    finally:
        stop()
    assert (status, answer) == (500, {"error": "internal error"})
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert [e["log_failure"].type for e in errors] == [RuntimeError]


def test_a_413_says_why_in_json_whether_announced_or_chunked() -> None:
    http = Http(maxBodySize=1024)
    status, headers, answer = http.call("POST", "/api/rooms/r/messages", b"x" * 2000)
    assert status == 413 and headers["connection"] == "close"
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert answer == {"error": "the request body is more than 1024 bytes"}
    transport = StringTransport()
    channel = http.site.buildProtocol(None)
    assert channel is not None
    channel.makeConnection(transport)
    channel.dataReceived(b"POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                         + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + b"800\r\n" + b"x" * 2048 + b"\r\n")
    status, headers, answer = _parse(transport.value())
    channel.connectionLost(Failure(ConnectionDone()))
    assert (status, headers["content-type"], answer) == (
        413, "application/json; charset=utf-8", {"error": "the request body is more than 1024 bytes"})


def test_a_post_whose_publish_redis_never_answered_is_a_503_that_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.internet.defer import fail

    from txchat.redisclient import RedisSilent

    http = Http()
    monkeypatch.setattr(http.rooms, "post", lambda roomName, text, name: fail(
        RedisSilent("no reply from Redis for 3s (1 command unanswered)")))
    errors, stop = _errorsLogged()
    try:
        status, _, answer = http.call("POST", "/api/rooms/r/messages", {"text": "x"})
    finally:
        stop()
    assert status == 503 and "may or may not have been delivered" in answer["error"]
    assert errors == [], "an outage, not a bug"


def test_a_post_counts_against_max_rooms_and_leaves_no_room_that_nobody_keeps() -> None:
    http = Http(maxRooms=2, history=0)
    members = [V1Peer(http.hub, name) for name in ("a", "b")]
    status, _, answer = http.call("POST", "/api/rooms/c/messages", {"text": "x"})
    assert (status, answer) == (503, {"error": "every room has members and the server allows no more rooms"})
    members[1].transport.loseConnection()
    status, _, answer = http.call("POST", "/api/rooms/c/messages", {"text": "x"})
    assert status == 201 and answer["seq"] == 1
    assert http.call("GET", "/api/rooms")[2] == {"rooms": [{"room": "a", "online": 1}]}, \
        "b made space; c, with nobody in it and nothing kept, is not kept either"
