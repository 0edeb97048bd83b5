"""Real sockets: the chat, the HTTP contract and the bad inputs, over 127.0.0.1 port 0."""

from __future__ import annotations

import html
import json
import socket
from pathlib import Path
from typing import Any, AsyncIterator, Generator

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.protocol import Protocol
from twisted.internet.tcp import Connection
from twisted.web.client import Agent, HTTPConnectionPool, PartialDownloadError, readBody
from twisted.web.http_headers import Headers
from twisted.web.server import Site

from bench import frames
from tests.support.live import ChatClient, Server, connect, within
from txchat import wire
from txchat.metrics import MetricsPage
from txchat.rooms import Room


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[Server]:
    s = await Server(sendQueue=16, rateLimit=0).start()
    yield s
    await s.stop()


@pytest_twisted.async_yield_fixture
async def pool() -> AsyncIterator[HTTPConnectionPool]:
    """Keeps HTTP connections so the test can wait for them to close."""
    p = HTTPConnectionPool(reactor, persistent=True)
    yield p
    await p.closeCachedConnections()


def lobby(server: Server) -> Room:
    room = server.hub.room("lobby")
    assert room is not None
    return room


@inlineCallbacks
def request(server: Server, method: bytes, path: bytes, headers: dict[bytes, bytes] | None = None,
            pool: HTTPConnectionPool | None = None) -> Generator[Deferred[Any], Any, tuple[Any, bytes]]:
    agent = Agent(reactor, pool=pool)
    response = yield within(
        agent.request(method, server.url.encode() + path, Headers({k: [v] for k, v in (headers or {}).items()}))
    )
    try:
        body = yield readBody(response)
    except PartialDownloadError as e:  # Autobahn's refusals end with the connection
        body = e.response
    return response, body


@pytest_twisted.ensureDeferred
async def test_two_clients_chat(server: Server) -> None:
    a = await connect(server)
    b = await connect(server, origin=server.url)
    a.say("hello from a")
    assert await b.receive(1) == ["hello from a"]
    assert await a.receive(1) == ["hello from a"]
    assert all(p._socketSend is not None for p in lobby(server).plainMembers)  # plain TCP: straight to the socket
    b.say("  and\nback  ")
    assert await a.receive(1) == ["and back"]
    assert await b.receive(1) == ["and back"]
    await a.close()
    await b.close()


@pytest_twisted.ensureDeferred
async def test_burst_arrives_complete_and_in_the_same_order_everywhere(server: Server) -> None:
    clients = [await connect(server) for _ in range(5)]
    sent = []
    for i in range(300):
        sender = clients[i % 3]
        sent.append(f"{i} from {i % 3}")
        sender.say(sent[-1])
    got = [await c.receive(300) for c in clients]
    assert all(g == got[0] for g in got)
    for k in range(3):  # each sender's own messages keep their order
        assert [m for m in got[0] if m.endswith(f"from {k}")] == [m for m in sent if m.endswith(f"from {k}")]
    assert sorted(got[0]) == sorted(sent)
    assert sum(c.frames for c in clients) < 5 * 300  # coalesced
    for c in clients:
        await c.close()


BAD_MESSAGES = {
    "oversized": ((b"x" * 513, False), 1009),
    "invalid UTF-8": ((b"\xc3\x28 broken", False), 1007),
    "binary": ((b"\x00\x01", True), 1003),
}


@pytest.mark.parametrize("message, code", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
@pytest_twisted.ensureDeferred
async def test_bad_message_closes_its_sender_and_the_others_go_on(server: Server, message: tuple[bytes, bool],
                                                                  code: int) -> None:
    a, b = await connect(server), await connect(server)
    a.sendMessage(*message)
    closedWith, _ = await within(a.closed)
    assert closedWith == code
    b.say("still chatting")
    assert await b.receive(1) == ["still chatting"]
    await b.close()


@pytest_twisted.ensureDeferred
async def test_cross_origin_handshake_is_refused_with_403(server: Server) -> None:
    with pytest.raises(ConnectionError, match="403"):
        await connect(server, origin="http://evil.example")
    response, _ = await request(
        server, b"GET", b"/ws",
        {b"Upgrade": b"websocket", b"Connection": b"Upgrade", b"Sec-WebSocket-Version": b"13",
         b"Sec-WebSocket-Key": b"dGhlIHNhbXBsZSBub25jZQ==", b"Origin": b"http://evil.example"},
    )
    assert response.code == 403
    assert len(server.hub) == 0


@pytest_twisted.ensureDeferred
async def test_a_null_origin_is_refused_with_403_and_the_chat_goes_on(server: Server) -> None:
    a, b = await connect(server), await connect(server)
    with pytest.raises(ConnectionError, match="403"):
        await connect(server, origin="null")
    response, _ = await request(
        server, b"GET", b"/ws",
        {b"Upgrade": b"websocket", b"Connection": b"Upgrade", b"Sec-WebSocket-Version": b"13",
         b"Sec-WebSocket-Key": b"dGhlIHNhbXBsZSBub25jZQ==", b"Origin": b"null"},
    )
    assert (response.code, response.phrase) == (403, b"origin not allowed")
    assert len(server.hub) == 2
    a.say("still chatting")
    assert await b.receive(1) == ["still chatting"]
    await a.close()
    await b.close()


@pytest_twisted.ensureDeferred
async def test_allowed_origin_may_connect() -> None:
    s = await Server(allowedOrigins=("http://friend.example",)).start()
    try:
        a = await connect(s, origin="http://friend.example")
        await a.close()
    finally:
        await s.stop()


@pytest_twisted.ensureDeferred
async def test_http_contract(server: Server, pool: HTTPConnectionPool) -> None:
    response, body = await request(server, b"GET", b"/", pool=pool)
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [b"text/html; charset=utf-8"]
    assert b"<title>Chat</title>" in body
    response, body = await request(server, b"HEAD", b"/", pool=pool)
    assert response.code == 200 and body == b""
    for method in (b"POST", b"PUT", b"DELETE"):
        response, _ = await request(server, method, b"/", pool=pool)
        assert response.code == 405
        assert response.headers.getRawHeaders(b"allow") == [b"GET, HEAD"]
    response, _ = await request(server, b"GET", b"/ws", pool=pool)
    assert response.code == 426
    response, _ = await request(server, b"POST", b"/ws", pool=pool)
    assert response.code == 405 and response.headers.getRawHeaders(b"allow") == [b"GET"]
    response, body = await request(server, b"GET", b"/healthz", pool=pool)
    assert response.code == 200 and body == b"ok\n"
    response, body = await request(server, b"GET", b"/room/general", pool=pool)
    assert response.code == 200 and b"<title>Chat</title>" in body
    response, _ = await request(server, b"POST", b"/room/general", pool=pool)
    assert response.code == 405
    response, _ = await request(server, b"GET", b"/ws/general", pool=pool)
    assert response.code == 426  # a room's socket, without an upgrade
    for path in (b"/nope", b"/home.html", b"/ws/a/b", b"/ws/bad%20name", b"/ws/" + b"r" * 65, b"/room/",
                 b"/room/a/b", b"/room/" + b"r" * 65, b"/room/caf%C3%A9", b"/static/x.js"):
        response, _ = await request(server, b"GET", path, pool=pool)
        assert response.code == 404, path


@pytest_twisted.ensureDeferred
async def test_a_bad_room_gets_the_chat_s_own_404_page_with_the_rule_and_the_chat_goes_on(
        server: Server, pool: HTTPConnectionPool) -> None:
    a, b = await connect(server, path="/ws/garden"), await connect(server, path="/ws/garden")
    for path in (b"/room/..", b"/room/.", b"/room/...", b"/room/", b"/room", b"/room/a/b", b"/room/two%20words"):
        response, body = await request(server, b"GET", path, pool=pool)
        assert response.code == 404, path
        assert response.headers.getRawHeaders(b"content-type") == [b"text/html; charset=utf-8"]
        page = body.decode("utf-8")
        assert "No such room" in page and html.escape(wire.ROOM_RULE) in page, page
        assert "No Such Resource" not in page and "<style>" in page and "var(--bg)" in page
    response, body = await request(server, b"GET", b"/room/%3Cb%3E..", pool=pool)
    assert response.code == 404 and b"<b>" not in body and b"&lt;b&gt;" in body
    with pytest.raises(ConnectionError, match="404"):
        await connect(server, path="/ws/..")
    response, _ = await request(server, b"GET", b"/room/a..b", pool=pool)
    assert response.code == 200
    a.say("still chatting")
    assert await b.receive(1) == ["still chatting"]
    await a.close()
    await b.close()


class NeverReads(Protocol):
    """Opens the WebSocket, then stops reading, as a stuck browser tab would."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.upgraded: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert isinstance(self.transport, Connection)
        self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.transport.write(frames.handshake(host=f"127.0.0.1:{self.port}"))

    def dataReceived(self, data: bytes) -> None:
        if not self.upgraded.called:
            assert isinstance(self.transport, Connection)
            self.transport.pauseProducing()
            self.upgraded.callback(data.split(b" ")[1])


@pytest_twisted.ensureDeferred
async def test_client_that_never_reads_is_dropped_and_others_receive_everything(server: Server) -> None:
    stuck = NeverReads(server.number)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.number), stuck)
    assert await within(stuck.upgraded) == b"101"
    a, b = await connect(server), await connect(server)
    assert len(server.hub) == 3
    sent = []
    for burst in range(100):
        batch = [f"{burst}:{i}:" + "z" * 480 for i in range(100)]
        for message in batch:
            a.say(message)
        sent += batch
        assert await b.receive(len(batch)) == batch
        if len(server.hub) == 2:
            break
    assert len(server.hub) == 2, "the stuck client was never dropped"
    assert await a.receive(len(sent)) == sent
    # What the hub holds for anyone is bounded by --send-queue.
    assert all(lobby(server).plainMembers.backlog(p) <= 16 for p in lobby(server).plainMembers)
    assert isinstance(stuck.transport, Connection)
    stuck.transport.abortConnection()
    await a.close()
    await b.close()


@pytest_twisted.ensureDeferred
async def test_prompt_readers_are_never_dropped_however_bursty_the_sender() -> None:
    s = await Server(sendQueue=256, rateLimit=0).start()
    try:
        readers = [await connect(s) for _ in range(5)]
        sender = readers[0]
        sent = [f"{i:05d} " + "b" * 200 for i in range(3000)]
        # Hundreds of messages in each single write: the server reads them in big gulps.
        for start in range(0, len(sent), 1000):
            sender.transport.write(b"".join(frames.text(m) for m in sent[start:start + 1000]))
        for reader in readers:
            assert await reader.receive(len(sent)) == sent
        assert len(s.hub) == 5
        for reader in readers:
            await reader.close()
    finally:
        await s.stop()


@pytest_twisted.ensureDeferred
async def test_metrics_endpoint_serves_prometheus_text(server: Server, pool: HTTPConnectionPool) -> None:
    metricsPort = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Site(MetricsPage(server.hub.metrics.registry))
    )
    try:
        a = await connect(server)
        a.say("counted")
        await a.receive(1)
        response = await within(Agent(reactor, pool=pool).request(
            b"GET", b"http://127.0.0.1:%d/metrics" % metricsPort.getHost().port))
        body = (await readBody(response)).decode()
        assert response.code == 200
        assert response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
        assert "txchat_messages_in_total 1.0" in body
        assert "txchat_connections_open 1.0" in body
        await a.close()
    finally:
        await metricsPort.stopListening()


@pytest_twisted.ensureDeferred
async def test_chat_over_a_unix_socket(tmp_path: Path) -> None:
    from autobahn.twisted.websocket import WebSocketClientFactory
    from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint

    s = Server()
    path = str(tmp_path / "txchat.sock")
    s.port = await UNIXServerEndpoint(reactor, path).listen(s.site)
    try:
        clients = []
        for _ in range(2):
            factory = WebSocketClientFactory("ws://localhost/ws")
            factory.protocol = ChatClient
            client = await UNIXClientEndpoint(reactor, path).connect(factory)
            assert isinstance(client, ChatClient)
            await within(client.opened)
            clients.append(client)
        clients[0].say("over unix")
        assert await clients[1].receive(1) == ["over unix"]
        assert all(p._socketSend is not None for p in lobby(s).plainMembers)  # straight to the socket here too
        for client in clients:
            await client.close()
    finally:
        await s.stop()


@pytest_twisted.ensureDeferred
async def test_chat_over_tls_without_polling_the_protocol(tmp_path: Path) -> None:
    from autobahn.twisted.websocket import WebSocketClientFactory
    from twisted.internet.endpoints import SSL4ServerEndpoint, wrapClientTLS
    from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
    from twisted.internet.task import Cooperator

    from tests.support.certs import makeCertificate

    keyPath, certPath = makeCertificate(tmp_path)
    serverCertificate = PrivateCertificate.loadPEM(keyPath.read_text() + certPath.read_text())
    s = Server()
    s.port = await SSL4ServerEndpoint(reactor, 0, serverCertificate.options(), interface="127.0.0.1").listen(s.site)
    try:
        trust = optionsForClientTLS("127.0.0.1", trustRoot=Certificate.loadPEM(certPath.read_bytes()))
        clients = []
        for _ in range(2):
            factory = WebSocketClientFactory(f"wss://127.0.0.1:{s.number}/ws")
            factory.protocol = ChatClient
            client = await wrapClientTLS(trust, TCP4ClientEndpoint(reactor, "127.0.0.1", s.number)).connect(factory)
            assert isinstance(client, ChatClient)
            await within(client.opened)
            clients.append(client)
        clients[0].say("over TLS")
        assert await clients[1].receive(1) == ["over TLS"]
        assert await clients[0].receive(1) == ["over TLS"]
        # Through TLS the protocol is a push producer: nothing polls it while all is quiet
        # (a pull producer would be driven by a cooperator without end).
        assert all(p._socketSend is None for p in lobby(s).plainMembers)
        assert not [c for c in reactor.getDelayedCalls() if isinstance(getattr(getattr(c, "func", None), "__self__", None), Cooperator)]
        for client in clients:
            await client.close()
    finally:
        await s.stop()


@pytest_twisted.ensureDeferred
async def test_v1_rooms_history_and_recovery_over_real_sockets() -> None:
    s = await Server(history=10).start()
    try:
        plain = await connect(s, path="/ws/general")
        first = await connect(s, path="/ws/general?name=Ada", protocols=["txchat.v1"])
        assert first.websocket_protocol_in_use == "txchat.v1"
        welcome = json.loads((await first.receive(1))[0])
        assert welcome["type"] == "welcome" and welcome["room"] == "general" and welcome["online"] == 2
        first.say("from Ada")
        assert await plain.receive(1) == ["from Ada"]
        lines = [json.loads(line) for line in await first.receive(2)]
        message = next(line for line in lines if line["type"] == "message")
        assert (message["seq"], message["name"], message["text"]) == (1, "Ada", "from Ada")
        await first.close()
        for text in ("missed one", "missed two"):
            plain.say(text)
        assert await plain.receive(2) == ["missed one", "missed two"]
        back = await connect(s, path=f"/ws/general?since={welcome['epoch']}:1", protocols=["txchat.v1"])
        lines = [json.loads(line) for line in await back.receive(3)]
        assert lines[0]["recovered"] is True
        assert [(line["seq"], line["text"]) for line in lines[1:]] == [(2, "missed one"), (3, "missed two")]
        elsewhere = await connect(s, path="/ws/other")
        plain.say("only for general")
        assert await back.receive(1) != []
        elsewhere.say("only for other")
        assert await elsewhere.receive(1) == ["only for other"]
        for client in (plain, back, elsewhere):
            await client.close()
    finally:
        await s.stop()


@pytest_twisted.ensureDeferred
async def test_a_v1_sender_s_controls_and_a_name_s_format_characters_go_before_anyone_sees_them(server: Server) -> None:
    plain = await connect(server, path="/ws/tty")
    v1 = await connect(server, path="/ws/tty?name=Admin%E2%80%8B%E2%80%AE", protocols=["txchat.v1"])
    assert json.loads((await v1.receive(1))[0])["type"] == "welcome"
    v1.say("nul\x00 bell\x07 esc\x1b[2J")
    assert await plain.receive(1) == ["nul bell esc[2J"]
    plain.say("seed\x07 as sent\x00")
    assert await plain.receive(1) == ["seed\x07 as sent\x00"]
    messages: list[tuple[str, str]] = []
    while len(messages) < 2:
        line = json.loads((await v1.receive(1))[0])
        if line["type"] == "message":
            messages.append((line["name"], line["text"]))
    assert messages == [("Admin", "nul bell esc[2J"), ("", "seed\x07 as sent\x00")]
    await plain.close()
    await v1.close()
