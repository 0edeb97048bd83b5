"""deploy/cluster.sh, the demo of docs/cluster.md, run as a reader runs it (on free ports, with
its run files in a temporary directory): as many nodes as NODE_PORTS names, WebSockets spread
over them by nginx, a second start refused, and a Redis that cannot listen reported."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from websockets.sync.client import connect as wsConnect
from websockets.typing import Origin

from tests.support.pids import running, waitGone
from tests.support.ports import freePorts


SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "cluster.sh"



def environment(run: Path, front: int, nodes: list[int], redisPort: int) -> dict[str, str]:
    env = {**os.environ, "TXCHAT_RUN": str(run), "TXCHAT_VENV": str(Path(sys.executable).parent.parent),
           "FRONT_PORT": str(front), "NODE_PORTS": " ".join(map(str, nodes)), "REDIS_PORT": str(redisPort)}
    env.pop("PYTHONPATH", None)
    return env


def script(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=60)


def pids(run: Path) -> dict[str, int]:
    """Every pid file the script wrote, by name."""
    return {path.name: int(path.read_text()) for path in [*run.glob("*.pid"), *run.glob("nginx/*.pid")]}



@contextlib.contextmanager
def stoppedAfterwards(run: Path, env: dict[str, str]) -> Iterator[None]:
    """Whatever happens, stop what the script started, and check that nothing is left."""
    try:
        yield
    finally:
        started = pids(run)
        stopped = script("stop", env)
        for pid in started.values():
            waitGone(pid)
        assert stopped.returncode == 0, stopped.stderr
        assert not [name for name, pid in started.items() if running(pid)], "a piece is still running"


def upstream(config: str, name: str) -> str:
    match = re.search(r"upstream " + name + r" \{(.*?)\}", config, re.S)
    assert match, f"no upstream {name} in:\n{config}"
    return match.group(1)


@pytest.mark.parametrize("count", [2, 3])
def test_node_ports_give_as_many_nodes_and_as_many_tabs_land_on_all(tmp_path: Path, count: int) -> None:
    """As many browser tabs as nodes, each on a node of its own: with round robin over every
    request, two nodes got both tabs' WebSockets on one (the page GET takes the other turn)."""
    run = tmp_path / "run"
    front, *nodes, redisPort = freePorts(count + 2)
    env = environment(run, front, nodes, redisPort)
    with stoppedAfterwards(run, env):
        started = script("start", env)
        assert started.returncode == 0, started.stderr
        assert sorted(pids(run)) == ["nginx.pid", *[f"node{i}.pid" for i in range(count)], "redis.pid"]

        config = (run / "nginx" / "nginx.conf").read_text()
        servers = [f"server 127.0.0.1:{port};" for port in nodes]
        for name in ("txchat", "txchat_ws"):
            assert re.findall(r"server [^;]+;", upstream(config, name)) == servers, config
        assert "least_conn;" in upstream(config, "txchat_ws")

        # Browser tabs: each loads the page, then opens its WebSocket; nginx says which
        # node took the WebSocket (docs/cluster.md shows the same header in a browser).
        origin = Origin(f"http://127.0.0.1:{front}")
        landed = []
        with contextlib.ExitStack() as tabs:
            for _ in range(count):
                with urllib.request.urlopen(f"{origin}/room/demo", timeout=10) as page:
                    assert page.status == 200
                tab = tabs.enter_context(wsConnect(f"ws://127.0.0.1:{front}/ws/demo", origin=origin))
                assert tab.response is not None
                landed.append(tab.response.headers.get("X-Txchat-Node"))
        assert set(landed) <= {f"127.0.0.1:{port}" for port in nodes}, landed
        assert len(set(landed)) == count, f"tabs sharing a node: {landed}"

        before = pids(run)
        again = script("start", env)
        assert again.returncode != 0
        assert "already running" in again.stderr, again.stderr
        assert pids(run) == before, "a second start started more"


def test_a_busy_redis_port_is_reported_in_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    front, one, two = freePorts(3)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        redisPort = busy.getsockname()[1]
        env = environment(run, front, [one, two], redisPort)
        with stoppedAfterwards(run, env):
            started = script("start", env)
            assert started.returncode != 0, started.stdout + started.stderr
            lines = started.stderr.strip().splitlines()
            assert len(lines) == 1 and f"Redis did not start on 127.0.0.1:{redisPort}" in lines[0], lines
            assert pids(run) == {}, "started the rest anyway"
