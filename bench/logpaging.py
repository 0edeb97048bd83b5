"""Scrollback at the far end of a big room: fill a SQLite chat log with one room of N messages
(default 1,000,000, in ten epochs, as after nine restarts), then time pages of 50 going back
from near its first message (SPEC §16's target: at most 5 ms a page), and say the file's size.

    python -m bench.logpaging [--messages N] [--path FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from txchat.chatlog import Head
from txchat.sqlitelog import SqliteLog
from txchat.stream import Delivery

PAGE = 50
EPOCHS = 10
BATCH = 1000  # messages a write: the broker writes what a flush delivers


def fill(log: SqliteLog, count: int) -> float:
    """Write C{count} messages into room "big"; the seconds it took."""
    started = time.perf_counter()
    perEpoch = -(-count // EPOCHS)
    now = 1_700_000_000_000
    batch: list[Delivery] = []
    for n in range(count):
        epoch, seq = f"epoch{n // perEpoch:02d}", n % perEpoch + 1
        text = f"message {n}: a chat line of about sixty bytes, like most of them".encode()
        batch.append(Delivery("big", text, "Ada", now + n, seq, epoch, f"a:client-{n % 97:04d}-cid", f"s{n}"))
        if len(batch) == BATCH:
            log.append(batch)
            batch = []
    if batch:
        log.append(batch)
    return time.perf_counter() - started


def timePages(log: SqliteLog, starts: list[Head]) -> list[float]:
    """Seconds for each page of PAGE messages before each of C{starts}."""
    times = []
    for before in starts:
        started = time.perf_counter()
        page = log.page("big", before, PAGE)
        times.append(time.perf_counter() - started)
        assert len(page.messages) == PAGE, (before, len(page.messages))
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--path", help="the SQLite file (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        path = args.path or str(Path(directory) / "bench.sqlite3")
        log = SqliteLog(path)
        seconds = fill(log, args.messages)
        print(f"filled {args.messages:,} messages in {seconds:.1f} s ({args.messages / seconds:,.0f}/s)")
        log.close()  # a checkpoint: what is measured next reads the database, not the WAL
        size = os.path.getsize(path)
        print(f"file: {size / 1e6:.1f} MB, {size / args.messages:.0f} bytes a message "
              f"({size / args.messages:.0f} MB a million)")
        log = SqliteLog(path)
        perEpoch = -(-args.messages // EPOCHS)
        # The far end: pages back from the first epoch's messages 51..10,050; and the near end.
        far = [Head("epoch00", seq) for seq in range(PAGE + 1, min(perEpoch, PAGE * 201), PAGE)]
        newest = log.heads()["big"]
        near = [Head(newest.epoch, seq) for seq in range(newest.seq, max(PAGE, newest.seq - PAGE * 200), -PAGE)]
        timePages(log, far[:20])  # warm the cache, as a running server's is
        for name, starts in (("far end (first messages)", far), ("near end (newest)", near)):
            times = timePages(log, starts)
            print(f"page of {PAGE}, {name}: median {statistics.median(times) * 1e3:.3f} ms, "
                  f"max {max(times) * 1e3:.3f} ms over {len(times)} pages")
        started = time.perf_counter()
        walked, before = 0, None
        while True:
            page = log.page("big", before, 200)
            walked += len(page.messages)
            if not page.more:
                break
            first = page.messages[0]
            assert first.epoch is not None and first.seq is not None
            before = Head(first.epoch, first.seq)
        seconds = time.perf_counter() - started
        print(f"walked back through all {walked:,} in pages of 200 in {seconds:.1f} s")
        log.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
