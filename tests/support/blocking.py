"""Blocking clients for the tests of the real process: the server API over urllib and
txchat.v1 over websockets' sync client, with the secret and the key those tests start it with."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, cast

import jwt
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as wsConnect
from websockets.typing import Subprotocol


SECRET = "a secret only the application and txchat know"
KEY = "backend-key-0123456789abcdef"


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "user-1", **claims}, SECRET, algorithm="HS256")


def api(port: int, method: str, path: str, body: dict[str, Any] | None = None, key: str | None = KEY) -> tuple[int,
        Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def v1(port: int, room: str, query: str) -> ClientConnection:
    return wsConnect(f"ws://127.0.0.1:{port}/ws/{room}?{query}", subprotocols=[Subprotocol("txchat.v1")])


def lines(client: ClientConnection, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len([line for line in got if line["type"] == "message"]) < count:
        got += [json.loads(line) for line in cast(str, client.recv(timeout=10)).split("\n")]
    return [line for line in got if line["type"] == "message"]
