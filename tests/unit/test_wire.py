"""The v1 wire format on plain values."""

from __future__ import annotations

import json

import pytest

from txchat import wire


@pytest.mark.parametrize("path, room", [
    ("/ws", "lobby"), ("/ws/lobby", "lobby"), ("/ws/a.b_c~d-E9", "a.b_c~d-E9"), ("/ws/" + "r" * 64, "r" * 64),
    ("/ws/", None), ("/ws/" + "r" * 65, None), ("/ws/a%20b", None), ("/ws/a/b", None), ("/ws/caf%C3%A9", None),
    ("/wsx", None), ("/ws/café", None),
])
def test_room_names(path: str, room: str | None) -> None:
    assert wire.roomFromPath(path) == room


@pytest.mark.parametrize("raw", ["abc", "x:", ":5", "e:-1", "e:1.5", "e:", ""])
def test_malformed_since(raw: str) -> None:
    with pytest.raises(wire.BadRequest):
        wire.since(raw.encode())


def test_since_keeps_an_epoch_with_colons_whole() -> None:
    assert wire.since(b"a:b:12") == ("a:b", 12)
    uri = "/ws?since=e1%3A7&name=%20Bo%09b%20&token=a.b.c"
    assert wire.handshakeParams(uri, v1=True, signed=False) == wire.Handshake("Bob", ("e1", 7), None)
    # Signed: the name is the token's, and name= is not even read; a plain client has no since.
    assert wire.handshakeParams(uri, v1=True, signed=True) == wire.Handshake("", ("e1", 7), "a.b.c")
    assert wire.handshakeParams(uri + "&name=%ff", v1=False, signed=True) == wire.Handshake("", None, "a.b.c")


def test_lines_are_compact_json_with_escaped_newlines() -> None:
    line = wire.message(3, 1700, "Ada", "two\nlines \u2028 ok")
    assert b"\n" not in line and b" " not in line.replace(b"lines \xe2\x80\xa8 ok", b"")
    assert json.loads(line) == {"type": "message", "seq": 3, "time": 1700, "name": "Ada", "text": "two\nlines \u2028 ok"}
    assert json.loads(wire.message(None, 1, "", "x")) == {"type": "message", "time": 1, "name": "", "text": "x"}
    assert json.loads(wire.presence(4)) == {"type": "presence", "online": 4}
