"""The workspace under concurrent commands, kills and a hostile environment (issue 9).

Integration tests: real `billing` processes on a real workspace. Nothing waits on a
fixed sleep: every wait polls for the state it needs (a message, a process) within a
generous limit, so a busy machine only makes them slower.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.ingest.payments import load_imported_files, load_payments
from pipeline.ingest.registers import current_version, ingest
from pipeline.workspace import BillingError, Workspace, init_workspace, workspace_lock
from tests.conftest import TOWN, run_billing, write_registers

billing = run_billing


def spawn(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full = {**os.environ, "BILLING_HOME": str(home), **(env or {})}
    full.pop("PREFECT_API_URL", None)
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def lock_waiters(home: Path) -> int:
    """How many processes wait for this workspace's lock (they hold ``HOME/.lock`` open)."""
    target = str(home / ".lock")
    count = 0
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if fd_dir.parent.name != str(os.getpid()) and any(
                    os.readlink(fd) == target for fd in fd_dir.iterdir()):
                count += 1
        except OSError:
            continue
    return count


PAY_A = "payment_id,paid_on,account_id,amount,period,agent\n" + "".join(
    f"a{i},2026-09-05,A{1 + i % 3},{100 + i}.17,,sber\n" for i in range(40))
PAY_B = "payment_id,paid_on,account_id,amount,period,agent\n" + "".join(
    f"b{i},2026-09-06,A{1 + i % 3},{200 + i}.42,,post\n" for i in range(40))


def test_lock_names_the_command_that_holds_it_and_since_when(town: Workspace) -> None:
    ingest(town)
    with workspace_lock(town, "close --period 2026-08"):
        proc = billing("payments", "import", "x.csv", home=town.home, check=False,
                       env={"BILLING_LOCK_WAIT": "0"})
    assert proc.returncode == 1
    assert "занято" in proc.stderr and "«billing close --period 2026-08»" in proc.stderr
    assert f"процесс {os.getpid()}" in proc.stderr and " с " in proc.stderr


def test_concurrent_imports_keep_both_files(town: Workspace, tmp_path: Path) -> None:
    """Two imports started together: each waits its turn, nothing is lost, both are recorded."""
    ingest(town)
    (tmp_path / "a.csv").write_text(PAY_A, encoding="utf-8")
    (tmp_path / "b.csv").write_text(PAY_B, encoding="utf-8")
    with workspace_lock(town, "test"):
        procs = [spawn("payments", "import", str(tmp_path / f), home=town.home) for f in ("a.csv", "b.csv")]
        wait_for(lambda: lock_waiters(town.home) >= 2, 120, "both imports to wait for the lock")
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    payments = load_payments(town)
    assert payments.height == 80
    expected = sum(100_17 + i * 100 for i in range(40)) + sum(200_42 + i * 100 for i in range(40))
    assert int((payments["amount"] * 100).cast(pl.Int64).sum()) == expected
    assert sorted(load_imported_files(town)["file"]) == ["a.csv", "b.csv"]


def test_ingest_during_a_close_waits_and_the_close_reads_one_snapshot(
        town: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ingest started while a close reads its inputs waits; the close seals what it read."""
    import pipeline.close.inputs as close_module
    from pipeline.close import compute, load_inputs, seal

    ingest(town)
    before = current_version(town)
    write_registers(town, {"residents": TOWN["residents"] + "R5,A3,Сидорова Ольга,1975-01-01,permanent,2026-08-01,\n"})
    original = close_module.load_store
    started: list[subprocess.Popen[str]] = []

    def load_store_then_ingest(ws: Workspace, version: str | None = None) -> dict[str, pl.DataFrame]:
        frames = original(ws, version)
        if not started:  # an ingest arrives in the middle of reading the inputs
            started.append(spawn("ingest", home=town.home))
            wait_for(lambda: lock_waiters(town.home) >= 1, 120, "the ingest to wait for the lock")
        return frames

    monkeypatch.setattr(close_module, "load_store", load_store_then_ingest)
    with workspace_lock(town, "close --period 2026-08"):
        inputs = load_inputs(town, close_module.Period(2026, 8))
        folder = seal(town, compute(inputs), inputs)
        assert current_version(town) == before
    _, err = started[0].communicate(timeout=300)
    assert started[0].returncode == 0, err
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["store_version"] == before != current_version(town)
    charged = pl.read_parquet(folder / "charges.parquet")
    # The close charged A3 for one person (the old registers), as its manifest says.
    assert charged.filter((pl.col("account_id") == "A3") & (pl.col("service_id") == "cold_water"))[
        "person_days"].to_list() == [31]


def test_close_runs_with_no_prefect_server_reachable(town: Workspace) -> None:
    """No PREFECT_API_URL and the temporary server forbidden: the close runs in-process."""
    ingest(town)
    proc = billing("close", "--period", "2026-08", "--no-receipts", home=town.home,
                   env={"PREFECT_SERVER_EPHEMERAL_ENABLED": "false"})
    assert "Период закрыт: 2026-08" in proc.stdout
    assert not (town.home / ".prefect" / "prefect.db").exists()


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killed_close_leaves_no_process_and_the_next_close_cleans_up(tmp_path: Path) -> None:
    from pipeline.dates import Period
    from pipeline.synth import generate_city

    ws = init_workspace(tmp_path / "city")
    generate_city(ws.home, accounts=300, start=Period(2026, 8), months=1)
    settings = ws.home / "settings.toml"
    settings.write_text(settings.read_text(encoding="utf-8").replace("workers = 0", "workers = 2"),
                        encoding="utf-8")
    ingest(ws)
    proc = spawn("close", "--period", "2026-08", home=ws.home)
    staging = lambda: [p for p in ws.periods.iterdir() if p.name.startswith(".")]  # noqa: E731
    # Receipt workers are at work when a PDF appears in the staging folder.
    wait_for(lambda: any(True for d in staging() for _ in (d / "receipts").glob("*.pdf")), 300,
             "receipts being rendered")
    family = _descendants(proc.pid)
    assert family, "the receipts are rendered by worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    wait_for(lambda: not any(_alive(p) for p in family), 60, "the workers to die with their parent")
    assert staging()  # the abandoned scratch folder is still there …
    billing("close", "--period", "2026-08", "--no-receipts", home=ws.home)
    assert not staging()  # … until the next close removes it
    assert (ws.period_dir("2026-08") / "manifest.json").is_file()


def test_two_identical_closes_are_byte_identical_including_spreadsheets(town: Workspace,
                                                                         tmp_path: Path) -> None:
    from pipeline.close import compute, load_inputs, seal
    from pipeline.dates import Period
    from pipeline.render.build import receipts_step

    ingest(town)
    twin = Workspace(tmp_path / "twin")
    shutil.copytree(town.home, twin.home)
    folders = []
    for ws in (town, twin):
        inputs = load_inputs(ws, Period(2026, 8))
        result = compute(inputs)
        folders.append(seal(ws, result, inputs, receipts_step(ws, inputs, result)))
    files = [{str(p.relative_to(f)): p.read_bytes() for p in sorted(f.rglob("*")) if p.is_file()}
             for f in folders]
    assert {"reports/turnover.xlsx", "receipts/A1.pdf", "manifest.json"} <= files[0].keys()
    assert files[0].keys() == files[1].keys()
    assert [name for name in files[0] if files[0][name] != files[1][name]] == []


def test_workspace_is_owner_only_and_failures_are_audited_with_the_os_user(tmp_path: Path) -> None:
    home = tmp_path / "home"
    billing("init", str(home), home=home)
    write_registers(Workspace(home), TOWN)
    os.chmod(home / "registers", 0o700)
    for path in (home / "registers").iterdir():
        os.chmod(path, 0o600)
    billing("ingest", home=home)
    billing("close", "--period", "2026-08", home=home)
    again = billing("close", "--period", "2026-08", home=home, check=False, env={"LOGNAME": "mallory",
                                                                                 "USER": "mallory"})
    assert again.returncode == 1
    loose = [str(p.relative_to(home)) for p in [home, *home.rglob("*")]
             if not p.is_symlink() and p.stat().st_mode & 0o077]
    assert loose == []
    lines = [json.loads(line) for line in (home / "audit" / "log.jsonl").read_text().splitlines()]
    failed = lines[-1]
    assert failed["command"] == "close" and failed["status"] == "error"
    assert "уже закрыт" in failed["error"]
    assert failed["uid"] == os.geteuid() and failed["user"] == pwd.getpwuid(os.geteuid()).pw_name
    assert {line["user"] for line in lines} == {pwd.getpwuid(os.geteuid()).pw_name}


def test_lock_wait_gives_up_with_a_clear_message(town: Workspace) -> None:
    with workspace_lock(town, "ingest"):
        pid = os.fork()
        if pid == 0:  # a second process: the lock is per process
            try:
                with workspace_lock(town, "close --period 2026-08", wait_seconds=0.3, say=lambda _: None):
                    os._exit(3)
            except BillingError as err:
                os._exit(0 if "«billing ingest»" in str(err) else 4)
            os._exit(5)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
