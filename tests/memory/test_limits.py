"""Connection limits, trusted proxies, rate limiting, handshake deadlines, health."""

from __future__ import annotations

import time
from typing import Any, cast

import jwt
import pytest
from prometheus_client import generate_latest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from bench import frames
from tests.support.memory import MemoryHub, Peer, Transport, makeHub
from txchat.config import Config
from txchat.limits import MAX_FRAGMENTS
from txchat.protocol import ChatProtocol
from txchat.site import ChatSite
from txchat.webapp import makeRoot


def test_max_connections_answers_503_and_leaves_the_others_alone() -> None:
    hub, clock = makeHub(maxConnections=2)
    a, b = Peer(hub), Peer(hub)
    refused = Peer(hub)
    assert refused.status == 503 and not refused.open
    a.say("still here")
    clock.advance(0)
    assert b.messages() == ["still here"]
    a.send(frames.clientFrame(frames.CLOSE, b"\x03\xe8"))
    assert Peer(hub).status == 101  # a place came free


def test_max_connections_per_ip() -> None:
    hub, clock = makeHub(maxConnectionsPerIp=2)
    first = [Peer(hub, address="192.0.2.1") for _ in range(2)]
    assert [p.status for p in first] == [101, 101]
    assert Peer(hub, address="192.0.2.1").status == 503
    other = Peer(hub, address="192.0.2.2")
    assert other.status == 101
    other.say("others are unaffected")
    clock.advance(0)
    assert all(p.messages() == ["others are unaffected"] for p in first)


def test_per_ip_limit_behind_a_trusted_proxy() -> None:
    hub, clock = makeHub(maxConnectionsPerIp=1, trustedProxies=("127.0.0.1",))
    viaProxy = {"X-Forwarded-For": "203.0.113.5"}
    assert Peer(hub, headers=viaProxy).status == 101
    assert Peer(hub, headers=viaProxy).status == 503
    assert Peer(hub, headers={"X-Forwarded-For": "203.0.113.6"}).status == 101
    # From anyone else, X-Forwarded-For is ignored: the peer itself is counted.
    assert Peer(hub, address="198.51.100.1", headers={"X-Forwarded-For": "203.0.113.77"}).status == 101
    assert Peer(hub, address="198.51.100.1", headers={"X-Forwarded-For": "203.0.113.78"}).status == 503


def test_client_sending_too_fast_is_closed_with_1008_and_its_excess_goes_nowhere() -> None:
    hub, clock = makeHub(rateLimit=5, rateBurst=5)
    flooder, reader = Peer(hub), Peer(hub)
    for i in range(8):
        flooder.say(f"flood {i}")
    clock.advance(0)
    assert reader.messages() == [f"flood {i}" for i in range(5)]
    assert flooder.closeCode() == 1008
    closing = [p for op, p in flooder.received if op == frames.CLOSE]
    assert b"rate limit" in closing[0]
    reader.say("the others chat on")
    clock.advance(0)
    assert reader.messages() == ["the others chat on"]


def test_client_within_the_rate_is_never_closed() -> None:
    hub, clock = makeHub(rateLimit=5, rateBurst=5, pongTimeout=1e9, pingInterval=1e9)
    talker, reader = Peer(hub), Peer(hub)
    sent = []
    for second in range(20):
        for i in range(5):
            sent.append(f"{second}.{i}")
            talker.say(sent[-1])
        clock.advance(1)
    assert reader.messages() == sent
    assert talker.open and talker.closeCode() is None


def test_the_opening_handshakes_deadline_is_the_sites_alone() -> None:
    """The hub is handed complete request heads (by the site's fast lane, or twisted.web's
    WebSocket resource), within the site's deadline (test_slowloris_headers_are_cut_at_the_deadline):
    Autobahn's own opening-handshake timer would be a callLater and a cancel for every connect."""
    hub, clock = makeHub(handshakeTimeout=10)
    address = IPv4Address("TCP", "127.0.0.1", 1)
    protocol = hub.buildProtocol(address)
    assert isinstance(protocol, ChatProtocol)
    transport = Transport(protocol, address)
    protocol.makeConnection(transport)
    assert clock.getDelayedCalls() == []
    transport.abortConnection()


class SiteTransport(StringTransport):
    """A connection whose protocol the site may hand over, as a TCP connection's."""

    protocol: Protocol | None = None

    def send(self, data: bytes) -> int:  # the socket's own send (MemoryProtocol's seam)
        self.io.write(data)
        return len(data)

    def unregisterProducer(self) -> None:
        self.producer = None


class SiteClient:
    """One HTTP connection to a ChatSite on a Clock, with the WebSocket fast lane (as twistd
    runs it) or without it."""

    def __init__(self, fastLane: bool = True, **config: Any) -> None:
        self.hub, self.clock = makeHub()
        site = ChatSite(
            makeRoot(self.hub, health=self.hub.health), self.clock, Config(**config),
            webSockets=(b"/ws", self.hub) if fastLane else None,
        )
        site.doStart()  # opens the access log
        self.transport = SiteTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 2))
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2))
        assert protocol is not None
        self.transport.protocol = protocol
        protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        assert self.transport.protocol is not None
        self.transport.protocol.dataReceived(data)

    @property
    def aborted(self) -> bool:
        return self.transport.disconnecting


@pytest.mark.parametrize("path", [b"/", b"/ws"])
@pytest.mark.parametrize("fastLane", [True, False])
def test_slowloris_headers_are_cut_at_the_deadline(path: bytes, fastLane: bool) -> None:
    client = SiteClient(fastLane, handshakeTimeout=10)
    request = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow: " + b"a" * 40
    for i in range(0, len(request), 5):  # a few bytes every second: each resets an idle timer
        client.send(request[i : i + 5])
        client.clock.advance(1)
        if client.aborted:
            break
    assert client.aborted
    assert client.clock.seconds() <= 10


def test_a_complete_request_in_time_is_served_and_the_deadline_restarts() -> None:
    client = SiteClient(handshakeTimeout=7)  # not the default: the site gives each channel its own
    client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.transport.value().startswith(b"HTTP/1.1 200")
    assert client.transport.value().endswith(b"ok\n")
    client.clock.advance(6.9)
    assert not client.aborted
    client.clock.advance(0.1)  # an idle keep-alive connection gets the same deadline
    assert client.aborted


class LogLines:
    """The text of every log event while it is open."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __enter__(self) -> list[LogEvent]:
        globalLogPublisher.addObserver(cast(ILogObserver, self.events.append))
        return self.events

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(cast(ILogObserver, self.events.append))


BODY_STARTS = [
    b"POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
    b"POST /ws HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n",
    b"PUT /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcd",
]


@pytest.mark.parametrize("start", BODY_STARTS)
@pytest.mark.parametrize("fastLane", [True, False])
def test_a_body_that_never_comes_is_cut_at_the_deadline_and_the_chat_goes_on(start: bytes, fastLane: bool) -> None:
    client = SiteClient(fastLane, handshakeTimeout=10)
    a, b = Peer(client.hub), Peer(client.hub)
    with LogLines() as events:
        client.send(start)
        for _ in range(20):  # a byte of body now and then: each resets an idle timer
            client.clock.advance(0.5)
            if client.transport.disconnected:
                break
            client.send(b"1\r\nb\r\n" if b"chunked" in start else b"b" if b"100" in start else b"")
    assert client.transport.disconnected, "the request's body held its connection past the deadline"
    assert client.clock.seconds() == 10
    assert client.transport.value() == b"", "nothing was answered: the request never came in whole"
    lines = [formatEvent(e) for e in events]
    assert lines == ["cut 127.0.0.1:2: no complete request within 10s"]
    a.say("the chat goes on")
    client.clock.advance(0)
    assert b.messages() == ["the chat goes on"]


def test_the_whole_request_counts_from_its_start_not_from_its_headers() -> None:
    client = SiteClient(handshakeTimeout=10)
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n")
    client.clock.advance(6)
    client.send(b"\r\nab")  # the headers are in at 6 s; the body has until 10 s, not 16 s
    client.clock.advance(3.9)
    assert not client.transport.disconnected
    client.clock.advance(0.1)
    assert client.transport.disconnected


def test_a_request_whose_body_is_in_before_the_deadline_is_answered_and_the_next_gets_its_own() -> None:
    client = SiteClient(handshakeTimeout=10)
    client.send(b"POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{\"text\":\"hi\"")
    client.clock.advance(9.9)
    assert client.transport.value() == b""
    client.send(b"}")
    assert client.transport.value().startswith(b"HTTP/1.1 404")  # the API is off: its JSON 404
    client.transport.clear()
    client.clock.advance(9.9)  # idle keep-alive: the next request's deadline started at the answer
    assert not client.transport.disconnected
    client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.transport.value().startswith(b"HTTP/1.1 200")
    client.clock.advance(9.9)
    assert not client.transport.disconnected
    client.clock.advance(0.1)
    assert client.transport.disconnected


class Held(Resource):
    """Answers each request when the test says so."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Request] = []

    def render_GET(self, request: Request) -> int:
        self.waiting.append(request)
        return NOT_DONE_YET


def test_requests_pipelined_behind_a_slow_one_leave_one_deadline() -> None:
    clock, held = Clock(), Held()
    site = ChatSite(held, clock, Config(handshakeTimeout=10))
    transport = SiteTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 2))
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2))
    assert channel is not None
    channel.makeConnection(transport)
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    channel.dataReceived(get + get)  # the second waits until the first is answered
    clock.advance(1)
    held.waiting.pop().finish()  # the first; the second runs at once and waits in turn
    held.waiting.pop().finish()  # the connection is idle from here: its deadline is at 11 s
    clock.advance(5)
    channel.dataReceived(get)  # at 6 s, a third request, answered at once
    held.waiting.pop().finish()
    clock.advance(9.9)
    assert not transport.disconnected, "cut by a deadline of an earlier request"
    clock.advance(0.1)
    assert transport.disconnected
    channel.connectionLost(Failure(ConnectionDone()))  # as TCP tells it after the abort
    assert clock.getDelayedCalls() == []


def test_health_probes_stay_out_of_the_access_log() -> None:
    client = SiteClient()
    events: list[LogEvent] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        globalLogPublisher.removeObserver(observer)
    lines = [formatEvent(e) for e in events]
    assert any('"GET /nope HTTP/1.1" 404' in line for line in lines)
    assert not any("healthz" in line for line in lines)


@pytest.mark.parametrize("header", [b"X-Big: " + b"b" * 2000, b"X-Huge: " + b"h" * 40000,
                                    b"\r\n".join(b"X-%d: %s" % (i, b"m" * 50) for i in range(30))])
@pytest.mark.parametrize("path", [b"/", b"/ws"])
def test_oversized_headers_get_400(header: bytes, path: bytes) -> None:
    client = SiteClient(maxHeaderSize=1024)
    client.send(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" + header + b"\r\n\r\n")
    assert client.transport.value().startswith(b"HTTP/1.1 400")
    assert client.aborted


def test_health_and_metrics_count_what_happens() -> None:
    hub, clock = makeHub(rateLimit=1, rateBurst=2, sendQueue=1)
    assert hub.health() == (200, "ok")
    a, b, slow = Peer(hub), Peer(hub), Peer(hub)
    slow.stopReading()
    a.say("one")
    clock.advance(0)
    b.say("two")
    clock.advance(0)
    b.say("three")
    b.say("three again")  # b is over its rate
    clock.advance(0)  # slow has "one" in its transport and "two" queued: "three" overflows
    text = generate_latest(hub.metrics.registry).decode()

    def value(name: str) -> float:
        (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
        return float(line.split()[-1])

    assert value("txchat_messages_in_total") == 3
    assert value('txchat_handshakes_total{outcome="accepted"}') == 3
    assert value("txchat_rate_limited_clients_total") == 1
    assert value("txchat_slow_clients_dropped_total") == 1
    assert value("txchat_connections_open") == 3  # b and slow are closing, not yet gone
    assert value("txchat_deliveries_total") == 3 + 2 + 1  # one: all three; two: a, b; three: a
    assert value("txchat_frames_out_total") == 3 + 2 + 1
    assert value("txchat_flush_seconds_count") == 3
    assert value("txchat_broker_up") == 1


def test_a_websocket_handshake_takes_the_fast_lane_even_in_pieces() -> None:
    client = SiteClient()
    request = frames.handshake()
    for i in range(0, len(request), 7):
        client.send(request[i : i + 7])
    assert client.transport.value().startswith(b"HTTP/1.1 101")
    assert isinstance(client.transport.protocol, ChatProtocol), "the WebSocket protocol took the connection"
    assert len(client.hub) == 1
    assert client.transport.producer is not None
    client.transport.producer.resumeProducing()  # as TCP does once the 101 has gone out
    client.send(frames.text("hi"))
    client.clock.advance(0)
    assert frames.parseFrames(client.transport.value().partition(b"\r\n\r\n")[2])[0] == [(frames.TEXT, b"hi")]
    client.transport.protocol.connectionLost(Failure(ConnectionDone()))


@pytest.mark.parametrize("request_, status", [
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),
    (b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
    (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),
    (b"POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n", b"405"),
    (b"GET /wsx HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", b"404"),
    (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n", b"426"),
])
def test_everything_else_goes_through_twisted_web(request_: bytes, status: bytes) -> None:
    client = SiteClient()
    client.send(request_)
    assert client.transport.value().split(b" ")[1] == status


def test_a_handshake_later_on_a_kept_alive_connection_still_works() -> None:
    client = SiteClient()
    client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.transport.value().startswith(b"HTTP/1.1 200")
    client.transport.clear()
    client.send(frames.handshake())
    assert client.transport.value().startswith(b"HTTP/1.1 101")
    assert len(client.hub) == 1


def test_every_handshake_is_counted_once_by_its_outcome() -> None:
    hub, clock = makeHub(maxConnectionsPerIp=1, maxRooms=1)
    kept = Peer(hub, path="/ws/a")
    outcomes = [
        Peer(hub, path="/nope"),  # not-found
        Peer(hub, origin="http://elsewhere.example"),  # origin
        Peer(hub, path="/ws/a"),  # max-connections-per-ip
        Peer(hub, path="/ws/b", address="127.0.0.2"),  # max-rooms
    ]
    assert [kept.status] + [p.status for p in outcomes] == [101, 404, 403, 503, 503]
    text = generate_latest(hub.metrics.registry).decode()
    counted = {line.split('"')[1]: float(line.split()[-1])
               for line in text.splitlines() if line.startswith("txchat_handshakes_total{")}
    assert counted == {"accepted": 1, "refused-not-found": 1, "refused-origin": 1,
                       "refused-max-connections-per-ip": 1, "refused-max-rooms": 1}
    hub.closeAll()


def _fragmented(parts: list[bytes], fin: bool = True) -> bytes:
    """One text message in len(parts) frames: a text frame, then continuations."""
    return b"".join(
        frames.clientFrame(frames.CONTINUATION if i else frames.TEXT, part, fin=fin and i == len(parts) - 1)
        for i, part in enumerate(parts)
    )


def test_a_message_in_64_frames_is_delivered_and_the_count_starts_again_with_the_next() -> None:
    hub, clock = makeHub()
    sender, reader = Peer(hub), Peer(hub)
    sender.send(_fragmented([b"%d," % i for i in range(MAX_FRAGMENTS)]))
    sender.send(_fragmented([b""] * (MAX_FRAGMENTS - 1) + [b"again"]))
    clock.advance(0)
    assert reader.messages() == ["".join(f"{i}," for i in range(MAX_FRAGMENTS)), "again"]
    assert sender.open and sender.closeCode() is None


@pytest.mark.parametrize("fin", [True, False])
def test_a_message_in_65_frames_closes_its_sender_with_1009_and_nothing_of_it_is_delivered(fin: bool) -> None:
    assert MAX_FRAGMENTS == 64
    hub, clock = makeHub()
    sender, reader = Peer(hub), Peer(hub)
    sender.send(_fragmented([b"x"] + [b""] * MAX_FRAGMENTS, fin))  # 65 frames, all but one empty
    clock.advance(0)
    assert sender.closeCode() == 1009
    assert reader.messages() == []
    reader.say("the others chat on")
    clock.advance(0)
    assert reader.messages() == ["the others chat on"]
    assert reader.open and reader.closeCode() is None


def test_endless_empty_continuations_are_cut_at_the_65th_frame() -> None:
    hub, clock = makeHub(rateLimit=1, rateBurst=1)  # a message never ends: the rate never sees one
    sender, reader = Peer(hub), Peer(hub)
    sender.send(frames.clientFrame(frames.TEXT, b"", fin=False))
    for i in range(1, 601):
        sender.send(frames.clientFrame(frames.CONTINUATION, b"", fin=False))
        if i == MAX_FRAGMENTS - 1:
            assert sender.read() == [], "closed before the 65th frame"
    closes = [p for op, p in sender.read() if op == frames.CLOSE]
    assert [frames.closeCode(p) for p in closes] == [1009], "one close frame, however much more comes"
    sender.send(frames.clientFrame(frames.CLOSE, closes[0][:2]))  # the client answers the close
    assert not sender.open
    reader.say("still here")
    clock.advance(0)
    assert reader.messages() == ["still here"]


SECRET = "a secret of thirty-two bytes or more, for HS256"


def signedPeer(hub: MemoryHub, sub: str) -> Peer:
    token = jwt.encode({"sub": sub, "name": sub.title()}, SECRET, algorithm="HS256")
    peer = Peer(hub, path=f"/ws?token={token}")
    assert peer.status == 101
    return peer


def signedHub(**config: Any) -> tuple[MemoryHub, Clock]:
    hub, clock = makeHub(tokenSecret=SECRET, rateLimit=1, rateBurst=3, **config)
    clock.advance(time.time())  # tokens are checked against the clock, which reads the wall clock's time
    return hub, clock


def closeReason(peer: Peer) -> bytes:
    return [p for op, p in peer.received + peer.read() if op == frames.CLOSE][0][2:]


def test_with_tokens_one_user_s_connections_share_one_rate() -> None:
    hub, clock = signedHub()
    tab1, tab2, reader = signedPeer(hub, "u"), signedPeer(hub, "u"), signedPeer(hub, "r")
    tab1.say("one")
    tab2.say("two")
    tab1.say("three")  # the burst of 3, used by the two tabs together
    tab2.say("four")
    clock.advance(0)
    assert reader.messages() == ["one", "two", "three"]
    assert tab2.closeCode() == 1008 and closeReason(tab2) == b"rate limit exceeded"
    assert tab1.open and tab1.closeCode() is None
    clock.advance(1)  # one more message a second, for the user's remaining tab
    tab1.say("five")
    clock.advance(0)
    assert reader.messages() == ["five"]
    assert tab1.closeCode() is None


def test_with_tokens_another_user_has_a_rate_of_their_own() -> None:
    hub, clock = signedHub()
    tab1, tab2, other = signedPeer(hub, "u"), signedPeer(hub, "u"), signedPeer(hub, "v")
    for text in ("a", "b", "c"):
        tab1.say(text)
    for text in ("x", "y", "z"):
        other.say(text)
    clock.advance(0)
    assert tab2.messages() == ["a", "b", "c", "x", "y", "z"]
    assert other.open and other.closeCode() is None
    tab2.say("over")  # the user's burst is spent: the tab that goes past it is closed
    assert tab2.closeCode() == 1008
    clock.advance(1)
    other.say("still mine")
    clock.advance(0)
    assert tab1.messages()[-1] == "still mine"
    assert other.closeCode() is None


def test_without_tokens_each_connection_has_its_own_rate() -> None:
    hub, clock = makeHub(rateLimit=1, rateBurst=3)
    a, b, reader = Peer(hub), Peer(hub), Peer(hub)
    for text in ("1", "2", "3"):
        a.say("a" + text)
        b.say("b" + text)
    clock.advance(0)
    assert len(reader.messages()) == 6
    assert a.closeCode() is None and b.closeCode() is None
    assert len(hub.rateLimits) == 0, "nothing shared without signed identities"
    a.say("a4")
    assert a.closeCode() == 1008 and b.open


def test_a_user_s_shared_rate_is_freed_with_their_last_connection() -> None:
    hub, clock = signedHub()
    tab1, tab2 = signedPeer(hub, "u"), signedPeer(hub, "u")
    assert "u" in hub.rateLimits and len(hub.rateLimits) == 1
    for text in ("1", "2", "3"):
        tab1.say(text)  # the burst used up
    tab1.send(frames.clientFrame(frames.CLOSE, b"\x03\xe8"))
    assert not tab1.open and "u" in hub.rateLimits, "kept while the user has a connection"
    tab2.send(frames.clientFrame(frames.CLOSE, b"\x03\xe8"))
    assert not tab2.open and "u" not in hub.rateLimits and len(hub.rateLimits) == 0
    again, reader = signedPeer(hub, "u"), signedPeer(hub, "r")
    for text in ("4", "5", "6"):  # a new connection later: a new bucket, with its whole burst
        again.say(text)
    clock.advance(0)
    assert reader.messages() == ["4", "5", "6"] and again.closeCode() is None
