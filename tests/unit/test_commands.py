"""A txchat.v2 client's frames (txchat/commands.py): every command, every refusal, as a table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from txchat.commands import HistoryAsk, Read, Refresh, Refused, Send, Typing, parse

BAD = "bad-request"


def frame(**fields: Any) -> bytes:
    return json.dumps(fields).encode("utf-8")


ACCEPTED = [
    (frame(type="send", id="m1", text=" hi there "), Send("m1", b"hi there")),
    (frame(type="send", id="m1", text="a\r\nb\rc\x00\x1b\td"), Send("m1", b"a\nb\nc\td")),
    (frame(type="send", id="x" * 64, text="é"), Send("x" * 64, "é".encode())),
    (frame(type="send", id="with space é", text="t", extra=1), Send("with space é", b"t")),  # unknown keys ignored
    (frame(type="history", id="h"), HistoryAsk("h", None, 50)),
    (frame(type="history", id="h", before="ab:c:12", limit=200), HistoryAsk("h", ("ab:c", 12), 200)),
    (frame(type="history", id="h", limit=1), HistoryAsk("h", None, 1)),
    (frame(type="typing"), Typing()),
    (frame(type="typing", id="t"), Typing("t")),
    (frame(type="read", epoch="e", seq=0), Read("e", 0)),
    (frame(type="read", epoch="e", seq=9, id="r"), Read("e", 9, "r")),
    (frame(type="refresh", token="a.b.c"), Refresh("a.b.c")),
    (frame(type="refresh", token="a.b.c", id="f"), Refresh("a.b.c", "f")),
]


@pytest.mark.parametrize("payload, command", ACCEPTED)
def test_commands(payload: bytes, command: object) -> None:
    assert parse(payload, 512) == command


NOT_AN_OBJECT = "a frame must be one JSON object"
NO_ID = "id: a string of 1-64 printable characters is required"
REFUSED = [
    (b"", Refused(BAD, NOT_AN_OBJECT)),
    (b"hello", Refused(BAD, NOT_AN_OBJECT)),
    (b"[]", Refused(BAD, NOT_AN_OBJECT)),
    (b"3.5", Refused(BAD, NOT_AN_OBJECT)),
    (b"null", Refused(BAD, NOT_AN_OBJECT)),
    (b'{"type":"send"', Refused(BAD, NOT_AN_OBJECT)),
    (b"[" * 100_000, Refused(BAD, NOT_AN_OBJECT)),  # deeper than the parser goes
    (frame(type="send", text="t"), Refused(BAD, NO_ID)),
    (frame(type="send", id=None, text="t"), Refused(BAD, NO_ID)),
    (frame(type="history"), Refused(BAD, NO_ID)),
    (frame(type="typing", id=None), Refused(BAD, NO_ID)),
    (frame(type="send", id=1, text="t"), Refused(BAD, "id: must be a string")),
    (frame(type="send", id=["a"], text="t"), Refused(BAD, "id: must be a string")),
    (frame(type="send", id="x" * 65, text="t"), Refused(BAD, "id: 1-64 characters, not 65")),
    (frame(type="send", id="", text="t"), Refused(BAD, "id: 1-64 characters, not 0")),
    (frame(type="send", id="a\nb", text="t"), Refused(BAD, "id: printable characters only")),
    (frame(type="send", id="a\u200bb", text="t"), Refused(BAD, "id: printable characters only")),
    (b'{"type":"send","id":"\\ud800","text":"t"}', Refused(BAD, "id: printable characters only")),
    (frame(id="i"), Refused(BAD, "type: a string is required", "i")),
    (frame(type=5), Refused(BAD, "type: a string is required")),
    (frame(type="shout", id="i"), Refused(BAD, "unknown type 'shout'", "i")),
    (frame(type="send", id="i"), Refused(BAD, "text: a string is required", "i")),
    (frame(type="send", id="i", text=["t"]), Refused(BAD, "text: a string is required", "i")),
    (b'{"type":"send","id":"i","text":"\\udc00"}', Refused(BAD, "text: not valid Unicode (a lone surrogate)", "i")),
    (frame(type="send", id="i", text="x" * 513), Refused("too-long", "text is 513 bytes; at most 512", "i", 512)),
    (frame(type="send", id="i", text="é" * 257), Refused("too-long", "text is 514 bytes; at most 512", "i", 512)),
    (frame(type="send", id="i", text=" \n\r\t\u3000"), Refused("empty", "text is empty", "i")),
    (frame(type="send", id="i", text="\x00\x07"), Refused("empty", "text is empty", "i")),
    (frame(type="history", id="h", limit=0), Refused(BAD, "limit: a whole number from 1 to 200", "h")),
    (frame(type="history", id="h", limit=201), Refused(BAD, "limit: a whole number from 1 to 200", "h")),
    (frame(type="history", id="h", limit=True), Refused(BAD, "limit: a whole number from 1 to 200", "h")),
    (frame(type="history", id="h", limit="5"), Refused(BAD, "limit: a whole number from 1 to 200", "h")),
    (frame(type="history", id="h", before="e"), Refused(BAD, 'before: must be "EPOCH:SEQ"', "h")),
    (frame(type="history", id="h", before=5), Refused(BAD, 'before: must be "EPOCH:SEQ"', "h")),
    (frame(type="read", seq=1), Refused(BAD, "epoch: a non-empty string is required")),
    (frame(type="read", epoch="", seq=1), Refused(BAD, "epoch: a non-empty string is required")),
    (frame(type="read", epoch="e", seq=-1), Refused(BAD, "seq: a whole number, 0 or more, is required")),
    (frame(type="read", epoch="e", seq=1.0), Refused(BAD, "seq: a whole number, 0 or more, is required")),
    (frame(type="read", epoch="e", seq=False, id="r"), Refused(BAD, "seq: a whole number, 0 or more, is required", "r")),
    (frame(type="refresh"), Refused(BAD, "token: a non-empty string is required")),
    (frame(type="refresh", token=""), Refused(BAD, "token: a non-empty string is required")),
]


@pytest.mark.parametrize("payload, refused", REFUSED)
def test_refusals(payload: bytes, refused: Refused) -> None:
    assert parse(payload, 512) == refused


def test_the_limit_is_on_the_text_as_sent_before_it_is_trimmed() -> None:
    assert parse(frame(type="send", id="i", text=" " * 10 + "x"), 11) == Send("i", b"x")
    assert isinstance(parse(frame(type="send", id="i", text=" " * 11 + "x"), 11), Refused)
