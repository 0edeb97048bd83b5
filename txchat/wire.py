"""The txchat.v1 and txchat.v2 protocols' side of the wire: the handshake's room and
parameters, the server's lines, each encoded once (compact JSON; JSON escapes newlines inside
strings, so a frame splits into lines on ``\\n``), the close codes, and how a message is
normalised. The docs/protocol.md is the reference."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.interfaces import IAddress

SUBPROTOCOL = "txchat.v1"
SUBPROTOCOL_V2 = "txchat.v2"
LOBBY = "lobby"
MAX_NAME = 32

CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
CLOSE_TOKEN_EXPIRED = 4001
CLOSE_MODERATED = 4003  # the server API disconnected the user, or banned them from the room (SPEC §18)

# The answer to a handshake that queued past its deadline (txchat.lobby): the process is too
# busy to take it now; the client retries, as after any 503.
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
                 b"Connection: close\r\n\r\nbusy now: try again\r\n")

# Not only dots: "." and ".." are path segments that browsers resolve before asking.
_ROOM = re.compile(r"(?!\.+\Z)[A-Za-z0-9._~-]{1,64}\Z")
# The rule in words, as the page's hint and its 404 page say it.
ROOM_RULE = "Room names are 1–64 letters, digits, or . _ ~ - (not only dots)"
_SEQ = re.compile(r"[0-9]+\Z")
# A client's own identity (cid=), kept across its reconnects: "a:" + this is its "from".
_CID = re.compile(r"[A-Za-z0-9_-]{8,64}\Z")


class BadRequest(ValueError):
    """A handshake parameter that is not what the protocol allows: HTTP 400."""


def normalise(payload: bytes) -> bytes:
    """Newlines become spaces, then surrounding white space goes (the gorilla chat's rule)."""
    return payload.decode("utf-8").replace("\n", " ").strip().encode("utf-8")


def normaliseLines(payload: bytes) -> bytes:
    """A txchat.v1 or v2 sender's text: cleaned (L{cleanText}: line breaks become C{\\n},
    other C0 controls go), surrounding white space trimmed; its line breaks stay."""
    return cleanText(payload).decode("utf-8").strip().encode("utf-8")


def plainText(text: bytes) -> bytes:
    """A message as a seed-protocol client gets it: each C{\\n} a space, as L{normalise} makes
    it (the text is trimmed already), so that one message is one line of the seed's frame."""
    return text.replace(b"\n", b" ") if b"\n" in text else text


def describePeer(address: IAddress) -> str:
    """An address as log lines name it: host:port, [v6]:port, or unix:path."""
    host = getattr(address, "host", None)
    if host is None:
        return f"unix:{getattr(address, 'name', None) or '-'}"
    port = getattr(address, "port", "-")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def validRoom(name: str) -> bool:
    return bool(_ROOM.match(name))


def roomFromPath(path: str, prefix: str = "/ws") -> str | None:
    """The room a raw request path names (``/ws`` is the lobby), or None: HTTP 404."""
    if path == prefix:
        return LOBBY
    name = path[len(prefix) + 1 :] if path.startswith(prefix + "/") else ""
    return name if validRoom(name) else None


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _query(uri: str) -> dict[str, str]:
    """The raw query of a request URI: each key percent-decoded, each value as sent (first
    value of each key); L{_param} decodes the values the protocol reads."""
    params: dict[str, str] = {}
    for pair in uri.partition("?")[2].split("&"):
        key, _, value = pair.partition("=")
        if key:
            params.setdefault(unquote_to_bytes(key.replace("+", " ")).decode("utf-8", "replace"), value)
    return params


def _param(params: dict[str, str], key: str) -> bytes:
    """A parameter's value, percent-decoded; a C{%} not followed by two hex digits is a bad
    request, as invalid UTF-8 is (urllib would keep it as it is)."""
    value = params[key]
    if _BAD_ESCAPE.search(value):
        raise BadRequest(f"{key}: bad percent-encoding (a % must be followed by two hex digits)")
    return unquote_to_bytes(value.replace("+", " "))


def cleanName(text: str) -> str:
    """A display name without control characters (Cc), format characters (Cf: zero-width,
    bidi overrides and isolates, which make one name look like another or reverse the text
    around it) or surrounding white space."""
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf")).strip()


# C0 controls but for tab and line feed (carriage returns become line feeds first).
_C0_UNWANTED = bytes(c for c in range(0x20) if c not in (0x09, 0x0A))


def cleanText(payload: bytes) -> bytes:
    """A txchat.v1 sender's (or the API's) text, UTF-8, without C0 controls other than
    C{\\n} and C{\\t}: a NUL or a BEL shows as a box on the page, an ESC may drive a terminal.
    Line breaks become C{\\n}. Works on the bytes: in UTF-8, a byte below 0x20 is always
    that character, never part of another. Seed-protocol text is not cleaned: the seed
    forwards what it gets."""
    if b"\r" in payload:
        payload = payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return payload.translate(None, _C0_UNWANTED)


def displayName(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("name: not UTF-8") from None
    name = cleanName(text)
    if len(name) > MAX_NAME:
        raise BadRequest(f"name: more than {MAX_NAME} characters")
    return name


def since(raw: bytes, what: str = "since: must be EPOCH:SEQ, as the welcome line gives them") -> tuple[str, int]:
    """C{EPOCH:SEQ}: an opaque, non-empty epoch and a non-negative integer."""
    text = raw.decode("utf-8", "replace")
    epoch, colon, seq = text.rpartition(":")
    if not colon or not epoch or not _SEQ.match(seq):
        raise BadRequest(what)
    return epoch, int(seq)


def withEpoch(line: bytes, epoch: str | None) -> bytes:
    """A message line with its stream's epoch, for scrollback that spans epochs (SPEC §16)."""
    return line[:-1] + b',"epoch":' + json.dumps(epoch).encode() + b"}" if line.endswith(b"}") else line


def clientId(raw: bytes) -> str:
    """C{cid=}: 8-64 characters C{A-Z a-z 0-9 _ -}."""
    text = raw.decode("utf-8", "replace")
    if not _CID.match(text):
        raise BadRequest("cid: 8-64 characters A-Z a-z 0-9 _ -")
    return text


@dataclass(frozen=True)
class Handshake:
    name: str
    since: tuple[str, int] | None
    token: str | None
    cid: str | None = None


def handshakeParams(uri: str, v1: bool, signed: bool) -> Handshake:
    """What a handshake's URI asks for; BadRequest when malformed. Only txchat.v1 (and v2)
    clients give C{name}, C{since} and C{cid}; with C{signed} identities the name is the
    token's, and C{name=} is not even read."""
    params = _query(uri)
    name = displayName(_param(params, "name")) if v1 and not signed and "name" in params else ""
    resume = since(_param(params, "since")) if v1 and "since" in params else None
    token = _param(params, "token").decode("utf-8", "replace") if signed and "token" in params else None
    cid = clientId(_param(params, "cid")) if v1 and "cid" in params else None
    return Handshake(name, resume, token, cid)


def encode(line: Any) -> bytes:
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def message(seq: int | None, time: int, name: str, text: str, sender: str = "") -> bytes:
    """A message line; without C{seq} while Redis is away (the message is not numbered).
    C{from} comes last: the keys a v1 client had before keep their order."""
    if seq is None:
        return encode({"type": "message", "time": time, "name": name, "text": text, "from": sender})
    return encode({"type": "message", "seq": seq, "time": time, "name": name, "text": text, "from": sender})


# -- txchat.v2's own lines ------------------------------------------------------------------

def ack(ref: str, epoch: str | None, seq: int | None) -> bytes:
    return encode({"type": "ack", "id": ref, "epoch": epoch, "seq": seq})


def error(ref: str | None, code: str, text: str, **extra: Any) -> bytes:
    line: dict[str, Any] = {"type": "error"}
    if ref is not None:
        line["id"] = ref
    line.update(code=code, message=text, **extra)
    return encode(line)


def history(ref: str, messages: list[bytes], more: bool) -> bytes:
    """A v2 C{history} answer; C{messages} are message lines with their epochs (L{withEpoch})."""
    return b'{"type":"history","id":%s,"messages":[%s],"more":%s}' % (
        encode(ref), b",".join(messages), b"true" if more else b"false")


def typing(sender: str, name: str) -> bytes:
    return encode({"type": "typing", "from": sender, "name": name})


def refreshed(expires: float, ref: str | None = None) -> bytes:
    line: dict[str, Any] = {"type": "refreshed", "exp": int(expires) if expires != float("inf") else None}
    if ref is not None:
        line["id"] = ref
    return encode(line)


def presence(
    online: int, users: int | None = None, joined: list[dict[str, str]] | None = None, left: list[str] | None = None,
) -> bytes:
    """The room's counts; with who came and went since the last one (SPEC §18), unless the
    room is above the members limit."""
    if users is None:
        return b'{"type":"presence","online":%d}' % online
    if joined is None or left is None:
        return b'{"type":"presence","online":%d,"users":%d}' % (online, users)
    return encode({"type": "presence", "online": online, "users": users, "joined": joined, "left": left})


def welcome(
    room: str, epoch: str, seq: int, online: int, maxMessageSize: int, recovered: bool | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """@param extra: keys after the others (SPEC §18: C{users}, and C{read} where known)."""
    line: dict[str, Any] = {"type": "welcome", "room": room, "epoch": epoch, "seq": seq, "online": online,
                            "maxMessageSize": maxMessageSize}
    if recovered is not None:
        line["recovered"] = recovered
    if extra:
        line.update(extra)
    return encode(line)


# -- people (SPEC §18) ----------------------------------------------------------------------


def members(people: list[dict[str, str]] | None, users: int) -> bytes:
    """A member list; without one (C{people} None) the room is above the members limit."""
    if people is None:
        return b'{"type":"members","users":%d}' % users
    return encode({"type": "members", "members": people, "users": users})


def read(epoch: str, seq: int) -> bytes:
    return encode({"type": "read", "epoch": epoch, "seq": seq})


def delete(epoch: str, seq: int) -> bytes:
    return encode({"type": "delete", "epoch": epoch, "seq": seq})
