"""Rooms over several processes, kept in Redis: numbering, history, presence, delivery.

Each room's messages are numbered, kept and published in one step, by a script that runs
inside Redis (the way Centrifugo's Redis engine does it), so the order of the numbers is the
order every process delivers in. A process subscribes to a room's channel only while it has
members there, all rooms on one subscriber connection. A joining txchat.v1 client's history
is read after the subscription is confirmed, so no message falls between the two: the room's
stream merges them by number (L{txchat.stream}).

Keys, for a room R: ``txchat:R:meta`` (epoch and newest number), ``txchat:R:history`` (the kept
messages), ``txchat:R:online`` (members per process, with when each process last said so);
its channel is ``txchat:R`` (``txchat:N:R`` for database N: pub/sub ignores databases).

While Redis cannot be reached (or stops answering: each connection's heartbeat,
L{txchat.redisclient}), each process delivers its own clients' messages to its own clients,
unnumbered, and keeps trying to reconnect with capped exponential backoff; when Redis is
back, numbering goes on where it stopped.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred, DeferredList, fail, gatherResults, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txchat.broker import Deliver, NotPublished, Presence, Snapshot, pageOf
from txchat.config import Config
from txchat.redisclient import RedisConnection, RedisError, connectRedis
from txchat.chatlog import Archive, Head, Page
from txchat.sent import SENT_FOR, SentIds
from txchat.stream import Delivery

_log = Logger()


# KEYS: meta, history, the send's ID (dedupe), the log stream. ARGV: channel, history limit,
# ttl seconds, a new epoch, the message's time, name, text, sender and ID ("": none), whether
# the chat log is kept ("1"), the room, how long (seconds) an ID is remembered. Returns the
# room's epoch and the message's number, and 1 when the ID was sent before: then the first
# one's, and nothing is published.
PUBLISH = b"""
if ARGV[9] ~= '' then
  local first = redis.call('GET', KEYS[3])
  if first then
    local at = string.find(first, ' ', 1, true)
    return {string.sub(first, 1, at - 1), tonumber(string.sub(first, at + 1)), 1}
  end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local payload = cjson.encode({'m', epoch, seq, tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8], ARGV[9]})
local limit = tonumber(ARGV[2])
if limit > 0 then
  redis.call('RPUSH', KEYS[2], payload)
  redis.call('LTRIM', KEYS[2], -limit, -1)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
if ARGV[9] ~= '' then
  redis.call('SET', KEYS[3], epoch .. ' ' .. seq, 'EX', ARGV[12])
end
if ARGV[10] == '1' then
  redis.call('XADD', KEYS[4], '*', 'room', ARGV[11], 'epoch', epoch, 'seq', seq, 'time', ARGV[5],
             'name', ARGV[6], 'text', ARGV[7], 'from', ARGV[8], 'ref', ARGV[9])
end
redis.call('PUBLISH', ARGV[1], payload)
return {epoch, seq, 0}
"""

# KEYS: meta, history, online. ARGV: stale after (ms), this process, a new epoch, ttl seconds.
# Starts the room's stream if it has none (a joiner's welcome names the epoch its messages
# will have). Returns [epoch, newest number, [process, members, ms since said, ...] elsewhere,
# kept messages].
SNAPSHOT = b"""
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[3]) == 1 then
  redis.call('HSET', KEYS[1], 'seq', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
local history = redis.call('LRANGE', KEYS[2], 0, -1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local online = {}
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[2] then
    local ok, said = pcall(cjson.decode, all[i + 1])
    if ok and type(said) == 'table' and now - said[2] < tonumber(ARGV[1]) then
      table.insert(online, all[i])
      table.insert(online, said[1])
      table.insert(online, now - said[2])
    else
      redis.call('HDEL', KEYS[3], all[i])
    end
  end
end
return {meta[1] or '', tonumber(meta[2] or '0'), online, history}
"""

# KEYS: meta, online. ARGV: this process, its members, channel, ttl seconds. Keeps a room's
# numbering alive while it has members, even when its history has expired.
PRESENCE = b"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({tonumber(ARGV[2]), now}))
  redis.call('EXPIRE', KEYS[2], 60)
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('PUBLISH', ARGV[3], cjson.encode({'p', ARGV[1], tonumber(ARGV[2])}))
return 1
"""

# People (SPEC §18). KEYS: meta, online, this process's people in the room (a hash: identity ->
# name, and its change number under the empty field). ARGV: this process, its members, channel,
# ttl seconds, change number, "1" to replace the whole set (else changes), the message to
# publish, how many joined, then (identity, name) for each joined or in the whole set, then
# the identities that left. As PRESENCE for the count; the set expires with the count's entry.
PEOPLE = b"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local joined = tonumber(ARGV[8])
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({tonumber(ARGV[2]), now}))
  redis.call('EXPIRE', KEYS[2], 60)
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
  if ARGV[6] == '1' then redis.call('DEL', KEYS[3]) end
  for i = 0, joined - 1 do
    redis.call('HSET', KEYS[3], ARGV[9 + 2 * i], ARGV[10 + 2 * i])
  end
  for i = 9 + 2 * joined, #ARGV do
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
  redis.call('HSET', KEYS[3], '', ARGV[5])
  redis.call('EXPIRE', KEYS[3], 60)
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[3])
end
redis.call('PUBLISH', ARGV[3], ARGV[7])
return 1
"""

# KEYS: online. ARGV: stale after (ms), the people keys' prefix. Every live process's people in
# the room: [process, [identity, name, ...], ...] (the change number under the empty identity).
MEMBERS = b"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local found = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, said = pcall(cjson.decode, all[i + 1])
  if ok and type(said) == 'table' and now - said[2] < tonumber(ARGV[1]) then
    table.insert(found, all[i])
    table.insert(found, redis.call('HGETALL', ARGV[2] .. all[i]))
  end
end
return found
"""

# KEYS: the identity's read positions (room -> "EPOCH SEQ"). ARGV: room, epoch, seq, ttl seconds.
# Never backwards within an epoch. Returns the position kept.
READ = b"""
local kept = redis.call('HGET', KEYS[1], ARGV[1])
if kept then
  local at = string.find(kept, ' ', 1, true)
  if string.sub(kept, 1, at - 1) == ARGV[2] and tonumber(string.sub(kept, at + 1)) >= tonumber(ARGV[3]) then
    redis.call('EXPIRE', KEYS[1], ARGV[4])
    return kept
  end
end
kept = ARGV[2] .. ' ' .. ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], kept)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return kept
"""

# KEYS: the bans (a hash: [room, sub] -> until, ms since the Unix epoch). ARGV: the field, and
# seconds to ban for ("" to lift). Returns when it ends (ban), or whether one was in force (lift).
# The hash lives as long as its longest ban.
BAN = b"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '' then
  local ends = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
  redis.call('HDEL', KEYS[1], ARGV[1])
  return ends > now and 1 or 0
end
local ends = now + tonumber(ARGV[2]) * 1000
redis.call('HSET', KEYS[1], ARGV[1], ends)
if redis.call('PTTL', KEYS[1]) < ends - now then redis.call('PEXPIREAT', KEYS[1], ends) end
return ends
"""

# KEYS: history. ARGV: epoch, seq, channel. Takes a deleted message out of the room's kept
# messages (SPEC §18) and, when it was there, tells every process's members of the room.
DELETE = b"""
local kept = redis.call('LRANGE', KEYS[1], 0, -1)
for _, payload in ipairs(kept) do
  local ok, m = pcall(cjson.decode, payload)
  if ok and type(m) == 'table' and m[1] == 'm' and m[2] == ARGV[1] and m[3] == tonumber(ARGV[2]) then
    redis.call('LREM', KEYS[1], 1, payload)
    redis.call('PUBLISH', ARGV[3], cjson.encode({'x', ARGV[1], tonumber(ARGV[2])}))
    return 1
  end
end
return 0
"""


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int = 6379
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False

    @classmethod
    def fromURL(cls, url: str) -> RedisAddress:
        """redis://[[user]:password@]host[:port][/db]; rediss:// for TLS."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"must start with redis:// or rediss://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError(f"bad port in {url!r}")
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError(f"database must be a number, got {database!r}")
        return cls(
            host=parts.hostname,
            port=port or 6379,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            db=int(database) if database else 0,
            tls=parts.scheme == "rediss",
        )

    def __str__(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"


class _Link:
    """One connection to Redis that comes back by itself after it fails or is lost. It counts
    as connected once Redis has answered on it (a PING after preparing it): a stopped Redis's
    kernel still accepts connections, and a link up on one would swallow messages until its
    heartbeat gave up."""

    def __init__(
        self,
        connect: Callable[[], Deferred[RedisConnection]],
        prepare: Callable[[RedisConnection], Deferred[Any]],
        clock: IReactorTime,
        retryDelay: Callable[[int], float],
        changed: Callable[[], None],
    ) -> None:
        self._connect = connect
        self._prepare = prepare
        self._clock = clock
        self._retryDelay = retryDelay
        self._changed = changed
        self.connection: RedisConnection | None = None  # connected and prepared
        self.tried = False
        self.lastError: str | None = None
        self._attempt = 0
        self._retry: IDelayedCall | None = None
        self._dialing: Deferred[Any] | None = None
        self._open: set[RedisConnection] = set()
        self._stopped = True

    def start(self) -> None:
        self._stopped = False
        self._dial()

    def _dial(self) -> None:
        self._retry = None
        d = self._connect()
        d.addCallback(self._ready)
        d.addErrback(self._failed)
        self._dialing = d

    def _ready(self, connection: RedisConnection) -> Deferred[None]:
        self._open.add(connection)
        connection.onLost = lambda reason: self._lost(connection, reason)

        def prepared(_: object) -> None:
            self._dialing = None
            self.tried = True
            self._attempt = 0
            self.lastError = None
            self.connection = connection
            self._changed()

        def unprepared(failure: Failure) -> Failure:
            connection.transport.abortConnection()
            return failure

        d = self._prepare(connection).addCallback(lambda _: connection.command(b"PING"))
        return d.addCallbacks(prepared, unprepared)

    def _failed(self, failure: Failure) -> None:
        self._dialing = None
        if self._stopped:
            return
        self.tried = True
        self.lastError = str(failure.value) or type(failure.value).__name__
        self._schedule()
        self._changed()

    def _lost(self, connection: RedisConnection, reason: Failure) -> None:
        self._open.discard(connection)
        if connection is not self.connection:
            return  # lost while being prepared: _failed deals with it
        self.connection = None
        self.lastError = str(reason.value) or type(reason.value).__name__
        if not self._stopped:
            self._schedule()
            self._changed()

    def _schedule(self) -> None:
        self._retry = self._clock.callLater(self._retryDelay(self._attempt), self._dial)
        self._attempt += 1

    def stop(self) -> Deferred[Any]:
        """Stop trying; close what is open; fire when every connection is gone."""
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._dialing is not None:
            self._dialing.cancel()
        self.connection = None
        open = list(self._open)  # (a transport may report its loss at once, changing the set)
        gone = DeferredList([c.lost for c in open])
        for connection in open:
            connection.transport.loseConnection()
        return gone


class _Script:
    """A Lua script run by its SHA1, loaded again when Redis has forgotten it (NOSCRIPT)."""

    def __init__(self, source: bytes) -> None:
        self.source = source
        self.sha = hashlib.sha1(source).hexdigest().encode("ascii")

    def __call__(self, connection: RedisConnection, keys: list[bytes], args: list[Any]) -> Deferred[Any]:
        d = connection.command(b"EVALSHA", self.sha, len(keys), *keys, *args)

        def reload(failure: Failure) -> Any:
            if failure.check(RedisError) and str(failure.value).startswith("NOSCRIPT"):
                return connection.command(b"EVAL", self.source, len(keys), *keys, *args)
            return failure

        return d.addErrback(reload)


_publish, _snapshot, _presence = _Script(PUBLISH), _Script(SNAPSHOT), _Script(PRESENCE)
_delete, _people, _members, _read, _ban = _Script(DELETE), _Script(PEOPLE), _Script(MEMBERS), _Script(READ), _Script(BAN)
_SCRIPTS = (_publish, _snapshot, _presence, _delete, _people, _members, _read, _ban)

# How long a stable identity's read positions outlive its last read, without a chat log (days).
READ_TTL = 90 * 86400


def _everyone(flat: list[Any]) -> dict[str, tuple[int, dict[str, str]]]:
    """The MEMBERS script's reply: process -> (its last change's number, identity -> name)."""
    everyone: dict[str, tuple[int, dict[str, str]]] = {}
    for i in range(0, len(flat), 2):
        pairs = flat[i + 1]
        people = {pairs[j].decode("utf-8", "replace"): pairs[j + 1].decode("utf-8", "replace")
                  for j in range(0, len(pairs), 2)}
        version = people.pop("", "0")
        everyone[flat[i].decode("ascii", "replace")] = (int(version) if version.isdigit() else 0, people)
    return everyone


def _position(kept: bytes | None) -> Head | None:
    if not kept:
        return None
    epoch, _, seq = kept.decode("utf-8", "replace").rpartition(" ")
    return Head(epoch, int(seq)) if epoch and seq.isdigit() else None


def _numbered(reply: list[Any]) -> tuple[str, int]:
    epoch, seq = reply[:2]
    return epoch.decode("ascii"), int(seq)


def _message(room: str, payload: bytes) -> Delivery | None:
    try:
        kind, epoch, seq, time, name, text, *rest = json.loads(payload)
        sender, ref = rest if rest else ("", "")
    except (ValueError, TypeError):
        return None  # not ours: another program on the channel
    if kind != "m":
        return None
    return Delivery(room, text.encode("utf-8"), name, time, seq, epoch, sender, ref or None)


class BrokerAway(Exception):
    """Redis cannot be reached for a call that needs it (moderation, the member list)."""


class RedisBroker:
    """Rooms' messages numbered, kept and published by Redis; members counted across processes."""

    def __init__(
        self,
        url: str,
        reactor: Any,
        config: Config = Config(),
        retryDelay: Callable[[int], float] | None = None,
    ) -> None:
        """
        @param reactor: an C{IReactorTCP} (and C{IReactorSSL} for rediss://) and C{IReactorTime}.
        @param retryDelay: the delay before reconnect attempt N; by default the capped, jittered
            exponential backoff that C{config} describes.
        """
        self.address = RedisAddress.fromURL(url)
        self._prefix = "txchat:" if not self.address.db else f"txchat:{self.address.db}:"
        self.process = secrets.token_hex(6)  # this process, in the rooms' member counts
        self._epochs = itertools.count(1)
        self._reactor = reactor
        self._config = config
        self._backlog = config.redisBacklog
        self._retryDelay = retryDelay or backoffPolicy(
            initialDelay=config.redisFirstRetry, maxDelay=config.redisMaxRetry, factor=2.0
        )
        self._connectTimeout = config.redisConnectTimeout
        self._deliver: Deliver | None = None
        self._presence: Presence | None = None
        # People and moderation (SPEC §18; L{txchat.roster}): the other processes' changes,
        # room news (read positions, deletions), and orders for every process.
        self._people: Callable[[str, str, int, dict[str, str], list[str]], None] | None = None
        self._news: Callable[[str, list[Any]], None] | None = None
        self._control: Callable[[list[Any]], None] | None = None
        self.controlChannel = (self._prefix + "@control").encode("ascii")  # ("@": in no room's name)
        self._reconnected: Callable[[], None] = lambda: None
        self._rooms: set[str] = set()  # rooms with members here: their channels are subscribed
        self._subscribed: set[str] = set()  # the channels asked of the current subscriber connection
        # Of the current subscriber connection: None until it has asked for its channels
        # (L{_listen}), then False until Redis has confirmed them, then True.
        self._listening: bool | None = None
        self._told = False  # the hub has been told that this outage is over (L{_listen})
        self.state = "starting"  # then "up" or "down"
        self.dropped = 0  # messages refused because the publish backlog was full
        self.lost = 0  # messages whose publish failed when the connection went
        self._overflowing = False
        self._watchers: list[tuple[str, Deferred[None]]] = []
        self._publisher = self._link(self._loadScripts)
        self._subscriber = self._link(self._subscribe)
        # The cluster's chat log (PostgreSQL): every numbered message also goes to the stream
        # logStream, which each process's feed writes there (L{txchat.logfeed}).
        self.archive: Archive | None = None
        self._unnumbered = SentIds(reactor)  # sends delivered here while Redis was away
        self._inDoubt = SentIds(reactor)  # sends whose connection went while Redis had them
        self._posted = SentIds(reactor)  # sends on their way to Redis (what waits), or numbered
        self.logStream = (self._prefix + "log").encode("ascii")

    def _link(self, prepare: Callable[[RedisConnection], Deferred[Any]]) -> _Link:
        return _Link(self._open, prepare, self._reactor, self._retryDelay, self._changed)

    def _open(self) -> Deferred[RedisConnection]:
        address = self.address
        return connectRedis(self._reactor, address.host, address.port, address.tls, self._connectTimeout,
                            self._config.redisTimeout)

    def _authenticate(self, connection: RedisConnection) -> Deferred[Any]:
        address = self.address
        d: Deferred[Any] = succeed(None)
        if address.password is not None:
            auth = (b"AUTH", address.username, address.password) if address.username else (b"AUTH", address.password)
            d = connection.command(*auth)
        if address.db:
            d.addCallback(lambda _: connection.command(b"SELECT", address.db))
        return d

    def _loadScripts(self, connection: RedisConnection) -> Deferred[Any]:
        """Ready a new publisher connection: every script loaded before it counts, so that a
        burst of sends never meets NOSCRIPT (a Redis that started empty): each such answer
        would send its script again behind the sends that followed, and Redis would number a
        sender's messages out of their order."""
        return self._authenticate(connection).addCallback(
            lambda _: gatherResults([connection.command(b"SCRIPT", b"LOAD", script.source) for script in _SCRIPTS]))

    def _subscribe(self, connection: RedisConnection) -> Deferred[Any]:
        """Ready a new subscriber connection; it asks for its channels once the publisher is
        connected too (L{_listen})."""
        self._subscribed = set()
        self._listening = None
        connection.onMessage = self._received
        return self._authenticate(connection)

    def _listen(self) -> None:
        """Subscribe a new subscriber connection, once the publisher is connected too, to every
        room with members here, and have Redis confirm with a PING: the broker is up once it
        has, so that what this process publishes from then on comes back to it.

        After an outage the hub is told here, in the same call, before the new subscription
        can bring anything: its rooms begin to catch up on what they missed (a snapshot read
        behind the SUBSCRIBEs) and hold what comes meanwhile, merged by number
        (L{txchat.stream}). Delivered before, a message would overtake the ones it follows."""
        subscriber = self._subscriber.connection
        if subscriber is None or self._publisher.connection is None or self._listening is not None:
            return
        self._listening = False
        self._subscribed = set(self._rooms)
        if self._control is not None:
            subscriber.command(b"SUBSCRIBE", self.controlChannel).addErrback(self._refused, "@control")
        for room in sorted(self._rooms):
            subscriber.command(b"SUBSCRIBE", self.channel(room)).addErrback(self._refused, room)
        subscriber.command(b"PING").addCallbacks(self._confirmed, lambda _: None, (subscriber,))
        if self.state == "down":
            self._told = True
            self._reconnected()

    def _confirmed(self, _: object, connection: RedisConnection) -> None:
        if connection is self._subscriber.connection:
            self._listening = True
            self._changed()

    def channel(self, room: str) -> bytes:
        return (self._prefix + room).encode("ascii")

    def _key(self, room: str, part: str) -> bytes:
        return f"{self._prefix}{room}:{part}".encode("ascii")

    # -- state ------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """Connected, with every channel asked for at connection time confirmed."""
        return self._connected and self._listening is True

    @property
    def _connected(self) -> bool:
        return self._publisher.connection is not None and self._subscriber.connection is not None

    @property
    def backlog(self) -> int:
        connection = self._publisher.connection
        return connection.pending if connection is not None else 0

    def when(self, state: str) -> Deferred[None]:
        """Fires once the broker is in C{state} ("up" or "down")."""
        if self.state == state:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._watchers.append((state, d))
        return d

    def _changed(self) -> None:
        before = self.state
        if not self._connected:
            self._told = False  # a catch-up begun before this loss may not have been read
        self._listen()
        self._sync()
        self._logChange()
        if self.state != before:
            ready = [d for state, d in self._watchers if state == self.state]
            self._watchers = [(state, d) for state, d in self._watchers if state != self.state]
            for d in ready:
                d.callback(None)
            if self.state == "up":
                told, self._told = self._told, False
                if before == "down" and not told:
                    self._reconnected()  # the subscription outlived the outage: only the publisher went

    def _logChange(self) -> None:
        if self.up:
            if self.state != "up":
                _log.info(
                    "{what} Redis at {address}: cross-process delivery is on",
                    what="reconnected to" if self.state == "down" else "connected to",
                    address=str(self.address),
                )
                self.state = "up"
        elif self.state == "up" or (
            self.state == "starting" and self._publisher.tried and self._subscriber.tried and not self._connected
        ):
            error = self._publisher.lastError or self._subscriber.lastError
            _log.warn(
                "Redis at {address} is unreachable ({error}): serving this process's clients only, "
                "reconnecting in the background",
                address=str(self.address),
                error=error,
            )
            self.state = "down"

    # -- rooms ------------------------------------------------------------------------------

    def start(
        self, deliver: Deliver, presence: Presence, reconnected: Callable[[], None] = lambda: None,
        forgotten: Callable[[str], None] = lambda room: None,
    ) -> None:
        self._deliver = deliver
        self._presence = presence
        self._reconnected = reconnected
        self._publisher.start()
        self._subscriber.start()

    def watch(self, room: str) -> None:
        self._rooms.add(room)
        self._sync()

    def unwatch(self, room: str) -> None:
        self._rooms.discard(room)
        self._sync()

    def keeps(self, room: str) -> bool:
        return False  # Redis does

    def forget(self, room: str) -> None:
        pass  # Redis expires it

    def _sync(self) -> None:
        """Bring the subscriber connection's channels in line with the rooms that have members
        here, once it has asked for its first ones (L{_listen})."""
        connection = self._subscriber.connection
        if connection is None or self._listening is None:
            return
        for room in sorted(self._rooms - self._subscribed):
            connection.command(b"SUBSCRIBE", self.channel(room)).addErrback(self._refused, room)
        for room in sorted(self._subscribed - self._rooms):
            connection.command(b"UNSUBSCRIBE", self.channel(room)).addErrback(lambda _: None)
        self._subscribed = set(self._rooms)

    def _refused(self, failure: Failure, room: str) -> None:
        """Said, because the room's members here will not hear the other processes (a Redis
        ACL, say); a lost connection is not a refusal (the reconnect subscribes again)."""
        if failure.check(RedisError):
            _log.warn("Redis refused to subscribe to room {room}: {error}", room=room, error=str(failure.value))

    def snapshot(self, room: str, since: tuple[str, int] | None = None) -> Deferred[Snapshot | None]:
        """Read after the room's subscription is confirmed (the subscriber answers in order: a
        PING behind the SUBSCRIBE), so that every later message comes by the channel. The
        channel may still bring some the snapshot holds: the room's stream merges by number
        (L{txchat.stream}). With C{since} before what Redis keeps, the chat log fills the gap
        when it holds all of it."""
        subscriber = self._subscriber.connection
        if subscriber is None or self._publisher.connection is None:
            return succeed(None)

        def read(_: object) -> Deferred[Snapshot | None]:
            # The publisher there now: a command sent on one that has gone is never answered.
            publisher = self._publisher.connection
            if publisher is None:
                return succeed(None)
            return _snapshot(
                publisher, [self._key(room, "meta"), self._key(room, "history"), self._key(room, "online")],
                [int(self._config.presenceStale * 1000), self.process, self._newEpoch(), int(self._config.historyTtl)],
            ).addCallback(self._snapshotOf, room)

        d = subscriber.command(b"PING").addCallback(read)
        if since is not None and self.archive is not None:
            d.addCallback(self._reachBack, room, since)
        return d

    def _reachBack(self, snapshot: Snapshot | None, room: str, since: tuple[str, int]) -> Any:
        """The snapshot with its history from C{since} on, out of the chat log, for a client
        that resumes from before what Redis keeps."""
        epoch, seq = since
        if snapshot is None or snapshot.epoch != epoch or seq >= snapshot.seq:
            return snapshot
        kept = snapshot.history
        first = (kept[0].seq or 0) if kept else snapshot.seq + 1
        if first <= seq + 1 or snapshot.seq - seq > self._config.recoveryMax or self.archive is None:
            return snapshot

        def joined(older: list[Delivery] | None) -> Snapshot:
            gap = [m for m in older or () if m.seq is not None and m.seq < first]
            if not gap or gap[0].seq != seq + 1 or gap[-1].seq != first - 1:
                return snapshot  # the log lacks some (not written yet, or deleted)
            return Snapshot(snapshot.epoch, snapshot.seq, [*gap, *kept], snapshot.others, snapshot.ages)

        return self.archive.after(room, epoch, seq, self._config.recoveryMax).addCallbacks(
            joined, lambda _: snapshot)

    def page(self, room: str, before: tuple[str, int] | None, limit: int) -> Deferred[Page]:
        """From the chat log when the cluster keeps one; else from what Redis keeps."""
        if self.archive is not None:
            return self.archive.page(room, Head(*before) if before is not None else None, limit)
        publisher = self._publisher.connection
        if publisher is None:
            return succeed(Page([], False))

        def kept(history: list[bytes]) -> Page:
            messages = [m for m in (_message(room, payload) for payload in history) if m is not None]
            return pageOf(messages, before, limit)

        return publisher.command(b"LRANGE", self._key(room, "history"), 0, -1).addCallback(kept)

    def _snapshotOf(self, reply: list[Any], room: str) -> Snapshot:
        epoch, seq, online, history = reply
        kept = [m for m in (_message(room, payload) for payload in history) if m is not None]
        others = {online[i].decode("ascii"): int(online[i + 1]) for i in range(0, len(online), 3)}
        ages = {online[i].decode("ascii"): int(online[i + 2]) / 1000 for i in range(0, len(online), 3)}
        return Snapshot(epoch.decode("ascii") or None, int(seq), kept, others, ages)

    def _newEpoch(self) -> str:
        """An epoch for a room whose stream the script finds missing: unique to this process and
        call (the script uses it only then), without a random draw per message."""
        return f"{self.process}{next(self._epochs):x}"

    def setOnline(self, room: str, count: int) -> None:
        connection = self._publisher.connection
        if connection is None:
            return
        _presence(connection, [self._key(room, "meta"), self._key(room, "online")],
                  [self.process, count, self.channel(room), int(self._config.historyTtl)]).addErrback(lambda _: None)

    def delete(self, room: str, epoch: str, seq: int) -> Deferred[bool]:
        """Out of what Redis keeps and, in a cluster with a chat log, out of the log: a message
        not yet written there leaves a mark that keeps it out when it comes."""
        connection = self._publisher.connection
        if connection is None:
            return fail(BrokerAway())
        d = _delete(connection, [self._key(room, "history")], [epoch, seq, self.channel(room)]).addCallback(bool)
        archive = self.archive
        if archive is None:
            return d

        def logged(kept: bool) -> Deferred[bool]:
            assert archive is not None

            def told(found: bool) -> Deferred[bool] | bool:
                publisher = self._publisher.connection
                if found and not kept and publisher is not None:  # older than Redis keeps: say it here
                    line = json.dumps(["x", epoch, seq]).encode()
                    return publisher.command(b"PUBLISH", self.channel(room), line).addCallback(lambda _: True)
                return kept or found

            return archive.delete(room, epoch, seq, kept).addCallback(told)

        return d.addCallback(logged)

    # -- messages ---------------------------------------------------------------------------

    def publish(self, message: Delivery) -> None:
        self._send(message).addErrback(self._publishFailed)

    def post(self, message: Delivery) -> Deferred[tuple[str, int] | None]:
        """A resend is known by Redis (its script) across processes; here, by what this process
        posted: one whose first copy is still on its way to Redis gets that copy's answer, one
        numbered lately its number, and one that went out here unnumbered, while Redis was away,
        nothing more. A send whose answer never came (its Redis connection went while Redis had
        it) is in doubt: Redis may have numbered and delivered it, so a resend of it is refused
        until Redis is back to say, rather than delivered here unnumbered, which would make it
        twice once the numbered first copy is caught up with."""
        ref, sender = message.ref, message.sender
        if ref is None:
            return self._send(message).addCallback(lambda reply: None if reply is None else _numbered(reply))
        if self._unnumbered.get(sender, ref) is not None:
            return succeed(None)
        known = self._posted.get(sender, ref)
        if isinstance(known, list):  # the first copy is on its way: its answer is this one's
            follower: Deferred[tuple[str, int] | None] = Deferred()
            known.append(follower)
            return follower
        if known is not None:
            return succeed(known)
        if not self.up and self._inDoubt.get(sender, ref) is not None:
            return fail(NotPublished("its first copy may have been numbered: Redis is away to say"))
        sending = self._send(message)
        if sending.called:  # refused, or delivered here unnumbered: nothing is on its way
            return sending.addCallback(lambda reply: None if reply is None else _numbered(reply))
        waiting: list[Deferred[tuple[str, int] | None]] = []
        self._posted.wait(sender, ref, waiting)
        return sending.addCallback(_numbered).addCallbacks(
            self._answered, self._doubted, callbackArgs=(sender, ref, waiting), errbackArgs=(sender, ref, waiting))

    def _answered(self, number: tuple[str, int], sender: str, ref: str,
                  waiting: list[Deferred[tuple[str, int] | None]]) -> tuple[str, int]:
        self._posted.add(sender, ref, *number)
        for follower in waiting:
            follower.callback(number)
        return number

    def _doubted(self, failure: Failure, sender: str, ref: str,
                 waiting: list[Deferred[tuple[str, int] | None]]) -> Failure | tuple[str, int]:
        known = self._posted.get(sender, ref)
        if isinstance(known, tuple):  # its numbered copy came by the subscription meanwhile
            for follower in waiting:
                follower.callback(known)
            return known
        self._posted.drop(sender, ref)
        if not failure.check(NotPublished):  # (refused before Redis had it: no doubt)
            self._inDoubt.add(sender, ref, None, None)
            if failure.check(ConnectionLost):  # an outage, logged as one: the client tries again
                failure = Failure(NotPublished(f"Redis went before it answered ({failure.getErrorMessage()})"))
        for follower in waiting:
            follower.errback(failure)
        return failure

    def _send(self, message: Delivery) -> Deferred[Any]:
        """Publish; fires with the script's reply, or None when delivered here unnumbered."""
        connection = self._publisher.connection
        if connection is None or not self.up:
            if self._deliver is not None:
                self._deliver(message)  # an outage: this process's clients still chat, unnumbered
            if message.ref is not None:
                self._unnumbered.add(message.sender, message.ref, None, None)
            return succeed(None)
        if connection.pending >= self._backlog:
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                _log.warn(
                    "Redis publish backlog full ({limit} unanswered): refusing messages until it drains",
                    limit=self._backlog,
                )
            return fail(NotPublished("the Redis publish backlog is full"))
        if self._overflowing and connection.pending < self._backlog // 2:
            self._overflowing = False
            _log.info("Redis publish backlog drained; {dropped} messages refused so far", dropped=self.dropped)
        room = message.room
        config = self._config
        sender, ref = message.sender.encode("utf-8"), (message.ref or "").encode("utf-8")
        # The ID's key: the sender's length first, so that no two (sender, ID) pairs share one.
        sent = b"%ssent:%d:%s%s" % (self._prefix.encode("ascii"), len(sender), sender, ref)
        return _publish(
            connection, [self._key(room, "meta"), self._key(room, "history"), sent, self.logStream],
            [self.channel(room), config.history, int(config.historyTtl), self._newEpoch(),
             message.time, message.name.encode("utf-8"), message.text, sender, ref,
             b"1" if self.archive is not None else b"0", room, int(SENT_FOR)],
        )

    def _publishFailed(self, failure: Failure) -> None:
        if not failure.check(NotPublished):
            self.lost += 1

    def _received(self, channel: bytes, payload: bytes) -> None:
        if channel == self.controlChannel:
            self._heardControl(payload)
            return
        room = channel.decode("ascii", "replace").removeprefix(self._prefix)
        if payload.startswith(b'["p",'):
            try:
                _, process, count, *people = json.loads(payload)
            except (ValueError, TypeError):
                return
            if process != self.process and self._presence is not None:
                self._presence(room, process, int(count))
                if len(people) == 3 and count and self._people is not None:  # (0: it has gone)
                    version, joined, left = people
                    self._people(room, process, int(version), dict(joined), list(left))
            return
        if payload.startswith((b'["r",', b'["x",')):
            try:
                news = json.loads(payload)
            except ValueError:
                return
            if self._news is not None:
                self._news(room, news)
            return
        message = _message(room, payload)
        if message is not None and self._deliver is not None:
            if message.ref is not None and message.seq is not None and message.epoch is not None:
                # Numbered, wherever it was sent: a resend of it here, even while Redis is away
                # for this process, gets this number rather than going out again unnumbered.
                self._posted.add(message.sender, message.ref, message.epoch, message.seq)
            self._deliver(message)

    def _heardControl(self, payload: bytes) -> None:
        try:
            control = json.loads(payload)
        except ValueError:
            return
        if isinstance(control, list) and control and self._control is not None:
            self._control(control)

    # -- people and moderation (SPEC §18) ---------------------------------------------------------

    def listenPeople(self, people: Callable[[str, str, int, dict[str, str], list[str]], None],
                     news: Callable[[str, list[Any]], None], control: Callable[[list[Any]], None]) -> None:
        """Hand the other processes' people changes in a room to C{people}, a room's news (read
        positions, deletions) to C{news}, and orders for every process to C{control}."""
        self._people, self._news, self._control = people, news, control

    def sayPeople(self, room: str, count: int, version: int, joined: dict[str, str], left: list[str],
                  everyone: dict[str, str] | None) -> None:
        """Tell the others this process's count and people in C{room}: the changes numbered
        C{version} (none: the number of the last), and with C{everyone}, the whole set for Redis
        to keep (said every refresh, so that a Redis that lost it has it again)."""
        connection = self._publisher.connection
        if connection is None:
            return
        changed = bool(joined or left)
        message = ["p", self.process, count, version, joined, left] if changed else ["p", self.process, count]
        pairs = everyone if everyone is not None else joined
        args: list[Any] = [self.process, count, self.channel(room), int(self._config.historyTtl), version,
                           b"1" if everyone is not None else b"0",
                           json.dumps(message, separators=(",", ":"), ensure_ascii=False), len(pairs)]
        for identity, name in pairs.items():
            args += [identity, name]
        if everyone is None:
            args += left
        _people(connection, [self._key(room, "meta"), self._key(room, "online"), self._peopleKey(room, self.process)],
                args).addErrback(lambda _: None)

    def _peopleKey(self, room: str, process: str) -> bytes:
        return self._key(room, "people:" + process)

    def readPeople(self, room: str) -> Deferred[dict[str, tuple[int, dict[str, str]]] | None]:
        """Every live process's people in the room, with the number of its last change: read
        once the room's subscription is confirmed, so that later changes come by the channel.
        None while Redis is away."""
        subscriber = self._subscriber.connection
        if subscriber is None or self._publisher.connection is None:
            return succeed(None)

        def read(_: object) -> Deferred[dict[str, tuple[int, dict[str, str]]] | None]:
            publisher = self._publisher.connection
            if publisher is None:
                return succeed(None)
            return _members(publisher, [self._key(room, "online")],
                            [int(self._config.presenceStale * 1000), self._peopleKey(room, "")]).addCallback(_everyone)

        return subscriber.command(b"PING").addCallback(read)

    def tellRoom(self, room: str, news: list[Any]) -> None:
        connection = self._publisher.connection
        if connection is not None:
            connection.command(b"PUBLISH", self.channel(room), json.dumps(news, separators=(",", ":"))).addErrback(
                lambda _: None)

    def tellAll(self, control: list[Any]) -> Deferred[Any]:
        """Publish an order to every process (this one too)."""
        connection = self._publisher.connection
        if connection is None:
            return fail(BrokerAway())
        return connection.command(b"PUBLISH", self.controlChannel, json.dumps(control, separators=(",", ":")))

    def setRead(self, identity: str, room: str, position: Head) -> Deferred[Head | None]:
        """Kept in Redis, for every process; with a chat log, written there too, to outlive
        Redis's expiry or loss (never waited for)."""
        connection = self._publisher.connection
        if connection is None:
            return succeed(None)
        d = _read(connection, [self._readKey(identity)],
                  [room, position.epoch, position.seq, READ_TTL]).addCallback(_position)
        if self.archive is not None:
            archive = self.archive

            def logged(kept: Head | None) -> Head | None:
                if kept is not None:
                    archive.setRead(identity, room, kept).addErrback(
                        lambda f: _log.warn("a read position could not be written to the chat log: {error}",
                                            error=str(f.value)))
                return kept

            d.addCallback(logged)
        return d

    def readOf(self, identity: str, room: str) -> Deferred[Head | None]:
        """From Redis; from the chat log when Redis has none (expired, or Redis lost its data)."""
        connection = self._publisher.connection
        if connection is None:
            return succeed(None)
        d = connection.command(b"HGET", self._readKey(identity), room).addCallback(_position)
        if self.archive is not None:
            archive = self.archive
            d.addCallback(lambda kept: kept if kept is not None else archive.read(identity, room))
        return d

    def _readKey(self, identity: str) -> bytes:
        return (self._prefix + "read:").encode("ascii") + identity.encode("utf-8")

    def ban(self, room: str, sub: str, seconds: int) -> Deferred[Any]:
        connection = self._publisher.connection
        if connection is None:
            return fail(BrokerAway())
        return _ban(connection, [self._bansKey], [json.dumps([room, sub]), seconds])

    def lift(self, room: str, sub: str) -> Deferred[bool]:
        connection = self._publisher.connection
        if connection is None:
            return fail(BrokerAway())
        return _ban(connection, [self._bansKey], [json.dumps([room, sub]), b""]).addCallback(bool)

    def bans(self) -> Deferred[list[tuple[str, str, float]]]:
        """Every ban, with when it ends (ms since the Unix epoch; some may have ended)."""
        connection = self._publisher.connection
        if connection is None:
            return fail(BrokerAway())

        def listed(flat: list[bytes]) -> list[tuple[str, str, float]]:
            bans = []
            for i in range(0, len(flat), 2):
                try:
                    room, sub = json.loads(flat[i])
                    bans.append((str(room), str(sub), float(flat[i + 1])))
                except (ValueError, TypeError):
                    continue
            return bans

        return connection.command(b"HGETALL", self._bansKey).addCallback(listed)

    @property
    def _bansKey(self) -> bytes:
        return (self._prefix + "@bans").encode("ascii")

    def stop(self) -> Deferred[None]:
        self._deliver = None
        self._presence = None
        self._people = self._news = self._control = None
        self._reconnected = lambda: None
        d = DeferredList([self._publisher.stop(), self._subscriber.stop()])
        return d.addCallback(lambda _: None)
