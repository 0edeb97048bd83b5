"""Bad input to the installed ``twistd -n txchat``: a clear answer, a clean log, nothing lost.

These need ``pip install .`` first, as every process test does."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path

import pytest
from websockets.sync.client import connect as wsConnect

from bench.processes import Twistd


KEY = "k3y-for-the-backend-0123456789"


def post(port: int, path: str, body: bytes, key: str = KEY) -> tuple[int, str, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("content-type", ""), json.loads(response.read())
    finally:
        connection.close()


def test_bad_api_bodies_get_json_errors_the_log_stays_clean_and_the_chat_goes_on(tmp_path: Path) -> None:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--api-key", KEY, cwd=tmp_path) as node:
        with wsConnect(f"ws://127.0.0.1:{node.port}/ws/r") as a, wsConnect(f"ws://127.0.0.1:{node.port}/ws/r") as b:
            nested = b'{"text":"x","name":' + b"[" * 1200 + b"]" * 1200 + b"}"
            status, kind, answer = post(node.port, "/api/rooms/r/messages", nested)
            assert (status, kind) == (400, "application/json; charset=utf-8")
            assert isinstance(answer, dict) and answer["error"].startswith("the body must be JSON")

            # Announced too large: refused before the body is sent.
            with socket.create_connection(("127.0.0.1", node.port), timeout=10) as raw:
                raw.sendall(b"POST /api/rooms/r/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                            + KEY.encode() + b"\r\nContent-Length: 70000\r\n\r\n")
                response = b""
                while chunk := raw.recv(4096):
                    response += chunk
            head, _, body = response.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413 ") and b"content-type: application/json" in head.lower()
            assert json.loads(body) == {"error": "the request body is more than 65536 bytes"}

            a.send("still chatting")
            assert b.recv(timeout=10) == "still chatting"
            assert post(node.port, "/api/rooms/r/messages", b'{"text":"and posting"}')[0] == 201
            assert b.recv(timeout=10) == "and posting"
        assert node.process.poll() is None, "the process is still up"
    log = node.log
    assert "Traceback" not in log and "RecursionError" not in log, log
