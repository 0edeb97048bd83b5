"""Which browser origins may open the chat's WebSocket.

The gorilla chat's rule: a handshake with no Origin header is allowed (it is not a browser), and one
with an Origin is allowed when the Origin's host[:port] equals the request's Host header,
compared case-insensitively; the scheme is not compared. ``--allowed-origin`` adds more.
"""

from __future__ import annotations

from typing import Iterable


def _hostPort(origin: str) -> tuple[str, str]:
    """Split an origin into (scheme, host[:port]), both lower-cased; scheme may be ''.

    Anything after host[:port] is kept on the host part, so that it matches nothing."""
    origin = origin.strip().lower()
    if "://" not in origin:
        return "", origin
    scheme, _, rest = origin.partition("://")
    return scheme, rest.rstrip("/") if rest.count("/") == 1 and rest.endswith("/") else rest


class OriginPolicy:
    """Decides a handshake's Origin against its Host header and the operator's extra origins."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowAll = False
        self._origins: set[tuple[str, str]] = set()
        self._hosts: set[str] = set()
        for entry in allowed:
            if entry.strip() == "*":
                self.allowAll = True
                continue
            scheme, host = _hostPort(entry)
            if not host or "/" in host or any(c.isspace() for c in host):
                raise ValueError(f"not an origin: {entry!r} (try https://chat.example.com)")
            if scheme:
                self._origins.add((scheme, host))
            else:
                self._hosts.add(host)

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None or self.allowAll:
            return True
        scheme, originHost = _hostPort(origin)
        if host is not None and originHost == host.strip().lower():
            return True
        return (scheme, originHost) in self._origins or originHost in self._hosts
