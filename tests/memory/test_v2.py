"""The txchat.v2 protocol (SPEC §17) in memory: every command, every malformed frame answered
while another client keeps chatting, nothing refused delivered, dedupe, typing, refresh, the
1013 close and line breaks per protocol. Real protocols on string transports, a task.Clock."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from bench import frames
from tests.support.memory import MemoryHub, Peer, V1Peer, V2Peer, makeHub, roomOf
from txchat.broker import MemoryBroker, NotPublished
from txchat.config import Config
from txchat.stream import Delivery


def of(peer: V1Peer, kind: str) -> list[dict[str, Any]]:
    return [line for line in peer.lines() if line["type"] == kind]


def texts(lines: list[dict[str, Any]]) -> list[str]:
    return [line["text"] for line in lines if line["type"] == "message"]


def chatting(hub: MemoryHub, clock: Clock, a: V1Peer, b: V1Peer, text: str) -> None:
    """C{a} says C{text} (over v1) and C{b} gets it: the room goes on."""
    a.say(text)
    clock.advance(0)
    assert texts(b.lines()) == [text]
    assert texts(a.lines()) == [text]


def test_v2_is_preferred_over_v1_and_named_in_the_101() -> None:
    hub, clock = makeHub()
    both = V2Peer(hub)
    only = V2Peer(hub, headers={"Sec-WebSocket-Protocol": "txchat.v2"})
    v1 = V1Peer(hub)
    assert "Sec-WebSocket-Protocol: txchat.v2" in both.head and "Sec-WebSocket-Protocol: txchat.v2" in only.head
    assert "Sec-WebSocket-Protocol: txchat.v1" in v1.head
    assert [line["type"] for line in both.lines()][0] == "welcome"
    assert both.protocol.v1 and both.protocol.v2 and v1.protocol.v1 and not v1.protocol.v2


def test_a_send_is_delivered_to_every_protocol_and_acked_after_its_line() -> None:
    hub, clock = makeHub()
    sender, v2, v1, plain = V2Peer(hub, query="cid=sender-0001&name=Ann"), V2Peer(hub), V1Peer(hub), Peer(hub)
    welcome = sender.lines()[0]
    for peer in (v2, v1):
        peer.lines()
    sender.post("m1", "  hello  ")
    clock.advance(0)
    got = [line for line in sender.lines() if line["type"] != "presence"]
    assert got == [
        {"type": "message", "seq": 1, "time": 0, "name": "Ann", "text": "hello", "from": "a:sender-0001"},
        {"type": "ack", "id": "m1", "epoch": welcome["epoch"], "seq": 1},
    ]
    for peer in (v2, v1):
        assert [line for line in peer.lines() if line["type"] not in ("presence",)] == got[:1]
    assert plain.messages() == ["hello"]


def test_without_cid_from_is_one_value_per_connection_and_v1_lines_carry_it_too() -> None:
    hub, clock = makeHub()
    a, b, plain = V2Peer(hub), V1Peer(hub), Peer(hub)
    a.post("x", "one")
    b.say("two")
    plain.say("three")
    clock.advance(0)
    senders = [line["from"] for line in b.lines() if line["type"] == "message"]
    assert senders == [a.protocol.sender, b.protocol.sender, plain.protocol.sender]
    assert len(set(senders)) == 3 and all(s.startswith("c:") and len(s) == 14 for s in senders)


# (the frame, the error line's id, and its message, with the code always bad-request)
MALFORMED: list[tuple[bytes, str | None, str]] = [
    (b"not json", None, "a frame must be one JSON object"),
    (b"[1, 2]", None, "a frame must be one JSON object"),
    (b"42", None, "a frame must be one JSON object"),
    (b'"send"', None, "a frame must be one JSON object"),
    (b'{"type":"send","text":"hi"}', None, "id: a string of 1-64 printable characters is required"),
    (b'{"type":"send","id":7,"text":"hi"}', None, "id: must be a string"),
    (b'{"type":"send","id":"' + b"i" * 65 + b'","text":"hi"}', None, "id: 1-64 characters, not 65"),
    (b'{"type":"send","id":"","text":"hi"}', None, "id: 1-64 characters, not 0"),
    (b'{"type":"send","id":"a\\u0007b","text":"hi"}', None, "id: printable characters only"),
    (b'{"type":"shout","id":"s1"}', "s1", "unknown type 'shout'"),
    (b'{"id":"s2"}', "s2", "type: a string is required"),
    (b'{"type":"send","id":"t1","text":5}', "t1", "text: a string is required"),
    (b'{"type":"send","id":"t2"}', "t2", "text: a string is required"),
    (b'{"type":"send","id":"t3","text":"\\ud800"}', "t3", "text: not valid Unicode (a lone surrogate)"),
    (b'{"type":"history","id":"h1","limit":201}', "h1", "limit: a whole number from 1 to 200"),
    (b'{"type":"history","id":"h2","before":"nope"}', "h2", 'before: must be "EPOCH:SEQ"'),
    (b'{"type":"read","epoch":"e","seq":-1}', None, "seq: a whole number, 0 or more, is required"),
    (b'{"type":"read","epoch":"e","seq":0}', None, "read: not the room's current epoch"),
    (b'{"type":"refresh"}', None, "token: a non-empty string is required"),
]


@pytest.mark.parametrize("frame, ref, message", MALFORMED)
def test_a_malformed_frame_is_answered_and_the_connection_stays(frame: bytes, ref: str | None, message: str) -> None:
    hub, clock = makeHub()
    bad, other, watcher = V2Peer(hub), V1Peer(hub), V2Peer(hub)
    for peer in (bad, other, watcher):
        peer.lines()
    bad.say(frame)
    clock.advance(0)
    error = {"type": "error", "code": "bad-request", "message": message}
    if ref is not None:
        error["id"] = ref
    assert of(bad, "error") == [error]
    assert bad.open and bad.closeCode() is None
    assert of(watcher, "message") == [] and of(watcher, "error") == []  # nothing delivered, nobody else told
    chatting(hub, clock, other, watcher, "still chatting")
    bad.post("after", "and the refused one goes on")
    clock.advance(0)
    assert [line["type"] for line in bad.lines() if line["type"] != "presence"] == ["message", "message", "ack"]


def test_too_long_and_empty_are_refused_with_an_error_and_nothing_is_delivered() -> None:
    hub, clock = makeHub(maxMessageSize=16)
    sender, watcher = V2Peer(hub), V2Peer(hub)
    sender.lines(), watcher.lines()
    sender.post("long", "é" * 8 + "x")  # 17 bytes
    sender.post("blank", " \n\t\u3000 ")
    sender.post("controls", "\x00\x07")
    sender.post("fits", "é" * 8)  # 16 bytes: at the limit
    clock.advance(0)
    assert [line for line in sender.lines() if line["type"] == "error"] == [
        {"type": "error", "id": "long", "code": "too-long", "message": "text is 17 bytes; at most 16", "limit": 16},
        {"type": "error", "id": "blank", "code": "empty", "message": "text is empty"},
        {"type": "error", "id": "controls", "code": "empty", "message": "text is empty"},
    ]
    assert texts(watcher.lines()) == ["é" * 8]


def test_frames_over_64_kib_close_with_1009_and_binary_with_1003_while_others_chat() -> None:
    hub, clock = makeHub()
    big, binary, nearly, a, b = V2Peer(hub), V2Peer(hub), V2Peer(hub), V1Peer(hub), V2Peer(hub)
    for peer in (a, b):
        peer.lines()
    # Under 64 KiB, a text over --max-message-size is an error line, not a close.
    nearly.post("n", "x" * 60_000)
    big.say(json.dumps({"type": "send", "id": "b", "text": "x" * 70_000}))
    binary.send(frames.clientFrame(frames.BINARY, b'{"type":"typing"}'))
    clock.advance(0)
    assert big.closeCode() == 1009 and binary.closeCode() == 1003
    assert nearly.open and [line["code"] for line in of(nearly, "error")] == ["too-long"]
    chatting(hub, clock, a, b, "unaffected")
    assert len(hub) == 3


def test_a_v1_client_keeps_its_limit_and_close_codes() -> None:
    hub, clock = makeHub(maxMessageSize=16)
    v1 = V1Peer(hub)
    v1.say('{"type":"send","id":"x","text":"hi"}')  # 36 bytes: over the limit, as any v1 text
    clock.advance(0)
    assert v1.closeCode() == 1009


def test_rate_limited_sends_get_retry_after_and_are_not_delivered() -> None:
    hub, clock = makeHub(rateLimit=2.0, rateBurst=3)
    sender, watcher = V2Peer(hub), V2Peer(hub)
    sender.lines(), watcher.lines()
    for i in range(5):
        sender.post(f"m{i}", f"text {i}")
    clock.advance(0)
    lines = [line for line in sender.lines() if line["type"] in ("ack", "error")]
    assert [line["type"] for line in lines] == ["ack", "ack", "ack", "error", "error"]
    assert lines[3] == {"type": "error", "id": "m3", "code": "rate-limited",
                        "message": "too many messages: try again in 500 ms", "retryAfter": 500}
    assert texts(watcher.lines()) == ["text 0", "text 1", "text 2"]
    assert sender.open
    clock.advance(0.25)
    sender.post("m3", "text 3")
    clock.advance(0)
    assert of(sender, "error")[0]["retryAfter"] == 250
    clock.advance(0.25)
    sender.post("m3", "text 3")
    clock.advance(0)
    assert texts(watcher.lines()) == ["text 3"]


def test_typing_goes_to_the_other_v2_members_at_most_once_in_3_seconds() -> None:
    hub, clock = makeHub()
    typist = V2Peer(hub, query="name=Ann&cid=typist-01")
    other, v1, plain = V2Peer(hub), V1Peer(hub), Peer(hub)
    for peer in (typist, other, v1):
        peer.lines()
    typist.command(type="typing")
    typist.command(type="typing")
    clock.advance(0)
    assert of(other, "typing") == [{"type": "typing", "from": "a:typist-01", "name": "Ann"}]
    assert of(typist, "typing") == [] and of(v1, "typing") == [] and plain.read() == []
    clock.advance(2.9)
    typist.command(type="typing")
    clock.advance(0)
    assert of(other, "typing") == []
    clock.advance(0.1)
    typist.command(type="typing")
    clock.advance(0)
    assert len(of(other, "typing")) == 1
    # Never numbered or kept: the next message is seq 1.
    typist.post("m", "hi")
    clock.advance(0)
    assert [line["seq"] for line in of(other, "message")] == [1]


def test_read_goes_to_the_hub_which_may_refuse_it() -> None:
    hub, clock = makeHub()
    reader = V2Peer(hub, query="cid=reader-0001")
    epoch = reader.lines()[0]["epoch"]
    reader.post("m", "one")
    clock.advance(0)
    reader.command(type="read", epoch=epoch, seq=2, id="ahead")
    reader.command(type="read", epoch=epoch, seq=1)
    reader.command(type="read", epoch="older", seq=1)
    clock.advance(0)
    assert of(reader, "error") == [
        {"type": "error", "id": "ahead", "code": "bad-request",
         "message": "read: seq 2 is ahead of the room's last message (1)"},
        {"type": "error", "code": "bad-request", "message": "read: not the room's current epoch"},
    ]
    reads: list[tuple[str, str, int]] = []

    def setRead(client: Any, epoch: str, seq: int) -> str | None:
        reads.append((client.sender, epoch, seq))
        return None

    hub.setRead = setRead  # type: ignore[method-assign]
    reader.command(type="read", epoch=epoch, seq=1)
    clock.advance(0)
    assert reads == [("a:reader-0001", epoch, 1)] and of(reader, "error") == []


def test_history_pages_back_through_what_the_room_keeps() -> None:
    hub, clock = makeHub(history=10)
    reader, writer = V2Peer(hub), V1Peer(hub)
    epoch = reader.lines()[0]["epoch"]
    for i in range(1, 6):
        writer.say(f"m{i}")
    clock.advance(0)
    reader.lines()
    reader.command(type="history", id="h1", limit=2)
    reader.command(type="history", id="h2", before=f"{epoch}:4", limit=2)
    reader.command(type="history", id="h3", before=f"{epoch}:2")
    clock.advance(0)
    pages = of(reader, "history")
    assert [(p["id"], [(m["seq"], m["text"], m["epoch"]) for m in p["messages"]], p["more"]) for p in pages] == [
        ("h1", [(4, "m4", epoch), (5, "m5", epoch)], True),
        ("h2", [(2, "m2", epoch), (3, "m3", epoch)], True),
        ("h3", [(1, "m1", epoch)], False),
    ]
    assert pages[0]["messages"][0]["from"] == writer.protocol.sender
    clock.advance(hub.config.historyTtl)  # let the kept history expire


def test_line_breaks_stay_for_v1_and_v2_and_are_spaces_for_the_seed_protocol() -> None:
    hub, clock = makeHub()
    v2, v1, plain = V2Peer(hub), V1Peer(hub), Peer(hub)
    v2.post("lines", " one\r\ntwo\rthree\n\tfour\x1b ")
    v1.say("v1\r\nsender")
    plain.say("seed\nsender")
    clock.advance(0)
    expected = ["one\ntwo\nthree\n\tfour", "v1\nsender", "seed sender"]
    assert texts(v2.lines()) == expected and texts(v1.lines()) == expected
    assert plain.messages() == ["one two three \tfour", "v1 sender", "seed sender"]


@pytest.mark.parametrize("make, code, reason", [
    (V2Peer, 1013, b"too slow; resume with since"),
    (V1Peer, 1013, b"too slow; resume with since"),
    (Peer, 1008, b"too slow: send queue full"),
])
def test_a_slow_client_is_closed_by_its_protocol(make: type[Peer], code: int, reason: bytes) -> None:
    hub, clock = makeHub(sendQueue=3)
    talker, slow = V1Peer(hub), make(hub)
    slow.read()
    slow.stopReading()
    for i in range(6):
        talker.say(f"m{i}")
        clock.advance(0)
    slow.startReading()
    assert slow.closeCode() == code
    close = [payload for opcode, payload in slow.received if opcode == frames.CLOSE][0]
    assert close[2:] == reason
    clock.advance(hub.config.closeTimeout)


def test_a_resend_after_a_reconnect_is_acked_with_the_first_seq_and_not_delivered_again() -> None:
    hub, clock = makeHub(history=50, pingInterval=3600, pongTimeout=7200)  # minutes pass: nobody times out
    watcher = V1Peer(hub)
    first = V2Peer(hub, query="cid=resender-1")
    epoch = first.lines()[0]["epoch"]
    first.post("m1", "once")
    first.post("m2", "twice?")
    clock.advance(0)
    first.transport.abortConnection()  # cut before it read its acks
    clock.advance(9 * 60)
    again = V2Peer(hub, query=f"cid=resender-1&since={epoch}:0")
    assert texts(again.lines()) == ["once", "twice?"]  # recovered: what it missed, once
    again.post("m1", "once")
    again.post("m2", "twice?")
    again.post("m3", "new")
    clock.advance(0)
    assert [(a["id"], a["seq"]) for a in of(again, "ack")] == [("m1", 1), ("m2", 2), ("m3", 3)]
    assert texts(watcher.lines()) == ["once", "twice?", "new"]
    # Another sender's m1 is its own.
    other = V2Peer(hub, query="cid=somebody-2")
    other.post("m1", "mine")
    clock.advance(0)
    assert [(a["id"], a["seq"]) for a in of(other, "ack")] == [("m1", 4)]
    # Ten minutes after it was accepted, an ID is new again.
    clock.advance(60.0)
    again.post("m1", "once more")
    clock.advance(0)
    assert [a["seq"] for a in of(again, "ack")] == [5]
    clock.advance(hub.config.historyTtl)


class HeldBroker(MemoryBroker):
    """Numbers as the memory broker does, but answers a post only when the test says."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock, 0, 60)
        self.posted: list[tuple[Delivery, Deferred[tuple[str, int] | None]]] = []
        self.refusing = False

    def post(self, message: Delivery) -> Deferred[tuple[str, int] | None]:
        if self.refusing:
            return fail(NotPublished("full"))
        d: Deferred[tuple[str, int] | None] = Deferred()
        self.posted.append((message, d))
        return d

    def answer(self) -> None:
        posted, self.posted = self.posted, []
        for message, d in posted:
            super().post(message).chainDeferred(d)


def heldHub() -> tuple[MemoryHub, Clock, HeldBroker]:
    clock = Clock()
    broker = HeldBroker(clock)
    hub = MemoryHub(Config(history=0), clock, broker)
    hub.startBroker()
    return hub, clock, broker


def test_a_resend_while_the_first_is_on_its_way_is_not_delivered_twice() -> None:
    hub, clock, broker = heldHub()
    watcher = V1Peer(hub)
    first = V2Peer(hub, query="cid=in-flight-1")
    first.post("m1", "only once")
    first.transport.abortConnection()
    again = V2Peer(hub, query="cid=in-flight-1")
    again.post("m1", "only once")
    again.post("m1", "only once")
    broker.answer()
    clock.advance(0)
    assert [(a["id"], a["seq"]) for a in of(again, "ack")] == [("m1", 1), ("m1", 1)]
    assert texts(watcher.lines()) == ["only once"]


def test_a_refused_send_is_answered_unavailable_and_a_resend_is_tried_again() -> None:
    hub, clock, broker = heldHub()
    sender, watcher = V2Peer(hub), V1Peer(hub)
    broker.refusing = True
    sender.post("m1", "not now")
    clock.advance(0)
    assert of(sender, "error") == [{"type": "error", "id": "m1", "code": "unavailable",
                                    "message": "the chat cannot take this now: try again"}]
    assert texts(watcher.lines()) == []
    broker.refusing = False
    sender.post("m1", "not now")
    broker.answer()
    clock.advance(0)
    assert [a["seq"] for a in of(sender, "ack")] == [1]
    assert texts(watcher.lines()) == ["not now"]


SECRET = "correct horse battery staple, but longer"


def hs(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_refresh_extends_the_connection_past_the_old_exp_for_the_same_user_only() -> None:
    hub, clock = makeHub(tokenSecret=SECRET, pingInterval=3600, pongTimeout=7200)
    clock.advance(time.time())  # PyJWT reads the wall clock: the hub's clock starts there too
    now = int(clock.seconds())
    peer = V2Peer(hub, query=f"token={hs({'sub': 'ann', 'exp': now + 30})}")
    peer.lines()
    peer.command(type="refresh", id="r1", token=hs({"sub": "bob", "exp": now + 600}))
    peer.command(type="refresh", id="r2", token="garbage")
    peer.command(type="refresh", id="r3", token=hs({"sub": "ann", "exp": now + 600}))
    clock.advance(0)
    answers = [line for line in peer.lines() if line["type"] in ("error", "refreshed")]
    assert answers[:2] == [
        {"type": "error", "id": "r1", "code": "bad-request", "message": "refresh: the token is for another user"},
        {"type": "error", "id": "r2", "code": "bad-request", "message": "refresh: invalid token: Not enough segments"},
    ]
    assert answers[2] == {"type": "refreshed", "exp": now + 600, "id": "r3"}
    clock.advance(31)
    assert peer.open and peer.closeCode() is None
    clock.advance(570)
    assert peer.closeCode() == 4001


def test_a_failed_refresh_keeps_the_old_exp() -> None:
    hub, clock = makeHub(tokenSecret=SECRET)
    clock.advance(time.time())
    now = int(clock.seconds())
    peer = V2Peer(hub, query=f"token={hs({'sub': 'ann', 'exp': now + 30})}")
    peer.command(type="refresh", token=hs({"sub": "bob", "exp": now + 600}))
    clock.advance(31)
    assert peer.closeCode() == 4001


def test_refresh_without_signed_identities_is_a_bad_request() -> None:
    hub, clock = makeHub()
    peer = V2Peer(hub)
    peer.command(type="refresh", token="x.y.z")
    clock.advance(0)
    assert [line["message"] for line in of(peer, "error")] == ["refresh: this connection has no signed identity"]


def test_answers_to_a_member_that_is_behind_wait_in_its_backlog_in_order() -> None:
    hub, clock = makeHub(sendQueue=10)
    sender, talker = V2Peer(hub), V1Peer(hub)
    sender.lines()
    sender.stopReading()
    talker.say("first")
    clock.advance(0)
    sender.post("m", "mine")
    sender.say(b"oops")
    clock.advance(0)
    assert roomOf(hub, "lobby").v1Members.backlog(sender.protocol) == 3
    sender.startReading()
    got = [(line["type"], line.get("text") or line.get("id") or line.get("code"))
           for line in sender.lines() if line["type"] != "presence"]
    assert got == [("message", "first"), ("message", "mine"), ("ack", "m"), ("error", "bad-request")]
