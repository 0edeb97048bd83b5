"""txchat under network faults: real processes in their own network namespaces, faults made by
the kernel (faultnet.py), every client's history checked afterwards
(tests/support/historycheck.py). The README's "Faults we test" says what and why.

    python -m tests.system.faults.faults --minutes 10       # a randomized run; needs root

The scenarios (test_faults.py runs each) and the randomized run share L{FaultCluster}:
``redis-server`` in one namespace, PostgreSQL (the cluster's chat log) in another, two or three
``twistd -n txchat --redis --store postgresql://`` nodes in one each, and the chat clients
(faultclients.py) in another, every node linked to Redis, to PostgreSQL and to the clients by a
link of its own.
"""

from __future__ import annotations

import argparse
import json
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from bench.postgresserver import PostgresServer
from bench.processes import Twistd
from tests.support.historycheck import LogRow, Report, check
from tests.system.faults.faultnet import Link, Network, unavailable

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
ROOT = Path(__file__).resolve().parents[3]
# Short keepalive, so that half-open connections are found in seconds, not a minute.
NODE_OPTIONS = ("--port", "8080", "--ping-interval", "1", "--pong-timeout", "4", "--history", "500")
# How long the end waits for the log to hold what the clients saw: a feed's write retried with
# backoff after an outage, and entries a killed node left pending, claimed after 30 s idle.
LOG_WAIT = 90.0
# What the chat clients speak: txchat.v2 sends are acknowledged, and resent until they are.
PROTOCOL = "v2"


class FaultCluster:
    def __init__(self, directory: Path, nodes: int = 2, log: Callable[[str], None] = print) -> None:
        self.directory = directory
        self.log = log
        self.net = Network()
        self.faults = 0
        self.redisNs = self.net.namespace("redis")
        self.clientsNs = self.net.namespace("clients")
        self.nodeNs = [self.net.namespace(f"n{i}") for i in range(nodes)]
        self.pgNs = self.net.namespace("pg")
        self.redisLinks = [self.net.link(ns, self.redisNs) for ns in self.nodeNs]
        self.clientLinks = [self.net.link(self.clientsNs, ns) for ns in self.nodeNs]
        self.pgLinks = [self.net.link(ns, self.pgNs) for ns in self.nodeNs]
        self.redis: subprocess.Popen[str] | None = None
        self.postgres: PostgresServer | None = None
        self.nodes: list[Twistd | None] = [None] * nodes
        self.clients: subprocess.Popen[str] | None = None
        self.history = directory / "history.jsonl"
        self.peakRss: dict[int, int] = {}

    # -- processes ------------------------------------------------------------------------

    def startRedis(self, keepData: bool = False) -> None:
        """With an append-only file written before every reply (``appendfsync always``), so
        that a Redis killed with SIGKILL comes back with everything it acknowledged; without
        C{keepData}, from nothing."""
        data = self.directory / "redis"
        if not keepData:
            shutil.rmtree(data, ignore_errors=True)
        data.mkdir(exist_ok=True)
        self.redis = self.net.start(
            self.redisNs, REDIS, "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no",
            "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(data),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.redis.stdout is not None
        for line in self.redis.stdout:
            if "Ready to accept connections" in line:
                return
        raise RuntimeError("redis-server did not start")

    def killRedis(self) -> None:
        """SIGKILL, as a crash."""
        assert self.redis is not None
        self.redis.send_signal(signal.SIGKILL)
        self.redis.wait(10)
        self.faults += 1

    def startPostgres(self) -> None:
        """The chat log's server, listening in its namespace; started again on its data (and
        port) after L{killPostgres}."""
        if self.postgres is None:
            self.postgres = PostgresServer(prefix=self.net.command(self.pgNs), listen="0.0.0.0")
        self.postgres.start()

    def killPostgres(self) -> None:
        """An immediate shutdown, as a crash: no checkpoint, recovered from at the next start."""
        assert self.postgres is not None
        self.postgres.kill()
        self.faults += 1

    def logRows(self) -> list[LogRow]:
        """The chat log as it is now (through the server's unix socket, outside every link)."""
        assert self.postgres is not None
        with self.postgres.admin("txchat") as connection:
            try:
                rows = connection.execute("SELECT room, epoch, seq, text FROM messages").fetchall()
            except Exception as e:  # no node has created the schema yet
                if "does not exist" in str(e):
                    return []
                raise
        return [(room, epoch, int(seq), text) for room, epoch, seq, text in rows]

    def startNode(self, i: int) -> Twistd:
        redisAddress = self.redisLinks[i].address(self.redisNs)
        assert self.postgres is not None, "start PostgreSQL first"
        store = self.postgres.url(host=self.pgLinks[i].address(self.pgNs))
        node = Twistd(*NODE_OPTIONS, "--redis", f"redis://{redisAddress}:6379", "--store", store,
                      cwd=self.directory, prefix=tuple(self.net.command(self.nodeNs[i])))
        self.net.processes.append(node.process)
        node.waitFor("connected to Redis")
        self.nodes[i] = node
        return node

    def killNode(self, i: int) -> None:
        node = self.nodes[i]
        assert node is not None
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(10)
        self.faults += 1

    def nodeUrl(self, i: int) -> str:
        return f"ws://{self.clientLinks[i].address(self.nodeNs[i])}:8080"

    def startClients(self, clients: int = 6, senders: int = 3, rate: float = 4.0, reconnect: float = 0.05,
                     seed: int = 1, rooms: str = "a,b", protocol: str = PROTOCOL) -> None:
        nodes = ",".join(self.nodeUrl(i) for i in range(len(self.nodes)))
        self.clients = self.net.start(
            self.clientsNs, sys.executable, "-m", "tests.system.faults.faultclients", "--nodes", nodes,
            "--rooms", rooms, "--clients", str(clients), "--senders", str(senders), "--rate", str(rate),
            "--reconnect", str(reconnect), "--seed", str(seed), "--protocol", protocol, "--out", str(self.history),
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._expect("ready")

    def tell(self, command: str) -> None:
        assert self.clients is not None and self.clients.stdin is not None
        self.clients.stdin.write(command + "\n")
        self.clients.stdin.flush()
        self._expect("ok" if command != "stop" else "done")

    def _expect(self, word: str, timeout: float = 60) -> None:
        assert self.clients is not None and self.clients.stdout is not None
        ready, _, _ = select.select([self.clients.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"the clients said nothing for {timeout} s (waiting for {word!r})")
        line = self.clients.stdout.readline().strip()
        if line != word:
            raise RuntimeError(f"the clients said {line!r}, not {word!r} (exit {self.clients.poll()})")

    def rss(self) -> dict[int, int]:
        """Each live node's resident memory now, in KiB (and the peak seen so far)."""
        now = {}
        for i, node in enumerate(self.nodes):
            if node is not None and node.process.poll() is None:
                status = Path(f"/proc/{node.pid}/status").read_text()
                kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
                now[i] = kib
                self.peakRss[i] = max(self.peakRss.get(i, 0), kib)
        return now

    # -- faults ---------------------------------------------------------------------------

    def partition(self, link: Link) -> None:
        link.partition()
        self.faults += 1

    def degrade(self, link: Link) -> str:
        self.faults += 1
        return link.degrade()

    def wait(self, seconds: float) -> None:
        """Let the run go on for C{seconds}, watching the nodes' memory each second."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.rss()
            time.sleep(min(1.0, left))  # the chat runs in other processes: this only paces the run

    # -- the end --------------------------------------------------------------------------

    def finish(self, settle: float = 4.0, acks: float = 45.0, logWait: float = LOG_WAIT) -> Report:
        """Heal everything, stop the senders, give their sends up to C{acks} seconds to be
        answered (a Redis connection that was congested drains its backlog at TCP's pace: in
        one run in eight, acks still came every 1.7 s, a few at a time, 25 s after the heal), let every client catch up,
        stop, and check; then give the log up to C{logWait} seconds to hold every numbered
        message the clients saw."""
        for link in self.net.links:
            link.heal()
        self.tell("quiet")
        self.tell(f"settle {acks}")
        self.wait(settle)
        self.tell("stop")
        events = [json.loads(line) for line in self.history.read_text().splitlines()]
        end = time.monotonic() + logWait
        while True:
            report = check(events, log=self.logRows())
            if report.logMissing == 0 or time.monotonic() > end:
                return report
            self.wait(2)

    def close(self) -> None:
        for node in self.nodes:
            if node is not None:
                node.stop(5)
        if self.postgres is not None:
            self.postgres.destroy()
        self.net.close()


# -- scenarios, each a test in test_faults.py ------------------------------------------------

def partitionFromRedis(cluster: FaultCluster) -> None:
    """One node cut off from Redis for 5 s during traffic, then healed."""
    cluster.wait(3)
    cluster.partition(cluster.redisLinks[0])
    cluster.wait(5)
    cluster.redisLinks[0].heal()
    cluster.wait(4)


def slowRedisLinks(cluster: FaultCluster) -> str:
    """Every Redis link delayed and lossy for 20 s."""
    cluster.wait(2)
    what = [cluster.degrade(link) for link in cluster.redisLinks][0]
    cluster.wait(20)
    for link in cluster.redisLinks:
        link.heal()
    cluster.wait(3)
    return what


def redisRestarts(cluster: FaultCluster) -> None:
    """Redis killed and restarted empty (the streams start over); then killed again and
    restarted with its data (numbering goes on)."""
    cluster.wait(3)
    cluster.killRedis()
    cluster.wait(2)
    cluster.startRedis()
    cluster.wait(5)
    cluster.killRedis()
    cluster.wait(2)
    cluster.startRedis(keepData=True)
    cluster.wait(5)


def postgresPartitionedAndKilled(cluster: FaultCluster) -> None:
    """The chat log's PostgreSQL cut off from one node for 14 s (longer than the log's
    connection waits for an answer), then killed (an immediate shutdown) and restarted on its
    data 6 s later: delivery goes on, and the log catches up."""
    cluster.wait(3)
    cluster.partition(cluster.pgLinks[0])
    cluster.wait(14)
    cluster.pgLinks[0].heal()
    cluster.wait(3)
    cluster.killPostgres()
    cluster.wait(6)
    cluster.startPostgres()
    cluster.wait(5)


def nodeKilled(cluster: FaultCluster) -> None:
    """A node killed with SIGKILL while its clients chat: they reconnect to another node."""
    cluster.wait(3)
    cluster.killNode(0)
    cluster.wait(6)


def clientsCutOff(cluster: FaultCluster) -> None:
    """The clients cut off from one node (half-open connections on both sides) and back."""
    cluster.wait(3)
    cluster.partition(cluster.clientLinks[0])
    cluster.wait(8)
    cluster.clientLinks[0].heal()
    cluster.wait(4)


def floodDuringFault(cluster: FaultCluster) -> None:
    """A flood sender and clients that never read, while one node is cut off from Redis."""
    cluster.wait(2)
    cluster.tell("slow a 3")
    cluster.partition(cluster.redisLinks[1])
    cluster.tell("flood a 8")
    cluster.wait(9)
    cluster.redisLinks[1].heal()
    cluster.wait(4)


# -- the randomized run ---------------------------------------------------------------------

def randomized(cluster: FaultCluster, minutes: float, rng: random.Random) -> None:
    end = time.monotonic() + minutes * 60
    kinds = ["partition-redis", "degrade-redis", "cut-clients", "kill-node", "kill-redis", "partition-postgres",
             "kill-postgres"]
    while time.monotonic() < end - 10:
        kind = rng.choice(kinds)
        i = rng.randrange(len(cluster.nodes))
        cluster.log(f"{time.strftime('%H:%M:%S')} fault: {kind} (node {i})")
        if kind == "partition-redis":
            cluster.partition(cluster.redisLinks[i])
            cluster.wait(rng.uniform(2, 8))
            cluster.redisLinks[i].heal()
        elif kind == "degrade-redis":
            cluster.degrade(cluster.redisLinks[i])
            cluster.wait(rng.uniform(5, 15))
            cluster.redisLinks[i].heal()
        elif kind == "cut-clients":
            cluster.partition(cluster.clientLinks[i])
            cluster.wait(rng.uniform(2, 8))
            cluster.clientLinks[i].heal()
        elif kind == "partition-postgres":
            cluster.partition(cluster.pgLinks[i])
            cluster.wait(rng.uniform(3, 15))
            cluster.pgLinks[i].heal()
        elif kind == "kill-postgres":
            cluster.killPostgres()
            cluster.wait(rng.uniform(2, 10))
            cluster.startPostgres()
        elif kind == "kill-node":
            cluster.killNode(i)
            cluster.wait(rng.uniform(1, 5))
            cluster.startNode(i)
        else:
            keep = rng.random() < 0.5
            cluster.killRedis()
            cluster.wait(rng.uniform(1, 4))
            cluster.startRedis(keepData=keep)
        cluster.wait(rng.uniform(3, 8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", type=Path, help="a directory to keep the clients' record and every violation in")
    args = parser.parse_args()
    why = unavailable()
    if why:
        sys.exit(f"faults: cannot run: {why}")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="txchat-faults-") as directory:
        cluster = FaultCluster(Path(directory), args.nodes)
        try:
            cluster.startRedis()
            cluster.startPostgres()
            for i in range(args.nodes):
                cluster.startNode(i)
            cluster.startClients(clients=9, senders=4, rate=5, reconnect=0.03, seed=args.seed, rooms="a,b,c")
            print(f"faults: seed {args.seed}, {args.nodes} nodes, links "
                  f"{'netem' if cluster.net.netem else 'tbf (no netem in this kernel)'}", flush=True)
            randomized(cluster, args.minutes, rng)
            report = cluster.finish(settle=6)
        finally:
            cluster.close()
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                if cluster.history.exists():
                    shutil.copy(cluster.history, args.keep / "history.jsonl")
                    for i, node in enumerate(cluster.nodes):
                        if node is not None:
                            (args.keep / f"node{i}.log").write_text(node.log)
    if args.keep is not None:
        (args.keep / "violations.txt").write_text("".join(f"{v}\n" for v in report.violations))
    for violation in report.violations[:20]:
        print(violation)
    rules: dict[str, int] = {}
    for violation in report.violations:
        rules[violation.rule] = rules.get(violation.rule, 0) + 1
    if rules:
        print("violations by rule: " + ", ".join(f"{rule} {count}" for rule, count in sorted(rules.items())))
    print(f"peak RSS per node (KiB): {cluster.peakRss}")
    print(f"details: {report.summary()}")
    print(f"faults: {report.messages} messages, {report.reconnects} reconnects, {cluster.faults} faults, "
          f"{len(report.violations)} violations")
    sys.exit(1 if report.violations else 0)


if __name__ == "__main__":
    main()
