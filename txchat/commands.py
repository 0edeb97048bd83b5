"""What a txchat.v2 client may send (SPEC §17): each text frame one JSON object, parsed and
checked here into a command, or into the refusal the client is answered with.

Pure: a frame's bytes in (valid UTF-8: Autobahn has checked), a value out. Whatever the frame,
the answer is one of these values, never an exception, so that a v2 connection survives every
malformed frame (only frames over 64 KiB and binary frames close it, in the protocol).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Union

from txchat import wire

__all__ = [
    "DEFAULT_HISTORY", "MAX_HISTORY", "MAX_ID", "Command", "HistoryAsk", "Read", "Refresh", "Refused", "Send",
    "Typing", "parse",
]

MAX_ID = 64
MAX_HISTORY = 200
DEFAULT_HISTORY = 50
# A sender's typing is relayed at most once in this many seconds.
TYPING_EVERY = 3.0

BAD_REQUEST = "bad-request"
TOO_LONG = "too-long"
EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class Send:
    id: str
    text: bytes  # UTF-8, cleaned and trimmed (wire.normaliseLines); never empty


@dataclass(frozen=True, slots=True)
class HistoryAsk:
    id: str
    before: tuple[str, int] | None  # (epoch, seq); None: the newest
    limit: int


@dataclass(frozen=True, slots=True)
class Typing:
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Read:
    epoch: str
    seq: int
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    token: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """A frame refused: the client gets an error line with C{code}, and the ID when the frame
    had a valid one; C{limit} for C{too-long}."""

    code: str
    message: str
    id: str | None = None
    limit: int | None = None


Command = Union[Send, HistoryAsk, Typing, Read, Refresh]


class _Bad(Exception):
    """A field that is not what the command allows: a bad-request refusal."""


def parse(payload: bytes, maxMessageSize: int) -> Command | Refused:
    """The command a v2 frame holds, or why it is refused; C{maxMessageSize} bounds a send's
    text (UTF-8 bytes as sent, before it is trimmed, as for the other protocols)."""
    try:
        frame = json.loads(payload)
    except (ValueError, RecursionError):
        return Refused(BAD_REQUEST, "a frame must be one JSON object")
    if not isinstance(frame, dict):
        return Refused(BAD_REQUEST, "a frame must be one JSON object")
    kind = frame.get("type")
    try:
        ref = _id(frame, required=kind in ("send", "history"))
    except _Bad as e:
        return Refused(BAD_REQUEST, str(e))
    try:
        if kind == "send":
            assert ref is not None
            return _send(frame, ref, maxMessageSize)
        if kind == "history":
            assert ref is not None
            return HistoryAsk(ref, _before(frame), _limit(frame))
        if kind == "typing":
            return Typing(ref)
        if kind == "read":
            return Read(_epoch(frame), _seq(frame), ref)
        if kind == "refresh":
            token = frame.get("token")
            if not isinstance(token, str) or not token:
                raise _Bad("token: a non-empty string is required")
            return Refresh(token, ref)
    except _Bad as e:
        return Refused(BAD_REQUEST, str(e), ref)
    if not isinstance(kind, str):
        return Refused(BAD_REQUEST, "type: a string is required", ref)
    return Refused(BAD_REQUEST, f"unknown type {kind[:64]!r}", ref)


def _id(frame: dict[str, Any], required: bool) -> str | None:
    ref = frame.get("id")
    if ref is None:
        if required or "id" in frame:
            raise _Bad("id: a string of 1-64 printable characters is required")
        return None
    if not isinstance(ref, str):
        raise _Bad("id: must be a string")
    if not 1 <= len(ref) <= MAX_ID:
        raise _Bad(f"id: 1-{MAX_ID} characters, not {len(ref)}")
    if not ref.isprintable():  # (a lone surrogate is not printable either)
        raise _Bad("id: printable characters only")
    return ref


def _send(frame: dict[str, Any], ref: str, maxMessageSize: int) -> Send | Refused:
    text = frame.get("text")
    if not isinstance(text, str):
        raise _Bad("text: a string is required")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad("text: not valid Unicode (a lone surrogate)") from None
    if len(raw) > maxMessageSize:
        return Refused(TOO_LONG, f"text is {len(raw)} bytes; at most {maxMessageSize}", ref, maxMessageSize)
    message = wire.normaliseLines(raw)
    if not message:
        return Refused(EMPTY, "text is empty", ref)
    return Send(ref, message)


def _before(frame: dict[str, Any]) -> tuple[str, int] | None:
    before = frame.get("before")
    if before is None:
        return None
    if not isinstance(before, str):
        raise _Bad("before: must be \"EPOCH:SEQ\"")
    try:
        return wire.since(before.encode("utf-8", "replace"), 'before: must be "EPOCH:SEQ"')
    except wire.BadRequest as e:
        raise _Bad(str(e)) from None


def _limit(frame: dict[str, Any]) -> int:
    limit = frame.get("limit", DEFAULT_HISTORY)
    if type(limit) is not int or not 1 <= limit <= MAX_HISTORY:
        raise _Bad(f"limit: a whole number from 1 to {MAX_HISTORY}")
    return limit


def _epoch(frame: dict[str, Any]) -> str:
    epoch = frame.get("epoch")
    if not isinstance(epoch, str) or not epoch:
        raise _Bad("epoch: a non-empty string is required")
    return epoch


def _seq(frame: dict[str, Any]) -> int:
    seq = frame.get("seq")
    if type(seq) is not int or seq < 0:
        raise _Bad("seq: a whole number, 0 or more, is required")
    return seq
