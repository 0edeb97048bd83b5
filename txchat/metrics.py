"""What an operator can watch, in Prometheus's text format.

The hub counts into a L{Metrics}; gauges that mirror live state (connections, broker, backlog)
are read only when scraped, so the broadcast path pays one counter update per flush, not per
client.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from twisted.web.resource import Resource
from twisted.web.server import Request


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("txchat_connections_open", "WebSocket clients connected now.", registry=r)
        self.handshakesQueued = Gauge("txchat_handshakes_queued", "WebSocket handshakes waiting their turn while "
                                      "messages go out (--handshakes-per-turn).", registry=r)
        self.handshakes = Counter(
            "txchat_handshakes", "WebSocket handshakes, by outcome.", ["outcome"], registry=r
        )
        self.messagesIn = Counter("txchat_messages_in", "Chat messages accepted from clients.", registry=r)
        self.deliveries = Counter("txchat_deliveries", "Messages handed to clients (one per client).", registry=r)
        self.frames = Counter("txchat_frames_out", "Text frames written to clients.", registry=r)
        self.slowDropped = Counter("txchat_slow_clients_dropped", "Clients dropped for a full send queue.", registry=r)
        self.rateLimited = Counter("txchat_rate_limited_clients", "Clients closed for sending too fast.", registry=r)
        self.brokerUp = Gauge("txchat_broker_up", "1 while the Redis broker is connected (always 1 without Redis).",
                              registry=r)
        self.brokerBacklog = Gauge("txchat_broker_publish_backlog", "Messages published to Redis and not yet "
                                   "acknowledged.", registry=r)
        self.brokerRefused = Gauge("txchat_broker_refused", "Messages refused for a full publish backlog, in all.",
                                   registry=r)
        self.logWaiting = Gauge("txchat_log_waiting", "Numbered messages in Redis's stream txchat:log, not yet "
                                "written to the cluster's chat log (PostgreSQL).", registry=r)
        self.logUp = Gauge("txchat_log_up", "1 while this process's writes to the cluster's chat log succeed.",
                           registry=r)
        self.logUnwritten = Gauge("txchat_log_unwritten", "Messages the chat log (SQLite) could not take, in all: "
                                  "they went out unnumbered.", registry=r)
        self.flushSeconds = Histogram(
            "txchat_flush_seconds", "Time to send one batch to every client.", registry=r,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )

    def watch(self, connections: Callable[[], float], brokerUp: Callable[[], float],
              backlog: Callable[[], float], refused: Callable[[], float], queued: Callable[[], float]) -> None:
        self.connections.set_function(connections)
        self.handshakesQueued.set_function(queued)
        self.brokerUp.set_function(brokerUp)
        self.brokerBacklog.set_function(backlog)
        self.brokerRefused.set_function(refused)

    def watchLog(self, waiting: Callable[[], float], up: Callable[[], float]) -> None:
        self.logWaiting.set_function(waiting)
        self.logUp.set_function(up)


class MetricsPage(Resource):
    """``GET /metrics`` on the metrics endpoint."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)
