from __future__ import annotations

import pytest
from twisted.internet.testing import StringTransport

from txchat.resp import (
    Incomplete,
    RedisConnection,
    RedisError,
    encodeCommand,
    parseReply,
)


def test_encode_command():
    assert encodeCommand(b"PUBLISH", "chan", b"h\xc3\xa9", 5) == (
        b"*4\r\n$7\r\nPUBLISH\r\n$4\r\nchan\r\n$3\r\nh\xc3\xa9\r\n$1\r\n5\r\n"
    )


@pytest.mark.parametrize(
    "data, value",
    [
        (b"+OK\r\n", b"OK"),
        (b":42\r\n", 42),
        (b"$5\r\nhe\r\no\r\n", b"he\r\no"),
        (b"$-1\r\n", None),
        (b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$0\r\n\r\n", [b"message", b"ch", b""]),
        (b"*2\r\n*1\r\n:1\r\n+x\r\n", [[1], b"x"]),
    ],
)
def test_parse(data, value):
    assert parseReply(data) == (value, len(data))


def test_error_reply_is_a_value():
    error, _ = parseReply(b"-NOAUTH Authentication required.\r\n")
    assert isinstance(error, RedisError) and "NOAUTH" in str(error)


@pytest.mark.parametrize("cut", range(1, 30))
def test_every_partial_reply_is_incomplete(cut):
    data = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\nbody\r\n"
    if cut < len(data):
        with pytest.raises(Incomplete):
            parseReply(data[:cut])


def test_connection_matches_replies_in_order_and_routes_pushes():
    connection = RedisConnection()
    connection.makeConnection(StringTransport())
    pushes = []
    connection.onMessage = lambda channel, message: pushes.append((channel, message))
    first, second = connection.command(b"PUBLISH", b"c", b"1"), connection.command(b"PING")
    results = []
    first.addCallback(results.append)
    second.addCallback(results.append)
    reply = b":2\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n+PONG\r\n"
    for i in range(len(reply)):  # byte by byte: replies split anywhere
        connection.dataReceived(reply[i : i + 1])
    assert results == [2, b"PONG"]
    assert pushes == [(b"c", b"hi")]
    assert connection.pending == 0


def test_lost_connection_fails_what_is_waiting():
    connection = RedisConnection()
    connection.makeConnection(StringTransport())
    d = connection.command(b"PING")
    failures = []
    d.addErrback(failures.append)
    connection.connectionLost()
    assert len(failures) == 1
