"""The bench's py-spy summary (bench/profiles.py): what share of the busy samples presence work
takes, inclusive and self, with the reactor's idle poll left out."""

from __future__ import annotations

from bench.profiles import frames, share

POLL = "run (twisted/internet/base.py:686);EPollReactor.doPoll (twisted/internet/epollreactor.py:227)"
FLUSH = "run (twisted/internet/base.py:686);Fanout.flush (txchat/fanout.py:136);ChatProtocol.write (txchat/protocol.py:313)"
SEND = ("run (twisted/internet/base.py:686);Presence._send (txchat/presence.py:150);"
        "ChatHub._tell (txchat/hub.py:480);ChatProtocol.write (txchat/protocol.py:313)")
LIST = "run (twisted/internet/base.py:686);RoomPeople._list (txchat/people.py:222)"


def test_frames() -> None:
    assert frames(LIST) == [("run", "twisted/internet/base.py"), ("RoomPeople._list", "txchat/people.py")]


def test_share_of_busy_samples() -> None:
    lines = [f"{POLL} 100\n", f"{FLUSH} 70\n", f"{SEND} 20\n", f"{LIST} 10\n"]
    result = share(lines)
    assert result["samples"] == 100
    assert result["idle_samples"] == 100
    assert result["inclusive_pct"] == 30.0  # the presence line's writes count: presence made them
    assert result["self_pct"] == 10.0
    assert result["entries_pct"] == {"Presence._send (presence.py)": 20.0, "RoomPeople._list (people.py)": 10.0}


def test_other_modules() -> None:
    assert share([f"{FLUSH} 3\n", f"{LIST} 1\n"], ("txchat/fanout.py",))["inclusive_pct"] == 75.0


def test_nothing_sampled() -> None:
    assert share([f"{POLL} 5\n", "garbage\n"])["inclusive_pct"] == 0.0
