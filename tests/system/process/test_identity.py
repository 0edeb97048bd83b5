"""Signed identities and the server API on the real ``twistd -n txchat``: over HTTP and
WebSocket, and a scan of the log for any token."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, cast

import jwt
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as wsConnect

from bench.processes import Twistd
from tests.support.blocking import KEY, SECRET, api, lines, token, v1


@pytest.fixture
def signed(tmp_path: Path) -> Iterator[Twistd]:
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "keys").write_text(f"# the backend's key\n{KEY}\n")
    with Twistd("--listen", "tcp:0:interface=127.0.0.1", "--token-secret-file", str(tmp_path / "secret"),
                "--api-key-file", str(tmp_path / "keys"), cwd=tmp_path) as server:
        yield server


def test_signed_clients_chat_under_their_token_names_and_the_backend_posts_among_them(signed: Twistd) -> None:
    port = signed.port
    with v1(port, "shop", f"token={token(name='Ada', rooms=['shop'])}&name=Forged") as ada, \
            wsConnect(f"ws://127.0.0.1:{port}/ws/shop?token={token(sub='user-2')}") as plain:
        welcome = json.loads(cast(str, ada.recv(timeout=10)).split("\n")[0])
        ada.send("hello")
        status, answer = api(port, "POST", "/api/rooms/shop/messages", {"text": "Your order shipped", "name": "Shop"})
        assert status == 201 and answer == {"epoch": welcome["epoch"], "seq": 2}
        assert [(m["seq"], m["name"], m["text"]) for m in lines(ada, 2)] == [
            (1, "Ada", "hello"), (2, "Shop", "Your order shipped")]
        received: list[str] = []
        while len(received) < 2:
            received += cast(str, plain.recv(timeout=10)).split("\n")
        assert received == ["hello", "Your order shipped"], "plain clients get the posted text too"
        assert api(port, "GET", "/api/rooms/shop") == (200, {"room": "shop", "epoch": welcome["epoch"], "seq": 2,
                                                            "online": 2})
        status, history = api(port, "GET", "/api/rooms/shop/history?since=1")
        assert status == 200 and [m["text"] for m in history["messages"]] == ["Your order shipped"]
        assert api(port, "GET", "/api/rooms") == (200, {"rooms": [{"room": "shop", "online": 2}]})


def test_refused_handshakes_and_calls_get_their_status_and_the_log_shows_no_token(signed: Twistd) -> None:
    port = signed.port
    refusals = {
        "": 401,
        f"token={token(exp=int(time.time()) - 10)}": 401,
        f"token={token(nbf=int(time.time()) + 600)}": 401,
        f"token={jwt.encode({'name': 'no sub'}, SECRET, algorithm='HS256')}": 401,
        f"token={jwt.encode({'sub': 'x'}, 'not the secret, but quite long enough', algorithm='HS256')}": 401,
        f"token={token(rooms=['elsewhere'])}": 403,
    }
    with v1(port, "lobby", f"token={token(name='Stays')}") as stays:
        stays.recv(timeout=10)
        for query, status in refusals.items():
            with pytest.raises(InvalidStatus) as refused:
                v1(port, "lobby", query)
            assert refused.value.response.status_code == status, query
        assert api(port, "POST", "/api/rooms/lobby/messages", {"text": "x"}, key=None)[0] == 401
        assert api(port, "POST", "/api/rooms/lobby/messages", {"text": "x"}, key="wrong-key-0123456789")[0] == 401
        assert api(port, "POST", "/api/rooms/lobby/messages", {"text": "x" * 600})[0] == 413
        assert api(port, "GET", "/api/rooms/no%20room")[0] == 404
        # Through twisted.web's access log too: a plain GET of the socket and of a page.
        secretish = token(name="Logged?")
        with pytest.raises(urllib.error.HTTPError) as upgrade:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ws?token={secretish}", timeout=10)
        assert upgrade.value.code == 426
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/room/lobby?token={secretish}", timeout=10) as page:
            assert page.status == 200
        stays.send("still here")
        assert [m["text"] for m in lines(stays, 1)] == ["still here"]
    signed.stop()
    log = signed.log
    assert "refused 127.0.0.1:" in log and "token expired" in log
    assert '"GET /room/lobby HTTP/1.1" 200' in log and '"GET /ws HTTP/1.1" 426' in log, "the access log keeps paths"
    for query in [*refusals, f"token={secretish}"]:
        if query:
            assert query.split("=", 1)[1] not in log, "a token reached the log"
    assert "eyJ" not in log, "nothing that looks like a JWT is logged"
