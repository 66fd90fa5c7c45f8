"""The close on a local Dask cluster of 2 worker processes gives exactly the single-process tables.

Without a Prefect server the partitions go to Dask through ``distributed``; on a server
(``prefect`` mark) through prefect-dask's task runner, a ``close-partition`` task run each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipeline.app import run_close
from pipeline.close import OUTPUT_TABLES
from pipeline.demo import fresh_demo_home
from pipeline.ingest.registers import ingest
from pipeline.sealed import read_table, table_files
from pipeline.synth import generate_city
from pipeline.workspace import BillingError, Workspace
from tests.flows.test_serve import api, start_server, wait_for

pytest.importorskip("distributed")
pytest.importorskip("prefect_dask")

PERIOD = "2026-12"


def _with_partitions(ws: Workspace, accounts: int) -> None:
    path = ws.home / "settings.toml"
    text = path.read_text(encoding="utf-8")
    assert "partition_accounts = 250000" in text
    path.write_text(text.replace("partition_accounts = 250000", f"partition_accounts = {accounts}"),
                    encoding="utf-8")


def _two_copies(tmp_path: Path) -> tuple[Workspace, Workspace]:
    """Two copies of one small city, ingested, set to close in 3 partitions."""
    seed = fresh_demo_home(Workspace(tmp_path / "seed"))
    generate_city(seed.home, accounts=120, months=1, seed=11)
    ingest(seed)
    _with_partitions(seed, 40)  # this city's 4 buildings in 3 partitions
    here, dask = Workspace(tmp_path / "here"), Workspace(tmp_path / "dask")
    shutil.copytree(seed.home, here.home)
    shutil.copytree(seed.home, dask.home)
    return here, dask


def test_close_on_a_local_dask_cluster_matches_the_single_process_close(tmp_path: Path) -> None:
    here, dask = _two_copies(tmp_path)

    single = run_close(here, PERIOD, receipts=False)
    # The workers render their partitions' receipts too (one process each: a Dask worker may not fork).
    spread = run_close(dask, PERIOD, receipts=True, workers=2)

    assert single["partitions"] == spread["partitions"] == 3
    one, many = here.period_dir(PERIOD), dask.period_dir(PERIOD)
    for table in OUTPUT_TABLES:
        assert len(table_files(many, table)) == 3
        a, b = read_table(one, table), read_table(many, table)
        assert a.equals(b), table  # the same parts in the same order: row for row
    for name in ("totals_kop", "row_counts", "reports"):
        m1, m2 = (json.loads((f / "manifest.json").read_text())[name] for f in (one, many))
        assert m1 == m2, name
    receipts = sorted(p.stem for p in (many / "receipts").glob("*.pdf"))
    # Organization payers get invoices (``ACCOUNT-YYYYMM-N.pdf``) instead of a household receipt.
    invoiced = {p.stem.split("-")[0] for p in (many / "invoices").glob("*.pdf")}
    assert invoiced and not invoiced & set(receipts)
    assert sorted([*receipts, *invoiced]) == sorted(read_table(one, "balances")["account_id"].unique())
    made = json.loads((many / "manifest.json").read_text())["receipts"]
    assert made["count"] == len(receipts) and made["batches"] >= 4  # a print batch per building
    # The cluster's PDFs are the bytes one process makes of the same receipts (a building each).
    from pipeline.render.receipts import render_receipts
    from pipeline.render.reprint import sealed_receipts

    rebuilt = sealed_receipts(dask, PERIOD)
    sample = [next(r for r in rebuilt if r.building_id == b) for b in sorted({r.building_id for r in rebuilt})]
    render_receipts(sample, tmp_path / "single", workers=1, batches=False)
    for r in sample:
        assert (tmp_path / "single" / f"{r.account_id}.pdf").read_bytes() == \
            (many / "receipts" / f"{r.account_id}.pdf").read_bytes(), r.account_id
    assert pl.read_parquet(many / "charges" / "part-0001.parquet").height > 0


@pytest.mark.prefect
def test_close_on_a_prefect_server_runs_each_partition_as_a_dask_task(tmp_path: Path) -> None:
    server, url, env = start_server(tmp_path)
    try:
        # The city and the single-process close are made while the server starts (≈10 s).
        here, dask = _two_copies(tmp_path)
        assert run_close(here, PERIOD, receipts=False)["partitions"] == 3
        wait_for(lambda: api(url, "/health"), 120, "the Prefect server")

        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "close", "--period", PERIOD,
                               "--workers", "2", "--no-receipts", "--home", str(dask.home)],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
        assert "distributed." not in proc.stderr  # the cluster's INFO lines are not the user's business

        one, many = here.period_dir(PERIOD), dask.period_dir(PERIOD)
        for table in OUTPUT_TABLES:
            assert len(table_files(many, table)) == 3
            assert read_table(one, table).equals(read_table(many, table)), table

        runs = api(url, "/flow_runs/filter", {})
        assert isinstance(runs, list) and len(runs) == 1
        flow_run = runs[0]
        assert flow_run["state_type"] == "COMPLETED"

        def task_runs() -> list[dict]:
            # The workers report their task runs as events: the server records them shortly after.
            found = api(url, "/task_runs/filter", {"task_runs": {"flow_run_id": {"any_": [flow_run["id"]]}}})
            assert isinstance(found, list)
            names = [(t["name"].rsplit("-", 1)[0], t["state_type"]) for t in found]
            done = sorted(n for n, kind in names if kind == "COMPLETED")
            return found if done == ["close-partition"] * 3 + ["load-inputs"] else []

        # Polled until they are there (a loaded server records events late), not a fixed pause.
        found = wait_for(task_runs, 180, "3 completed close-partition task runs and one load-inputs")
        assert len(found) == 4
        parts = [t for t in found if t["task_key"].startswith("close_partition")]
        assert len(parts) == 3 and all(t["state_type"] == "COMPLETED" for t in parts)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_an_unreachable_scheduler_stops_the_close_with_a_clear_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.cluster

    monkeypatch.setattr(flows.cluster, "CONNECT_SECONDS", 2)
    here, _ = _two_copies(tmp_path)
    with pytest.raises(BillingError, match=r"Кластер Dask tcp://127\.0\.0\.1:1 недоступен.*период не закрыт"):
        run_close(here, PERIOD, receipts=False, cluster="tcp://127.0.0.1:1")
    assert not here.period_dir(PERIOD).exists()
    assert run_close(here, PERIOD, receipts=False)["partitions"] == 3  # nothing left behind, the lock is free
