"""The hand-written sample town (data/sample, its README tells each account's story)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.close import compute, load_inputs, seal
from pipeline.dates import Period
from pipeline.ingest.payments import import_inbox, load_suspense
from pipeline.ingest.registers import ingest
from pipeline.workspace import Workspace, init_workspace

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


@pytest.fixture
def sample(tmp_path: Path) -> Workspace:
    ws = init_workspace(tmp_path / "home")
    for f in (SAMPLE / "registers").iterdir():
        shutil.copy(f, ws.registers / f.name)
    result = ingest(ws)
    assert result.total_rejected == 0
    return ws


def amounts(ws: Workspace, period: str) -> dict[tuple[str, str], tuple[str, str]]:
    inputs = load_inputs(ws, Period.parse(period))
    result = compute(inputs)
    seal(ws, result, inputs)
    lines = result.lines.group_by("account_id", "service_id").agg(
        pl.col("method").first(), pl.col("amount_kop").sum())
    return {(r["account_id"], r["service_id"]): (r["method"], f"{r['amount_kop'] / 100:.2f}")
            for r in lines.iter_rows(named=True)}


def test_each_account_story_in_august(sample: Workspace) -> None:
    got = amounts(sample, "2026-08")
    assert got[("1000000001", "cold_water")] == ("meter", "313.68")          # 6 m³ × 52.28
    assert got[("1000000002", "cold_water")] == ("norm_increased", "744.21")  # 4.745 × 3 × 52.28
    assert got[("1000000002", "hot_water")] == ("norm_increased", "1307.36")  # 3.284 × 1.5 × 265.40
    assert got[("1000000003", "cold_water")] == ("norm", "744.21")           # 3 × 4.745 × 52.28
    assert got[("1000000004", "waste")] == ("per_person", "305.66")          # 2 owners × 152.83
    assert got[("1000000008", "waste")] == ("per_person", "231.71")          # 47/31 × 152.83
    # the shared flat: each half pays half the area and half the metered water
    assert got[("1000000005", "cold_water")] == ("meter", "182.98")          # 7 × 0.5 × 52.28
    assert got[("1000000006", "cold_water")] == got[("1000000005", "cold_water")]


def test_sample_inbox_imports_every_format(sample: Workspace) -> None:
    amounts(sample, "2026-08")
    for f in (SAMPLE / "inbox").iterdir():
        shutil.copy(f, sample.inbox / f.name)
        os.utime(sample.inbox / f.name, (time.time() - 3600,) * 2)  # arrived an hour ago: settled
    outcomes = {o["file"]: o for o in import_inbox(sample)}
    assert {o["outcome"] for o in outcomes.values()} == {"imported"}
    assert outcomes["sber-2026-09-15.txt"]["format"] == "sber"
    assert outcomes["201026_VTB_000001_001.txt"]["format"] == "vtb"
    assert "9999999999" in set(load_suspense(sample)["account_id"])
    amounts(sample, "2026-09")
    bal = pl.read_parquet(sample.period_dir("2026-09") / "balances.parquet")
    assert (bal["closing"] == bal["opening"] + bal["charged"] + bal["penalty"] - bal["paid"]).all()
