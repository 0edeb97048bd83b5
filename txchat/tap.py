"""The ``twistd txchat`` command line: options and the service they describe."""

from __future__ import annotations

import dataclasses
import gc
import math
import socket
import sys
from importlib.metadata import version
from typing import Any, Callable

from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.web.resource import Resource

import txchat
from txchat import memory
from txchat.api import Api
from txchat.config import DEFAULT_PORT, DEFAULT_STORE, MEMORY_STORE, Config
from txchat.factory import ChatFactory
from txchat.hub import HubService
from txchat.limits import TrustedProxies, connectionsWithin, raiseOpenFileLimit
from txchat.listener import Listener
from txchat.logfeed import LogFeedService
from txchat.logservice import ArchiveRetention, LogService
from txchat.logtext import LogText, quietAutobahn, twistdWritesToStdout
from txchat.metrics import MetricsPage
from txchat.origin import OriginPolicy
from txchat.redisbroker import RedisAddress, RedisBroker
from txchat.roomapi import RoomApi
from txchat.site import ChatSite
from txchat.stores import checkStoreURL, describeStore, openArchive, openLog
from txchat.tokens import tokenChecker
from txchat.webapp import makeRoot

_log = Logger()
_COERCION_PREFIX = "Parameter type enforcement failed: "
_DEFAULTS = Config()


def _number(
    option: str, kind: Callable[[str], Any], low: float, high: float | None = None
) -> Callable[[str], Any]:
    """A coercer whose error names the option and the accepted range."""

    def coerce(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(f"--{option}: not a number: {value!r}") from None
        if not math.isfinite(number) or number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"--{option}: must be {bound}, got {value}")
        return number

    coerce.coerceDoc = (  # type: ignore[attr-defined]
        f"({kind.__name__} from {low} to {high})" if high is not None else f"({kind.__name__}, at least {low})"
    )
    return coerce


def checkRedisURL(url: str) -> str:
    """Reject a malformed ``--redis`` URL now rather than at the first publish."""
    try:
        RedisAddress.fromURL(url)
    except ValueError as e:
        raise ValueError(f"--redis: {e}") from None
    return url


def _readFile(option: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise usage.UsageError(f"--{option}: cannot read {path}: {e.strerror}") from None


# Options that set one Config field: (option, field, kind, lowest value, help). The default
# shown by --help is the field's default in Config.
_SETTINGS: list[tuple[str, str, type, float, str]] = [
    ("max-message-size", "maxMessageSize", int, 1, "Largest chat message a client may send, in bytes."),
    ("send-queue", "sendQueue", int, 1, "Messages queued for a client that is not reading before it is dropped."),
    ("ping-interval", "pingInterval", float, 0.001, "Seconds between server pings."),
    ("pong-timeout", "pongTimeout", float, 0.001,
     "Close a client that sends nothing (not even a pong) for this long."),
    ("write-timeout", "writeTimeout", float, 0.001, "Close a client whose pending output cannot drain for this long."),
    ("redis-backlog", "redisBacklog", int, 1,
     "Messages published to Redis and not yet acknowledged before more are refused."),
    ("redis-timeout", "redisTimeout", float, 0.001,
     "Seconds Redis has to answer (a command, or the ping sent after a second of quiet) before its "
     "connection counts as lost: an outage, as if it had closed."),
    ("max-connections", "maxConnections", int, 0, "WebSocket clients at once; more get HTTP 503 (0: no limit)."),
    ("max-connections-per-ip", "maxConnectionsPerIp", int, 0,
     "WebSocket clients at once from one address; more get HTTP 503 (0: no limit)."),
    ("rate-limit", "rateLimit", float, 0,
     "Messages a second a client may send on average (with signed identities: a user, over all their "
     "connections); a faster one is closed with 1008 (0: no limit)."),
    ("rate-burst", "rateBurst", int, 1, "Messages a client may send at once, within --rate-limit."),
    ("handshake-timeout", "handshakeTimeout", float, 0.001,
     "Seconds a connection has to send each request (headers and body), and then to finish the WebSocket handshake."),
    ("handshakes-per-turn", "handshakesPerTurn", int, 0,
     "WebSocket handshakes taken in a turn of the reactor while messages are going out, so that a crowd "
     "arriving does not stall the chat of those already in; the rest wait their turn (0: no limit)."),
    ("close-timeout", "closeTimeout", float, 0.001, "Seconds a client has to answer a close before it is cut."),
    ("max-header-size", "maxHeaderSize", int, 256,
     "Bytes of request line and headers; a larger request gets HTTP 400."),
    ("max-rooms", "maxRooms", int, 0,
     "Rooms at once; a new room beyond it replaces the empty room quietest longest (0: no limit)."),
    ("history", "history", int, 0, "Messages each room keeps for txchat.v1 clients that join or reconnect."),
    ("history-ttl", "historyTtl", float, 0.001, "Seconds a room's history is kept after its last message."),
    ("members-limit", "membersLimit", int, 0,
     "Above this many people in a room, its members are told counts only, not who is there."),
    ("shutdown-timeout", "shutdownTimeout", float, 0,
     "On SIGTERM/SIGINT, seconds clients have to answer the going-away close before they are cut."),
    ("retention", "retention", float, 0, "Days the chat log keeps a message (0: forever)."),
    ("recovery-max", "recoveryMax", int, 0,
     "Messages a reconnecting client may recover from the chat log; if it missed more, it is told "
     "it did not recover."),
]


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve the chat page at / and its WebSocket at /ws on one port. "
        "Each page chats with the others in its room: / and /ws are the lobby, "
        "/room/NAME and /ws/NAME room NAME."
    )

    optParameters = [
        ["port", "p", DEFAULT_PORT, "TCP port to listen on (0 picks a free one).", _number("port", int, 0, 65535)],
        ["interface", None, None, "Address to bind --port to (default: all interfaces)."],
        ["redis", None, None, "redis://[[user]:password@]host[:port][/db] (rediss:// for TLS): broadcast through "
         "Redis so that several txchat processes form one chat.", checkRedisURL],
        ["store", None, None, "Where to keep the chat log: sqlite:PATH, postgresql://... or memory (nothing "
         f"outlives the process). Default: {DEFAULT_STORE} in the working directory; with --redis, "
         f"{MEMORY_STORE}.", checkStoreURL],
    ] + [
        [option, None, getattr(_DEFAULTS, field), text, _number(option, kind, low)]
        for option, field, kind, low, text in _SETTINGS
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["allowed-origin"] = []
        self["trusted-proxy"] = []
        self["metrics-listen"] = []
        self["token-secret"] = None
        self.secretOption = "token-secret"  # which option gave the secret, for its error
        self["token-public-key"] = None
        self["api-key"] = []

    def opt_version(self) -> None:
        """Print txchat's version (and Twisted's and Autobahn's) and exit."""
        print(f"txchat {txchat.__version__} (Twisted {version('twisted')}, Autobahn {version('autobahn')})")
        sys.exit(0)

    def _endpoint(self, option: str, description: str) -> str:
        from twisted.internet import reactor

        try:
            serverFromString(reactor, description)
        except Exception as e:
            raise usage.UsageError(f"--{option}: bad endpoint {description!r}: {e}") from None
        return description

    def opt_metrics_listen(self, description: str) -> None:
        """Serve Prometheus metrics at /metrics on this endpoint (e.g. tcp:9100:interface=127.0.0.1); repeatable; off by default."""  # noqa: E501
        self["metrics-listen"].append(self._endpoint("metrics-listen", description))

    def opt_trusted_proxy(self, address: str) -> None:
        """A proxy (address or network, e.g. 127.0.0.1 or 10.0.0.0/8) whose X-Forwarded-For names the client for --max-connections-per-ip and the logs; repeatable."""  # noqa: E501
        try:
            TrustedProxies([address])
        except ValueError:
            raise usage.UsageError(f"--trusted-proxy: not an address or network: {address!r}") from None
        self["trusted-proxy"].append(address)

    def opt_listen(self, description: str) -> None:
        """Listen on a Twisted endpoint (tcp:8080:interface=127.0.0.1, ssl:8443:privateKey=key.pem:certKey=cert.pem, unix:/run/txchat.sock); repeatable; replaces --port and --interface."""  # noqa: E501
        self["listen"].append(self._endpoint("listen", description))

    def opt_allowed_origin(self, origin: str) -> None:
        """A browser origin (https://chat.example.com, or host[:port]) besides the page's own that may open the WebSocket; repeatable; * allows every origin."""  # noqa: E501
        try:
            OriginPolicy([origin])
        except ValueError as e:
            raise usage.UsageError(f"--allowed-origin: {e}") from None
        self["allowed-origin"].append(origin)

    def opt_token_secret(self, secret: str) -> None:
        """Require a JWT signed with this HS256 secret (token= in the handshake) for every WebSocket; the name comes from it. Prefer --token-secret-file: a command line is visible to every user of the machine."""  # noqa: E501
        self["token-secret"] = secret
        self.secretOption = "token-secret"

    def opt_token_secret_file(self, path: str) -> None:
        """As --token-secret, the secret read from this file (surrounding white space ignored)."""
        self["token-secret"] = _readFile("token-secret-file", path).decode("utf-8", "replace").strip()
        self.secretOption = "token-secret-file"

    def opt_token_public_key(self, path: str) -> None:
        """Require a JWT signed with the private half of this PEM public key: RSA (RS256) or EC P-256 (ES256)."""  # noqa: E501
        self["token-public-key"] = _readFile("token-public-key", path)

    def opt_api_key(self, key: str) -> None:
        """Turn the server API under /api/ on, for callers with this bearer key; repeatable (for rotation). Prefer --api-key-file."""  # noqa: E501
        self["api-key"].append(key)

    def opt_api_key_file(self, path: str) -> None:
        """As --api-key, with the keys read from this file, one a line (blank lines and # comments ignored)."""
        text = _readFile("api-key-file", path).decode("utf-8", "replace")
        keys = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if not keys:
            raise usage.UsageError(f"--api-key-file: no key in {path}")
        self["api-key"].extend(keys)

    def postOptions(self) -> None:
        if self["interface"] and self["listen"]:
            raise usage.UsageError("--interface: goes with --port, not with --listen")
        try:
            tokenChecker(self["token-secret"], self["token-public-key"])
        except ValueError as e:
            option = "token-public-key" if self["token-public-key"] is not None else self.secretOption
            raise usage.UsageError(f"--{option}: {e}") from None
        for key in self["api-key"]:
            if len(key) < 16 or not key.isprintable() or " " in key:
                raise usage.UsageError("--api-key: at least 16 characters, printable, no spaces")

    def listeners(self) -> list[tuple[str, str]]:
        """(option, endpoint description) for every chat listener; the option is for errors."""
        if self["listen"]:
            return [("--listen", description) for description in self["listen"]]
        interface = (self["interface"] or "").replace(":", r"\:")
        where = f":interface={interface}" if interface else ""
        return [("--port", f"tcp:{self['port']}{where}")]

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Report a bad value as one line naming the option, not twistd's whole usage text."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            message = str(e).removeprefix(_COERCION_PREFIX)
            raise SystemExit(f"twistd txchat: error: {message} (see twistd txchat --help)") from None

    def config(self) -> Config:
        return Config(
            listen=tuple(description for _, description in self.listeners()),
            metricsListen=tuple(self["metrics-listen"]),
            allowedOrigins=tuple(self["allowed-origin"]),
            trustedProxies=tuple(self["trusted-proxy"]),
            redis=self["redis"],
            store=self["store"],
            tokenSecret=self["token-secret"],
            tokenPublicKey=self["token-public-key"],
            apiKeys=tuple(self["api-key"]),
            **{field: self[option] for option, field, *_ in _SETTINGS},
        )


# Allocations between the cyclic collector's youngest passes (Python's default: 700). A
# connection allocates a few hundred objects, so at 700 a connect storm of 5000 ran some
# three thousand passes, a sixth of its CPU. At 50,000 a pass walked up to that many objects:
# 22-46 ms stalls every few seconds with connections coming and going. At 10,000 a storm costs
# the same (the hub freezes what connections bring, txchat.memory) and a pass a fifth as much.
YOUNG_COLLECTION_THRESHOLD = 10_000


class _FreezeStartupObjects(Service):
    """Thousands of connections are hundreds of thousands of objects for the cyclic collector; each
    of its passes walks every object of the generations it collects. What start-up made lives
    as long as the process: frozen, the collector skips it (a reconnection storm takes about a
    tenth less time; see docs/performance.md); what connections bring, the hub freezes as they
    come (L{txchat.memory}). And the youngest pass runs less often
    (L{YOUNG_COLLECTION_THRESHOLD}); the older generations keep Python's ratios to it."""

    def startService(self) -> None:
        super().startService()
        memory.freeze()
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


class _Top(MultiService):
    """Every service of the process. twistd asks the application it puts this in for a log
    observer before it makes its own (L{ILogObserver}, as a .tac file can set one): where
    twistd would write its lines to standard output, this gives it L{LogText}, the same
    lines for less."""

    logObserver: ILogObserver | None = None

    def setServiceParent(self, parent: Any) -> None:
        if self.logObserver is not None and isinstance(parent, Componentized):
            if parent.getComponent(ILogObserver, None) is None:
                parent.setComponent(ILogObserver, self.logObserver)
        super().setServiceParent(parent)


def _withinOpenFileLimit(config: Config, openFiles: int) -> Config:
    """C{config} with no more WebSocket clients than the process can hold open, saying so."""
    fits = connectionsWithin(config.maxConnections, openFiles)
    if fits is None:
        return config
    asked = config.maxConnections or "0 (no limit)"
    _log.warn(
        "txchat: at most {fits} WebSocket clients at once, not --max-connections {asked}: the process may "
        "open {openFiles} files (raise the hard limit, ulimit -Hn or systemd's LimitNOFILE=, to allow more); "
        "more clients get HTTP 503", fits=fits, asked=asked, openFiles=openFiles,
    )
    return dataclasses.replace(config, maxConnections=fits)


def makeService(options: Options, reactor: Any = None) -> IService:
    """One hub, one site, one listener per endpoint; the hub stops last so clients get their
    going-away close after the ports stop accepting. The ports are opened here, before twistd
    daemonises, so that one that cannot be had is a one-line error at the terminal."""
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    quietAutobahn()
    config = _withinOpenFileLimit(options.config(), raiseOpenFileLimit())
    top = _Top()
    if twistdWritesToStdout(getattr(options, "parent", None)):
        top.logObserver = LogText(sys.stdout)
    _FreezeStartupObjects().setServiceParent(top)
    # The store first: one that cannot be opened stops start-up here.
    log = openLog(config)
    archive = openArchive(config, reactor)
    broker = RedisBroker(config.redis, reactor, config) if config.redis else None
    hub = ChatFactory(config, reactor, broker, memory.giveBack, log=log, freeze=memory.freeze)
    if log is None and archive is None:
        HubService(hub).setServiceParent(top)
    elif log is not None:
        logService = LogService(log, reactor, config.retention)
        logService.setServiceParent(top)
        HubService(hub).setServiceParent(logService)  # stopped before the log closes
    else:
        assert broker is not None
        broker.archive = archive
        HubService(hub).setServiceParent(top)  # (it writes to Redis, never to the log itself)
    api = Api(RoomApi(hub), config.apiKeys, config.maxMessageSize) if config.apiKeys else None
    signIn = config.tokenSecret is not None or config.tokenPublicKey is not None
    root = makeRoot(hub, health=hub.health, api=api, signIn=signIn)
    site = ChatSite(root, reactor, config, webSockets=(b"/ws", hub))
    listening: list[str] = []
    for option, description in options.listeners():
        endpoint = serverFromString(reactor, description)
        listener = Listener(
            option, description, endpoint, site, "chat page at {url} (WebSocket /ws)", note=describeStore(config)
        )
        listener.listen()
        listener.setServiceParent(top)
        if listener.port is not None:
            listening.append(str(getattr(listener.port.getHost(), "port", None) or description))
    if archive is not None and broker is not None and config.redis is not None:
        # Its consumer name is one that this process takes again when restarted (it writes its
        # own pending entries at once) and that no other live process has: machine and ports.
        consumer = f"{socket.gethostname()}:{','.join(listening)}"
        LogFeedService(config.redis, archive, reactor, consumer, config, hub.metrics,
                       stream=broker.logStream).setServiceParent(top)
        ArchiveRetention(archive, reactor, config.retention).setServiceParent(top)
    if config.metricsListen:
        metrics = Resource()
        metrics.putChild(b"metrics", MetricsPage(hub.metrics.registry))
        metricsSite = ChatSite(metrics, reactor, config)
        for description in config.metricsListen:
            endpoint = serverFromString(reactor, description)
            listener = Listener("--metrics-listen", description, endpoint, metricsSite, "metrics at {url}", "/metrics")
            listener.listen()
            listener.setServiceParent(top)
    return top
