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
    assert json.loads(line) == {"type": "message", "seq": 3, "time": 1700, "name": "Ada", "text": "two\nlines \u2028 ok",
                                "from": ""}
    assert json.loads(wire.message(None, 1, "", "x", "u:ann")) == {"type": "message", "time": 1, "name": "", "text": "x",
                                                                  "from": "u:ann"}
    # "from" comes last: the keys a v1 client knew keep their order.
    assert list(json.loads(wire.message(2, 1, "", "x", "a:c"))) == ["type", "seq", "time", "name", "text", "from"]
    assert json.loads(wire.presence(4)) == {"type": "presence", "online": 4}


@pytest.mark.parametrize("query, name", [
    ("name=Ada", "Ada"),
    ("name=%20Ada%0A%20", "Ada"),
    ("name=Ada+Lovelace", "Ada Lovelace"),
    ("name=%E6%97%A5", "\u65e5"),
    ("na%6De=Ada", "Ada"),           # an escaped key is the same key
    ("other=%zz&name=Ada", "Ada"),   # what the protocol does not read is not judged
])
def test_names_are_percent_decoded(query: str, name: str) -> None:
    assert wire.handshakeParams(f"/ws?{query}", v1=True, signed=False).name == name


@pytest.mark.parametrize("query, parameter", [
    ("name=%zz", "name"), ("name=%", "name"), ("name=a%4", "name"), ("name=%g0", "name"),
    ("since=e%zz:1", "since"), ("since=e:1%", "since"),
])
def test_a_bad_percent_escape_is_a_bad_request_naming_the_parameter(query: str, parameter: str) -> None:
    with pytest.raises(wire.BadRequest, match=f"^{parameter}: bad percent-encoding"):
        wire.handshakeParams(f"/ws?{query}", v1=True, signed=False)


def test_a_token_with_a_bad_escape_is_a_bad_request_and_a_good_one_is_decoded() -> None:
    with pytest.raises(wire.BadRequest, match="^token: bad percent-encoding"):
        wire.handshakeParams("/ws?token=abc%2", v1=False, signed=True)
    assert wire.handshakeParams("/ws?token=a%2Eb", v1=False, signed=True).token == "a.b"


def test_a_seed_client_s_query_is_not_read() -> None:
    assert wire.handshakeParams("/ws?name=%zz&since=%zz", v1=False, signed=False) == wire.Handshake("", None, None)


@pytest.mark.parametrize("name, valid", [
    ("lobby", True), ("a", True), ("r" * 64, True), ("a.b", True), (".a", True), ("a..", True), ("_", True),
    ("~.-", True), ("-", True),
    ("", False), (".", False), ("..", False), ("." * 64, False), ("r" * 65, False), ("two words", False),
    ("caf\u00e9", False), ("a/b", False), ("a%2E", False),
])
def test_room_names_of_only_dots_are_invalid(name: str, valid: bool) -> None:
    assert wire.validRoom(name) is valid
    assert (wire.roomFromPath(f"/ws/{name}") == name) is valid


@pytest.mark.parametrize("raw, cleaned", [
    (b"plain text", b"plain text"),
    (b"nul\x00bell\x07esc\x1b[0m", b"nulbellesc[0m"),
    (b"tab\tand\nline", b"tab\tand\nline"),
    (b"crlf\r\ncr\rend", b"crlf\ncr\nend"),
    (bytes(range(32)), b"\t\n\n"),  # the CR is a line break
    (b"del\x7f and C1 \xc2\x85 stay (not C0)", b"del\x7f and C1 \xc2\x85 stay (not C0)"),
    ("日本語 \u202e\u200b stay in text".encode(), "日本語 \u202e\u200b stay in text".encode()),
])
def test_text_loses_c0_controls_but_line_breaks_and_tabs(raw: bytes, cleaned: bytes) -> None:
    assert wire.cleanText(raw) == cleaned
    cleaned.decode("utf-8")  # still UTF-8: C0 bytes are never part of a multi-byte character


@pytest.mark.parametrize("raw, cleaned", [
    (" Ada ", "Ada"),
    ("Ada\x07\x1b\x7f\u0085", "Ada"),                      # controls (Cc)
    ("Admin\u200b", "Admin"),                              # zero-width space (Cf)
    ("\u202eAdmin\u202c", "Admin"),                        # right-to-left override ... pop
    ("\u2066A\u2069\u200e\u200f\u00ad\ufeff", "A"),        # isolates, marks, soft hyphen, BOM
    ("日本 \u05e9\u05dc\u05d5\u05dd", "日本 \u05e9\u05dc\u05d5\u05dd"),  # scripts stay, any direction
    ("\u200b \u200b", ""),
])
def test_names_lose_control_and_format_characters(raw: str, cleaned: str) -> None:
    assert wire.cleanName(raw) == cleaned


# -- txchat.v2 ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, kept", [
    (b"  one\r\ntwo\rthree\n\n four  ", b"one\ntwo\nthree\n\n four"),
    (b"\ttab\tinside\x00\x07\x1b\x7f", b"tab\tinside\x7f"),
    (b"\n\r\n \xe3\x80\x80", b""),
])
def test_v1_and_v2_text_keeps_its_line_breaks(raw: bytes, kept: bytes) -> None:
    assert wire.normaliseLines(raw) == kept


def test_seed_receivers_get_each_line_break_as_a_space() -> None:
    text = b"one\ntwo\n\nthree"
    assert wire.plainText(text) == b"one two  three"
    assert wire.plainText(wire.normaliseLines(b" a\r\nb ")) == wire.normalise(b" a\nb ")
    plain = b"no breaks"
    assert wire.plainText(plain) is plain  # nothing copied for the common case


@pytest.mark.parametrize("cid, ok", [
    ("abcdefgh", True), ("A-Z_a-z_0-9" * 5, True), ("x" * 64, True),
    ("abcdefg", False), ("x" * 65, False), ("abc defgh", False), ("abcdefgh%2E", False), ("abcdéfgh", False),
])
def test_client_ids(cid: str, ok: bool) -> None:
    uri = f"/ws?cid={cid}"
    if ok:
        assert wire.handshakeParams(uri, v1=True, signed=False).cid == cid
    else:
        with pytest.raises(wire.BadRequest, match="cid: 8-64"):
            wire.handshakeParams(uri, v1=True, signed=False)
    assert wire.handshakeParams(uri, v1=False, signed=False).cid is None  # the seed's protocol asks nothing


def test_v2_lines() -> None:
    assert json.loads(wire.ack("m1", "e", 3)) == {"type": "ack", "id": "m1", "epoch": "e", "seq": 3}
    assert json.loads(wire.ack("m1", None, None)) == {"type": "ack", "id": "m1", "epoch": None, "seq": None}
    assert list(json.loads(wire.error("i", "too-long", "long", limit=5))) == ["type", "id", "code", "message", "limit"]
    assert json.loads(wire.error(None, "empty", "text is empty")) == {"type": "error", "code": "empty",
                                                                     "message": "text is empty"}
    assert json.loads(wire.typing("u:a", "Ann")) == {"type": "typing", "from": "u:a", "name": "Ann"}
    assert json.loads(wire.refreshed(1700.0)) == {"type": "refreshed", "exp": 1700}
    assert json.loads(wire.refreshed(float("inf"), "r")) == {"type": "refreshed", "exp": None, "id": "r"}
    line = wire.withEpoch(wire.message(4, 1, "n", "t\n", "a:x"), "ep")
    assert json.loads(line) == {"type": "message", "seq": 4, "time": 1, "name": "n", "text": "t\n", "from": "a:x",
                                "epoch": "ep"}
    answer = json.loads(wire.history("h\"1", [line, line], True))
    assert answer == {"type": "history", "id": "h\"1", "messages": [json.loads(line)] * 2, "more": True}
    assert json.loads(wire.history("h", [], False)) == {"type": "history", "id": "h", "messages": [], "more": False}
