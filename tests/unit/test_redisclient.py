"""The Redis connection on plain transports: pipelining, errors, pushes, broken input."""

from __future__ import annotations

from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from txchat.redisclient import RedisConnection, RedisError


def connected() -> tuple[RedisConnection, StringTransport]:
    connection = RedisConnection()
    transport = StringTransport()
    connection.makeConnection(transport)
    return connection, transport


def test_commands_are_encoded_by_hiredis_and_answered_in_order() -> None:
    connection, transport = connected()
    results: list[object] = []
    connection.command(b"PUBLISH", "room", 7).addCallback(results.append)
    connection.command(b"GET", b"k").addCallback(results.append)
    assert transport.value() == b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nroom\r\n$1\r\n7\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert connection.pending == 2
    # The replies arrive split anywhere, even inside a length.
    for piece in (b":", b"3\r\n$1", b"0\r\n0123456789", b"\r\n"):
        connection.dataReceived(piece)
    assert results == [3, b"0123456789"]
    assert connection.pending == 0


def test_an_error_reply_fails_its_command_only() -> None:
    connection, _ = connected()
    outcomes: list[object] = []
    connection.command(b"AUTH", b"wrong").addErrback(lambda f: outcomes.append(f.value))
    connection.command(b"PING").addCallback(outcomes.append)
    connection.dataReceived(b"-WRONGPASS invalid\r\n+PONG\r\n")
    assert isinstance(outcomes[0], RedisError) and "WRONGPASS" in str(outcomes[0])
    assert outcomes[1] == b"PONG"


def test_published_messages_go_to_on_message_not_to_a_waiting_command() -> None:
    connection, _ = connected()
    pushes: list[tuple[bytes, bytes]] = []
    connection.onMessage = lambda channel, message: pushes.append((channel, message))
    subscribed: list[object] = []
    connection.command(b"SUBSCRIBE", b"txchat").addCallback(subscribed.append)
    connection.dataReceived(
        b"*3\r\n$9\r\nsubscribe\r\n$6\r\ntxchat\r\n:1\r\n"
        b"*3\r\n$7\r\nmessage\r\n$6\r\ntxchat\r\n$2\r\nhi\r\n" * 2
    )
    assert subscribed == [[b"subscribe", b"txchat", 1]]
    assert pushes == [(b"txchat", b"hi"), (b"txchat", b"hi")]


def test_garbage_from_the_server_aborts_the_connection() -> None:
    connection, transport = connected()
    connection.command(b"PING")
    connection.dataReceived(b"?what\r\n")
    assert transport.disconnecting


def test_losing_the_connection_fails_every_waiting_command_and_says_so() -> None:
    connection, _ = connected()
    failures: list[Failure] = []
    lost: list[Failure] = []
    connection.onLost = lost.append
    for _ in range(3):
        connection.command(b"PING").addErrback(failures.append)
    connection.connectionLost(Failure(ConnectionLost()))
    assert [f.check(ConnectionLost) for f in failures] == [ConnectionLost] * 3
    assert len(lost) == 1 and connection.lost.called
