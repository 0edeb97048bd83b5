"""Blocking clients for the tests of the real process: the server API over urllib and
txchat.v1 over websockets' sync client, with the secret and the key those tests start it with."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import jwt
from websockets.sync.client import connect as wsConnect


SECRET = "a secret only the application and txchat know"
KEY = "backend-key-0123456789abcdef"


def token(**claims) -> str:
    return jwt.encode({"sub": "user-1", **claims}, SECRET, algorithm="HS256")


def api(port: int, method: str, path: str, body: dict | None = None, key: str | None = KEY) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def v1(port: int, room: str, query: str):
    return wsConnect(f"ws://127.0.0.1:{port}/ws/{room}?{query}", subprotocols=["txchat.v1"])


def lines(client, count: int) -> list[dict]:
    got: list[dict] = []
    while len([line for line in got if line["type"] == "message"]) < count:
        got += [json.loads(line) for line in client.recv(timeout=10).split("\n")]
    return [line for line in got if line["type"] == "message"]
