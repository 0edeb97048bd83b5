"""Several processes, one chat: real twistd processes, a real redis-server and nginx.

Blocking tests: processes are driven with subprocess and clients with the websockets sync
client; the reactor is not involved.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, cast

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as wsConnect
from websockets.typing import Origin, Subprotocol

from bench.processes import Twistd
from bench.redisserver import RedisServer
from tests.support.pids import running, waitGone
from tests.support.ports import freePorts


NGINX_TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "nginx-txchat.conf"


def receive(client: ClientConnection, count: int, timeout: float = 10) -> list[str]:
    lines: list[str] = []
    while len(lines) < count:
        lines += cast(str, client.recv(timeout=timeout)).split("\n")
    return lines


Cluster = tuple[RedisServer, list[Twistd]]  # Redis and the two processes


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    redis = RedisServer(tmp_path).start()
    nodes = []
    try:
        for _ in range(2):
            nodes.append(Twistd("--listen", "tcp:0:interface=127.0.0.1", "--redis", redis.url, cwd=tmp_path))
        for node in nodes:
            node.waitFor("connected to Redis")
        yield redis, nodes
    finally:
        for node in nodes:
            node.stop()
        redis.stop()


def url(node: Twistd) -> str:
    return f"ws://127.0.0.1:{node.port}/ws"


def test_clients_on_two_processes_chat_in_one_order(cluster: Cluster) -> None:
    _, (one, two) = cluster
    with wsConnect(url(one)) as a, wsConnect(url(two)) as b, wsConnect(url(one)) as c, wsConnect(url(two)) as d:
        a.send("from one")
        assert receive(b, 1) == ["from one"] and receive(a, 1) == ["from one"]
        b.send("from two")
        assert receive(a, 1) == ["from two"] and receive(b, 1) == ["from two"]
        receive(c, 2), receive(d, 2)
        senders = [a, b, c]  # three senders, interleaved, across both processes
        sent = []
        for i in range(60):
            sent.append(f"{i} from sender {i % 3}")
            senders[i % 3].send(sent[-1])
        orders = [receive(client, 60) for client in (a, b, c, d)]
        assert orders[0] == orders[1] == orders[2] == orders[3]
        assert sorted(orders[0]) == sorted(sent)


def test_redis_outage_keeps_local_chat_and_recovery_needs_no_help(cluster: Cluster) -> None:
    redis, (one, two) = cluster
    with wsConnect(url(one)) as a, wsConnect(url(one)) as a2, wsConnect(url(two)) as b:
        marks = [len(one.lines), len(two.lines)]
        redis.kill()
        one.waitFor("unreachable", since=marks[0])
        two.waitFor("unreachable", since=marks[1])
        a.send("only for process one")
        assert receive(a, 1) == ["only for process one"]
        assert receive(a2, 1) == ["only for process one"]
        b.send("only for process two")
        assert receive(b, 1) == ["only for process two"]

        marks = [len(one.lines), len(two.lines)]
        redis.start()  # the same port
        one.waitFor("reconnected to Redis", since=marks[0], timeout=20)
        two.waitFor("reconnected to Redis", since=marks[1], timeout=20)
        a.send("across again")
        assert receive(b, 1) == ["across again"]  # and not the outage's local message
        assert receive(a, 1) == ["across again"]
    for node in (one, two):
        assert node.log.count("unreachable") == 1
        assert node.log.count("reconnected to Redis") == 1


def test_a_ten_second_outage_logs_one_line_and_its_end_one_more(tmp_path: Path) -> None:
    """No Twisted factory lines per reconnect attempt: just the outage, then the recovery."""
    redis = RedisServer(tmp_path).start()
    node = Twistd("--listen", "tcp:0:interface=127.0.0.1", "--redis", redis.url, cwd=tmp_path)
    try:
        node.waitFor("connected to Redis")
        with wsConnect(url(node)):  # a client's connect line, logged before the outage
            node.waitFor(r"connect 127\.0\.0\.1")
            mark = len(node.lines)
            redis.kill()
            during = node.linesDuring(10, since=mark)
            mark += len(during)
            redis.start()
            node.waitFor("reconnected to Redis", since=mark, timeout=20)
            after = node.lines[mark:]
    finally:
        node.stop()
        redis.stop()
    assert len(during) == 1 and "is unreachable" in during[0], during
    assert len(after) == 1 and "reconnected to Redis" in after[0], after
    assert "factory" not in node.log.lower()


def startNginx(directory: Path, upstreams: list[int]) -> tuple[int, int]:
    """nginx with the project's sample configuration on a free port; returns (port, pid).

    Started as a daemon: the nginx command returns once its port is bound."""
    (directory / "tmp").mkdir(exist_ok=True)
    config = NGINX_TEMPLATE.read_text()
    for old, port in zip(("server 127.0.0.1:8081;", "server 127.0.0.1:8082;"), upstreams, strict=True):
        config = config.replace(old, f"server 127.0.0.1:{port};")
    for port in random.sample(range(20000, 60000), 20):
        path = directory / "nginx.conf"
        path.write_text(config.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};"))
        result = subprocess.run(
            ["nginx", "-e", "stderr", "-c", str(path), "-p", f"{directory}/"], capture_output=True, text=True
        )
        if result.returncode == 0:
            return port, int((directory / "nginx.pid").read_text())
        if "Address already in use" not in result.stderr:
            raise RuntimeError(result.stderr)
    raise RuntimeError("no free port for nginx")


def stopProcess(pid: int, timeout: float = 10) -> None:
    """Stop a process that is not our child, and wait for it to be gone (pidfd, no polling)."""
    handle = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGTERM)
        select.select([handle], [], [], timeout)
    finally:
        os.close(handle)


def test_chat_through_nginx_across_both_processes(cluster: Cluster, tmp_path: Path) -> None:
    _, (one, two) = cluster
    port, pid = startNginx(tmp_path, [one.port, two.port])
    try:
        front = f"ws://127.0.0.1:{port}/ws"
        origin = Origin(f"http://127.0.0.1:{port}")  # what a browser on the proxied page sends
        marks = [len(one.lines), len(two.lines)]
        with wsConnect(front, origin=origin) as a, wsConnect(front, origin=origin) as b:
            # Round robin: one client on each process.
            one.waitFor(r"connect 127\.0\.0\.1:\d+", since=marks[0])
            two.waitFor(r"connect 127\.0\.0\.1:\d+", since=marks[1])
            a.send("through nginx")
            assert receive(b, 1) == ["through nginx"]
            assert receive(a, 1) == ["through nginx"]
            b.send("and back")
            assert receive(a, 1) == ["and back"]
        with pytest.raises(InvalidStatus) as refused:
            wsConnect(front, origin=Origin("http://evil.example")).close()
        assert refused.value.response.status_code == 403
    finally:
        stopProcess(pid)


def test_the_readmes_cluster_script_chats_and_stops_every_piece(tmp_path: Path) -> None:
    run = tmp_path / "run"
    front, one, two, redisPort = freePorts(4)
    env = {**os.environ, "TXCHAT_RUN": str(run), "TXCHAT_VENV": str(Path(sys.executable).parent.parent),
           "FRONT_PORT": str(front), "NODE_PORTS": f"{one} {two}", "REDIS_PORT": str(redisPort)}
    env.pop("PYTHONPATH", None)
    script = Path(__file__).resolve().parents[3] / "deploy" / "cluster.sh"
    started = subprocess.run(["bash", str(script), "start"], env=env, capture_output=True, text=True, timeout=60)
    pidfiles = [run / "nginx" / "nginx.pid", run / "node0.pid", run / "node1.pid", run / "redis.pid"]
    pids = [int(p.read_text()) for p in pidfiles if p.exists()]
    try:
        assert started.returncode == 0, started.stderr
        assert len(pids) == 4
        origin = Origin(f"http://127.0.0.1:{front}")
        for _ in range(2):  # both processes have joined Redis once a message crosses both ways
            with wsConnect(f"ws://127.0.0.1:{front}/ws", origin=origin) as a, \
                 wsConnect(f"ws://127.0.0.1:{front}/ws", origin=origin) as b:
                a.send("through the cluster script")
                assert receive(b, 1) == ["through the cluster script"]
    finally:
        stopped = subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True, text=True, timeout=60)
        for pid in pids:
            waitGone(pid)
    assert stopped.returncode == 0, stopped.stderr
    assert not [pid for pid in pids if running(pid)], "a piece of the cluster is still running"
    assert not list(Path(script.parent).glob("*.pid")), "run files in the checkout"



# -- rooms, numbering, history, recovery and presence over Redis ---------------------------


def v1(node: Twistd, room: str = "general", query: str = "") -> ClientConnection:
    return wsConnect(f"ws://127.0.0.1:{node.port}/ws/{room}" + (f"?{query}" if query else ""),
                     subprotocols=[Subprotocol("txchat.v1")])


def lines(client: ClientConnection, count: int, kinds: tuple[str, ...] = ("welcome", "message"),
          timeout: float = 10) -> list[dict[str, Any]]:
    """The next C{count} lines of those kinds (presence lines skipped unless asked for); lines of
    a frame not asked for yet wait on the client for the next call."""
    pending: list[dict[str, Any]] = client.__dict__.setdefault("pendingLines", [])
    got: list[dict[str, Any]] = []
    while len(got) < count:
        if not pending:
            pending += map(json.loads, cast(str, client.recv(timeout=timeout)).split("\n"))
        line = pending.pop(0)
        if line["type"] in kinds:
            got.append(line)
    return got


def test_numbers_history_and_recovery_are_shared_by_both_processes(cluster: Cluster) -> None:
    _, (one, two) = cluster
    with v1(one, query="name=Ada") as a, wsConnect(url(two).replace("/ws", "/ws/general")) as plain:
        (welcome,) = lines(a, 1)
        assert welcome["seq"] == 0
        for i in range(3):
            plain.send(f"m{i}")
        got = lines(a, 3)
        assert [(m["seq"], m["text"]) for m in got] == [(1, "m0"), (2, "m1"), (3, "m2")]
        with v1(two) as c:  # history served by the other process: the same numbers
            joined = lines(c, 4)
            assert joined[0]["epoch"] == welcome["epoch"] and joined[0]["seq"] == 3
            assert [m["seq"] for m in joined[1:]] == [1, 2, 3]
        a.close()
        plain.send("while Ada is away")
        plain.send("and again")
        receive(plain, 5)
        with v1(two, query=f"since={welcome['epoch']}:3") as back:  # recovery on the other process
            got = lines(back, 3)
            assert got[0]["recovered"] is True and got[0]["seq"] == 5
            assert [(m["seq"], m["text"]) for m in got[1:]] == [(4, "while Ada is away"), (5, "and again")]


def test_joins_during_continuous_traffic_on_the_other_process_miss_nothing(cluster: Cluster) -> None:
    _, (one, two) = cluster
    stop = threading.Event()
    sent: list[int] = []

    def talk() -> None:
        with wsConnect(url(one).replace("/ws", "/ws/busy")) as talker:
            for i in range(1, 301):
                if stop.is_set():
                    break
                talker.send(f"{i}")
                sent.append(i)
                stop.wait(0.005)  # a steady stream, not a burst

    talker = threading.Thread(target=talk)
    talker.start()
    streams = []
    with contextlib.ExitStack() as opened:
        clients = []
        for _ in range(5):  # joining while the other process's client talks
            clients.append(opened.enter_context(v1(two, "busy")))
            stop.wait(0.1)
        talker.join(30)
        total = len(sent)
        for client in clients:
            (welcome,) = lines(client, 1)
            seen: list[int] = []
            while total and (not seen or seen[-1] < total):
                seen += [m["seq"] for m in lines(client, 1)]
            streams.append((welcome["seq"], seen))
        stop.set()
    talker.join()
    assert total > 100
    for joinedAt, seen in streams:
        assert seen == list(range(seen[0], total + 1)), "a gap or a duplicate"
        assert seen[0] <= joinedAt + 1, "history and the live stream meet without a gap"


def test_presence_counts_both_processes_and_forgets_a_killed_one(cluster: Cluster, tmp_path: Path) -> None:
    redis, (one, two) = cluster
    third = Twistd("--listen", "tcp:0:interface=127.0.0.1", "--redis", redis.url, cwd=tmp_path)
    try:
        third.waitFor("connected to Redis")
        with v1(one, "here") as watcher, contextlib.ExitStack() as opened:
            assert lines(watcher, 1)[0]["online"] == 1
            for _ in range(3):
                opened.enter_context(v1(third, "here"))
            online = 0
            while online != 4:
                online = lines(watcher, 1, ("presence",))[0]["online"]
            # Its last say was just now (the line for 4): the worst case for going stale.
            killed = time.monotonic()
            third.process.kill()  # SIGKILL: no goodbye, its count must go stale
            third.process.wait()
            while online != 1:
                left = killed + 30 - time.monotonic()
                assert left > 0, "SPEC §13: a process that dies stops counting within 30 s"
                try:
                    online = lines(watcher, 1, ("presence",), timeout=left)[0]["online"]
                except TimeoutError:
                    pytest.fail(f"still counted 30 s after the kill (online {online})")
            assert time.monotonic() - killed < 30
    finally:
        third.stop()


def test_a_room_is_subscribed_only_while_it_has_members_here(cluster: Cluster) -> None:
    redis, (one, _) = cluster
    probe = RedisProbe(redis.port)
    with wsConnect(url(one).replace("/ws", "/ws/lonely")):
        one.waitFor(r"connect 127\.0\.0\.1")
        assert b"txchat:lonely" in probe.command("PUBSUB", "CHANNELS", "txchat:*")
    mark = len(one.lines)
    one.waitFor(r"disconnect 127\.0\.0\.1", since=mark - 1)
    for _ in range(50):  # the UNSUBSCRIBE follows the disconnect
        if b"txchat:lonely" not in probe.command("PUBSUB", "CHANNELS", "txchat:*"):
            break
    assert b"txchat:lonely" not in probe.command("PUBSUB", "CHANNELS", "txchat:*")
    probe.close()


def test_redis_lost_and_back_local_unnumbered_then_a_new_stream(cluster: Cluster) -> None:
    redis, (one, _) = cluster
    with v1(one, "r") as a, wsConnect(url(one).replace("/ws", "/ws/r")) as plain:
        (welcome,) = lines(a, 1)
        plain.send("before")
        assert lines(a, 1)[0]["seq"] == 1
        mark = len(one.lines)
        redis.kill()
        one.waitFor("unreachable", since=mark)
        plain.send("during")
        during = lines(a, 1)[0]
        assert during["text"] == "during" and "seq" not in during  # delivered, not numbered, not kept
        mark = len(one.lines)
        redis.start()  # empty: it kept nothing
        one.waitFor("reconnected to Redis", since=mark, timeout=20)
        plain.send("after")
        again, after = lines(a, 2)
        assert again["type"] == "welcome" and again["recovered"] is False and again["epoch"] != welcome["epoch"]
        assert (after["seq"], after["text"]) == (1, "after")


def test_a_silent_redis_is_an_outage_within_3s_then_numbering_resumes(cluster: Cluster) -> None:
    """SIGSTOP makes Redis silent on live TCP connections, as a partition that drops packets
    does: within 3 s (and a margin for a busy machine) messages are delivered unnumbered."""
    redis, (one, _) = cluster
    with v1(one, "quiet") as a, wsConnect(url(one).replace("/ws", "/ws/quiet")) as plain:
        lines(a, 1)
        plain.send("before")
        assert lines(a, 1)[0]["seq"] == 1
        mark = len(one.lines)
        stopped = time.monotonic()
        redis.pause()
        try:
            for i in itertools.count():
                assert time.monotonic() - stopped < 3 + 2, "SPEC §13: a silent Redis is an outage after 3 s"
                plain.send(f"during {i}")
                try:
                    got = lines(a, 1, timeout=0.25)[0]
                except TimeoutError:
                    continue
                if "seq" not in got:
                    break
            assert got["text"].startswith("during"), "delivered here, unnumbered"
            one.waitFor(r"unreachable \(no reply from Redis for 3s", since=mark, timeout=1)
        finally:
            redis.resume()
        mark = len(one.lines)
        one.waitFor("reconnected to Redis", since=mark, timeout=20)
        plain.send("after")
        while (got := lines(a, 1)[0]).get("text") != "after":
            pass  # (what Redis took before it stopped may come too, numbered, with the catch-up)
        assert isinstance(got.get("seq"), int), "numbered again"


class RedisProbe:
    """A blocking RESP client for looking at Redis from a test (hiredis does the parsing)."""

    def __init__(self, port: int) -> None:
        import socket

        import hiredis

        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = hiredis.Reader()
        self.pack = hiredis.pack_command

    def command(self, *args: str) -> Any:
        self.socket.sendall(self.pack(args))  # type: ignore[arg-type]  # hiredis's stub types a 1-tuple
        while (reply := self.reader.gets()) is False:
            self.reader.feed(self.socket.recv(65536))
        return reply

    def close(self) -> None:
        self.socket.close()
