"""RFC 6455 at the frame level, with a raw-socket client against a real port.

txchat hooks into Autobahn's framing (size limit, binary refusal, its own writes, close
paths); these cases check that none of that breaks the protocol, and that a client that
breaks it is closed without disturbing anyone else.
"""

from __future__ import annotations

import struct
from typing import AsyncIterator

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from bench import frames
from bench.frames import CLOSE, CONTINUATION, PING, PONG, TEXT, clientFrame
from tests.support.live import Server, connect, within


class RawClient(Protocol):
    def __init__(self, port: int) -> None:
        self.port = port
        self.upgraded: Deferred[bytes] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self.frames: DeferredQueue[tuple[int, bytes]] = DeferredQueue()
        self._buffer = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(frames.handshake(host=f"127.0.0.1:{self.port}"))

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        if not self.upgraded.called:
            head, separator, self._buffer = self._buffer.partition(b"\r\n\r\n")
            if not separator:
                self._buffer = head
                return
            self.upgraded.callback(head.split(b" ")[1])
        got, self._buffer = frames.parseFrames(self._buffer)
        for frame in got:
            self.frames.put(frame)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed.callback(None)

    def send(self, *data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(data))

    async def next(self) -> tuple[int, bytes]:
        return await within(self.frames.get())

    async def closeCode(self) -> int | None:
        """The code of the server's close frame, skipping any text frames before it."""
        while True:
            opcode, payload = await self.next()
            if opcode == CLOSE:
                await within(self.closed)
                return frames.closeCode(payload)


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[Server]:
    s = await Server().start()
    yield s
    await s.stop()


async def rawClient(server: Server) -> RawClient:
    client = RawClient(server.number)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.number), client)
    assert await within(client.upgraded) == b"101"
    return client


async def othersStillChat(server: Server) -> None:
    witness = await connect(server)
    witness.say("all is well")
    assert await witness.receive(1) == ["all is well"]
    await witness.close()


@pytest_twisted.ensureDeferred
async def test_fragmented_message_with_interleaved_ping_arrives_whole(server: Server) -> None:
    client = await rawClient(server)
    client.send(
        clientFrame(TEXT, b"frag", fin=False),
        clientFrame(PING, b"in the middle"),
        clientFrame(CONTINUATION, b"men", fin=False),
        clientFrame(CONTINUATION, b"ted", fin=True),
    )
    assert await client.next() == (PONG, b"in the middle")
    assert await client.next() == (TEXT, b"fragmented")
    client.send(clientFrame(CLOSE, struct.pack("!H", 1000)))
    assert await client.closeCode() == 1000


@pytest_twisted.ensureDeferred
async def test_ping_payload_is_echoed_in_the_pong(server: Server) -> None:
    client = await rawClient(server)
    payload = bytes(range(125))
    client.send(clientFrame(PING, payload))
    assert await client.next() == (PONG, payload)
    client.send(clientFrame(CLOSE, struct.pack("!H", 1000) + b"bye"))
    assert await client.closeCode() == 1000


@pytest_twisted.ensureDeferred
async def test_client_close_without_code_is_answered(server: Server) -> None:
    client = await rawClient(server)
    client.send(clientFrame(CLOSE, b""))
    opcode, payload = await client.next()
    assert opcode == CLOSE
    await within(client.closed)


PROTOCOL_ERRORS = {
    "unmasked frame": clientFrame(TEXT, b"hi", masked=False),
    "reserved bit set": clientFrame(TEXT, b"hi", rsv=4),
    "unknown opcode": clientFrame(0x3, b"hi"),
    "control frame over 125 bytes": clientFrame(PING, b"p" * 126),
    "fragmented control frame": clientFrame(PING, b"p", fin=False),
    "continuation with nothing to continue": clientFrame(CONTINUATION, b"x"),
    "new message inside a fragmented one": clientFrame(TEXT, b"a", fin=False) + clientFrame(TEXT, b"b"),
    "close payload of one byte": clientFrame(CLOSE, b"\x03"),
    **{f"close code {code}": clientFrame(CLOSE, struct.pack("!H", code)) for code in (0, 999, 1004, 1005, 1006,
                                                                                      1015, 1016, 2999, 5000)},
}


@pytest.mark.parametrize("frame", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
@pytest_twisted.ensureDeferred
async def test_protocol_errors_close_with_1002(server: Server, frame: bytes) -> None:
    client = await rawClient(server)
    client.send(frame)
    assert await client.closeCode() == 1002
    await othersStillChat(server)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
@pytest_twisted.ensureDeferred
async def test_valid_close_codes_get_a_normal_close_back(server: Server, code: int) -> None:
    client = await rawClient(server)
    client.send(clientFrame(CLOSE, struct.pack("!H", code)))
    assert await client.closeCode() == 1000  # Autobahn does not echo the peer's code


@pytest_twisted.ensureDeferred
async def test_close_reason_that_is_not_utf8_gets_1007(server: Server) -> None:
    client = await rawClient(server)
    client.send(clientFrame(CLOSE, struct.pack("!H", 1000) + b"\xff\xfe"))
    assert await client.closeCode() == 1007


@pytest_twisted.ensureDeferred
async def test_invalid_utf8_split_across_fragments_gets_1007(server: Server) -> None:
    client = await rawClient(server)
    client.send(clientFrame(TEXT, b"ok \xe2\x82", fin=False), clientFrame(CONTINUATION, b"\x28", fin=True))
    assert await client.closeCode() == 1007
    await othersStillChat(server)


@pytest_twisted.ensureDeferred
async def test_nothing_is_sent_after_the_servers_close_frame(server: Server) -> None:
    client = await rawClient(server)
    other = await connect(server)
    client.send(clientFrame(TEXT, b"x" * 600))  # over the limit: the server closes with 1009
    for i in range(20):
        other.say(f"after {i}")  # broadcasts that must not follow the close frame
    await other.receive(20)
    opcode, payload = await client.next()
    assert (opcode, frames.closeCode(payload)) == (CLOSE, 1009)
    await within(client.closed)
    assert client.frames.pending == []
    await other.close()
