"""The close on a local Dask cluster of 2 worker processes gives exactly the single-process tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline.app import run_close
from pipeline.close import OUTPUT_TABLES
from pipeline.demo import _fresh_demo_home
from pipeline.ingest.registers import ingest
from pipeline.sealed import read_table, table_files
from pipeline.synth import generate_city
from pipeline.workspace import Workspace

pytest.importorskip("distributed")
pytest.importorskip("prefect_dask")

PERIOD = "2026-12"


def _with_partitions(ws: Workspace, accounts: int) -> None:
    path = ws.home / "settings.toml"
    text = path.read_text(encoding="utf-8")
    assert "partition_accounts = 250000" in text
    path.write_text(text.replace("partition_accounts = 250000", f"partition_accounts = {accounts}"),
                    encoding="utf-8")


def test_close_on_a_local_dask_cluster_matches_the_single_process_close(tmp_path: Path) -> None:
    seed = _fresh_demo_home(Workspace(tmp_path / "seed"))
    generate_city(seed.home, accounts=120, months=1, seed=11)
    ingest(seed)
    _with_partitions(seed, 40)  # this city's 4 buildings in 3 partitions
    here, dask = Workspace(tmp_path / "here"), Workspace(tmp_path / "dask")
    shutil.copytree(seed.home, here.home)
    shutil.copytree(seed.home, dask.home)

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
    assert receipts == sorted(read_table(one, "balances")["account_id"].unique())
    made = json.loads((many / "manifest.json").read_text())["receipts"]
    assert made["count"] == len(receipts) and made["batches"] >= 4  # a print batch per building
    assert pl.read_parquet(many / "charges" / "part-0001.parquet").height > 0
