"""The ``twistd txchat`` command line: options and the service they describe."""

from __future__ import annotations

import math
from typing import Any, Callable

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage
from twisted.web.resource import Resource

from txchat.broker import RedisAddress, RedisBroker
from txchat.hub import ChatHub, HubConfig, HubService
from txchat.limits import TrustedProxies
from txchat.metrics import MetricsPage
from txchat.origin import OriginPolicy
from txchat.site import ChatSite
from txchat.webapp import makeRoot

_COERCION_PREFIX = "Parameter type enforcement failed: "


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


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve the chat page at / and its WebSocket at /ws on one port. "
        "Every page open on the server chats with every other one."
    )

    optParameters = [
        ["port", "p", 8080, "TCP port to listen on (0 picks a free one).", _number("port", int, 0, 65535)],
        ["interface", None, "", "Address to bind --port to (default: all interfaces)."],
        ["max-message-size", None, 512, "Largest chat message a client may send, in bytes.",
         _number("max-message-size", int, 1)],
        ["send-queue", None, 256, "Messages queued for a client that is not reading before it is dropped.",
         _number("send-queue", int, 1)],
        ["ping-interval", None, 54.0, "Seconds between server pings.", _number("ping-interval", float, 0.001)],
        ["pong-timeout", None, 60.0, "Close a client that sends nothing (not even a pong) for this long.",
         _number("pong-timeout", float, 0.001)],
        ["write-timeout", None, 10.0, "Close a client whose pending output cannot drain for this long.",
         _number("write-timeout", float, 0.001)],
        ["redis", None, None, "Broadcast through Redis pub/sub (redis://[:password@]host:port[/db]) so that "
         "several txchat processes form one chat.", checkRedisURL],
        ["redis-backlog", None, 1000, "Messages published to Redis and not yet acknowledged before more are "
         "refused.", _number("redis-backlog", int, 1)],
        ["max-connections", None, 10000, "WebSocket clients at once; more get HTTP 503 (0: no limit).",
         _number("max-connections", int, 0)],
        ["max-connections-per-ip", None, 100, "WebSocket clients at once from one address; more get HTTP 503 "
         "(0: no limit).", _number("max-connections-per-ip", int, 0)],
        ["rate-limit", None, 50.0, "Messages a second a client may send on average; a faster one is closed with "
         "1008 (0: no limit).", _number("rate-limit", float, 0)],
        ["rate-burst", None, 100, "Messages a client may send at once, within --rate-limit.",
         _number("rate-burst", int, 1)],
        ["handshake-timeout", None, 10.0, "Seconds a connection has to send its request headers, and then to "
         "finish the WebSocket handshake.", _number("handshake-timeout", float, 0.001)],
        ["close-timeout", None, 1.0, "Seconds a client has to answer a close before it is cut.",
         _number("close-timeout", float, 0.001)],
        ["max-header-size", None, 16384, "Bytes of request line and headers; a larger request gets HTTP 400.",
         _number("max-header-size", int, 256)],
        ["shutdown-timeout", None, 5.0, "On SIGTERM/SIGINT, seconds clients have to answer the going-away close "
         "before they are cut.", _number("shutdown-timeout", float, 0)],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["allowed-origin"] = []
        self["trusted-proxy"] = []
        self["metrics-listen"] = []

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

    def postOptions(self) -> None:
        if self["interface"] and self["listen"]:
            raise usage.UsageError("--interface: goes with --port, not with --listen")
        if not self["listen"]:
            interface = self["interface"].replace(":", r"\:")
            where = f":interface={interface}" if interface else ""
            self["listen"] = [f"tcp:{self['port']}{where}"]

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Report a bad value as one line naming the option, not twistd's whole usage text."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            message = str(e).removeprefix(_COERCION_PREFIX)
            raise SystemExit(f"twistd txchat: error: {message} (see twistd txchat --help)") from None


def hubConfig(options: Options) -> HubConfig:
    return HubConfig(
        maxMessageSize=options["max-message-size"],
        sendQueue=options["send-queue"],
        pingInterval=options["ping-interval"],
        pongTimeout=options["pong-timeout"],
        writeTimeout=options["write-timeout"],
        allowedOrigins=tuple(options["allowed-origin"]),
        maxConnections=options["max-connections"],
        maxConnectionsPerIp=options["max-connections-per-ip"],
        trustedProxies=tuple(options["trusted-proxy"]),
        rateLimit=options["rate-limit"],
        rateBurst=options["rate-burst"],
        openHandshakeTimeout=options["handshake-timeout"],
        closeHandshakeTimeout=options["close-timeout"],
        shutdownTimeout=options["shutdown-timeout"],
    )


def makeService(options: Options, reactor: Any = None) -> IService:
    """One hub, one site, one listening service per endpoint; the hub stops last so clients get
    their going-away close after the ports stop accepting."""
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    top = MultiService()
    broker = RedisBroker(options["redis"], reactor, backlog=options["redis-backlog"]) if options["redis"] else None
    hub = ChatHub(hubConfig(options), reactor, broker)
    HubService(hub).setServiceParent(top)
    site = ChatSite(
        makeRoot(hub, health=hub.health), reactor,
        headerTimeout=options["handshake-timeout"], maxHeaderSize=options["max-header-size"],
    )
    for description in options["listen"]:
        StreamServerEndpointService(serverFromString(reactor, description), site).setServiceParent(top)
    if options["metrics-listen"]:
        metrics = Resource()
        metrics.putChild(b"metrics", MetricsPage(hub.metrics.registry))
        metricsSite = ChatSite(metrics, reactor, headerTimeout=options["handshake-timeout"])
        for description in options["metrics-listen"]:
            StreamServerEndpointService(serverFromString(reactor, description), metricsSite).setServiceParent(top)
    return top
