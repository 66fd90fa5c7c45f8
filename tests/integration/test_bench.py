"""``billing bench``: the bare-join yardstick and the one-line JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.bench import bare_charge_join

ROOT = Path(__file__).resolve().parents[2]


def _tiny() -> dict[str, pl.DataFrame]:
    d = date
    return {
        "accounts": pl.DataFrame({
            "account_id": ["A1", "A2", "A3"], "premise_id": ["P1", "P2", "P1"],
            "opened_on": [d(2020, 1, 1), d(2026, 8, 20), d(2020, 1, 1)],
            "closed_on": [None, None, d(2026, 7, 31)],  # A3 closed before August
        }),
        "premises": pl.DataFrame({
            "premise_id": ["P1", "P2"], "building_id": ["B1", "B1"],
            "total_area": [Decimal("45.67"), Decimal("30.00")],
        }, schema_overrides={"total_area": pl.Decimal(18, 2)}),
        "building_services": pl.DataFrame({
            "building_id": ["B1", "B1", "B1"], "service_id": ["maintenance", "cold_water", "garbage"],
            "supplier_id": ["M1", "S2", "G1"],
            "from": [d(2020, 1, 1), d(2020, 1, 1), d(2020, 1, 1)],
            "to": [None, None, d(2026, 7, 31)],  # garbage no longer served in August
        }),
        "residents": pl.DataFrame({
            "account_id": ["A1", "A1", "A1", "A2"],
            "from": [d(2020, 1, 1), d(2026, 8, 15), d(2020, 1, 1), d(2026, 8, 20)],
            "to": [None, None, d(2026, 6, 30), None],  # the third left in June
        }),
        "services": pl.DataFrame({
            "service_id": ["maintenance", "cold_water", "garbage"], "kind": ["area", "metered", "per_person"],
        }),
        "tariffs": pl.DataFrame({
            "service_id": ["maintenance", "maintenance", "maintenance", "cold_water", "cold_water", "garbage"],
            "supplier_id": [None, None, None, None, "S2", None],
            "from": [d(2025, 1, 1), d(2026, 8, 1), d(2026, 9, 1), d(2025, 1, 1), d(2025, 7, 1), d(2025, 1, 1)],
            "price_kop": [2000, 3012, 9999, 5228, 6000, 700],
        }),
    }


def test_bare_charge_join_kopecks() -> None:
    f = _tiny()
    lines = bare_charge_join(f["accounts"], f["premises"], f["building_services"], f["residents"],
                             f["services"], f["tariffs"], date(2026, 8, 1), date(2026, 8, 31))
    assert lines.schema["amount_kop"] == pl.Int64
    got = {(r["account_id"], r["service_id"]): (r["supplier_id"], r["amount_kop"])
           for r in lines.iter_rows(named=True)}
    assert got == {
        # 45.67 m² × 30.12 ₽ = 1 375,5804 ₽ → 137 558 kop (the August tariff, not September's)
        ("A1", "maintenance"): ("M1", 137_558),
        # two persons in August × the supplier's own 60.00 ₽ (not the any-supplier 52.28 ₽)
        ("A1", "cold_water"): ("S2", 12_000),
        ("A2", "maintenance"): ("M1", 90_360),  # 30.00 m² × 30.12 ₽
        ("A2", "cold_water"): ("S2", 6_000),
    }


def bench_json(home: Path, *args: str) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """``billing bench ARGS --json`` in a subprocess: its report (the last line of stdout) and the run."""
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "bench", *args, "--json", "--home", str(home)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report, done


def test_bench_cli_json_last_line(tmp_path: Path) -> None:
    report, done = bench_json(tmp_path / "home", "--accounts", "200", "--months", "1")
    for key in ("accounts", "close_seconds", "peak_memory_gb", "bare_join_seconds", "ratio", "stages"):
        assert key in report, key
    assert report["accounts"] == 200
    assert report["ratio"] == round(report["close_seconds"] / report["bare_join_seconds"], 1)
    steps = [s["step"] for s in report["stages"]]
    assert steps[:2] == ["generate_city", "ingest"]
    assert {"load 2026-08", "close 2026-08", "bare_join 2026-08"} <= set(steps)
    for stage in report["stages"]:
        assert set(stage) >= {"step", "seconds", "cpu_seconds", "peak_rss_mb", "rows", "rows_per_second"}
    close = sum(s["seconds"] for s in report["stages"] if s["step"].split()[0] in ("load", "close"))
    assert abs(report["close_seconds"] - close) < 0.011
    bare = next(s for s in report["stages"] if s["step"] == "bare_join 2026-08")
    closed = next(s for s in report["stages"] if s["step"] == "close 2026-08")
    assert bare["rows"] > 0 and closed["rows"] > 0
    assert closed["partitions"] == report["partitions"] == 1  # 200 accounts: one partition
    assert {"compute", "compute:charges", "write", "finish"} <= set(closed["parts"])
    assert "Замер" not in done.stdout  # --json: no readable summary on stdout
    assert "bare_join 2026-08" in done.stderr  # stage lines stay on stderr


def test_bench_history_measures_a_migration_beside_the_bare_move(tmp_path: Path) -> None:
    report, _ = bench_json(tmp_path / "home", "--accounts", "150", "--history", "3")
    assert report["accounts"] == 150 and report["history_months"] == 3 and report["periods"] == 3
    assert report["differences"] == 0 and report["rejected"] == 0
    steps = {s["step"]: s for s in report["stages"]}
    assert list(steps) == ["generate_city", "ingest", "write_export", "bare_csv_to_parquet", "migrate_load"]
    moved = sum(report["export_rows"].values())
    assert steps["bare_csv_to_parquet"]["rows"] == moved == steps["migrate_load"]["rows"] > 0
    assert set(report["load_steps"]) == {"read", "seal", "save", "reconcile"}
    # The load reads the same files and does everything else besides: slower than the bare move.
    assert report["ratio"] > 1 and report["bare_seconds"] == steps["bare_csv_to_parquet"]["seconds"]
