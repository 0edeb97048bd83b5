"""A txchat.v1 client that never misses a message it could have had: it prints every message of
a room and, whenever the connection drops or the server restarts, reconnects by itself with
``since`` (the last number it saw), as the page does. Needs the ``websockets`` package.

    python recovery_client.py ws://localhost:8080/ws/general Ada
"""

import json
import random
import sys
import time
from urllib.parse import quote

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

url = sys.argv[1] if len(sys.argv) > 1 else "ws://localhost:8080/ws/general"
name = sys.argv[2] if len(sys.argv) > 2 else "Ada"
since = None  # "EPOCH:SEQ" of the last message seen
delay = 0.5  # the first retry within a second, then further apart, never more than 10 s

while True:
    try:
        query = f"?name={quote(name)}" + (f"&since={since}" if since else "")
        with connect(url + query, subprotocols=["txchat.v1"]) as chat:
            for frame in chat:
                for line in map(json.loads, frame.split("\n")):
                    if line["type"] == "welcome":
                        epoch, last = line["epoch"], line["seq"]
                        delay = 0.5  # connected: the next drop starts the backoff afresh
                        if line.get("recovered") is False:
                            print("-- some messages may be missing", flush=True)
                    elif line["type"] == "message":
                        last = line.get("seq", last)  # (unnumbered while a server has lost Redis)
                        print(line["name"] or "anonymous", line["text"], flush=True)
                    since = f"{epoch}:{last}"
    except InvalidStatus as e:
        if e.response.status_code != 503:  # 503: full, shutting down or catching up; retry
            raise  # a bad room, name or token: retrying would not help
    except (OSError, ConnectionClosed, InvalidHandshake):
        pass  # refused (the server is restarting), reset, or cut during the handshake
    time.sleep(delay * random.uniform(0.5, 1.0))
    delay = min(delay * 2, 10)
