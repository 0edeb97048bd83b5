"""The hub: the one WebSocketServerFactory that registers every chat client and broadcasts.

It knows nothing of HTTP: the web resource hands it connections. Broadcasting is batched:
every message accepted while the reactor is busy goes out in one flush, as soon as the
reactor is free, framed once for all clients that keep up (see L{txchat.fanout}).
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from types import FunctionType
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from txchat.broker import Broker, LocalBroker
from txchat.fanout import Fanout
from txchat.limits import ConnectionLimits, TrustedProxies
from txchat.metrics import Metrics
from txchat.origin import OriginPolicy
from txchat.protocol import ChatProtocol

_log = Logger()

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008


@dataclass(frozen=True)
class HubConfig:
    """The hub's side of the command line (see txchat.tap); 0 turns a limit off."""

    maxMessageSize: int = 512
    sendQueue: int = 256
    pingInterval: float = 54.0
    pongTimeout: float = 60.0
    writeTimeout: float = 10.0
    allowedOrigins: tuple[str, ...] = ()
    maxConnections: int = 10000
    maxConnectionsPerIp: int = 100
    trustedProxies: tuple[str, ...] = ()
    rateLimit: float = 50.0
    rateBurst: int = 100
    openHandshakeTimeout: float = 10.0
    closeHandshakeTimeout: float = 1.0
    # How long shutdown waits for clients to answer the going-away close before cutting them.
    shutdownTimeout: float = 5.0


class _ClockTimer:
    """Autobahn's handshake timers, on our injected clock instead of the global reactor."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> IDelayedCall:
        return self._clock.callLater(delay, func, *args, **kwargs)


class ChatHub(WebSocketServerFactory):
    protocol = ChatProtocol

    def __init__(self, config: HubConfig, reactor: IReactorTime, broker: Broker | None = None) -> None:
        super().__init__(reactor=reactor)
        self.config = config
        self.clock = reactor
        self.origins = OriginPolicy(config.allowedOrigins)
        self.proxies = TrustedProxies(config.trustedProxies)
        self.limits = ConnectionLimits(config.maxConnections, config.maxConnectionsPerIp)
        self.metrics = Metrics()
        self.setProtocolOptions(
            versions=[13],
            webStatus=False,
            # Send 1009/1007/1003 close frames instead of dropping TCP (SPEC §8).
            failByDrop=False,
            maxMessagePayloadSize=config.maxMessageSize,
            openHandshakeTimeout=config.openHandshakeTimeout,
            closeHandshakeTimeout=config.closeHandshakeTimeout,
            autoPingInterval=0,
        )
        self._batched_timer = _ClockTimer(reactor)
        self.protocol = self._protocolWithOptions(type(self).protocol)
        self._fanout = Fanout(config.sendQueue, self._frame)
        self._flushCall: IDelayedCall | None = None
        self.broker: Broker = broker if broker is not None else LocalBroker()
        self._connections: set[ChatProtocol] = set()
        self._closing = False
        self._allGone: list[Deferred[None]] = []
        self.metrics.watch(
            connections=lambda: len(self._connections),
            brokerUp=lambda: float(self.broker.up),
            backlog=lambda: self.broker.backlog,
            refused=lambda: self.broker.dropped,
        )

    def _protocolWithOptions(self, base: type[ChatProtocol]) -> type[ChatProtocol]:
        """The protocol class with this hub's options on the class itself.

        At every connect Autobahn copies some thirty options from the factory onto the new
        protocol, and pretty-prints the lot for a debug line: a third of the cost of a
        connect, and memory on each connection. They are the same for every client, so they
        are set once here and the per-connection copy (CONFIG_ATTRS) is left empty."""
        options = {}
        for name in base.CONFIG_ATTRS:
            value = getattr(self, name)
            options[name] = staticmethod(value) if isinstance(value, FunctionType) else value
        return type(base.__name__, (base,), {**options, "CONFIG_ATTRS": ()})

    def _frame(self, payload: bytes) -> bytes:
        return self.prepareMessage(payload).payloadHybi  # type: ignore[no-any-return]

    # -- membership -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._fanout)

    def admit(self, client: ChatProtocol, address: str) -> str | None:
        """Count a handshake in against the connection limits, or say why it may not."""
        reason = "shutting-down" if self._closing else self.limits.admit(address)
        self.metrics.handshakes.labels("refused-" + reason if reason else "accepted").inc()
        return reason

    def refused(self, reason: str) -> None:
        self.metrics.handshakes.labels("refused-" + reason).inc()

    def health(self) -> tuple[int, str]:
        """For load balancers: 200 while serving; what the broker is doing, if there is one."""
        if self._closing:
            return 503, "shutting down"
        state = self.broker.state
        return 200, "ok" if state is None else f"ok\nredis: {state}"

    def register(self, client: ChatProtocol) -> None:
        self._connections.add(client)
        if self._closing:
            client.leave(CLOSE_GOING_AWAY, "server shutting down")
            return
        self._fanout.add(client, client.write)
        if client.behind:
            self._fanout.pause(client)

    def unregister(self, client: ChatProtocol) -> None:
        """Stop all output to the client; it is closing."""
        self._fanout.remove(client)

    def disconnected(self, client: ChatProtocol, admittedAs: str | None) -> None:
        self._fanout.remove(client)
        self._connections.discard(client)
        if admittedAs is not None:
            self.limits.release(admittedAs)
        if self._closing and not self._connections:
            waiting, self._allGone = self._allGone, []
            for d in waiting:
                if not d.called:  # not already fired by the shutdown timeout
                    d.callback(None)

    def paused(self, client: ChatProtocol) -> None:
        self._fanout.pause(client)

    def resumed(self, client: ChatProtocol) -> None:
        sent = self._fanout.resume(client)
        if sent:
            self.metrics.deliveries.inc(sent)
            self.metrics.frames.inc()

    # -- messages -------------------------------------------------------------------------

    def startBroker(self) -> None:
        self.broker.start(self.deliver)

    def broadcast(self, message: bytes) -> None:
        """Accept a normalised message from a client."""
        self.metrics.messagesIn.inc()
        self.broker.publish(message)

    def deliver(self, message: bytes) -> None:
        """Queue a message from the broker for every client; one flush per reactor turn."""
        if self._fanout.publish(message):
            self._flushCall = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flushCall = None
        started = perf_counter()
        messages, ready = self._fanout.pending, self._fanout.ready
        dropped = self._fanout.flush()
        metrics = self.metrics
        metrics.flushSeconds.observe(perf_counter() - started)
        metrics.deliveries.inc(messages * ready)
        metrics.frames.inc(ready)
        for client in dropped:
            metrics.slowDropped.inc()
            _log.info(
                "dropped slow client {peer}: more than {limit} messages waiting",
                peer=client.peerName,
                limit=self.config.sendQueue,
            )
            client.leave(CLOSE_POLICY, "too slow: send queue full")

    # -- shutdown -------------------------------------------------------------------------

    def closeAll(self) -> Deferred[None]:
        """Send what is pending, close every client with 1001, and fire once all are gone."""
        self._closing = True
        if self._flushCall is not None:
            self._flushCall.cancel()
            self._flush()
        for client in list(self._connections):
            client.leave(CLOSE_GOING_AWAY, "server shutting down")
        if not self._connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._allGone.append(d)
        d.addTimeout(self.config.shutdownTimeout, self.clock, onTimeoutCancel=self._cutRemaining)
        return d

    def _cutRemaining(self, result: Any, timeout: float) -> None:
        for client in list(self._connections):
            _log.info("cut {peer}: no close reply within {timeout}s", peer=client.peerName, timeout=timeout)
            client.transport.abortConnection()


class HubService(Service):
    """Starts the hub's broker with the service and closes every client when it stops."""

    def __init__(self, hub: ChatHub) -> None:
        self.hub = hub

    def startService(self) -> None:
        super().startService()
        self.hub.startBroker()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        d = self.hub.closeAll()
        d.addCallback(lambda _: self.hub.broker.stop())
        return d
