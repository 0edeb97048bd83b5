"""The log of the installed ``twistd -n txchat``: one line per disconnect with the close code
that was sent, one line per refused handshake, nothing any client can make it warn about,
nothing for a browser's spare connection. These need ``pip install .`` first."""

from __future__ import annotations

import re
import socket
import struct
from pathlib import Path
from typing import Iterator

import pytest

from bench import frames
from bench.processes import Twistd

# Lines the process writes for a client; anything else after the start-up is noise.
QUIET = 0.5  # seconds the log is watched for more lines after the one expected


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twistd]:
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--handshake-timeout", "1",
                cwd=tmp_path_factory.mktemp("log")) as process:
        yield process


def opened(node: Twistd, path: str = "/ws", origin: str | None = None,
           headers: dict[str, str] | None = None) -> tuple[socket.socket, bytes]:
    """A raw client connection after its handshake, and the server's answer's head."""
    client = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    client.sendall(frames.handshake(path, origin=origin, headers=headers))
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = client.recv(4096)
        if not chunk:
            break
        answer += chunk
    return client, answer


def closeFrameFrom(client: socket.socket) -> int | None:
    """Read until the server's close frame; its code."""
    data = b""
    while True:
        chunk = client.recv(4096)
        assert chunk, "the server closed the connection without a close frame"
        data += chunk
        parsed, _ = frames.parseFrames(data)
        for opcode, payload in parsed:
            if opcode == frames.CLOSE:
                return frames.closeCode(payload)


def linesFor(node: Twistd, since: int, port: int, expected: str) -> list[str]:
    """Every line logged from C{since} on once C{expected} has been, for the while the log is
    watched after it: the client's own lines (its port), any warning or error, any of
    Autobahn's."""
    node.waitFor(expected, since=since)
    lines = node.linesDuring(QUIET, since=since)
    return [line for line in lines if f":{port}" in line or re.search(r"#(warn|error|critical)\]", line)
            or "Autobahn" in line or "WebSocket" in line]


def test_a_message_over_the_size_limit_logs_one_disconnect_line_with_1009(node: Twistd) -> None:
    mark = len(node.lines)
    client, answer = opened(node)
    with client:
        port = client.getsockname()[1]
        assert answer.startswith(b"HTTP/1.1 101 ")
        client.sendall(frames.text(b"x" * 513))
        assert closeFrameFrom(client) == 1009
    # The client drops the connection without answering the close: the line still says 1009.
    lines = linesFor(node, mark, port, r"disconnect 127\.0\.0\.1")
    assert [line.split("] ", 1)[1].split(":")[0] for line in lines] == ["connect 127.0.0.1", "disconnect 127.0.0.1"], lines
    assert re.search(r"\[txchat\.protocol#info\] disconnect 127\.0\.0\.1:\d+: code 1009 ", lines[1]), lines


def test_a_bad_close_code_logs_the_code_sent_back_1002(node: Twistd) -> None:
    mark = len(node.lines)
    client, answer = opened(node)
    with client:
        port = client.getsockname()[1]
        assert answer.startswith(b"HTTP/1.1 101 ")
        client.sendall(frames.clientFrame(frames.CLOSE, struct.pack("!H", 999)))
        assert closeFrameFrom(client) == 1002
    lines = linesFor(node, mark, port, r"disconnect 127\.0\.0\.1")
    assert len(lines) == 2 and "] connect " in lines[0], lines
    assert re.search(r"disconnect 127\.0\.0\.1:\d+: code 1002 ", lines[1]), lines


def test_a_clients_own_close_logs_its_code_and_reason(node: Twistd) -> None:
    """The client opened the closing handshake: its code and reason are what the line says."""
    mark = len(node.lines)
    client, answer = opened(node)
    with client:
        port = client.getsockname()[1]
        client.sendall(frames.clientFrame(frames.CLOSE, struct.pack("!H", 4321) + b"bye now"))
        closeFrameFrom(client)  # the reply (Autobahn's: 1000)
    lines = linesFor(node, mark, port, r"disconnect 127\.0\.0\.1")
    assert len(lines) == 2 and lines[1].rstrip().endswith(": code 4321 bye now"), lines


@pytest.mark.parametrize("path, origin, headers, status, line", [
    # A foreign origin: the gate refuses, and says so.
    ("/ws", "http://elsewhere.example", None, 403,
     r"\[txchat\.gate#info\] refused 127\.0\.0\.1:\d+: origin http://elsewhere\.example is not allowed"),
    # No such room: the gate again.
    ("/ws/a/b", None, None, 404, r"\[txchat\.gate#info\] refused 127\.0\.0\.1:\d+: no such room '/ws/a/b'"),
    # A handshake Autobahn refuses itself.
    ("/ws", None, {"Sec-WebSocket-Version": "8"}, 400, r"\[txchat\.protocol#info\] refused 127\.0\.0\.1:\d+: 400 "),
])
def test_a_refused_handshake_logs_one_info_line_and_no_warning(
    node: Twistd, path: str, origin: str | None, headers: dict[str, str] | None, status: int, line: str,
) -> None:
    mark = len(node.lines)
    client, answer = opened(node, path, origin, headers)
    with client:
        assert answer.startswith(b"HTTP/1.1 %d " % status), answer
    node.waitFor(line, since=mark)
    lines = node.linesDuring(QUIET, since=mark)
    assert len(lines) == 1 and re.search(line, lines[0]), lines


def test_a_connection_that_never_sends_a_request_is_cut_without_an_info_line(node: Twistd) -> None:
    """As Chromium's preconnects do: connect, then nothing until the header deadline."""
    mark = len(node.lines)
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as client:
        port = client.getsockname()[1]
        try:
            assert client.recv(1) == b""  # cut at the deadline (1 s here)
        except ConnectionResetError:
            pass  # cut by an abort: a reset
    lines = node.linesDuring(QUIET, since=mark)
    assert not [line for line in lines if f":{port}" in line or "#warn" in line], lines


def test_the_process_writes_twistds_line_format_through_its_own_observer(node: Twistd) -> None:
    """Standard output is txchat's LogText (debug lines left out): twistd's classic format."""
    line = node.waitFor(r"txchat: chat page at").string
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[txchat\.listener#info\] txchat: chat page at ", line)
