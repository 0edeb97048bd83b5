"""The chat over in-memory connections, every timer on a task.Clock."""

from __future__ import annotations


from bench import frames
from tests.support.memory import Peer, makeHub, roomOf


def test_message_reaches_everyone_normalised() -> None:
    hub, clock = makeHub()
    a, b = Peer(hub), Peer(hub)
    assert (a.status, b.status) == (101, 101)
    a.say("  hello\nworld  ")
    clock.advance(0)
    assert a.messages() == ["hello world"]
    assert b.messages() == ["hello world"]


def test_messages_of_one_turn_go_out_as_one_frame_in_order() -> None:
    hub, clock = makeHub()
    a, b, c = Peer(hub), Peer(hub), Peer(hub)
    a.say("one")
    b.say("two")
    a.say("three")
    clock.advance(0)
    for peer in (a, b, c):
        assert peer.frameTexts() == ["one\ntwo\nthree"]


def test_unicode_whitespace_is_trimmed_too() -> None:
    hub, clock = makeHub()
    a = Peer(hub)
    a.say("\u3000\u00a0 héllo \u00a0")
    clock.advance(0)
    assert a.messages() == ["héllo"]


def test_whitespace_only_message_is_dropped_and_sender_stays() -> None:
    hub, clock = makeHub()
    a, b = Peer(hub), Peer(hub)
    a.say(" \n\t \n ")
    clock.advance(0)
    assert a.read() == [] and b.read() == []
    a.say("after")
    clock.advance(0)
    assert b.messages() == ["after"]
    assert a.open


def test_oversized_message_closes_sender_with_1009_and_others_go_on() -> None:
    hub, clock = makeHub(maxMessageSize=512)
    a, b = Peer(hub), Peer(hub)
    a.say("é" * 256)  # 512 bytes: at the limit, accepted
    clock.advance(0)
    assert b.messages() == ["é" * 256]
    a.say("x" * 513)
    clock.advance(0)
    assert a.closeCode() == 1009
    assert b.read() == []
    b.say("still here")
    clock.advance(0)
    assert b.messages() == ["still here"]
    assert len(hub) == 1


def test_coalesced_frames_larger_than_the_limit_are_sent_whole() -> None:
    hub, clock = makeHub(maxMessageSize=512)
    a, b = Peer(hub), Peer(hub)
    for i in range(10):
        a.say(f"{i}" + "y" * 500)
    clock.advance(0)
    frames_ = b.frameTexts()
    assert len(frames_) == 1 and len(frames_[0]) > 5000
    assert a.open and b.open


def test_fragmented_message_over_the_limit_is_refused() -> None:
    hub, clock = makeHub(maxMessageSize=512)
    a, b = Peer(hub), Peer(hub)
    a.send(frames.clientFrame(frames.TEXT, b"x" * 300, fin=False))
    a.send(frames.clientFrame(0x0, b"x" * 300, fin=True))
    clock.advance(0)
    assert a.closeCode() == 1009
    assert b.read() == []


def test_invalid_utf8_closes_with_1007() -> None:
    hub, clock = makeHub()
    a, b = Peer(hub), Peer(hub)
    a.say(b"bad \xff\xfe bytes")
    clock.advance(0)
    assert a.closeCode() == 1007
    assert b.read() == []
    assert len(hub) == 1


def test_binary_frame_closes_with_1003() -> None:
    hub, clock = makeHub()
    a, b = Peer(hub), Peer(hub)
    a.send(frames.clientFrame(frames.BINARY, b"\x00\x01binary"))
    clock.advance(0)
    assert a.closeCode() == 1003
    assert b.read() == []
    b.say("fine")
    clock.advance(0)
    assert b.messages() == ["fine"]


def test_nothing_follows_a_close_frame() -> None:
    hub, clock = makeHub()
    a, b = Peer(hub), Peer(hub)
    b.send(frames.clientFrame(frames.CLOSE, b"\x03\xe8"))  # b starts closing with 1000
    a.say("late")
    clock.advance(0)
    got = b.read()
    assert [op for op, _ in got] == [frames.CLOSE]
    assert a.messages() == ["late"]


def test_client_that_stops_reading_gets_its_backlog_as_one_frame() -> None:
    hub, clock = makeHub(sendQueue=10)
    a, slow = Peer(hub), Peer(hub)
    slow.stopReading()
    for word in ("one", "two", "three", "four"):
        a.say(word)
        clock.advance(0)
    assert slow.transport.value() == b""
    assert roomOf(hub, "lobby").plainMembers.backlog(slow.protocol) == 3  # "one" waits in the transport itself
    slow.startReading()
    assert slow.frameTexts() == ["one", "two\nthree\nfour"]
    a.say("five")
    clock.advance(0)
    assert slow.messages() == ["five"]
    assert a.messages() == ["one", "two", "three", "four", "five"]


def test_client_that_never_reads_is_dropped_and_others_get_everything() -> None:
    hub, clock = makeHub(sendQueue=5)
    a, b, slow = Peer(hub), Peer(hub), Peer(hub)
    slow.stopReading()
    sent = [f"m{i}" for i in range(7)]
    for message in sent:
        a.say(message)
        clock.advance(0)
    assert len(hub) == 2
    slow.startReading()
    assert slow.messages() == ["m0"]  # what the transport held; its queue went with it
    assert slow.closeCode() == 1008
    assert b.messages() == sent
    clock.advance(hub.config.closeTimeout)  # it never answers the close
    assert not slow.open and slow.transport.aborted
    assert clock.getDelayedCalls() == [c for c in clock.getDelayedCalls() if getattr(c, "func").__name__ == "_tick"]


def test_backlog_never_passes_the_send_queue() -> None:
    hub, clock = makeHub(sendQueue=4)
    a, slow = Peer(hub), Peer(hub)
    slow.stopReading()
    a.say("into the transport")
    clock.advance(0)
    for i in range(4):
        a.say(f"m{i}")
        clock.advance(0)
        assert roomOf(hub, "lobby").plainMembers.backlog(slow.protocol) == i + 1
    a.say("one too many")
    clock.advance(0)
    assert roomOf(hub, "lobby").plainMembers.backlog(slow.protocol) == 0
    assert slow.protocol not in roomOf(hub, "lobby").plainMembers


def test_output_that_cannot_drain_for_the_write_timeout_is_cut() -> None:
    hub, clock = makeHub(writeTimeout=10, sendQueue=1000)
    a, stuck = Peer(hub), Peer(hub)
    stuck.stopReading()
    a.say("cannot drain")
    clock.advance(0)
    clock.advance(9.9)
    assert stuck.open
    clock.advance(0.1)
    assert not stuck.open and stuck.transport.aborted
    a.say("on we go")
    clock.advance(0)
    assert a.messages() == ["cannot drain", "on we go"]


def test_draining_in_time_cancels_the_write_timeout() -> None:
    hub, clock = makeHub(writeTimeout=10)
    a = Peer(hub)
    a.stopReading()
    a.say("slowly")
    clock.advance(5)
    a.startReading()
    clock.advance(20)
    assert a.open and a.messages() == ["slowly"]


def test_server_pings_every_interval() -> None:
    hub, clock = makeHub(pingInterval=54, pongTimeout=60)
    a = Peer(hub)
    clock.advance(53.9)
    assert a.read() == []
    clock.advance(0.1)
    assert [op for op, _ in a.read()] == [frames.PING]
    a.send(frames.clientFrame(frames.PONG, b""))
    clock.advance(54)
    assert [op for op, _ in a.read()] == [frames.PING]
    assert a.open


def test_silent_client_is_closed_after_pong_timeout() -> None:
    hub, clock = makeHub(pingInterval=54, pongTimeout=60)
    a, b = Peer(hub), Peer(hub)
    clock.advance(30)
    b.say("alive")  # any traffic counts
    clock.advance(29.9)
    assert a.closeCode() is None
    clock.advance(0.1)
    assert a.closeCode() == 1008
    assert b.closeCode() is None
    clock.advance(hub.config.closeTimeout)
    assert not a.open and b.open
    assert len(hub) == 1


def test_closing_every_client_with_1001() -> None:
    hub, clock = makeHub()
    a, b = Peer(hub), Peer(hub)
    a.say("last words")
    done = hub.closeAll()
    assert a.messages() == ["last words"]
    assert a.closeCode() == 1001 and b.closeCode() == 1001
    assert not done.called
    a.send(frames.clientFrame(frames.CLOSE, b"\x03\xe9"))
    b.send(frames.clientFrame(frames.CLOSE, b"\x03\xe9"))
    assert done.called
    assert not a.open and not b.open
    assert clock.getDelayedCalls() == []


def test_shutdown_cuts_clients_that_never_answer() -> None:
    hub, clock = makeHub(closeTimeout=30, shutdownTimeout=3)
    a = Peer(hub)
    done = hub.closeAll()
    clock.advance(3)
    assert done.called and not a.open and a.transport.aborted
    assert clock.getDelayedCalls() == []


def test_client_arriving_during_shutdown_is_turned_away() -> None:
    hub, clock = makeHub()
    hub.closeAll()
    assert Peer(hub).status == 503
    assert hub.health() == (503, "shutting down")


def test_no_timers_are_left_after_clients_go() -> None:
    hub, clock = makeHub()
    a = Peer(hub)
    a.send(frames.clientFrame(frames.CLOSE, b"\x03\xe8"))
    assert not a.open
    assert clock.getDelayedCalls() == []


def test_origin_rules() -> None:
    hub, clock = makeHub(allowedOrigins=("https://friend.example",))
    assert Peer(hub, origin=None).status == 101
    assert Peer(hub, origin="http://127.0.0.1", host="127.0.0.1").status == 101
    assert Peer(hub, origin="http://CHAT.example:8080", host="chat.example:8080").status == 101
    assert Peer(hub, origin="https://friend.example", host="chat.example").status == 101
    assert Peer(hub, origin="http://evil.example", host="chat.example").status == 403
    assert Peer(hub, origin="http://chat.example:9999", host="chat.example:8080").status == 403
    # A sandboxed frame or a file:// page: a foreign origin like any other.
    assert Peer(hub, origin="null", host="chat.example").status == 403
    assert Peer(hub, origin="file://", host="chat.example").status == 403
    assert len(hub) == 4
    assert Peer(makeHub(allowedOrigins=("*",))[0], origin="null").status == 101
