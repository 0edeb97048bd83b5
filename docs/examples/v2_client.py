"""A txchat.v2 client whose messages are never lost and never doubled: it sends each line typed
on stdin with an ID of its own and keeps it until the server acknowledges it; after a reconnect
it sends again whatever was not acknowledged, and the server delivers a resend only if the
first copy never arrived. It prints the room's messages, resumes with ``since``, and exits
once stdin has ended and everything it sent is acknowledged. Needs the ``websockets`` package.

    python v2_client.py ws://localhost:8080/ws/general Ada
"""

import json
import queue
import random
import sys
import threading
import time
import uuid
from urllib.parse import quote

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

url = sys.argv[1] if len(sys.argv) > 1 else "ws://localhost:8080/ws/general"
name = sys.argv[2] if len(sys.argv) > 2 else "Ada"
cid = uuid.uuid4().hex  # this client, the same across reconnects: its messages are "from" "a:" + cid
typed = queue.Queue()  # lines from stdin; None once it has ended
unacked = {}  # ID -> text, in the order sent
ended = False
since = None  # "EPOCH:SEQ" of the last message seen
delay = 0.5  # the first retry within a second, then further apart, never more than 10 s


def readLines() -> None:
    for line in sys.stdin:
        typed.put(line.rstrip("\n"))
    typed.put(None)


def send(chat, ref):
    chat.send(json.dumps({"type": "send", "id": ref, "text": unacked[ref]}))


threading.Thread(target=readLines, daemon=True).start()
while not (ended and not unacked):
    try:
        query = f"?name={quote(name)}&cid={cid}" + (f"&since={since}" if since else "")
        with connect(url + query, subprotocols=["txchat.v2"]) as chat:
            for ref in unacked:  # sent before the connection dropped: lost, or not; the server knows
                send(chat, ref)
            while not (ended and not unacked):
                while not typed.empty():
                    text = typed.get()
                    if text is None:
                        ended = True
                    elif text.strip():
                        ref = uuid.uuid4().hex  # unique: an ID used again within 10 minutes is a resend
                        unacked[ref] = text
                        send(chat, ref)
                try:
                    frame = chat.recv(timeout=0.1)
                except TimeoutError:
                    continue
                for line in map(json.loads, frame.split("\n")):
                    if line["type"] == "welcome":
                        epoch, last = line["epoch"], line["seq"]
                        delay = 0.5  # connected: the next drop starts the backoff afresh
                        if line.get("recovered") is False:
                            print("-- some messages may be missing", flush=True)
                    elif line["type"] == "message":
                        last = line.get("seq", last)  # (unnumbered while a server has lost Redis)
                        mine = " (me)" if line["from"] == "a:" + cid else ""
                        print(f"{line['name'] or 'anonymous'}{mine}: {line['text']}", flush=True)
                    elif line["type"] == "ack":
                        unacked.pop(line["id"], None)
                    elif line["type"] == "error" and line.get("id") in unacked:
                        if line["code"] in ("rate-limited", "unavailable"):
                            time.sleep(line.get("retryAfter", 1000) / 1000)  # then the same ID again
                            send(chat, line["id"])
                        else:  # too-long, empty, bad-request: sending it again would not help
                            print(f"-- not sent ({line['message']}): {unacked.pop(line['id'])}", flush=True)
                    since = f"{epoch}:{last}"
    except InvalidStatus as e:
        if e.response.status_code != 503:  # 503: full, shutting down or catching up; retry
            raise  # a bad room, name or token: retrying would not help
    except (OSError, ConnectionClosed, InvalidHandshake):
        pass  # refused (the server is restarting), reset, or cut during the handshake
    if not (ended and not unacked):
        time.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, 10)
