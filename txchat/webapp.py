"""The resources: ``/`` and ``/room/NAME`` serve the page, ``/ws`` and ``/ws/NAME`` upgrade to a
room's chat, ``/healthz`` answers load balancers, ``/api/`` is the server API when it is on,
anything else is 404.

This module knows the hub only as the WebSocket factory that ``/ws`` hands connections to,
and as a callable that says how it is.
"""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

from autobahn.twisted.resource import WebSocketResource
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request
from twisted.web.static import File

from txchat import wire


def pagePath() -> str:
    """home.html as installed with the package, so any working directory will do."""
    try:
        return str(files("txchat.web").joinpath("home.html"))
    except ModuleNotFoundError:
        # A source checkout (tests run from one): web/ stands beside txchat/.
        return str(Path(__file__).resolve().parent.parent / "web" / "home.html")


def asksForWebSocket(upgrade: bytes | None) -> bool:
    """Whether an C{Upgrade} header's value names the WebSocket protocol."""
    return b"websocket" in [token.strip().lower() for token in (upgrade or b"").split(b",")]


def _refuse(request: Request, code: int, message: bytes, **headers: bytes) -> bytes:
    request.setResponseCode(code, message.split(b":")[0])
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    for name, value in headers.items():
        request.setHeader(name.encode("ascii"), value)
    return message + b"\n"


# Said on the page's answer when every WebSocket needs a token: a browser cannot see why a
# handshake failed (401), so the page asks with a HEAD of itself before it tries.
SIGN_IN_HEADER = b"Txchat-Sign-In"


class Page(File):
    """The chat page, as a static file (with ETag, Last-Modified and conditional GET)."""

    contentTypes = {".html": "text/html; charset=utf-8"}

    def __init__(self, path: str, signIn: bool = False) -> None:
        super().__init__(path, defaultType="text/html; charset=utf-8")
        self.signIn = signIn

    def render(self, request: Request) -> Any:
        # twisted.web would answer methods it does not know with 501; the contract is 405.
        if request.method not in (b"GET", b"HEAD"):
            return _refuse(request, 405, b"Method Not Allowed", Allow=b"GET, HEAD")
        if self.signIn:
            request.setHeader(SIGN_IN_HEADER, b"required")
        return super().render(request)


class ChatSocket(WebSocketResource):
    """``/ws``: refuse what is not a WebSocket handshake before Autobahn takes the connection."""

    def render(self, request: Request) -> Any:
        # WebSocketResource is a leaf: /ws/anything lands here too, and the hub answers 404
        # for what is not a room's name.
        rest = request.postpath or []
        if len(rest) > 1 or (rest and not wire.validRoom(_text(rest[0]))):
            return _refuse(request, 404, b"Not Found")
        if request.method != b"GET":
            return _refuse(request, 405, b"Method Not Allowed", Allow=b"GET")
        if not asksForWebSocket(request.getHeader(b"upgrade")):
            return _refuse(
                request, 426, b"Upgrade Required: this is the chat's WebSocket endpoint", Upgrade=b"websocket"
            )
        return super().render(request)


def _text(segment: bytes) -> str:
    return segment.decode("ascii", "replace")


# A room page's 404 in the page's own look (its colours, light and dark, and its font), with
# the rule a reader needs to fix the address; self-contained, as the page is.
_NO_SUCH_ROOM = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>No such room · Chat</title>
<style>
:root {{ --bg: #f4f5f7; --panel: #fff; --text: #1d2330; --muted: #5b6475; --line: #e3e6eb; --accent: #2159c4; }}
@media (prefers-color-scheme: dark) {{
  :root {{ --bg: #14171c; --panel: #1c2028; --text: #e6e8ec; --muted: #a3acbb; --line: #2b313c; --accent: #8fb1f5; }}
}}
body {{
  margin: 0; min-height: 100vh; display: grid; place-items: center; background: var(--bg); color: var(--text);
  font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}}
main {{
  max-width: 28em; margin: 1em; padding: 1.25em 1.5em; background: var(--panel);
  border: 1px solid var(--line); border-radius: .75em;
}}
h1 {{ font-size: 1.1em; margin: 0 0 .4em; font-weight: 600; }}
p {{ margin: 0 0 .8em; color: var(--muted); overflow-wrap: anywhere; }}
a {{ color: var(--accent); font-weight: 600; }}
</style>
</head>
<body>
<main>
<h1>No such room</h1>
<p>{what}</p>
<p>{rule}.</p>
<p><a href="/">Go to the lobby</a></p>
</main>
</body>
</html>
"""


class NoSuchRoom(Resource):
    """404 for a ``/room/`` address that names no room."""

    isLeaf = True

    def __init__(self, asked: bytes | None) -> None:
        super().__init__()
        self.asked = asked

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        if self.asked:
            name = self.asked.decode("utf-8", "replace")
            shown = name if len(name) <= 80 else name[:80] + "…"
            what = f"“<bdi>{html.escape(shown)}</bdi>” is not a room name."
        else:
            what = "This address names no room."
        return _NO_SUCH_ROOM.format(what=what, rule=html.escape(wire.ROOM_RULE)).encode("utf-8")


class RoomPages(Resource):
    """``/room/NAME``: the page, in room NAME."""

    def __init__(self, page: Resource) -> None:
        super().__init__()
        self.page = page

    def getChild(self, path: bytes, request: Request) -> IResource:
        if request.postpath or not wire.validRoom(_text(path)):
            return NoSuchRoom(b"/".join([path, *(request.postpath or [])]))
        return self.page

    def render(self, request: Request) -> bytes:
        # /room itself
        return NoSuchRoom(None).render(request)


class Health(Resource):
    """``/healthz`` for load balancers: the status and a line or two of text."""

    isLeaf = True

    def __init__(self, status: Callable[[], tuple[int, str]]) -> None:
        super().__init__()
        self.status = status

    def render_GET(self, request: Request) -> bytes:
        code, text = self.status()
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return text.encode("utf-8") + b"\n"


class ApiOff(Resource):
    """``/api/`` while the server API is off: 404, in JSON as every answer of the API is."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return b'{"error":"the server API is off (txchat was started without --api-key)"}\n'


class Root(Resource):
    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()


def makeRoot(
    factory: Any, page: str | None = None, health: Callable[[], tuple[int, str]] | None = None,
    api: Resource | None = None, signIn: bool = False,
) -> Resource:
    """C{signIn}: every WebSocket needs a token (the page says so instead of asking a name)."""
    root = Root()
    root.putChild(b"api", api if api is not None else ApiOff())
    thePage = Page(page or pagePath(), signIn)
    root.putChild(b"", thePage)
    root.putChild(b"room", RoomPages(thePage))
    root.putChild(b"ws", ChatSocket(factory))
    if health is not None:
        root.putChild(b"healthz", Health(health))
    return root
