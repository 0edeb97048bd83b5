"""Rooms, the txchat.v1 protocol, history, recovery and presence, in memory on a task.Clock."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.memory import Peer, V1Peer, makeHub, roomOf


def texts(lines: list[dict[str, Any]]) -> list[str]:
    return [line["text"] for line in lines if line["type"] == "message"]


def test_a_message_reaches_its_room_only_and_ws_is_the_lobby() -> None:
    hub, clock = makeHub()
    lobby, lobbyToo = Peer(hub), Peer(hub, path="/ws/lobby")
    general = Peer(hub, path="/ws/general")
    lobby.say("in the lobby")
    general.say("in general")
    clock.advance(0)
    assert lobby.messages() == lobbyToo.messages() == ["in the lobby"]
    assert general.messages() == ["in general"]


def test_v1_gets_the_subprotocol_a_welcome_first_then_json_lines_beside_plain_clients() -> None:
    hub, clock = makeHub(maxMessageSize=300)
    clock.advance(1_700_000_000.25)
    plain = Peer(hub, path="/ws/general")
    v1 = V1Peer(hub, "general", "name=%20Ada%0A%20")
    assert v1.status == 101 and "Sec-WebSocket-Protocol: txchat.v1" in v1.head
    assert "Sec-WebSocket-Protocol" not in plain.head
    (welcome,) = v1.lines()
    assert welcome == {"type": "welcome", "room": "general", "epoch": welcome["epoch"], "seq": 0, "online": 2,
                       "maxMessageSize": 300, "users": 2}
    v1.say("line\nbreak")
    plain.say("from plain")
    clock.advance(0)
    assert plain.messages() == ["line break", "from plain"]
    # A v1 sender's line break stays for v1 members (SPEC §17); each line says who sent it.
    assert [line for line in v1.lines() if line["type"] != "presence"] == [
        {"type": "message", "seq": 1, "time": 1_700_000_000_250, "name": "Ada", "text": "line\nbreak",
         "from": v1.protocol.sender},
        {"type": "message", "seq": 2, "time": 1_700_000_000_250, "name": "", "text": "from plain",
         "from": plain.protocol.sender},
    ]
    assert v1.protocol.sender != plain.protocol.sender


def test_only_unknown_subprotocols_get_the_plain_protocol() -> None:
    hub, clock = makeHub()
    peer = Peer(hub, headers={"Sec-WebSocket-Protocol": "chat.v9, other"})
    assert peer.status == 101 and "Sec-WebSocket-Protocol" not in peer.head
    peer.say("plain")
    clock.advance(0)
    assert peer.messages() == ["plain"]


@pytest.mark.parametrize("path", ["/ws/" + "r" * 65, "/ws/two%20words", "/ws/a/b", "/ws/caf%C3%A9", "/ws/",
                                  "/ws/.", "/ws/..", "/ws/" + "." * 64,
                                  "/ws/caf\u00e9".encode().decode("latin-1")])
def test_bad_room_names_get_404_and_disturb_nobody(path: str) -> None:
    hub, clock = makeHub()
    other = Peer(hub)
    assert Peer(hub, path=path).status == 404
    assert V1Peer(hub, path[4:]).status == 404 if path.startswith("/ws/") and path[4:] else True
    other.say("still here")
    clock.advance(0)
    assert other.messages() == ["still here"]
    assert len(hub) == 1


@pytest.mark.parametrize("query", ["name=" + "n" * 33, "name=%FF", "name=ok%C3", "since=abc", "since=x:",
                                  "since=:5", "since=e:-1", "since=e:1.5",
                                  "name=%zz", "name=ok%", "name=%E6%9", "na%6De=%zz", "since=e%zz:1", "since=e:1%"])
def test_bad_handshake_parameters_get_400_and_disturb_nobody(query: str) -> None:
    hub, clock = makeHub()
    other = V1Peer(hub)
    assert V1Peer(hub, query=query).status == 400
    other.say("still here")
    clock.advance(0)
    assert texts(other.lines()) == ["still here"]


def test_names_lose_control_characters_and_plain_clients_have_none() -> None:
    hub, clock = makeHub()
    v1 = V1Peer(hub, query="name=%E6%97%A5%07%1Bx" + "y" * 29)  # 32 once the controls are gone
    plain = Peer(hub, path="/ws?name=ignored")
    plain.say("hi")
    v1.say("yo")
    clock.advance(0)
    lines = [line for line in v1.lines() if line["type"] == "message"]
    assert [line["name"] for line in lines] == ["", "日x" + "y" * 29]


def test_a_v1_sender_s_controls_are_removed_for_everyone_and_a_seed_sender_s_text_is_the_seed_s() -> None:
    hub, clock = makeHub()
    v1, plain = V1Peer(hub), Peer(hub)
    v1.say("bell\x07 nul\x00 esc\x1b[2J tab\tend\r\nnext\rlast\x7f")
    v1.say("\x00\x07\x1b")  # nothing left: dropped, as an empty message is
    plain.say("seed\x07 nul\x00\tas sent\r")
    clock.advance(0)
    cleaned = "bell nul esc[2J tab\tend\nnext\nlast\x7f"  # line breaks stay for v1 (SPEC \u00a717)
    assert texts(v1.lines()) == [cleaned, "seed\x07 nul\x00\tas sent"]
    assert plain.messages() == [cleaned.replace("\n", " "), "seed\x07 nul\x00\tas sent"]
    assert v1.open and plain.open


def test_names_lose_format_characters_that_hide_or_reverse_text() -> None:
    hub, clock = makeHub()
    admin = V1Peer(hub, query="name=Admin%E2%80%8B")            # a zero-width space
    mirror = V1Peer(hub, query="name=%E2%80%AEnimdA%E2%80%AC")  # right-to-left override ... pop
    isolate = V1Peer(hub, query="name=%E2%81%A6Ann%E2%81%A9%EF%BB%BF")  # isolate ... pop, BOM
    for peer in (admin, mirror, isolate):
        peer.say("hi")
    clock.advance(0)
    assert [line["name"] for line in admin.lines() if line["type"] == "message"] == ["Admin", "nimdA", "Ann"]


@pytest.mark.parametrize("perTurn", [1, 0])  # 0: no lobby, so the join comes mid-batch
def test_history_on_join_then_live_without_gap_or_duplicate_even_mid_batch(perTurn: int) -> None:
    hub, clock = makeHub(history=50, handshakesPerTurn=perTurn)
    talker = Peer(hub)
    for i in range(3):
        talker.say(f"old {i}")
    clock.advance(0)
    talker.say("pending when the next one joins")  # accepted, not yet flushed
    joiner = V1Peer(hub)
    talker.say("after the join")
    clock.advance(0)
    lines = joiner.lines()
    assert lines[0]["type"] == "welcome" and lines[0]["seq"] == 4
    messages = [line for line in lines if line["type"] == "message"]
    assert [m["seq"] for m in messages] == [1, 2, 3, 4, 5]
    assert texts(lines) == ["old 0", "old 1", "old 2", "pending when the next one joins", "after the join"]
    hub.closeAll()


def test_recovery_gives_exactly_what_was_missed_and_says_so() -> None:
    hub, clock = makeHub(history=50)
    talker = Peer(hub)
    first = V1Peer(hub)
    talker.say("one")
    clock.advance(0)
    (welcome, one) = [line for line in first.lines() if line["type"] != "presence"]
    epoch = welcome["epoch"]
    first.transport.abortConnection()
    for text in ("two", "three"):
        talker.say(text)
    clock.advance(0)
    back = V1Peer(hub, query=f"since={epoch}:{one['seq']}")
    lines = back.lines()
    assert lines[0]["recovered"] is True and lines[0]["seq"] == 3
    assert texts(lines) == ["two", "three"]
    talker.say("four")
    clock.advance(0)
    assert [line["seq"] for line in back.lines()] == [4]
    hub.closeAll()


@pytest.mark.parametrize("since", ["otherepoch:1", "{epoch}:9", "{epoch}:0"])
def test_unrecoverable_since_gets_a_fresh_join_with_recovered_false(since: str) -> None:
    hub, clock = makeHub(history=2)
    talker = Peer(hub)
    for text in ("a", "b", "c", "d"):  # history keeps c and d only: after 0 is a gap
        talker.say(text)
    clock.advance(0)
    epoch = roomOf(hub, "lobby").epoch
    back = V1Peer(hub, query="since=" + since.format(epoch=epoch))
    lines = back.lines()
    assert lines[0]["recovered"] is False and lines[0]["seq"] == 4
    assert texts(lines) == ["c", "d"]
    hub.closeAll()


def test_history_expires_and_an_empty_room_then_starts_a_new_epoch() -> None:
    hub, clock = makeHub(history=10, historyTtl=60, pingInterval=1000, pongTimeout=1000)
    talker = Peer(hub, path="/ws/r")
    talker.say("kept for a minute")
    clock.advance(0)
    epoch = roomOf(hub, "r").epoch
    talker.transport.abortConnection()
    assert hub.room("r") is not None, "a room with history outlives its members"
    clock.advance(59)
    assert [line["text"] for line in V1Peer(hub, "r").lines()[1:]] == ["kept for a minute"]
    for peer in list(roomOf(hub, "r").v1Members):
        peer.transport.abortConnection()
    clock.advance(1)
    assert hub.room("r") is None
    peer = V1Peer(hub, "r")
    again = peer.lines()
    assert again[0]["epoch"] != epoch and again[0]["seq"] == 0 and len(again) == 1
    peer.transport.abortConnection()
    assert hub.room("r") is None, "no members, no history: forgotten"
    clock.advance(10)  # the memory of the expired room goes back to the system
    assert clock.getDelayedCalls() == []


def test_presence_is_one_line_a_second_and_the_last_change_arrives() -> None:
    hub, clock = makeHub()
    watcher = V1Peer(hub)
    assert watcher.lines()[0]["online"] == 1
    clock.advance(5)
    watcher.lines()  # a presence line may repeat what the welcome said
    joiners = [Peer(hub) for _ in range(5)]  # a storm of joins within one second
    clock.advance(0)

    def counts() -> list[tuple[int, int]]:  # (the people in each line: tests/memory/test_people.py)
        return [(line["online"], line["users"]) for line in watcher.lines() if line["type"] == "presence"]

    assert counts() == [(2, 2)]  # the first change at once
    clock.advance(0.5)
    joiners[0].transport.abortConnection()
    clock.advance(0.4)
    assert watcher.lines() == []
    clock.advance(0.1)  # a second after the last line: the count as it is now
    assert counts() == [(5, 5)]
    clock.advance(10)
    assert watcher.lines() == []  # quiet: nothing changed
    hub.closeAll()


def test_max_rooms_forgets_the_stalest_empty_room_and_refuses_only_when_all_are_occupied() -> None:
    hub, clock = makeHub(maxRooms=2, history=5)
    a = Peer(hub, path="/ws/a")
    a.say("a speaks")
    clock.advance(10)
    b = Peer(hub, path="/ws/b")
    b.say("b speaks later")
    clock.advance(10)
    a.transport.abortConnection()
    b.transport.abortConnection()
    c = Peer(hub, path="/ws/c")
    assert c.status == 101
    assert hub.room("a") is None and hub.room("b") is not None, "the room quiet longest goes"
    d = Peer(hub, path="/ws/d")
    assert d.status == 101 and hub.room("b") is None
    refused = Peer(hub, path="/ws/e")
    assert refused.status == 503
    c.say("c still chats")
    clock.advance(0)
    assert c.messages() == ["c still chats"]
    hub.closeAll()


def test_abandoned_rooms_are_forgotten_once_their_history_expires_and_memory_goes_back() -> None:
    gaveBack = []
    hub, clock = makeHub(lambda: gaveBack.append(clock.seconds()), history=5, historyTtl=30)
    for i in range(300):
        peer = Peer(hub, path=f"/ws/r{i}")
        peer.say(f"hello {i}")
        clock.advance(0)
        peer.transport.abortConnection()
    assert len(hub.rooms) == 300, "kept while their history is"
    clock.advance(30)
    assert len(hub.rooms) == 0
    clock.advance(10)
    assert gaveBack == [40], "once for the whole batch, not once a room"
    assert clock.getDelayedCalls() == []


def test_memory_goes_back_after_a_crowd_has_gone() -> None:
    gaveBack = []
    hub, clock = makeHub(lambda: gaveBack.append(clock.seconds()), pingInterval=1e6, pongTimeout=1e6)
    crowd = [Peer(hub) for _ in range(1000)]
    for peer in crowd[:999]:
        peer.transport.abortConnection()
    clock.advance(60)
    assert gaveBack == [], "999 is not yet a crowd"
    crowd[999].transport.abortConnection()
    clock.advance(10)
    assert gaveBack == [70]
    assert clock.getDelayedCalls() == []


def test_connections_that_stay_are_frozen_a_thousand_at_a_time_and_their_turnover_asks_no_full_pass() -> None:
    """A thousand connections that stay are frozen (the collector's passes skip them); frozen
    ones closing while as many come are freed as they go, so no full pass is asked for."""
    froze, gaveBack = [], []
    hub, clock = makeHub(lambda: gaveBack.append(clock.seconds()), lambda: froze.append(len(hub._connections)),
                         pingInterval=1e6, pongTimeout=1e6)
    first = [Peer(hub) for _ in range(1000)]
    assert froze == [1000]
    for peer in first:
        peer.transport.abortConnection()
        Peer(hub)
    clock.advance(60)
    assert froze == [1000, 1000], "the newcomers became a crowd to freeze in turn"
    assert gaveBack == [], "every frozen one went, but as many came: no crowd has gone"
    hub.closeAll()


def test_connections_coming_and_going_are_not_a_crowd_gone() -> None:
    """Steady churn: each leaver's memory goes to a newcomer, and a full collection over every
    connection would stall the chat each time."""
    gaveBack = []
    hub, clock = makeHub(lambda: gaveBack.append(clock.seconds()), pingInterval=1e6, pongTimeout=1e6)
    staying = [Peer(hub) for _ in range(100)]
    for _ in range(3000):
        Peer(hub).transport.abortConnection()
    clock.advance(60)
    assert gaveBack == []
    crowd = [Peer(hub) for _ in range(1000)]
    for peer in crowd[:999]:
        peer.transport.abortConnection()
    clock.advance(60)
    assert gaveBack == [], "999 fewer than at the most"
    crowd[999].transport.abortConnection()
    clock.advance(10)
    assert gaveBack == [130]
    assert len(staying) == 100
