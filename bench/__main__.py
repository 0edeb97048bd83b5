"""Run the benchmark: txchat against the naive baseline, case by case, and print a table.

    python -m bench                        # every case, 3 runs each, bench.loadgen as the load
    python -m bench --tool wsload --wsload ~/wsload   # the shared Go yardstick instead
    python -m bench --cases max100,idle5000 --runs 5 --out results.json
    python -m bench --cases people-nochurn,people,memberlist --interleave --profile profiles/  # SPEC §18
    GORILLA_CHAT_BIN=/tmp/gochat/chat python -m bench --cases connect5000 --runs 5   # and the Go chat

Each server runs alone, pinned to CPU 0 with taskset; the load runs pinned to CPU 1. A server
is started afresh for every run and stopped after it; the servers take turns, run by run, so
that each sees the same machine. Figures are medians over the runs. With GORILLA_CHAT_BIN
naming the gorilla/websocket chat example (shared/bench/gorilla-chat/build.sh builds it), the
Go original runs too, as server "go", in every case it can serve. ``other_cpu_pct`` is what
the rest of the machine used while the load ran (a shared machine makes noisy figures).
With ``--profile DIR``, each case then runs once more with py-spy recording the server while
the chat runs, and the share of its busy samples spent in presence work (L{bench.profiles}) is
reported from that run alone (its latencies are not in the medians).
Only ever on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.processes import LoggedProcess, Twistd, cleanEnvironment
from bench.procstat import cpuSeconds, waitSeconds
from bench.profiles import share
from bench.redisserver import RedisServer

HERE = Path(__file__).resolve().parent
# The load comes from one address and one sender floods by design: txchat's abuse limits off.
LISTEN = ("--listen", "tcp:0:interface=127.0.0.1:backlog=4096", "--rate-limit", "0", "--max-connections", "0",
          "--max-connections-per-ip", "0")


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    clients: int
    messages: int = 0
    rate: float = 0
    senders: int = 1
    idle: float = 0
    storm: int = 0  # this many more clients connect at once while the case runs, hold, then go
    v1: bool = False  # the clients speak txchat.v1 (bench.loadgen only)
    v2: bool = False  # the clients speak txchat.v2: each send with an ID, acknowledged
    rooms: int = 0  # the clients are spread over this many rooms
    mode: str = ""  # "join-storm", "abandon" or "members-join" (bench.loadgen only; see its docstring)
    identities: int = 0  # client i is person i % identities (its cid=), bench.loadgen only
    churn: float = 0  # connections a second that join a room and leave while the chat runs
    serverArgs: tuple[str, ...] = ()
    go: str = ""  # the gorilla chat's figure as the shared Go yardstick gives it, for wsload runs
    servers: tuple[str, ...] = ("txchat", "txchat-memory", "naive", "naive-prepared", "go")  # kinds it runs on


CASES = [
    Case("max100", "max deliveries/s, 100 clients", 100, 30000, go="840 k/s"),
    Case("max1000", "max deliveries/s, 1000 clients", 1000, 4000, go="758 k/s"),
    Case("r100x1000", "100 clients x 1000 msg/s", 100, 5000, 1000, go="p50 1.4 / p99 4.1 ms"),
    Case("r100x5000", "100 clients x 5000 msg/s", 100, 25000, 5000, go="p50 1.5 / p99 6.5 ms, no loss"),
    Case("r1000x10", "1000 clients x 10 msg/s", 1000, 50, 10, go="23 % CPU"),
    Case("r1000x100", "1000 clients x 100 msg/s", 1000, 500, 100, go="p50 21 / p99 46 ms, 99 % CPU"),
    Case("r1000x500", "1000 clients x 500 msg/s", 1000, 2500, 500, go="p50 33 / p99 90 ms, no loss"),
    Case("senders100", "100 clients, each sending 10 msg/s", 100, 5000, 1000, senders=100),
    # Two txchat processes (one per core) and Redis; the load spread over both, one sender.
    Case("cluster-max1000", "cluster: max deliveries/s, 1000 clients", 1000, 4000, servers=("txchat-cluster",)),
    Case("cluster-r1000x100", "cluster: 1000 clients x 100 msg/s", 1000, 500, 100,
         servers=("txchat-cluster", "txchat-cluster-core0")),
    Case("redis-r1000x100", "one process through Redis: 1000 clients x 100 msg/s", 1000, 500, 100,
         servers=("txchat-redis",)),
    Case("idle5000", "5000 idle connections", 5000, idle=10, go="15.9 KiB/conn, connect 1.4 s"),
    Case("connect5000", "5000 clients connect at once", 5000, idle=1, go="connect 0.63 s"),
    # A reconnection storm: 10,000 clients connect at once while 1000 others chat at 100 msg/s;
    # the figures are the chatting clients' (the storm's connect time after "storm").
    Case("storm", "storm: 10,000 connect while 1000 x 100 msg/s chat", 1000, 1500, 100, storm=10000,
         servers=("txchat", "naive", "go")),
    Case("storm-nolobby", "storm with --handshakes-per-turn 0", 1000, 1500, 100, storm=10000,
         serverArgs=("--handshakes-per-turn", "0"), servers=("txchat",)),
    # txchat.v1 and rooms (bench.loadgen only: wsload speaks the plain protocol).
    Case("v1max1000", "v1: max deliveries/s, 1000 clients", 1000, 4000, v1=True, servers=("txchat",)),
    Case("v1r1000x100", "v1: 1000 clients x 100 msg/s", 1000, 500, 100, v1=True, servers=("txchat",)),
    Case("v2r1000x100", "v2: 1000 clients x 100 msg/s (sends acknowledged)", 1000, 500, 100, v1=True, v2=True,
         servers=("txchat",)),
    Case("rooms", "v1: 10,000 clients in 1000 rooms of 10, 1000 msg/s in all", 10000, 10000, 1000,
         senders=1000, v1=True, rooms=1000, servers=("txchat",)),
    Case("joinstorm", "v1: 1000 clients join a room with 50 messages of history at once", 1000, v1=True,
         mode="join-storm", servers=("txchat",)),
    Case("abandon", "10,000 rooms made and abandoned, history expired (5 s), 25 s later", 10000, v1=True, rooms=10000,
         mode="abandon", serverArgs=("--history-ttl", "5"), servers=("txchat",)),
    # People (SPEC §18): 10,000 v2 clients, 5000 people (two connections each) in 100 rooms of
    # 50 people, one sender a room, 1000 msg/s in all; with 200 joins a second (and as many
    # leaves) of people from other rooms, and without (the baseline).
    Case("people-nochurn", "v2: 10,000 clients (5000 people) in 100 rooms, 1000 msg/s", 10000, 30000, 1000,
         senders=100, v1=True, v2=True, rooms=100, identities=5000, servers=("txchat",)),
    Case("people", "v2: the same with 200 joins/s and 200 leaves/s", 10000, 30000, 1000,
         senders=100, v1=True, v2=True, rooms=100, identities=5000, churn=200, servers=("txchat",)),
    # The same at 300 msg/s: a load one core carries with room to spare, so that the churn's
    # effect on latency is not lost in a saturated server's queue.
    Case("people300-nochurn", "v2: 10,000 clients (5000 people) in 100 rooms, 300 msg/s", 10000, 9000, 300,
         senders=100, v1=True, v2=True, rooms=100, identities=5000, servers=("txchat",)),
    Case("people300", "v2: the same at 300 msg/s with 200 joins/s and 200 leaves/s", 10000, 9000, 300,
         senders=100, v1=True, v2=True, rooms=100, identities=5000, churn=200, servers=("txchat", "txchat-memory")),
    # Between the two: where churn's cost starts to show in the p99 on this machine.
    Case("people600-nochurn", "v2: 10,000 clients (5000 people) in 100 rooms, 600 msg/s", 10000, 18000, 600,
         senders=100, v1=True, v2=True, rooms=100, identities=5000, servers=("txchat",)),
    Case("people600", "v2: the same at 600 msg/s with 200 joins/s and 200 leaves/s", 10000, 18000, 600,
         senders=100, v1=True, v2=True, rooms=100, identities=5000, churn=200, servers=("txchat",)),
    # The same with every handshake taken the moment it comes (txchat.lobby off).
    Case("people300-nolobby", "v2: people300 with --handshakes-per-turn 0", 10000, 9000, 300,
         senders=100, v1=True, v2=True, rooms=100, identities=5000, churn=200,
         serverArgs=("--handshakes-per-turn", "0"), servers=("txchat",)),
    Case("people600-nolobby", "v2: people600 with --handshakes-per-turn 0", 10000, 18000, 600,
         senders=100, v1=True, v2=True, rooms=100, identities=5000, churn=200,
         serverArgs=("--handshakes-per-turn", "0"), servers=("txchat",)),
    # A new person's welcome and member list in a room of 199 others (200 people with it: a list).
    Case("memberlist", "v2: welcome + member list, room of 200 people", 199, v1=True, v2=True, rooms=1,
         identities=199, mode="members-join", servers=("txchat",)),
    # Far beyond capacity: the naive server would buffer gigabytes, so it sits this one out.
    Case("overload", "1000 clients x 50000 msg/s (overload)", 1000, 250000, 50000, servers=("txchat",),
         go="drops slow clients"),
]


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions: dict[str, str | None] = {}
    for package in ("twisted", "autobahn", "picows"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), **versions}


class GoChat(LoggedProcess):
    """The gorilla/websocket chat example (GORILLA_CHAT_BIN), pinned to CPU 0. It cannot be
    told to take any free port and say which: a free one is picked, then waited on."""

    def __init__(self, binary: str, cwd: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", binary, "-addr", f"127.0.0.1:{self.port}"], cwd=cwd, env=cleanEnvironment(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )
        self.lines = []
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{binary} did not listen on port {self.port}") from None
                time.sleep(0.05)


class Servers:
    """The server(s) under test: txchat or a naive baseline pinned to CPU 0, or a cluster of
    two txchat processes (one per core) sharing a redis-server."""

    def __init__(self, kind: str, workdir: Path, serverArgs: tuple[str, ...] = ()) -> None:
        self.redis: RedisServer | None = None
        self.processes: list[LoggedProcess] = []
        try:
            if kind == "txchat-cluster":
                self.redis = RedisServer(workdir).start()
                for cpu in ("0", "1"):
                    node = Twistd(*LISTEN, "--redis", self.redis.url, cwd=workdir, prefix=("taskset", "-c", cpu))
                    self.processes.append(node)
                for process in self.processes:
                    process.waitFor("connected to Redis")
            elif kind == "txchat-cluster-core0":  # both processes share CPU 0, as one process has it
                self.redis = RedisServer(workdir).start()
                for _ in range(2):
                    node = Twistd(*LISTEN, "--redis", self.redis.url, cwd=workdir, prefix=("taskset", "-c", "0"))
                    self.processes.append(node)
                for process in self.processes:
                    process.waitFor("connected to Redis")
            elif kind == "txchat-redis":  # one process, through Redis: the Redis path alone
                self.redis = RedisServer(workdir).start()
                node = Twistd(*LISTEN, *serverArgs, "--redis", self.redis.url, cwd=workdir, prefix=("taskset", "-c", "0"))
                self.processes.append(node)
                node.waitFor("connected to Redis")
            elif kind == "txchat":  # the default store: the chat log in SQLite
                self.processes.append(Twistd(*LISTEN, *serverArgs, cwd=workdir, prefix=("taskset", "-c", "0")))
            elif kind == "txchat-memory":  # no chat log: the numbers and history in memory only
                self.processes.append(Twistd(*LISTEN, *serverArgs, "--store", "memory", cwd=workdir,
                                             prefix=("taskset", "-c", "0")))
            elif kind == "go":
                self.processes.append(GoChat(os.environ["GORILLA_CHAT_BIN"], workdir))
            else:
                command = ["taskset", "-c", "0", sys.executable, "-m", "bench.naive_server", "--port", "0"]
                if kind == "naive-prepared":
                    command.append("--prepared")
                self.processes.append(LoggedProcess(command, cwd=HERE.parent))
        except Exception:
            self.stop()
            raise

    @property
    def ports(self) -> list[int]:
        return [p.port for p in self.processes]

    @property
    def pid(self) -> int:
        return self.processes[0].pid

    def cpuSeconds(self) -> float:
        return sum(cpuSeconds(process.pid) for process in self.processes)

    def waitSeconds(self) -> float:
        return sum(waitSeconds(process.pid) for process in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        if self.redis is not None:
            self.redis.stop()


def toolCommand(options: argparse.Namespace, case: Case, ports: list[int], pid: int, profile: str = "") -> list[str]:
    urls = [f"ws://127.0.0.1:{port}/ws" for port in ports]
    if options.tool == "wsload" and len(urls) == 1:
        command = [options.wsload, "-url", urls[0], "-pid", str(pid), "-n", str(case.clients), "-label", case.name]
        if case.idle:
            return command + ["-idle", f"{case.idle:g}s"]
        command += ["-m", str(case.messages), "-rate", f"{case.rate:g}", "-senders", str(case.senders)]
        return command + ([] if case.rate else ["-window", "64"])
    command = [sys.executable, "-m", "bench.loadgen", "--pid", str(pid), "-n", str(case.clients), "--label", case.name]
    for url in urls:
        command += ["--url", url]
    command += ["--v2"] if case.v2 else ["--v1"] if case.v1 else []
    command += ["--rooms", str(case.rooms)] if case.rooms else []
    command += ["--identities", str(case.identities)] if case.identities else []
    command += ["--churn", f"{case.churn:g}"] if case.churn else []
    if profile:
        command += ["--profile", profile]
    if case.mode == "join-storm":
        return command + ["--join-storm", "--conc", str(case.clients)]
    if case.mode == "abandon":
        return command + ["--abandon", "--after", "25", "--conc", "500"]
    if case.mode == "members-join":
        return command + ["--members-join", "200"]
    if case.idle:
        return command + ["--idle", f"{case.idle:g}"]
    return command + ["-m", str(case.messages), "--rate", f"{case.rate:g}", "--senders", str(case.senders)]


def lastResult(tool: str, name: str, stdout: str, stderr: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{tool} gave no result for {name}:\n{stderr[-2000:]}")
    return json.loads(lines[-1])


def busySeconds() -> float:
    """CPU time the whole machine has spent busy (every core), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(n) for n in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def childSeconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def runOnce(options: argparse.Namespace, case: Case, kind: str, profile: str = "") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        servers = Servers(kind, Path(workdir), case.serverArgs)
        try:
            # What the rest of the machine uses while the load runs: busy time less the
            # servers' and the load's (reaped children), as a percentage of one core.
            began, busy, ours, children = time.perf_counter(), busySeconds(), servers.cpuSeconds(), childSeconds()
            waited = servers.waitSeconds()
            # A cluster has a process on each core: the load takes its share of both.
            pin = [] if kind == "txchat-cluster" else ["taskset", "-c", "1"]
            load = subprocess.Popen(
                [*pin, *toolCommand(options, case, servers.ports, servers.pid, profile)],
                cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            storm = None
            if case.storm:
                time.sleep(3)  # the chatting clients are connected and talking
                stormCase = Case(f"{case.name}-storm", "storm", case.storm, idle=2)
                storm = subprocess.run(
                    [*pin, *toolCommand(options, stormCase, servers.ports, servers.pid)],
                    cwd=HERE.parent, capture_output=True, text=True, timeout=300,
                )
            stdout, stderr = load.communicate(timeout=300)
            serverCpu = servers.cpuSeconds() - ours
            serverWait = servers.waitSeconds() - waited
            other = (busySeconds() - busy) - serverCpu - (childSeconds() - children)
            otherPct = round(100 * other / (time.perf_counter() - began), 1)
        finally:
            servers.stop()
    result = lastResult(options.tool, f"{case.name}/{kind}", stdout, stderr)
    result["other_cpu_pct"] = otherPct
    # CPU seconds the server spent while the load ran: less at the mercy of a busy machine
    # than the wall-clock figures.
    result["server_cpu_s"] = round(serverCpu, 2)
    # How long the server was ready to run but another process had its core.
    result["server_wait_s"] = round(serverWait, 2)
    if profile and not profile.endswith(".json"):  # (a time-ordered one is for reading by eye)
        with open(profile) as f:
            presence = share(f.readlines())
        result.update(profile=profile, presence_pct=presence["inclusive_pct"], presence_self_pct=presence["self_pct"],
                      presence_entries_pct=presence["entries_pct"], profile_samples=presence["samples"])
    if storm is not None:
        stormResult = lastResult(options.tool, "storm", storm.stdout, storm.stderr)
        result["storm_connect_s"] = stormResult.get("connect_s")
        result["storm_connected"] = stormResult.get("connected")  # (one answered 503 for queueing too long is not)
    return result


NUMBERS = ["deliveries_per_s", "lat_p50_ms", "lat_p99_ms", "lat_max_ms", "lost", "disconnected", "server_cpu_pct",
           "tool_cpu_pct", "msgs_per_frame", "connect_s", "server_kib_per_conn", "server_kib_per_conn_end",
           "server_rss_end_mib", "server_rss_hwm_mib", "storm_connect_s", "storm_connected", "joined_s", "joined", "history_ok",
           "server_rss_before_mib", "server_rss_full_mib", "server_rss_growth_mib", "server_rss_fresh_mib",
           "server_rss_growth_fresh_mib", "other_cpu_pct", "server_cpu_s", "server_wait_s", "server_chat_wait_s", "tool_wait_s", "churn_joins", "churn_failed",
           "churn_welcome_p50_ms", "churn_welcome_p99_ms", "member_join_p50_ms", "member_join_p90_ms",
           "member_join_after_101_p50_ms", "member_join_after_101_p90_ms", "members_in_first_frame",
           "frames_received", "frames_without_message", "presence_only_lines"]


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {}
    for key in NUMBERS:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if values:
            summary[key] = statistics.median(values)
    return summary


def describe(case: Case, m: dict[str, Any]) -> str:
    if not m:
        return "—"
    if case.mode == "join-storm":
        return (f"all {m.get('joined', 0):.0f} joined in {m.get('joined_s') or 0:.2f} s, "
                f"{m.get('history_ok', 0):.0f} with the whole history in order")
    if case.mode == "members-join":
        return (f"welcome + members {m.get('member_join_p50_ms', 0):.2f} ms from the connect "
                f"({m.get('member_join_after_101_p50_ms', 0):.2f} ms after the 101), p90 "
                f"{m.get('member_join_p90_ms', 0):.2f} ms")
    if case.mode == "abandon":
        return (f"RSS fresh {m.get('server_rss_fresh_mib', 0):.1f}, after 10,000 connections "
                f"{m.get('server_rss_before_mib', 0):.1f}, rooms full {m.get('server_rss_full_mib', 0):.1f}, "
                f"expired {m.get('server_rss_end_mib', 0):.1f} MiB: "
                f"{m.get('server_rss_growth_fresh_mib', 0):+.1f} MiB over fresh")
    if case.idle and case.idle < 2:
        return (f"connect {m['connect_s']:.2f} s, server CPU {m.get('server_cpu_s', 0):.2f} s "
                f"(others on the machine {m.get('other_cpu_pct', 0):.0f} % CPU)")
    if case.idle:
        return f"{m.get('server_kib_per_conn_end', m.get('server_kib_per_conn', 0)):.1f} KiB/conn, connect {m['connect_s']:.2f} s"
    text = []
    if not case.rate:
        text.append(f"{m['deliveries_per_s'] / 1000:,.0f} k/s")
    else:
        text.append(f"p50 {m['lat_p50_ms']:.1f} / p99 {m['lat_p99_ms']:.1f} ms")
    text.append(f"CPU {m.get('server_cpu_pct', 0):.0f} %")
    if m.get("lost"):
        text.append(f"lost {m['lost']:,.0f}")
    if m.get("disconnected"):
        text.append(f"{m['disconnected']:.0f} dropped")
    text.append(f"tool {m.get('tool_cpu_pct', 0):.0f} %")
    if "storm_connect_s" in m:
        text.append(f"storm connected in {m['storm_connect_s']:.2f} s ({m.get('storm_connected', 0):,.0f} of them)")
    if m.get("churn_joins"):
        text.append(f"{m['churn_joins']:,.0f} churn joins, their welcome p50 {m.get('churn_welcome_p50_ms', 0):.1f} ms")
    if "presence_pct" in m:
        text.append(f"presence {m['presence_pct']:.1f} % of the busy samples (profiled run)")
    return ", ".join(text)


def table(options: argparse.Namespace, results: dict[str, Any], cases: list[Case]) -> str:
    servers = [s for s in ("go", "txchat", "txchat-memory", "txchat-redis", "txchat-cluster", "txchat-cluster-core0",
                           "naive", "naive-prepared")
               if s in options.servers]
    header = ["case", *servers] + (["Go (shared table)"] if options.tool == "wsload" else [])
    rows = [header, ["---"] * len(header)]
    for case in cases:
        if not results[case.name]:
            continue  # a case this run had no server for (the cluster cases with wsload)
        row = [case.title] + [describe(case, results[case.name].get(s, {}).get("median", {})) for s in servers]
        if options.tool == "wsload":
            row.append(case.go)
        rows.append(row)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tool", choices=["loadgen", "wsload"], default="loadgen")
    parser.add_argument("--wsload", default=str(Path.home() / "wsload"), help="the built wsload binary")
    parser.add_argument("--cases", default=",".join(c.name for c in CASES))
    parser.add_argument("--servers", default="txchat,txchat-cluster,naive")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=0, help="override every case's client count (smoke runs)")
    parser.add_argument("--messages", type=int, default=0, help="override every case's message count")
    parser.add_argument("--out", default="bench-results.json")
    parser.add_argument("--interleave", action="store_true", help="the cases take turns, run by run")
    parser.add_argument("--profile", default="", help="a directory: one more run of each case under py-spy")
    options = parser.parse_args(argv)
    options.servers = options.servers.split(",")
    if os.environ.get("GORILLA_CHAT_BIN") and "go" not in options.servers:
        options.servers.insert(0, "go")
    wanted = options.cases.split(",")
    cases = [c for c in CASES if c.name in wanted]
    if options.clients or options.messages:
        cases = [Case(**{**c.__dict__, "clients": options.clients or c.clients,
                         "messages": options.messages or c.messages, "idle": min(c.idle, 1) if c.idle else 0})
                 for c in cases]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it

    results: dict[str, Any] = {}
    kindsOf = {case.name: [kind for kind in options.servers if kind in case.servers
                           and not ((options.tool == "wsload" or kind == "go") and (case.v1 or case.mode))]
               for case in cases}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {c.name: {k: [] for k in kindsOf[c.name]} for c in cases}
    # With --interleave the cases take turns run by run (a case and its baseline see the same
    # machine); else each case runs all its runs before the next. The servers always take turns.
    turns = ([(i, [case]) for case in cases for i in range(options.runs)] if not options.interleave
             else [(i, cases) for i in range(options.runs)])
    for i, some in turns:
        for case in some:
            for kind in kindsOf[case.name]:  # in turns, so that a busy spell on the machine hits every server
                print(f"{case.name} / {kind} run {i + 1}/{options.runs}", file=sys.stderr, flush=True)
                runs[case.name][kind].append(runOnce(options, case, kind))
    for case in cases:
        results[case.name] = {}
        kinds = kindsOf[case.name]
        profiled: dict[str, dict[str, Any]] = {}
        if options.profile and not case.mode and not case.idle:
            os.makedirs(options.profile, exist_ok=True)
            for kind in kinds:
                print(f"{case.name} / {kind} profiled run", file=sys.stderr, flush=True)
                path = os.path.abspath(os.path.join(options.profile, f"{case.name}-{kind}.txt"))
                profiled[kind] = runOnce(options, case, kind, path)
        for kind in kinds:
            results[case.name][kind] = {"runs": runs[case.name][kind], "median": medians(runs[case.name][kind])}
            if kind in profiled:
                results[case.name][kind]["profiled"] = profiled[kind]
                results[case.name][kind]["median"]["presence_pct"] = profiled[kind]["presence_pct"]
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "tool": options.tool, "runs": options.runs, "results": results,
    }
    Path(options.out).write_text(json.dumps(report, indent=1))
    print(f"{report['date']}, {report['machine']['cpu']} ({report['machine']['cores']} cores), "
          f"tool {options.tool}, medians of {options.runs} runs; server on CPU 0, load on CPU 1")
    print(table(options, results, cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
