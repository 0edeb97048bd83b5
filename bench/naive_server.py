"""The baseline: the chat as a first Twisted + Autobahn attempt would write it.

Every message is sent to every client at once, framed per client (or, with --prepared, framed
once with prepareMessage), with no coalescing and no bound on what a client may have queued.

    python -m bench.naive_server --port 8081 [--prepared]
"""

from __future__ import annotations

import argparse

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.python import log


class NaiveProtocol(WebSocketServerProtocol):
    def onOpen(self) -> None:
        self.factory.clients.add(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.clients.discard(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message = payload.replace(b"\n", b" ").strip()
        if message:
            self.factory.broadcast(message)


class NaiveFactory(WebSocketServerFactory):
    protocol = NaiveProtocol

    def __init__(self, prepared: bool) -> None:
        super().__init__()
        self.clients: set[NaiveProtocol] = set()
        self.prepared = prepared

    def broadcast(self, message: bytes) -> None:
        if self.prepared:
            frame = self.prepareMessage(message)
            for client in self.clients:
                client.sendPreparedMessage(frame)
        else:
            for client in self.clients:
                client.sendMessage(message)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--prepared", action="store_true")
    options = parser.parse_args()
    factory = NaiveFactory(options.prepared)
    port = reactor.listenTCP(options.port, factory, backlog=4096, interface="127.0.0.1")
    print(f"naive server listening on {port.getHost().port}", flush=True)  # type: ignore[attr-defined]
    log.msg  # noqa: B018 - keep the import: Twisted logs nothing unless started
    reactor.run()


if __name__ == "__main__":
    main()
