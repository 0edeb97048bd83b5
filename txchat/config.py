"""Every setting and its default, in one place: the command line (L{txchat.tap}) builds a
L{Config}, and the code, the tests and the benchmark read their settings from one.

A limit of 0 is off. The defaults keep the chat as open as the gorilla/websocket example it
comes from; docs/operations.md, "A public deployment", says which limits to turn on, and why.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 8080
# The chat log of one process, relative to the working directory (as twistd.pid and
# twistd.log are); with --redis, the default is to keep none (Redis keeps the history window).
DEFAULT_STORE = "sqlite:txchat.sqlite3"
MEMORY_STORE = "memory"


@dataclass(frozen=True)
class Config:
    # Where to listen (Twisted endpoint descriptions), for the chat and for /metrics.
    listen: tuple[str, ...] = (f"tcp:{DEFAULT_PORT}",)
    metricsListen: tuple[str, ...] = ()
    # One client.
    maxMessageSize: int = 512
    sendQueue: int = 256
    pingInterval: float = 54.0
    pongTimeout: float = 60.0
    writeTimeout: float = 10.0
    # Who may connect, and how much.
    allowedOrigins: tuple[str, ...] = ()
    maxConnections: int = 10000
    maxConnectionsPerIp: int = 0
    trustedProxies: tuple[str, ...] = ()
    rateLimit: float = 0.0
    rateBurst: int = 100
    # HTTP and the WebSocket handshake: each request (headers and body), then the handshake,
    # each within handshakeTimeout; headers of at most maxHeaderSize bytes.
    handshakeTimeout: float = 10.0
    # WebSocket handshakes a reactor turn takes while messages go out (txchat.lobby); 0: no limit.
    handshakesPerTurn: int = 1
    maxHeaderSize: int = 16384
    closeTimeout: float = 1.0
    # How long shutdown waits for clients to answer the going-away close before cutting them.
    shutdownTimeout: float = 5.0
    # Rooms and their history: at most maxRooms rooms (0: no limit), each keeping its newest
    # `history` messages until historyTtl seconds after its last one.
    maxRooms: int = 10000
    history: int = 50
    historyTtl: float = 86400.0
    # Recovery with since reaches back into the chat log for at most this many messages.
    recoveryMax: int = 1000
    # Signed identities (docs/integration.md): an HS256 secret, or
    # an RSA or EC P-256 public key in PEM. Neither: anyone may connect, with the name they give.
    tokenSecret: str | None = None
    tokenPublicKey: bytes | None = None
    # Keys for the server API under /api/ (none: the API is off, and /api/ is 404).
    apiKeys: tuple[str, ...] = ()
    # Bytes of an HTTP request's body (the API's JSON); a larger one gets HTTP 413.
    maxBodySize: int = 65536
    # Several processes through Redis (None: one process is the whole chat).
    redis: str | None = None
    redisBacklog: int = 1000
    redisConnectTimeout: float = 5.0
    # A Redis connection that owes a reply (to a command, or to the PING sent after a second
    # of quiet) for redisTimeout seconds is lost: a silent partition is an outage too.
    redisTimeout: float = 3.0
    # Reconnecting to Redis: the first retry after this, doubling up to redisMaxRetry (jittered).
    redisFirstRetry: float = 0.2
    redisMaxRetry: float = 5.0
    # Each process says its rooms' member counts every presenceRefresh seconds; a count not
    # said again within presenceStale seconds (its process died) stops counting, so a dead
    # process leaves `online` within presenceStale + 2 s (txchat.presence says why).
    presenceRefresh: float = 5.0
    # Above this many people (distinct identities) in a room, its members are told counts only,
    # not who is there (SPEC §18); GET /api/rooms/NAME/members pages through everyone.
    membersLimit: int = 200
    presenceStale: float = 20.0
    # The chat log (SPEC §16): where (None: L{DEFAULT_STORE}, or memory with --redis), and for
    # how many days (0: forever).
    store: str | None = None
    retention: float = 0.0

    @property
    def storeURL(self) -> str:
        """The store to open: C{store}, or the default for one process or for a cluster."""
        if self.store is not None:
            return self.store
        return MEMORY_STORE if self.redis else DEFAULT_STORE
