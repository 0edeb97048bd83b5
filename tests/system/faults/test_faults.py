"""txchat under real network faults (faults.py): each scenario runs redis-server, PostgreSQL, two
``twistd -n txchat --redis --store postgresql://`` nodes and recording clients in network
namespaces of their own, breaks the network or the processes, heals, and checks every client's
history and the chat log against it (tests/support/historycheck.py). Skipped, with the reason,
where namespaces cannot be made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.historycheck import Report
from tests.system.faults import faults
from tests.system.faults.faultnet import unavailable


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[faults.FaultCluster]:
    why = unavailable()
    if why:
        pytest.skip(why)
    cluster = faults.FaultCluster(tmp_path, nodes=2)
    try:
        cluster.startRedis()
        cluster.startPostgres()
        for i in range(2):
            cluster.startNode(i)
        cluster.startClients(clients=6, senders=3, rate=4, reconnect=0.05)
        yield cluster
    finally:
        cluster.close()


def clean(report: Report) -> Report:
    print(report.summary())
    assert report.violations == [], "\n".join(str(v) for v in report.violations[:10])
    assert report.messages > 30, "the clients chatted"
    assert report.logged is not None and report.logged >= report.messages - report.logLost, "the log was checked"
    return report


def linesOf(cluster: faults.FaultCluster, node: int) -> list[str]:
    twistd = cluster.nodes[node]
    assert twistd is not None, f"node {node} is not running"
    return twistd.lines


def events(cluster: faults.FaultCluster) -> list[dict[str, Any]]:
    return [json.loads(line) for line in cluster.history.read_text().splitlines()]


def test_a_node_cut_off_from_redis_for_five_seconds(cluster: faults.FaultCluster) -> None:
    faults.partitionFromRedis(cluster)
    report = clean(cluster.finish())
    assert report.unrecovered == 0


def test_slow_and_lossy_redis_links_for_twenty_seconds(cluster: faults.FaultCluster) -> None:
    print(faults.slowRedisLinks(cluster))
    clean(cluster.finish())


def test_redis_killed_and_restarted_empty_then_with_its_data(cluster: faults.FaultCluster) -> None:
    faults.redisRestarts(cluster)
    report = clean(cluster.finish())
    assert report.unnumbered > 0, "while Redis was away the clients chatted, unnumbered"
    epochs: dict[str, list[str]] = {}
    for event in events(cluster):
        # Redis's streams: the epochs messages were numbered in (a client that joined a node
        # while Redis was away was welcomed into that node's own epoch, where nothing is numbered).
        if event["k"] == "msg" and event["seq"] is not None:
            seen = epochs.setdefault(event["room"], [])
            if event["epoch"] not in seen:
                seen.append(event["epoch"])
    # Restarted empty: a new stream; restarted with its data: the same stream goes on.
    assert all(len(streams) == 2 for streams in epochs.values()), epochs


def test_postgres_cut_off_from_a_node_then_killed_and_restarted(cluster: faults.FaultCluster) -> None:
    faults.postgresPartitionedAndKilled(cluster)
    report = clean(cluster.finish())
    assert report.logLost == 0, "Redis kept its data: nothing may be missing from the log"
    lines = "".join(linesOf(cluster, 0))
    assert "cannot be written" in lines and "is written again" in lines, "the feed saw the outage and its end"


def test_a_node_killed_while_its_clients_chat(cluster: faults.FaultCluster) -> None:
    onNode0 = {line for line in linesOf(cluster, 0) if "connect 198.51.100." in line}
    faults.nodeKilled(cluster)
    report = clean(cluster.finish())
    assert onNode0 and report.reconnects >= 1
    assert report.unrecovered == 0, "they reconnected to the other node and recovered"


def test_clients_cut_off_from_their_node_and_back(cluster: faults.FaultCluster) -> None:
    faults.clientsCutOff(cluster)
    report = clean(cluster.finish())
    assert any("code 1008 no pong" in line for line in linesOf(cluster, 0)), "the node closed the half-open connections"
    assert report.reconnects >= 1


def test_a_flood_and_clients_that_never_read_while_a_node_is_cut_off(cluster: faults.FaultCluster) -> None:
    before = cluster.rss()
    faults.floodDuringFault(cluster)
    report = clean(cluster.finish())
    print(f"RSS KiB before {before}, peak {cluster.peakRss}")
    for i, peak in cluster.peakRss.items():
        assert peak - before[i] < 200 * 1024, "memory stays bounded under the flood"
    # The clients that never read are dropped: for a full send queue, or (they answer no ping
    # either) as silent, whichever the node sees first.
    dropped = [line for line in linesOf(cluster, 0) if "dropped slow client" in line or "code 1008 no pong" in line]
    assert len(dropped) >= 3, "".join(linesOf(cluster, 0)[-30:])
    assert report.accepted > 1000, "the flood got through"
