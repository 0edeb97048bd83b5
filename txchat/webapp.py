"""The resources: ``/`` and ``/room/NAME`` serve the page, ``/ws`` and ``/ws/NAME`` upgrade to a
room's chat, ``/healthz`` answers load balancers, ``/api/`` is the server API when it is on,
anything else is 404.

This module knows the hub only as the WebSocket factory that ``/ws`` hands connections to,
and as a callable that says how it is.
"""

from __future__ import annotations

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


class Page(File):
    """The chat page, as a static file (with ETag, Last-Modified and conditional GET)."""

    contentTypes = {".html": "text/html; charset=utf-8"}

    def __init__(self, path: str) -> None:
        super().__init__(path, defaultType="text/html; charset=utf-8")

    def render(self, request: Request) -> Any:
        # twisted.web would answer methods it does not know with 501; the contract is 405.
        if request.method not in (b"GET", b"HEAD"):
            return _refuse(request, 405, b"Method Not Allowed", Allow=b"GET, HEAD")
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


class RoomPages(Resource):
    """``/room/NAME``: the page, in room NAME."""

    def __init__(self, page: Resource) -> None:
        super().__init__()
        self.page = page

    def getChild(self, path: bytes, request: Request) -> IResource:
        if request.postpath or not wire.validRoom(_text(path)):
            return notFound()
        return self.page


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


class Root(Resource):
    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()


def makeRoot(
    factory: Any, page: str | None = None, health: Callable[[], tuple[int, str]] | None = None,
    api: Resource | None = None,
) -> Resource:
    root = Root()
    if api is not None:
        root.putChild(b"api", api)
    thePage = Page(page or pagePath())
    root.putChild(b"", thePage)
    root.putChild(b"room", RoomPages(thePage))
    root.putChild(b"ws", ChatSocket(factory))
    if health is not None:
        root.putChild(b"healthz", Health(health))
    return root
