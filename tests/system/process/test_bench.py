"""The benchmark runner works end to end with a handful of clients (no figures are judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parents[3]


def runBench(tmp_path: Path, cases: str, clients: int, messages: int, servers: str) -> tuple[dict[str, Any], str]:
    """One run of each case with a handful of clients: (the report, the table printed)."""
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--cases", cases, "--runs", "1", "--clients", str(clients),
         "--messages", str(messages), "--servers", servers, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result.stdout


def test_runner_smoke(tmp_path: Path) -> None:
    report, table = runBench(tmp_path, "r100x1000,idle5000", 5, 50, "txchat,naive")
    for server in ("txchat", "naive"):
        rate = report["results"]["r100x1000"][server]["runs"][0]
        assert rate["connected"] == 5 and rate["sent"] == 50
        assert rate["received_deliveries"] == 250 and rate["lost"] == 0
        idle = report["results"]["idle5000"][server]["runs"][0]
        assert idle["connected"] == 5 and idle["server_kib_per_conn"] is not None
    assert "| 100 clients x 1000 msg/s |" in table


def test_runner_smoke_v1_rooms_and_join_storm(tmp_path: Path) -> None:
    report, _ = runBench(tmp_path, "v1r1000x100,rooms,joinstorm", 6, 30, "txchat")
    results = report["results"]
    v1 = results["v1r1000x100"]["txchat"]["runs"][0]
    assert v1["received_deliveries"] == 6 * 30 and v1["lost"] == 0 and v1["lat_p99_ms"] > 0
    rooms = results["rooms"]["txchat"]["runs"][0]  # 6 clients in 1000 rooms: one each, each its own sender
    assert rooms["sent"] == 30 and rooms["lost"] == 0
    storm = results["joinstorm"]["txchat"]["runs"][0]
    assert storm["joined"] == 6 and storm["history_ok"] == 6
