"""Chat clients for fault runs, recording every line they get (tests/support/historycheck.py
reads the record). Run inside the clients' network namespace by faults.py:

    python -m tests.system.faults.faultclients --nodes ws://198.51.100.2:8080,... --rooms a,b --clients 6 \\
        --senders 3 --rate 4 --reconnect 0.05 --seed 1 --protocol v2 --out history.jsonl

Each client stays in one room, sends (if it is a sender) unique texts ``<name>-<n>`` at a steady
rate, disconnects at random moments (and whenever its connection fails) and reconnects, to
any node, with ``since`` = the last message it saw. On txchat.v2 (SPEC §17) it gives a
``cid=`` of its own, kept across reconnects, sends each text as ``{"type":"send","id":N,...}``,
keeps every send not yet acknowledged and, after each reconnect, sends them again, same IDs,
in order, before anything new; it records the acks and errors. On txchat.v1 it sends plain
text frames, as a v1 client does, and a send into a dying connection may be lost. Commands, one a line on stdin:
``quiet`` (stop sending), ``settle SECONDS`` (until every send is answered, at most that
long), ``flood ROOM SECONDS`` (one more client sends as fast as it can),
``slow ROOM N`` (N clients that connect and never read), ``stop`` (close everything, write
the record, print ``done``). Prints ``ready`` once every client has been welcomed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from typing import Any
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.typing import Subprotocol

Event = dict[str, Any]
RETRY = ("unavailable", "rate-limited")  # refusals of the moment: the same send, again, later


class Client:
    def __init__(self, run: Run, name: str, room: str, sender: bool) -> None:
        self.run = run
        self.name = name
        self.room = room
        self.sender = sender
        self.conn = 0
        self.epoch: str | None = None
        self.lastSeq = 0
        self.socket: ClientConnection | None = None
        self.welcomed = asyncio.Event()
        self.count = 0
        self.cid = f"faults-{name}"  # 8-64 characters, the same on every connection
        self.unacked: dict[str, str] = {}  # ID -> text, in the order sent

    def record(self, kind: str, **fields: Any) -> None:
        self.run.events.append({"c": self.name, "k": kind, "conn": self.conn, "t": round(time.time(), 3), **fields})

    async def live(self) -> None:
        while not self.run.stopping:
            self.conn += 1
            node = self.run.random.choice(self.run.nodes)
            asked = [self.epoch, self.lastSeq] if self.epoch is not None else None
            query = f"name={self.name}" + (f"&since={quote(self.epoch, safe='')}:{self.lastSeq}" if self.epoch is not None else "")
            if self.run.v2:
                query += f"&cid={self.cid}"
            why = "closed"
            try:
                async with connect(f"{node}/ws/{self.room}?{query}", subprotocols=[Subprotocol(self.run.protocol)],
                                   ping_interval=1, ping_timeout=3, open_timeout=3, close_timeout=1,
                                   max_queue=None) as socket:
                    self.socket = socket
                    tasks = [asyncio.create_task(self._wander(socket))]
                    if self.sender:
                        tasks.append(asyncio.create_task(self._send(socket)))
                    try:
                        welcomed = False  # what was asked goes with this connection's welcome
                        async for frame in socket:
                            for line in str(frame).split("\n"):
                                parsed = json.loads(line)
                                self._received(parsed, None if welcomed else asked)
                                welcomed = welcomed or parsed.get("type") == "welcome"
                    finally:
                        for task in tasks:
                            task.cancel()
                    why = f"closed {socket.close_code} {socket.close_reason}"
            except (OSError, TimeoutError, WebSocketException) as e:
                why = f"{type(e).__name__}: {e}"
            self.socket = None
            self.record("close", why=why, node=urlsplit(node).hostname)
            if not self.run.stopping:
                await asyncio.sleep(self.run.random.uniform(0.1, 0.6))

    def _received(self, line: dict[str, Any], asked: list[Any] | None) -> None:
        kind = line.get("type")
        if kind == "welcome":
            recovered = line.get("recovered")
            self.record("welcome", room=self.room, epoch=line["epoch"], seq=line["seq"], recovered=recovered,
                        since=asked)
            if not (recovered is True and asked is not None):
                if line["epoch"] != self.epoch:
                    self.lastSeq = 0
                self.lastSeq = max(self.lastSeq, line["seq"])  # nothing before it is owed to us
            self.epoch = line["epoch"]
            self.welcomed.set()
        elif kind == "message":
            seq = line.get("seq")
            self.record("msg", room=self.room, epoch=self.epoch, seq=seq, text=line["text"], sender=line.get("from"))
            if seq is not None:
                self.lastSeq = max(self.lastSeq, seq)
        elif kind == "ack":
            self.record("ack", room=self.room, id=line["id"], epoch=line.get("epoch"), seq=line.get("seq"))
            self.unacked.pop(line["id"], None)
        elif kind == "error":
            ref = line.get("id")
            self.record("error", room=self.room, id=ref, code=line.get("code"), why=line.get("message"))
            if line.get("code") in RETRY and ref in self.unacked and self.socket is not None:
                delay = line.get("retryAfter", 1000) / 1000
                self.run.extra.append(asyncio.create_task(self._retry(ref, delay, self.socket)))
            elif isinstance(ref, str):
                self.unacked.pop(ref, None)  # refused for good: nothing to resend

    async def _retry(self, id: str, delay: float, socket: ClientConnection) -> None:
        """Send C{id} again on this connection after C{delay}, unless it has been acknowledged
        or the connection has gone (a reconnect sends it again anyway)."""
        await asyncio.sleep(delay)
        if id in self.unacked and self.socket is socket:
            self.record("sent", room=self.room, id=id, cid=self.cid, text=self.unacked[id], resend=True)
            try:
                await socket.send(json.dumps({"type": "send", "id": id, "text": self.unacked[id]}))
            except WebSocketException:
                pass

    async def _send(self, socket: ClientConnection) -> None:
        """Send what is still unacknowledged (v2), then new texts at the run's rate until quiet."""
        for id, text in list(self.unacked.items()):
            self.record("sent", room=self.room, id=id, cid=self.cid, text=text, resend=True)
            await socket.send(json.dumps({"type": "send", "id": id, "text": text}))
        interval = 1 / self.run.rate
        while not self.run.quiet:
            await asyncio.sleep(self.run.random.uniform(0.5, 1.5) * interval)
            if self.run.quiet:
                return
            self.count += 1
            text = f"{self.name}-{self.count}"
            if not self.run.v2:
                self.record("sent", room=self.room, text=text)
                await socket.send(text)
                continue
            id = str(self.count)
            self.unacked[id] = text
            self.record("sent", room=self.room, id=id, cid=self.cid, text=text)
            await socket.send(json.dumps({"type": "send", "id": id, "text": text}))

    async def _wander(self, socket: ClientConnection) -> None:
        """Leave at random moments (a reload, a phone changing networks)."""
        if not self.run.reconnect:
            return
        while True:
            await asyncio.sleep(1)
            if self.run.random.random() < self.run.reconnect and not self.run.quiet:
                await socket.close()
                return


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.nodes: list[str] = args.nodes.split(",")
        self.rooms: list[str] = args.rooms.split(",")
        self.rate: float = args.rate
        self.protocol: str = "txchat." + args.protocol
        self.v2 = args.protocol == "v2"
        self.reconnect: float = args.reconnect
        self.random = random.Random(args.seed)
        self.events: list[Event] = []
        self.stopping = False
        self.quiet = False
        self.out: str = args.out
        self.clients = [Client(self, f"c{i}", self.rooms[i % len(self.rooms)], i < args.senders)
                        for i in range(args.clients)]
        self.extra: list[asyncio.Task[Any]] = []
        self.slow: list[asyncio.StreamWriter] = []

    async def main(self) -> None:
        tasks = [asyncio.create_task(client.live()) for client in self.clients]
        await asyncio.wait_for(asyncio.gather(*(c.welcomed.wait() for c in self.clients)), 30)
        print("ready", flush=True)
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().split():
            if line[0] == "quiet":
                self.quiet = True
            elif line[0] == "settle":
                end = time.monotonic() + float(line[1])
                while any(c.unacked for c in self.clients) and time.monotonic() < end:
                    await asyncio.sleep(0.1)
            elif line[0] == "flood":
                self.extra.append(asyncio.create_task(self._flood(line[1], float(line[2]))))
            elif line[0] == "slow":
                for _ in range(int(line[2])):
                    await self._slow(line[1])
            elif line[0] == "stop":
                break
            print("ok", flush=True)
        self.stopping = True
        for client in self.clients:
            if client.socket is not None:
                await client.socket.close()
        for writer in self.slow:
            writer.close()
        await asyncio.wait(tasks + self.extra, timeout=10)
        for client in self.clients:
            for id, text in client.unacked.items():
                client.record("unacked", room=client.room, id=id, text=text)
        with open(self.out, "w") as f:
            for event in self.events:
                f.write(json.dumps(event) + "\n")
        print("done", flush=True)

    async def _flood(self, room: str, seconds: float) -> None:
        """As fast as the connection takes it, for C{seconds} (from the same client object
        as the rest, so that its texts are checked like theirs)."""
        flooder = Client(self, "flood", room, sender=False)
        self.clients.append(flooder)
        flooder.conn = 1
        try:
            async with connect(f"{self.nodes[0]}/ws/{room}", open_timeout=3, close_timeout=1, max_queue=None) as socket:
                reading = asyncio.create_task(self._drain(socket))
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    for _ in range(50):
                        flooder.count += 1
                        text = f"flood-{flooder.count}"
                        flooder.record("sent", room=room, text=text)
                        await socket.send(text)
                    await asyncio.sleep(0)
                reading.cancel()
        except (OSError, TimeoutError, WebSocketException) as e:
            flooder.record("close", why=f"{type(e).__name__}: {e}")
        self.clients.remove(flooder)

    @staticmethod
    async def _drain(socket: ClientConnection) -> None:
        async for _ in socket:
            pass

    async def _slow(self, room: str) -> None:
        """A client that completes its handshake and then never reads a byte."""
        where = urlsplit(self.nodes[0])  # where the flood goes too
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        writer.write((f"GET /ws/{room} HTTP/1.1\r\nHost: {where.netloc}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await writer.drain()
        self.slow.append(writer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", required=True)
    parser.add_argument("--rooms", default="a,b")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--senders", type=int, default=3)
    parser.add_argument("--rate", type=float, default=4.0, help="messages a second per sender")
    parser.add_argument("--reconnect", type=float, default=0.05, help="chance a second of leaving and coming back")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--protocol", choices=("v1", "v2"), default="v1")
    parser.add_argument("--out", required=True)
    asyncio.run(Run(parser.parse_args()).main())


if __name__ == "__main__":
    main()
