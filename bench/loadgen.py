"""A broadcast-chat load generator on picows (asyncio, Cython framing): one process, one core.

N clients connect; the first S of them send, at a fixed aggregate rate or as fast as a window
of messages in flight allows. Every client splits each frame it receives on ``\\n`` and counts
the messages; the latency of each message (its send timestamp to the moment the frame was
read) is taken on a sample of the clients, so that the tool's own cost stays low. One JSON line
goes to stdout; its own CPU is in it so that a reader can tell when the tool is the limit.

    python -m bench.loadgen --url ws://127.0.0.1:8080/ws -n 100 --rate 1000 -m 5000 --pid PID

With ``--v1`` the clients speak txchat.v1 (only message lines count); with ``--rooms R`` client
i joins room ``bench{i % R}``, so the first R clients are one sender per room. ``--join-storm``
has one client say ``--prefill`` messages, then connects all clients at once and times until
every one has its welcome and that whole history; ``--abandon`` has each client say one
message and leave, and reports the server's RSS once ``--after`` seconds have passed.

People (SPEC §18): with ``--identities N`` client i is the person ``i % N`` (its ``cid=`` and
``name=``), so N people with several connections each; with ``--churn RATE``, while the chat
runs, RATE extra connections a second join a random room of the case as a random one of those
people (mostly someone not in that room: a person joins) and leave again 0.5-2.5 s later. They
read and drop what they get; their joins are timed to the first frame (the welcome). The v2
lines besides messages (members, presence with joined/left, acks, typing) count for nothing:
only message lines are counted and timed. ``--members-join K`` times K joins, one at a time,
of a new person into a room where the N clients already are: from the connect, and from the
handshake's answer, to the frame with the welcome and the member list. ``--profile FILE`` has
py-spy record the server (``--pid``) while the chat runs (raw collapsed stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.procstat import ProcessSample, rssMiB, waitSeconds


class Histogram:
    """Log-linear latency buckets in microseconds, about 1.1 % apart."""

    STEPS = 64

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.maximum = 0.0

    def add(self, micros: float) -> None:
        bucket = int(math.log2(micros) * self.STEPS) if micros > 1 else 0
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.total += 1
        if micros > self.maximum:
            self.maximum = micros

    def percentile(self, fraction: float) -> float:
        if not self.total:
            return 0.0
        wanted = fraction * self.total
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= wanted:
                return 2 ** ((bucket + 0.5) / self.STEPS)
        return self.maximum


MESSAGE = b'"type":"message"'
TEXT = b'"text":"'
MEMBERS = b'"type":"members"'
PRESENCE = b'"type":"presence"'


def identity(person: int) -> str:
    """Person k's C{cid=}: 8-64 characters of C{[A-Za-z0-9_-]}."""
    return f"bench-person-{person:05d}"


def peopleQuery(person: int) -> str:
    return f"?cid={identity(person)}&name=p{person}"


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Client(WSListener):
    def __init__(self, run: "Run", timed: bool) -> None:
        self.run = run
        self.timed = timed
        self.received = 0
        self.frames = 0
        self.closed = False
        self.joined: float | None = None  # when the welcome and the whole history had come
        self.lastSeq = 0
        self.expected: int | None = None  # the welcome's seq
        self.historyOk = True
        self.bare = 0
        self.presence = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()
            self.frames += 1
            if self.run.options.v1:
                self._v1(payload)
            else:
                self.received += payload.count(b"\n") + 1
                if self.timed:
                    now = time.time_ns()
                    histogram = self.run.latency
                    for line in payload.split(b"\n"):
                        histogram.add((now - int(line[:19])) / 1000)
            if self is self.run.pacer:
                self.run.progress.set()
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def _v1(self, payload: bytes) -> None:
        if self.joined is None:
            self._checkJoin(payload)  # the welcome's frame holds the history, nothing live
            return
        lines = payload.count(MESSAGE)
        self.received += lines
        if not lines:
            self.bare += 1  # a frame (a write of the server's) without a message: presence, acks, members
            self.presence += payload.count(PRESENCE)
        if self.timed and lines:
            now = time.time_ns()
            histogram = self.run.latency
            for line in payload.split(b"\n"):
                at = line.find(TEXT)
                if at >= 0 and MESSAGE in line:
                    histogram.add((now - int(line[at + len(TEXT) : at + len(TEXT) + 19])) / 1000)

    def _checkJoin(self, payload: bytes) -> None:
        """The first frames: a welcome, then the history, numbered 1 to the welcome's seq."""
        for line in payload.split(b"\n"):
            item = json.loads(line)
            if item["type"] == "welcome":
                self.expected = item["seq"]
            elif item["type"] == "message":
                self.historyOk = self.historyOk and item["seq"] == self.lastSeq + 1
                self.lastSeq = item["seq"]
        if self.expected is not None and self.lastSeq >= self.expected:
            self.joined = time.perf_counter()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True


class Run:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.latency = Histogram()
        self.progress = asyncio.Event()
        self.clients: list[Client] = []
        self.indexes: list[int] = []
        self.transports: list[WSTransport] = []
        self.pacer: Client | None = None
        self.connectFailed = 0
        self.headers = {"Origin": options.origin} if options.origin else {}
        if options.v2:
            self.headers["Sec-WebSocket-Protocol"] = "txchat.v2"
        elif options.v1:
            self.headers["Sec-WebSocket-Protocol"] = "txchat.v1"

    async def connect(self) -> float:
        options = self.options
        gate = asyncio.Semaphore(options.conc)
        # Time a sample spread over the whole list (a flush reaches the first clients first) and,
        # with rooms, over as many rooms as it has clients: client k*every + k % shift is in
        # room k % rooms. (Every every-th client alone put all twenty in one room when every is a
        # multiple of the rooms: the p99 was then the slowest of that room's 90 messages.)
        every = max(1, options.n // max(1, options.timed))
        shift = min(every, options.rooms) if options.rooms else 1

        def timed(index: int) -> bool:
            return index % every == (index // every) % shift
        headers = self.headers
        urls = options.url or ["ws://127.0.0.1:8080/ws"]  # several: clients spread round robin

        def url(index: int) -> str:
            base = urls[index % len(urls)]
            base = f"{base}/bench{index % options.rooms}" if options.rooms else base
            return base + peopleQuery(index % options.identities) if options.identities else base

        async def one(index: int) -> None:
            async with gate:
                try:
                    transport, client = await ws_connect(
                        lambda: Client(self, timed(index)), url(index), extra_headers=headers or None,
                        max_frame_size=1 << 26,
                    )
                except Exception as e:  # noqa: BLE001 - counted, reported, never fatal
                    self.connectFailed += 1
                    print(f"connect failed: {e!r}", file=sys.stderr)
                    return
                assert isinstance(client, Client)
                connected.append((index, client, transport))

        connected: list[tuple[int, Client, WSTransport]] = []
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(options.n)))
        seconds = time.perf_counter() - started
        connected.sort(key=lambda entry: entry[0])  # in index order: client i is in room i % R
        self.clients = [client for _, client, _ in connected]
        self.transports = [transport for _, _, transport in connected]
        self.indexes = [index for index, _, _ in connected]
        if self.clients:
            self.pacer = self.clients[0]
        return seconds

    def payload(self, seq: int) -> bytes:
        head = b"%d %d " % (time.time_ns(), seq)
        text = head + b"x" * max(0, self.options.size - len(head))
        if self.options.v2:  # a send with its ID, acknowledged (the ack lines are not counted)
            return b'{"type":"send","id":"%d","text":"%s"}' % (seq, text)
        return text

    async def send(self) -> int:
        options = self.options
        senders = self.transports[: options.senders]
        if not senders:
            return 0
        sent = 0
        if options.rate > 0:
            started = time.perf_counter()
            while sent < options.m:
                due = min(options.m, int((time.perf_counter() - started) * options.rate) + 1)
                while sent < due:
                    senders[sent % len(senders)].send(WSMsgType.TEXT, self.payload(sent))
                    sent += 1
                await asyncio.sleep(0.0005)
        else:
            pacer = self.pacer
            assert pacer is not None
            while sent < options.m:
                while sent < options.m and sent - pacer.received < options.window:
                    senders[sent % len(senders)].send(WSMsgType.TEXT, self.payload(sent))
                    sent += 1
                self.progress.clear()
                try:
                    await asyncio.wait_for(self.progress.wait(), options.grace)
                except asyncio.TimeoutError:
                    break
        return sent

    def expectedDeliveries(self, sent: int) -> int:
        """Each sender's messages times the members of its room (senders take turns)."""
        rooms = self.options.rooms
        senders = min(self.options.senders, len(self.clients))
        size = [0] * rooms
        for index in self.indexes:
            size[index % rooms] += 1
        return sum((sent // senders + (i < sent % senders)) * size[self.indexes[i] % rooms] for i in range(senders))

    async def drain(self, expected: int) -> None:
        deadline = time.perf_counter() + self.options.grace
        while time.perf_counter() < deadline:
            if sum(c.received for c in self.clients) >= expected:
                return
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        for transport in self.transports:
            transport.send_close()
        await asyncio.gather(*(t.wait_disconnected() for t in self.transports), return_exceptions=True)


class Visitor(WSListener):
    """A connection that comes and goes (churn, or a timed join): it notes when its first frame
    (the welcome) and the one with the member list came, and reads the rest for nothing."""

    def __init__(self) -> None:
        self.upgraded: float | None = None  # when the handshake's answer (the 101) was read
        self.first: float | None = None
        self.members: float | None = None
        self.arrived = asyncio.Event()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.upgraded = time.perf_counter()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            now = time.perf_counter()
            if self.first is None:
                self.first = now
            if self.members is None and MEMBERS in frame.get_payload_as_bytes():
                self.members = now
                self.arrived.set()
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


class Churn:
    """RATE connections a second, each joining a random room as a random person, then leaving
    after C{stay} seconds (uniform between the two bounds), for as long as the chat runs."""

    def __init__(self, options: argparse.Namespace, headers: dict[str, str], stay: tuple[float, float] = (0.5, 2.5)) -> None:
        self.options = options
        self.headers = headers
        self.stay = stay
        self.random = random.Random(21)
        self.joins = 0
        self.leaves = 0
        self.failed = 0
        self.welcomeMs: list[float] = []  # connect to first frame, per join
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        options = self.options
        started = time.perf_counter()
        count = 0
        while not stop.is_set():
            due = int((time.perf_counter() - started) * options.churn) + 1
            while count < due:
                count += 1
                task = asyncio.ensure_future(self.visit())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            await asyncio.sleep(0.002)
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def visit(self) -> None:
        options, rng = self.options, self.random
        base = (options.url or ["ws://127.0.0.1:8080/ws"])[0]
        room = f"{base}/bench{rng.randrange(options.rooms)}" if options.rooms else base
        person = rng.randrange(options.identities) if options.identities else None
        url = room + (peopleQuery(person) if person is not None else "")
        stay = rng.uniform(*self.stay)
        began = time.perf_counter()
        try:
            transport, visitor = await ws_connect(Visitor, url, extra_headers=self.headers or None,
                                                  max_frame_size=1 << 26)
        except Exception as e:  # noqa: BLE001 - counted, reported, never fatal
            self.failed += 1
            print(f"churn connect failed: {e!r}", file=sys.stderr)
            return
        assert isinstance(visitor, Visitor)
        self.joins += 1
        await asyncio.sleep(stay)
        if visitor.first is not None:
            self.welcomeMs.append((visitor.first - began) * 1000)
        transport.send_close()
        await transport.wait_disconnected()
        self.leaves += 1

    def figures(self) -> dict[str, Any]:
        p50, p99 = percentile(self.welcomeMs, 0.5), percentile(self.welcomeMs, 0.99)
        return {"churn_rate": self.options.churn, "churn_joins": self.joins, "churn_leaves": self.leaves,
                "churn_failed": self.failed,
                "churn_welcome_p50_ms": round(p50, 3) if p50 is not None else None,
                "churn_welcome_p99_ms": round(p99, 3) if p99 is not None else None}


PY_SPY = str(next((p for p in (Path(sys.executable).parent / "py-spy",) if p.exists()), "py-spy"))


class Profiler:
    """py-spy recording the server while the chat runs, without stopping it for each sample
    (C{--nonblocking}); it runs beside the load, on the load's core."""

    def __init__(self, pid: int, path: str) -> None:
        # A .json path gets the samples in time order, idle ones too (speedscope's format): where
        # the reactor stalled, and on what.
        how = ["--format", "speedscope", "--idle"] if path.endswith(".json") else ["--format", "raw"]
        self.process = subprocess.Popen(
            [PY_SPY, "record", "--pid", str(pid), *how, "--rate", "200", "--nonblocking", "--output", path],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file on an interrupt
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def membersJoin(options: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    """The N clients (N people) sit in one room; a new person joins and leaves, K times, one at
    a time: how long from the connect, and from the handshake's answer, to the welcome frame
    with the member list."""
    run = Run(options)
    await run.connect()
    await asyncio.sleep(options.settle)
    headers = {"Sec-WebSocket-Protocol": "txchat.v2"}
    base = (options.url or ["ws://127.0.0.1:8080/ws"])[0]
    room = f"{base}/bench0" if options.rooms else base
    fromConnect: list[float] = []
    fromHandshake: list[float] = []
    listed = 0
    for k in range(options.members_join):
        began = time.perf_counter()
        transport, visitor = await ws_connect(Visitor, room + peopleQuery(options.identities + k),
                                              extra_headers=headers, max_frame_size=1 << 26)
        assert isinstance(visitor, Visitor)
        await asyncio.wait_for(visitor.arrived.wait(), 5)
        assert visitor.members is not None and visitor.upgraded is not None
        fromConnect.append((visitor.members - began) * 1000)
        fromHandshake.append((visitor.members - visitor.upgraded) * 1000)
        listed += visitor.first == visitor.members
        transport.send_close()
        await transport.wait_disconnected()
        await asyncio.sleep(options.pause)
    result.update(
        connected=len(run.clients), joins=len(fromConnect), members_in_first_frame=listed,
        member_join_p50_ms=round(percentile(fromConnect, 0.5) or 0, 3),
        member_join_p90_ms=round(percentile(fromConnect, 0.9) or 0, 3),
        member_join_after_101_p50_ms=round(percentile(fromHandshake, 0.5) or 0, 3),
        member_join_after_101_p90_ms=round(percentile(fromHandshake, 0.9) or 0, 3),
    )
    await run.close()
    return result


async def prefill(options: argparse.Namespace) -> None:
    """One client says --prefill messages and waits for the last to come back."""
    run = Run(argparse.Namespace(**{**vars(options), "n": 1, "timed": 0, "conc": 1, "rooms": 0}))
    await run.connect()
    done = asyncio.Event()
    client = run.clients[0]
    original = client.on_ws_frame

    def counting(transport: WSTransport, frame: WSFrame) -> None:
        original(transport, frame)
        if client.received >= options.prefill:
            done.set()

    client.on_ws_frame = counting  # type: ignore[method-assign]
    for i in range(options.prefill):
        run.transports[0].send(WSMsgType.TEXT, run.payload(i))
    await asyncio.wait_for(done.wait(), 30)
    await run.close()


async def joinStorm(options: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    await prefill(options)
    run = Run(options)
    started = time.perf_counter()
    await run.connect()
    deadline = time.perf_counter() + options.grace
    while time.perf_counter() < deadline and any(c.joined is None for c in run.clients):
        await asyncio.sleep(0.005)
    joined = [c.joined for c in run.clients if c.joined is not None]
    result.update(connected=len(run.clients), connect_failed=run.connectFailed, joined=len(joined),
                  history_ok=sum(c.historyOk and c.lastSeq == options.prefill for c in run.clients),
                  joined_s=round(max(joined) - started, 3) if joined else None)
    await run.close()
    return result


async def abandon(options: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    """Every client says one message in its own room and leaves; the rooms' history expires.

    The same number of clients first come and go in one room, silent: what the server keeps
    of that many connections (its allocator's high-water mark) is in the start figure, so the
    growth is what the rooms themselves leave behind."""

    async def churn(rooms: int) -> None:
        run = Run(argparse.Namespace(**{**vars(options), "rooms": rooms}))
        await run.connect()
        for i, transport in enumerate(run.transports if rooms else []):
            transport.send(WSMsgType.TEXT, run.payload(i))
        await asyncio.sleep(options.settle)
        if options.pid and rooms:
            result["server_rss_full_mib"] = rssMiB(options.pid)
        await run.close()
        await asyncio.sleep(options.after)

    result["server_rss_fresh_mib"] = result["server_rss_before_mib"]
    await churn(0)
    if options.pid:
        result["server_rss_before_mib"] = rssMiB(options.pid)
    await churn(options.rooms or options.n)
    if options.pid:
        result["server_rss_end_mib"] = rssMiB(options.pid)
        result["server_rss_growth_mib"] = round(result["server_rss_end_mib"] - result["server_rss_before_mib"], 2)
        result["server_rss_growth_fresh_mib"] = round(result["server_rss_end_mib"] - result["server_rss_fresh_mib"], 2)
    return result


async def main(options: argparse.Namespace) -> dict[str, Any]:
    run = Run(options)
    server = ProcessSample(options.pid) if options.pid else None
    tool = ProcessSample(os.getpid())
    result: dict[str, Any] = {"label": options.label, "tool": "bench.loadgen", "clients": options.n}
    result["server_rss_before_mib"] = rssMiB(options.pid) if options.pid else None
    if options.join_storm:
        return await joinStorm(options, result)
    if options.abandon:
        return await abandon(options, result)
    if options.members_join:
        return await membersJoin(options, result)
    result["connect_s"] = round(await run.connect(), 3)
    connected = len(run.clients)
    result.update(connected=connected, connect_failed=run.connectFailed)
    await asyncio.sleep(options.settle)
    if options.pid:
        result["server_rss_connected_mib"] = rssMiB(options.pid)
        result["server_kib_per_conn"] = round(
            (result["server_rss_connected_mib"] - result["server_rss_before_mib"]) * 1024 / max(connected, 1), 2
        )
    if options.idle:
        await asyncio.sleep(options.idle)
        if options.pid:
            result["server_rss_end_mib"] = rssMiB(options.pid)
            result["server_kib_per_conn_end"] = round(
                (result["server_rss_end_mib"] - result["server_rss_before_mib"]) * 1024 / max(connected, 1), 2
            )
        await run.close()
        return result

    # No collector passes in the tool while it times: a full pass over 10,000 connections
    # stalls its loop for a fraction of a second, which would show as the server's latency.
    gc.collect()
    gc.freeze()
    gc.disable()
    profiler = Profiler(options.pid, options.profile) if options.profile and options.pid else None
    churn = Churn(options, run.headers) if options.churn else None
    stopChurn = asyncio.Event()
    churning = asyncio.ensure_future(churn.run(stopChurn)) if churn else None
    tool.start()
    toolWaited = waitSeconds(os.getpid())
    serverWaited = waitSeconds(options.pid) if options.pid else 0.0
    if server:
        server.start()
    started = time.perf_counter()
    sent = await run.send()
    sendSeconds = time.perf_counter() - started
    # With rooms, a message reaches the members of its sender's room only.
    expected = run.expectedDeliveries(sent) if options.rooms else sent * connected
    await run.drain(expected)
    duration = time.perf_counter() - started
    toolCpu = tool.cpuPercent()
    serverCpu = server.cpuPercent() if server else None
    # Runnable but waiting for a core, during the chat: what the rest of the machine took.
    result["tool_wait_s"] = round(waitSeconds(os.getpid()) - toolWaited, 2)
    if options.pid:
        result["server_chat_wait_s"] = round(waitSeconds(options.pid) - serverWaited, 2)
    if profiler:
        profiler.stop()
    stopChurn.set()
    if churning is not None and churn is not None:
        await churning
        result.update(churn.figures())
    gc.enable()
    received = sum(c.received for c in run.clients)
    frames = sum(c.frames for c in run.clients)
    result.update(
        senders=min(options.senders, connected), rate_target=options.rate, window=options.window,
        size=options.size, sent=sent, send_s=round(sendSeconds, 3), duration_s=round(duration, 3),
        expected_deliveries=expected, received_deliveries=received, lost=max(0, expected - received),
        loss_pct=round(100 * max(0, expected - received) / expected, 3) if expected else 0,
        disconnected=sum(c.closed for c in run.clients),
        deliveries_per_s=round(received / duration) if duration else 0,
        frames_received=frames, frames_without_message=sum(c.bare for c in run.clients),
        presence_only_lines=sum(c.presence for c in run.clients), msgs_per_frame=round(received / frames, 3) if frames else 0,
        latency_sampled_clients=sum(c.timed for c in run.clients),
        lat_p50_ms=round(run.latency.percentile(0.50) / 1000, 3),
        lat_p90_ms=round(run.latency.percentile(0.90) / 1000, 3),
        lat_p99_ms=round(run.latency.percentile(0.99) / 1000, 3),
        lat_max_ms=round(run.latency.maximum / 1000, 3),
        tool_cpu_pct=toolCpu, server_cpu_pct=serverCpu,
    )
    if options.pid:
        result["server_rss_end_mib"] = rssMiB(options.pid)
    await run.close()
    return result


def parseArgs(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", action="append", help="repeatable: clients are spread over the URLs")
    parser.add_argument("-n", type=int, default=100, help="clients")
    parser.add_argument("--senders", type=int, default=1, help="the first S clients send")
    parser.add_argument("-m", type=int, default=1000, help="messages in all")
    parser.add_argument("--rate", type=float, default=0, help="aggregate msg/s; 0: as fast as --window allows")
    parser.add_argument("--window", type=int, default=64, help="messages in flight in window mode")
    parser.add_argument("--size", type=int, default=100, help="payload bytes")
    parser.add_argument("--grace", type=float, default=5, help="seconds to wait for stragglers")
    parser.add_argument("--settle", type=float, default=1, help="pause after connecting")
    parser.add_argument("--conc", type=int, default=200, help="parallel connects")
    parser.add_argument("--timed", type=int, default=20, help="clients whose latencies are measured")
    parser.add_argument("--origin", default=None)
    parser.add_argument("--pid", type=int, default=0, help="server PID, for its CPU and RSS (the first, if several)")
    parser.add_argument("--idle", type=float, default=0, help="only connect and hold this many seconds")
    parser.add_argument("--label", default="")
    parser.add_argument("--v1", action="store_true", help="speak txchat.v1")
    parser.add_argument("--v2", action="store_true", help="speak txchat.v2 (sends with IDs; implies --v1's reading)")
    parser.add_argument("--rooms", type=int, default=0, help="spread the clients over this many rooms")
    parser.add_argument("--join-storm", action="store_true", help="time a join of all clients at once")
    parser.add_argument("--prefill", type=int, default=50, help="history messages before a join storm")
    parser.add_argument("--abandon", action="store_true", help="one message a client, then leave")
    parser.add_argument("--after", type=float, default=10, help="seconds to wait after --abandon")
    parser.add_argument("--identities", type=int, default=0, help="client i is person i %% N (cid= and name=)")
    parser.add_argument("--churn", type=float, default=0, help="connections a second that join and leave while the chat runs")
    parser.add_argument("--members-join", type=int, default=0, help="time this many joins of a new person, one at a time")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between --members-join joins")
    parser.add_argument("--profile", default="", help="py-spy the server (--pid) into this file while the chat runs")
    options = parser.parse_args(argv)
    options.v1 = options.v1 or options.v2
    return options


if __name__ == "__main__":
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(main(parseArgs()))))
