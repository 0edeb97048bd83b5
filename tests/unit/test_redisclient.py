"""The Redis connection on plain transports: pipelining, errors, pushes, broken input, and its
heartbeat on a task.Clock."""

from __future__ import annotations

from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests.support.memoryredis import MemoryRedis
from txchat.redisclient import RedisConnection, RedisError, RedisSilent


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


# -- the heartbeat, on a task.Clock against a Redis in memory --------------------------------


def heartbeating(lag: float = 0.001, timeout: float = 3.0) -> tuple[RedisConnection, MemoryRedis, list[Failure]]:
    clock = Clock()
    redis = MemoryRedis(clock, lag)
    connection = RedisConnection(clock, timeout)
    lost: list[Failure] = []
    connection.onLost = lost.append
    redis.connect(connection)
    return connection, redis, lost


def run(clock: Clock, seconds: float) -> None:
    """Advance in steps of a millisecond: each timer runs at (about) its own time."""
    clock.pump([0.001] * round(seconds * 1000))


def until(redis: MemoryRedis, lost: list[Failure], limit: float) -> float:
    """Advance in steps of a millisecond until the connection is lost or C{limit}; when."""
    clock = redis.clock
    while not lost and clock.seconds() < limit:
        clock.advance(0.001)
    return clock.seconds()


def test_a_command_a_silent_redis_does_not_answer_loses_the_connection_after_the_timeout() -> None:
    connection, redis, lost = heartbeating()
    redis.clock.advance(0.5)
    redis.silent = True  # stopped, or cut off: no reset, no reply
    failures: list[Failure] = []
    connection.command(b"EVALSHA", b"x", 0).addErrback(failures.append)
    when = until(redis, lost, 10)
    assert 3.0 <= when - 0.5 <= 3.0 + 0.002, "lost once the command has waited the timeout"
    assert lost[0].check(RedisSilent) and "no reply from Redis for 3s" in str(lost[0].value)
    assert failures[0].check(ConnectionLost), "its command fails as with any lost connection"
    assert connection.lost.called and redis.clock.getDelayedCalls() == []


def test_an_idle_connection_asks_after_a_second_of_quiet_and_a_silent_redis_is_lost() -> None:
    connection, redis, lost = heartbeating()
    redis.clock.advance(0.5)
    redis.silent = True
    when = until(redis, lost, 10)
    assert [c for c in redis.commands] == [], "nothing reached it"
    assert 1.0 + 3.0 <= when <= 1.0 + 3.0 + 0.002, "a PING after a second, unanswered for 3 s"
    assert lost[0].check(RedisSilent)
    assert redis.clock.getDelayedCalls() == []


def test_a_slow_redis_that_answers_is_not_lost() -> None:
    connection, redis, lost = heartbeating(lag=2.9)
    answered: list[object] = []
    for second in range(60):  # a command a second, each answered 2.9 s later
        connection.command(b"SET", b"k", second).addCallback(answered.append)
        run(redis.clock, 1)
    run(redis.clock, 60)  # and then idle, with PINGs answered 2.9 s later
    assert not lost and len(answered) == 60
    pings = [c for c in redis.commands if c == [b"PING"]]
    assert 60 / (1 + 2.9) - 1 <= len(pings) <= 60 / (1 + 2.9) + 1, "one PING after each second of quiet"
    assert connection.pending == 0, "the heartbeat's PINGs are not pending commands"
    connection.transport.loseConnection()
    redis.clock.advance(0)
    assert redis.clock.getDelayedCalls() == [], "the heartbeat stops with the connection"


def test_an_answering_idle_connection_is_asked_once_a_second() -> None:
    connection, redis, lost = heartbeating()
    run(redis.clock, 10)
    assert not lost
    assert len(redis.commands) == 9 and connection.pending == 0, "a PING after each second of quiet"
    connection.transport.abortConnection()
    redis.clock.advance(0)
    assert lost and not lost[0].check(RedisSilent), "lost, but not for silence"
    assert redis.clock.getDelayedCalls() == []


def test_without_a_clock_there_is_no_heartbeat() -> None:
    connection, transport = connected()
    connection.command(b"PING")
    assert connection.pending == 1  # (and nothing scheduled: there is nothing to schedule on)
