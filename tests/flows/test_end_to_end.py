"""The contract's commands end to end, as a user runs them (Prefect's temporary server).

Slow by nature (a temporary Prefect server starts once per process, ≈15 s), so
one small demo covers the wiring; the stages are tested without Prefect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.prefect


def billing(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BILLING_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"billing {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_demo_two_months_sealed_with_receipts(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    out = billing("demo", "--accounts", "60", "--months", "2", home=home).stdout
    assert "Период закрыт: 2026-08" in out and "Период закрыт: 2026-09" in out

    for period in ("2026-08", "2026-09"):
        folder = home / "periods" / period
        manifest = json.loads((folder / "manifest.json").read_text())
        charged = pl.read_parquet(folder / "charges.parquet")["account_id"].unique()
        receipts = {p.stem for p in (folder / "receipts").glob("*.pdf")}
        assert set(charged) <= receipts
        assert manifest["row_counts"]["charges"] == pl.read_parquet(folder / "charges.parquet").height
        assert (folder / "receipts" / "batches").is_dir()

    # Closing a sealed period again is refused and changes nothing.
    before = {p: p.stat().st_mtime_ns for p in (home / "periods").rglob("*")}
    again = billing("close", "--period", "2026-09", home=home, check=False)
    assert again.returncode == 1 and "уже закрыт" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in (home / "periods").rglob("*")} == before

    count = billing("sql", "select count(*) as n from charges", "--format", "csv", home=home).stdout
    assert int(count.splitlines()[1]) > 0
    paid = billing("sql", "select sum(amount) as s from allocations", "--format", "csv",
                   home=home).stdout
    assert float(paid.splitlines()[1]) > 0

    dry = billing("close", "--period", "2026-10", "--dry-run", home=home)
    assert "Пробный расчёт (период не закрыт): 2026-10" in dry.stdout
    assert not (home / "periods" / "2026-10").exists()

    audit = (home / "audit" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["command"] for line in audit].count("close") == 3


def test_bad_usage_exits_2_and_business_error_exits_1(tmp_path: Path) -> None:
    assert billing("close", home=tmp_path, check=False).returncode == 2
    missing = billing("ingest", home=tmp_path / "nope", check=False)
    assert missing.returncode == 1 and "billing init" in missing.stderr
