"""A bounded soak: a txchat process under a crowd that includes every kind of bad client.

    python -m bench.soak --minutes 2

It starts ``twistd -n txchat`` itself (on 127.0.0.1, short keepalive timers so that dead
connections are reaped within the run, 127.0.0.1 trusted as a proxy so that each client can
stand for its own address through X-Forwarded-For), then for the whole run keeps:

- steady readers, connected throughout, checking that they receive every message of every
  well-behaved sender exactly once and in each sender's order;
- a few busy senders, just under the rate limit, with long messages;
- hundreds of churning clients that connect, chat a little and leave;
- a few that never read, a few that send garbage or oversize frames, and a few half-open
  sockets (a handshake that never ends; a WebSocket that goes silent and ignores pings).

At the end it prints one JSON line: messages lost by well-behaved clients (must be 0), the
server's RSS and open file descriptors at start and end, and what the server logged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

from websockets.asyncio.client import connect

from bench.frames import BINARY, PONG, TEXT, clientFrame, handshake
from bench.processes import Twistd
from bench.procstat import rssMiB

SERVER_OPTIONS = (
    "--listen", "tcp:0:interface=127.0.0.1:backlog=1024",
    "--ping-interval", "5", "--pong-timeout", "10", "--write-timeout", "5", "--handshake-timeout", "5",
    "--send-queue", "64", "--trusted-proxy", "127.0.0.1",
    # The limits of a public deployment (docs/operations.md), which the busy senders stay just under.
    "--rate-limit", "50", "--rate-burst", "100", "--max-connections-per-ip", "100",
)


def openFiles(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    def __init__(self, options: argparse.Namespace, port: int) -> None:
        self.options = options
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.port = port
        self.deadline = time.monotonic() + options.minutes * 60
        self.sent: dict[str, int] = defaultdict(int)  # well-behaved sender -> messages sent
        self.received: list[dict[str, int]] = []  # per steady reader: sender -> last seq seen
        self.disorder = 0
        self.counts: dict[str, int] = defaultdict(int)
        self.stopReading = asyncio.Event()

    def address(self, n: int) -> dict[str, str]:
        return {"X-Forwarded-For": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}

    @property
    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def steadyReader(self, index: int, ready: asyncio.Event, connected: list[int]) -> None:
        seen: dict[str, int] = {}
        self.received.append(seen)
        async with connect(self.url, additional_headers=self.address(index), max_size=None) as ws:
            connected.append(index)
            if len(connected) == self.options.readers:
                ready.set()
            while not self.stopReading.is_set():
                try:
                    frame = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                assert isinstance(frame, str)
                for line in frame.split("\n"):
                    sender, _, rest = line.partition(":")
                    seq = int(rest.partition(":")[0])
                    if seq != seen.get(sender, 0) + 1:
                        self.disorder += 1
                    seen[sender] = seq

    async def churner(self, index: int) -> None:
        session = 0
        while self.running:
            session += 1
            name = f"c{index}.{session}"
            try:
                async with connect(self.url, additional_headers=self.address(1000 + index)) as ws:
                    self.counts["churn sessions"] += 1
                    drain = asyncio.create_task(self._discard(ws))  # a well-behaved client reads
                    for _ in range(random.randint(1, 10)):
                        self.sent[name] += 1
                        await ws.send(f"{name}:{self.sent[name]}:" + "w" * random.randint(1, 480))
                        await asyncio.sleep(random.uniform(0.5, 2.5))
                    drain.cancel()
            except Exception as e:  # noqa: BLE001 - a well-behaved client must never fail
                self.counts[f"churn error {type(e).__name__}"] += 1
            await asyncio.sleep(random.uniform(0, 1))

    async def firehose(self, index: int) -> None:
        """A busy but well-behaved sender: just under the rate limit, long messages."""
        name = f"f{index}"
        async with connect(self.url, additional_headers=self.address(3000 + index)) as ws:
            drain = asyncio.create_task(self._discard(ws))
            while self.running:
                self.sent[name] += 1
                await ws.send(f"{name}:{self.sent[name]}:" + "F" * 480)
                await asyncio.sleep(1 / 40)
            drain.cancel()

    @staticmethod
    async def _discard(ws: Any) -> None:
        async for _ in ws:
            pass

    async def raw(self, index: int, receiveBuffer: int = 0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = socket.socket()
        if receiveBuffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        headers = self.address(5000 + index)
        writer.write(handshake(host=f"127.0.0.1:{self.port}", headers=headers))
        await reader.readuntil(b"\r\n\r\n")
        return reader, writer

    async def neverReads(self, index: int) -> None:
        while self.running:
            try:
                reader, writer = await self.raw(index, receiveBuffer=4096)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.counts["never-reading refused"] += 1
                await asyncio.sleep(1)
                continue
            cast(asyncio.Transport, writer.transport).pause_reading()
            self.counts["never-reading sockets"] += 1
            # Never read again, but stay alive with unsolicited pongs (RFC 6455 allows them):
            # the server must drop it for its full send queue or its stuck output, not for
            # silence. A new one every 60 s.
            for _ in range(20):
                if writer.is_closing():
                    break
                writer.write(clientFrame(PONG, b""))
                await asyncio.sleep(3)
            writer.transport.abort()

    async def garbage(self, index: int) -> None:
        kinds = [
            lambda: os.urandom(random.randint(1, 300)),
            lambda: clientFrame(TEXT, b"x" * 4000),
            lambda: clientFrame(BINARY, b"\x00\x01"),
            lambda: clientFrame(TEXT, b"\xff\xfe broken"),
            lambda: clientFrame(TEXT, b"unmasked", masked=False),
            lambda: clientFrame(0x3, b"unknown opcode"),
        ]
        while self.running:
            try:
                reader, writer = await self.raw(index)
                writer.write(random.choice(kinds)())
                await asyncio.wait_for(reader.read(), 20)  # until the server closes
                self.counts["garbage connections"] += 1
                writer.close()
            except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                self.counts[f"garbage {type(e).__name__}"] += 1
            await asyncio.sleep(random.uniform(0.1, 0.5))

    async def halfOpen(self, index: int) -> None:
        while self.running:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            if index % 2:
                writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # and never the rest
                self.counts["stalled handshakes"] += 1
            else:
                writer.write(handshake(host=f"127.0.0.1:{self.port}", headers=self.address(6000 + index)))
                self.counts["silent websockets"] += 1  # reads, but never answers a ping
            try:
                while await asyncio.wait_for(reader.read(65536), 30):
                    pass
                self.counts["half-open reaped by the server"] += 1
            except ConnectionError:  # cut with a reset: reaped all the same
                self.counts["half-open reaped by the server"] += 1
            except asyncio.TimeoutError:
                self.counts["half-open still open after 30 s"] += 1
            writer.close()

    async def run(self) -> None:
        ready = asyncio.Event()
        connected: list[int] = []
        readers = [asyncio.create_task(self.steadyReader(i, ready, connected)) for i in range(self.options.readers)]
        await asyncio.wait_for(ready.wait(), 30)
        crowd = [self.churner(i) for i in range(self.options.churners)]
        crowd += [self.firehose(i) for i in range(self.options.firehoses)]
        crowd += [self.neverReads(i) for i in range(self.options.bad)]
        crowd += [self.garbage(i) for i in range(self.options.bad)]
        crowd += [self.halfOpen(i) for i in range(self.options.bad)]
        await asyncio.gather(*crowd)
        await asyncio.sleep(3)  # the last messages' way to the readers
        self.stopReading.set()
        await asyncio.gather(*readers)

    def lost(self) -> int:
        return sum(max(0, count - seen.get(sender, 0)) for seen in self.received for sender, count in self.sent.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2)
    parser.add_argument("--readers", type=int, default=10, help="steady readers")
    parser.add_argument("--churners", type=int, default=100, help="clients at a time that come, chat and go")
    parser.add_argument("--firehoses", type=int, default=6, help="well-behaved senders at 40 msg/s")
    parser.add_argument("--bad", type=int, default=5, help="clients of each bad kind")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        server = Twistd(*SERVER_OPTIONS, cwd=Path(workdir))
        try:
            pid = server.pid
            start = {"rss_mib": rssMiB(pid), "open_fds": openFiles(pid)}
            soak = Soak(options, server.port)
            began = time.monotonic()
            asyncio.run(soak.run())
            seconds = time.monotonic() - began
            # Let the server reap the last half-open and closing connections before counting.
            time.sleep(12)
            end = {"rss_mib": rssMiB(pid), "open_fds": openFiles(pid)}
        finally:
            server.stop()
        log = server.log
    result: dict[str, Any] = {
        "minutes": round(seconds / 60, 2),
        "well_behaved_messages_sent": sum(soak.sent.values()),
        "steady_readers": len(soak.received),
        "lost_by_well_behaved_clients": soak.lost(),
        "out_of_order": soak.disorder,
        "server_start": start,
        "server_end": end,
        "server_log": {
            "errors": len(re.findall(r"#(?:error|critical)\]|Traceback|Unhandled", log)),
            "connects": len(re.findall(r"\] connect ", log)),
            "slow clients dropped": len(re.findall(r"dropped slow client", log)),
            "stuck output cut": len(re.findall(r"could not drain", log)),
            "silent clients closed": len(re.findall(r"code 1008 no pong", log)),
            "slow request headers cut": len(re.findall(r"no complete request", log)),
            "refused": len(re.findall(r"\] refused ", log)),
        },
        "clients": dict(soak.counts),
    }
    print(json.dumps(result))
    ok = result["lost_by_well_behaved_clients"] == 0 and not result["out_of_order"] and not result["server_log"]["errors"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
