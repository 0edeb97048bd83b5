"""People (SPEC §18) in memory on a task.Clock: who is here by identity, member lists and their
coalesced diffs, read positions, and the server API's moderation (ban, disconnect, delete)."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests.memory.test_api import _parse
from tests.support.memory import MemoryHub, Peer, V1Peer, V2Peer, roomOf
from txchat.api import Api
from txchat.config import Config
from txchat.hub import RIDE
from txchat.roomapi import RoomApi
from txchat.site import ChatSite
from txchat.webapp import makeRoot

SECRET = "people are not connections, nor are they rooms"
KEY = "k3y-for-the-moderators-0123456789"


class Desk:
    """A hub with signed identities on a Clock, the server API on it, and members by user."""

    def __init__(self, **config: Any) -> None:
        self.clock = Clock()
        self.clock.advance(time.time())  # the tokens' times are the wall clock's
        self.hub = MemoryHub(Config(**{"history": 0, "tokenSecret": SECRET, "apiKeys": (KEY,), **config}), self.clock)
        self.hub.startBroker()
        api = Api(RoomApi(self.hub), (KEY,), self.hub.config.maxMessageSize)
        self.site = ChatSite(makeRoot(self.hub, api=api), self.clock, self.hub.config)

    def join(self, sub: str, room: str = "r", name: str | None = None) -> V2Peer:
        token = jwt.encode({"sub": sub, "name": name if name is not None else sub.title()}, SECRET, algorithm="HS256")
        return V2Peer(self.hub, room, f"token={token}")

    def plain(self, sub: str, room: str = "r") -> Peer:
        token = jwt.encode({"sub": sub}, SECRET, algorithm="HS256")
        return Peer(self.hub, path=f"/ws/{room}?token={token}")

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        raw = json.dumps(body).encode() if body is not None else b""
        head = {"Host": "chat.example", "Content-Length": str(len(raw)), "Authorization": f"Bearer {KEY}"}
        request = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
        transport = StringTransport()
        channel = self.site.buildProtocol(None)
        assert channel is not None
        channel.makeConnection(transport)
        channel.dataReceived(request.encode() + raw)
        response = transport.value()
        channel.connectionLost(Failure(ConnectionDone()))
        status, _, payload = _parse(response)
        return status, payload

    def close(self) -> None:
        self.hub.closeAll()
        self.clock.advance(self.hub.config.shutdownTimeout)


def kinds(peer: V1Peer, kind: str) -> list[dict[str, Any]]:
    return [line for line in peer.lines() if line["type"] == kind]


def test_three_tabs_count_once_and_the_person_leaves_with_the_last() -> None:
    desk = Desk()
    watcher = desk.join("wes")
    lines = watcher.lines()
    assert lines[0]["type"] == "welcome" and (lines[0]["online"], lines[0]["users"]) == (1, 1)
    assert lines[1] == {"type": "members", "members": [{"from": "u:wes", "name": "Wes"}], "users": 1}
    desk.clock.advance(5)
    watcher.lines()
    tabs = [desk.join("ann") for _ in range(3)]
    desk.clock.advance(0)
    assert kinds(watcher, "presence") == [  # the first change at once
        {"type": "presence", "online": 2, "users": 2, "joined": [{"from": "u:ann", "name": "Ann"}], "left": []}]
    desk.clock.advance(1)
    assert kinds(watcher, "presence") == [{"type": "presence", "online": 4, "users": 2, "joined": [], "left": []}]
    welcome, members = tabs[2].lines()[:2]
    assert (welcome["online"], welcome["users"]) == (4, 2)
    assert sorted(m["from"] for m in members["members"]) == ["u:ann", "u:wes"] and members["users"] == 2
    for tab in tabs[:2]:
        tab.transport.abortConnection()
    desk.clock.advance(1)
    assert kinds(watcher, "presence") == [{"type": "presence", "online": 2, "users": 2, "joined": [], "left": []}]
    tabs[2].transport.abortConnection()
    desk.clock.advance(1)
    assert kinds(watcher, "presence") == [{"type": "presence", "online": 1, "users": 1, "joined": [], "left": ["u:ann"]}]
    assert roomOf(desk.hub, "r").users == 1
    desk.close()


def test_a_plain_client_is_a_person_too() -> None:
    desk = Desk()
    watcher = desk.join("wes")
    desk.clock.advance(5)
    watcher.lines()
    desk.plain("pat")
    desk.clock.advance(0)
    (line,) = kinds(watcher, "presence")
    assert (line["online"], line["users"], line["joined"]) == (2, 2, [{"from": "u:pat", "name": ""}])
    desk.close()


def test_a_storm_of_joins_is_one_line_a_second_and_the_last_state_arrives() -> None:
    desk = Desk(membersLimit=1000)
    watcher = desk.join("watcher")
    desk.clock.advance(5)
    watcher.lines()
    told: list[tuple[float, dict[str, Any]]] = []
    start = desk.clock.seconds()
    peers = []
    for i in range(500):  # 500 joins over 2.5 s
        peers.append(desk.join(f"user{i:03}"))
        if i % 100 == 99:
            peers[i - 50].transport.abortConnection()  # and a few leave meanwhile
        desk.clock.advance(0.005)
        told.extend((desk.clock.seconds() - start, line) for line in kinds(watcher, "presence"))
    desk.clock.advance(1)
    told.extend((desk.clock.seconds() - start, line) for line in kinds(watcher, "presence"))
    times = [when for when, _ in told]
    assert all(b - a >= 1 - 0.006 for a, b in zip(times, times[1:])), times  # (seen up to 5 ms late)
    assert len(told) <= 4  # at once, then at most one a second
    # A view built from the lines alone is the room as it is.
    view = {"u:watcher"}
    for _, line in told:
        view |= {j["from"] for j in line["joined"]}
        view -= set(line["left"])
    present = {"u:watcher"} | {f"u:user{i:03}" for i in range(500)} - {f"u:user{i - 50:03}" for i in range(99, 500, 100)}
    assert view == present
    assert told[-1][1]["users"] == len(present) == 496 and told[-1][1]["online"] == 496
    desk.clock.advance(10)
    assert kinds(watcher, "presence") == []  # quiet: nothing more
    desk.close()


def test_above_the_members_limit_only_counts_and_back_under_it_a_list_again() -> None:
    desk = Desk(membersLimit=3)
    first = desk.join("a")
    desk.clock.advance(5)
    first.lines()
    others = [desk.join(sub) for sub in ("b", "c", "d")]
    late = others[-1].lines()
    assert late[1] == {"type": "members", "users": 4}  # counts only, no list
    desk.clock.advance(0)
    assert [line["users"] for line in kinds(first, "presence")] == [2]  # the first change at once
    desk.clock.advance(1)
    assert first.lines() == [{"type": "members", "users": 4}, {"type": "presence", "online": 4, "users": 4}]
    others[0].transport.abortConnection()
    desk.clock.advance(1)
    lines = first.lines()
    assert lines[0]["type"] == "members" and sorted(m["from"] for m in lines[0]["members"]) == ["u:a", "u:c", "u:d"]
    assert lines[1] == {"type": "presence", "online": 3, "users": 3, "joined": [], "left": []}
    desk.close()


def test_read_never_moves_back_syncs_other_tabs_and_comes_in_the_welcome() -> None:
    desk = Desk(history=10)
    tab1, tab2, other = desk.join("ann"), desk.join("ann"), desk.join("bob")
    for text in ("one", "two", "three"):
        tab1.post(text, text)
    desk.clock.advance(0)
    epoch = tab1.lines()[0]["epoch"]
    for peer in (tab2, other):
        peer.lines()
    assert desk.hub.setRead(tab1.protocol, epoch, 2) is None
    desk.clock.advance(0)
    assert kinds(tab2, "read") == [{"type": "read", "epoch": epoch, "seq": 2}]
    assert kinds(tab1, "read") == [] and kinds(other, "read") == []
    assert desk.hub.setRead(tab2.protocol, epoch, 1) is None  # behind: kept where it was
    desk.clock.advance(0)
    assert kinds(tab1, "read") == []
    assert desk.hub.setRead(tab1.protocol, epoch, 4) is not None  # ahead of the room: refused
    assert desk.hub.setRead(tab1.protocol, "another", 1) is not None
    tab3 = desk.join("ann")
    assert tab3.lines()[0]["read"] == f"{epoch}:2"
    assert "read" not in desk.join("carl").lines()[0]
    desk.hub.setRead(tab3.protocol, epoch, 3)
    desk.clock.advance(0)
    assert [kinds(tab, "read") for tab in (tab1, tab2)] == [[{"type": "read", "epoch": epoch, "seq": 3}]] * 2
    desk.close()


def test_a_per_connection_identity_keeps_no_read_position() -> None:
    desk = Desk(tokenSecret=None)
    ann = V1Peer(desk.hub, "r")
    ann.say("hi")
    desk.clock.advance(0)
    epoch = ann.lines()[0]["epoch"]
    assert ann.protocol.sender.startswith("c:")
    assert desk.hub.setRead(ann.protocol, epoch, 1) is None
    assert "read" not in V1Peer(desk.hub, "r").lines()[0]
    desk.close()


def test_a_ban_closes_with_4003_refuses_with_403_until_lifted_or_over() -> None:
    desk = Desk()
    bob, bobElsewhere, ann = desk.join("bob"), desk.join("bob", "s"), desk.join("ann")
    status, answer = desk.call("POST", "/api/rooms/r/bans", {"sub": "bob", "seconds": 60})
    assert (status, answer) == (201, {"room": "r", "sub": "bob", "seconds": 60, "closed": 1})
    assert bob.closeCode() == 4003 and bobElsewhere.open and ann.open
    assert desk.join("bob").status == 403
    assert desk.join("bob", "s").status == 101 and desk.join("ann").status == 101
    assert desk.call("DELETE", "/api/rooms/r/bans/bob") == (200, {"room": "r", "sub": "bob", "lifted": True})
    assert desk.join("bob").status == 101
    assert desk.call("DELETE", "/api/rooms/r/bans/bob")[0] == 404  # nothing to lift
    desk.call("POST", "/api/rooms/r/bans", {"sub": "bob", "seconds": 30})
    assert desk.join("bob").status == 403
    desk.clock.advance(30)
    assert desk.join("bob").status == 101
    desk.close()


def test_disconnect_closes_every_connection_of_the_user_with_4003() -> None:
    desk = Desk()
    bobs = [desk.join("bob"), desk.join("bob", "s"), desk.plain("bob", "t")]
    ann = desk.join("ann")
    assert desk.call("POST", "/api/users/bob/disconnect") == (200, {"disconnected": 3})
    assert [bob.closeCode() for bob in bobs] == [4003] * 3 and ann.open
    status, answer = desk.call("POST", "/api/users/bob/disconnect")
    assert status == 404 and "no connection" in answer["error"]
    desk.close()


def test_a_read_reaches_the_identity_s_other_json_tabs_only_never_its_seed_client() -> None:
    desk = Desk(history=10)
    tab, other, seed = desk.join("ann"), desk.join("ann"), desk.plain("ann")
    tab.post("one", "one")
    desk.clock.advance(0)
    epoch = tab.lines()[0]["epoch"]
    other.lines()
    assert seed.messages() == ["one"]
    tab.command(type="read", epoch=epoch, seq=1)
    desk.clock.advance(0)
    assert kinds(other, "read") == [{"type": "read", "epoch": epoch, "seq": 1}]
    tab.post("two", "two")
    desk.clock.advance(0)
    assert seed.messages() == ["two"], "the seed client sees chat only, as the gorilla chat's do"
    desk.close()


def test_delete_reaches_every_member_once_and_is_gone_from_history() -> None:
    desk = Desk(history=10)
    members = [desk.join(sub) for sub in ("a", "b", "c")]
    plain = desk.plain("p")
    for text in ("one", "two", "three"):
        members[0].post(text, text)
    desk.clock.advance(0)
    epoch = members[0].lines()[0]["epoch"]
    for member in members[1:]:
        member.lines()
    plain.messages()
    assert desk.call("DELETE", f"/api/rooms/r/messages/2?epoch={epoch}") == (200, {"deleted": {"epoch": epoch, "seq": 2}})
    desk.clock.advance(0)
    for member in members:
        assert member.lines() == [{"type": "delete", "epoch": epoch, "seq": 2}]
    assert plain.messages() == []  # the seed protocol has no such line
    late = desk.join("d")
    assert [line["seq"] for line in kinds(late, "message")] == [1, 3]
    status, page = desk.call("GET", "/api/rooms/r/history?limit=10")
    assert [json.loads(json.dumps(m))["seq"] for m in page["messages"]] == [1, 3]
    assert desk.call("DELETE", f"/api/rooms/r/messages/2?epoch={epoch}")[0] == 404  # gone already
    assert desk.call("DELETE", f"/api/rooms/r/messages/9?epoch={epoch}")[0] == 404  # never there
    desk.clock.advance(1)
    assert all(kinds(member, "delete") == [] for member in members)
    desk.close()


def test_the_member_list_api_pages_through_everyone() -> None:
    desk = Desk(membersLimit=2)
    for sub in ("d", "b", "a", "c", "e"):
        desk.join(sub)
    desk.join("a")  # a second tab
    status, first = desk.call("GET", "/api/rooms/r/members?limit=2")
    assert status == 200 and first == {"members": [{"from": "u:a", "name": "A"}, {"from": "u:b", "name": "B"}],
                                       "users": 5, "more": True}
    _, second = desk.call("GET", "/api/rooms/r/members?limit=2&after=u:b")
    _, last = desk.call("GET", "/api/rooms/r/members?limit=2&after=u:d")
    assert [m["from"] for m in second["members"]] == ["u:c", "u:d"] and second["more"]
    assert [m["from"] for m in last["members"]] == ["u:e"] and not last["more"]
    assert desk.call("GET", "/api/rooms/empty/members")[1] == {"members": [], "users": 0, "more": False}
    desk.close()


BAD = [
    ("GET", "/api/rooms/r/members?after=nobody", None, 400, "after"),
    ("GET", "/api/rooms/r/members?after=", None, 400, "after"),
    ("GET", "/api/rooms/r/members?limit=0", None, 400, "limit"),
    ("GET", "/api/rooms/r/members?limit=many", None, 400, "limit"),
    ("POST", "/api/rooms/r/bans", {"sub": "bob", "seconds": -5}, 400, "seconds"),
    ("POST", "/api/rooms/r/bans", {"sub": "bob", "seconds": 1.5}, 400, "seconds"),
    ("POST", "/api/rooms/r/bans", {"sub": "bob", "seconds": True}, 400, "seconds"),
    ("POST", "/api/rooms/r/bans", {"sub": "bob"}, 400, "seconds"),
    ("POST", "/api/rooms/r/bans", {"sub": "", "seconds": 5}, 400, "sub"),
    ("POST", "/api/rooms/r/bans", {"sub": 7, "seconds": 5}, 400, "sub"),
    ("POST", "/api/rooms/r/bans", [1], 400, "JSON object"),
    ("POST", "/api/users/%01/disconnect", None, 400, "sub"),
    ("POST", "/api/users/nobody/disconnect", None, 404, "no connection"),
    ("GET", "/api/users/nobody/disconnect", None, 405, "POST"),
    ("DELETE", "/api/rooms/r/messages/two?epoch=e", None, 400, "number"),
    ("DELETE", "/api/rooms/r/messages/0?epoch=e", None, 400, "number"),
    ("DELETE", "/api/rooms/r/messages/2", None, 400, "epoch"),
    ("DELETE", "/api/rooms/r/messages/2?epoch=nosuch", None, 404, "no such message"),
    ("DELETE", "/api/rooms/r/bans/nobody", None, 404, "not banned"),
]


def test_bad_moderation_calls_get_clear_json_errors() -> None:
    desk = Desk()
    member = desk.join("m")
    for method, path, body, status, words in BAD:
        got, answer = desk.call(method, path, body)
        assert (got, words in answer["error"]) == (status, True), (method, path, body, answer)
    assert member.open
    desk.close()


def test_in_a_chatting_room_a_presence_line_leaves_with_the_next_message_or_half_a_second_later() -> None:
    """One frame to each member, not two: a member who came or went while the room chats is
    told with the room's next message; if none comes, RIDE seconds later; in a quiet room, at
    once."""
    desk = Desk()
    ann, bob = desk.join("ann"), desk.join("bob")
    desk.clock.pump([0.5] * 4)  # the joins are told, and the next line may go at once
    bob.read()
    ann.post("1", "first")
    desk.clock.advance(0)
    assert [json.loads(t)["text"] for t in bob.frameTexts()] == ["first"]
    cleo = desk.join("cleo")
    desk.clock.advance(0.1)
    assert bob.frameTexts() == [], "the room chats: the line waits for the next message"
    ann.post("2", "second")
    desk.clock.advance(0)
    (frame,) = bob.frameTexts()
    assert [json.loads(line)["type"] for line in frame.split("\n")] == ["presence", "message"]
    assert json.loads(frame.split("\n")[0])["joined"] == [{"from": "u:cleo", "name": "Cleo"}]
    desk.clock.pump([0.1] * 9)  # a second after the last line: the next may go at once
    ann.post("3", "third")
    dan = desk.join("dan")
    desk.clock.advance(0)
    assert [json.loads(t)["type"] for t in bob.frameTexts()] == ["message"]
    desk.clock.advance(0.1)  # dan's line is made (a second after cleo's) and waits for a message
    assert dict(desk.hub._riding).keys() == {"r"}
    desk.clock.pump([0.1] * 4)
    assert bob.frameTexts() == [], "no message came yet"
    desk.clock.pump([0.1] * 2)
    assert [json.loads(t)["joined"] for t in bob.frameTexts()] == [[{"from": "u:dan", "name": "Dan"}]], "RIDE on"
    desk.clock.pump([0.5] * 3)  # quiet: no message for 1.5 s
    cleo.transport.loseConnection()
    desk.clock.advance(0)
    assert [json.loads(t)["left"] for t in bob.frameTexts()] == [["u:cleo"]], "a quiet room is told at once"
    assert RIDE == 0.5 and dan.open
    desk.close()
    assert desk.clock.getDelayedCalls() == []
