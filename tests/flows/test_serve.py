"""`billing serve` against a real Prefect server on loopback: register, trigger, see payments.

Starts `prefect server start` (≈10 s), then `billing serve`, triggers the nightly
deployment through the server's REST API and waits for the run to complete.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest.payments import load_payments
from pipeline.ingest.registers import ingest
from pipeline.workspace import Workspace

pytestmark = pytest.mark.prefect


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(url: str, path: str, body: dict | None = None) -> dict | list:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def start_server(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """``prefect server start`` on a free loopback port with its own home: (process, API URL, env)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_UI_ENABLED": "false"}
    prefect = str(Path(sys.executable).parent / "prefect")
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return server, url, env


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_registers_nightly_import_and_a_triggered_run_imports_the_inbox(
        town: Workspace, tmp_path: Path) -> None:
    ingest(town)
    (town.inbox / "night.csv").write_text(
        "payment_id,paid_on,account_id,amount,period,agent\nn1,2026-09-05,A1,123.45,,sber\n",
        encoding="utf-8")
    os.utime(town.inbox / "night.csv", (time.time() - 3600,) * 2)  # arrived an hour ago: settled
    server, url, env = start_server(tmp_path)
    serve = None
    try:
        wait_for(lambda: api(url, "/health"), 120, "the Prefect server")
        serve = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--home", str(town.home)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deployments = wait_for(lambda: api(url, "/deployments/filter", {}), 120, "the deployment")
        dep = next(d for d in deployments if d["name"] == "nightly-payment-import")
        assert dep["schedules"][0]["schedule"]["cron"] == "30 2 * * *"
        assert dep["schedules"][0]["schedule"]["timezone"] == "Europe/Moscow"
        # A busy server answers 503 now and then (SQLite under load): retry until it takes it.
        run = wait_for(lambda: api(url, f"/deployments/{dep['id']}/create_flow_run", {}), 120,
                       "the server to create the flow run")
        def finished() -> str | None:
            kind = api(url, f"/flow_runs/{run['id']}")["state"]["type"]  # type: ignore[call-overload]
            return kind if kind in ("COMPLETED", "FAILED", "CRASHED") else None

        state = wait_for(finished, 180, "the flow run")
        assert state == "COMPLETED"
        assert load_payments(town)["payment_id"].to_list() == ["n1"]
        assert not (town.inbox / "night.csv").exists()
        assert list((town.inbox / "archive").rglob("night.csv"))
    finally:
        for proc in (serve, server):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
