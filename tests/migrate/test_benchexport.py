"""The benchmark export (pipeline.migrate.benchexport): it loads without a reject or a difference."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline.dates import Period
from pipeline.ingest.registers import ingest
from pipeline.migrate.benchexport import FILES, write_bench_export
from pipeline.migrate.run import MigrationResult, migrate_load
from pipeline.sealed import read_internal
from pipeline.synth import generate_city
from pipeline.workspace import Workspace, init_workspace

ACCOUNTS = 200
MONTHS = 24


def kop(column: str) -> pl.Expr:
    """Rubles with two decimals as kopecks, by string operations (the file's own text)."""
    text = pl.col(column)
    sign = pl.when(text.str.starts_with("-")).then(-1).otherwise(1)
    parts = text.str.strip_prefix("-").str.split_exact(".", 1)
    return sign * (parts.struct.field("field_0").cast(pl.Int64) * 100 + parts.struct.field("field_1").cast(pl.Int64))


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.csv"))}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, dict[str, int], MigrationResult]:
    ws = init_workspace(tmp_path_factory.mktemp("bench") / "home")
    generate_city(ws.home, accounts=ACCOUNTS, start=Period(2026, 8), months=1)
    ingest(ws)
    rows = write_bench_export(ws.home, months=MONTHS, chunk_premises=70)  # a few chunks appended
    return ws, rows, migrate_load(ws)


def read(ws: Workspace, register: str) -> pl.DataFrame:
    return pl.read_csv(ws.home / "migration" / f"{register}.csv", infer_schema=False)


def test_the_export_loads_without_rejects_or_differences(loaded: tuple[Workspace, dict[str, int],
                                                                       MigrationResult]) -> None:
    _, rows, result = loaded
    assert result.rejected == 0 and result.rejects_path is None
    assert len(result.periods) == MONTHS and result.months[-1] == "2026-07" and result.months[0] == "2024-08"
    assert result.differences == 0 and result.difference_kop == 0
    # Every row of every file was accepted.
    assert {name: result.rows[name] for name in FILES} == rows
    assert set(rows) == set(FILES) and all(rows[name] > 0 for name in FILES)


def test_money_in_equals_money_out(loaded: tuple[Workspace, dict[str, int], MigrationResult]) -> None:
    ws, _, result = loaded
    charges = read(ws, "history_charges")
    assert charges.select(pl.col("amount").str.contains(r"^-?\d+\.\d{2}$").all()).item()
    theirs = charges.select(kop("amount").sum()).item()
    sealed = pl.concat([read_internal(p, "charges", ["amount"]) for p in result.periods])
    assert theirs == sealed["amount_kop"].sum() and theirs > 0
    # The payments too, and every closing of the export is ours (zero differences above).
    paid = read(ws, "history_payments").select(kop("amount").sum()).item()
    allocated = pl.concat([read_internal(p, "allocations", ["kind", "amount"]) for p in result.periods])
    assert paid == allocated.filter(pl.col("kind").is_in(["payment", "advance", "refund"]))["amount_kop"].sum() and paid > 0


def test_a_realistic_mix(loaded: tuple[Workspace, dict[str, int], MigrationResult]) -> None:
    ws, _, _ = loaded
    charges = read(ws, "history_charges")
    per_month = charges.height / charges.select("account_id", "period").unique().height
    assert 10 <= per_month <= 14
    assert {"maintenance", "heating", "cold_water", "electricity", "capital_repair", "waste"} <= set(
        charges["service_id"].unique().to_list())
    payments = read(ws, "history_payments")
    split = payments.filter(pl.col("service_id").is_not_null())
    assert split.height and split["charge_period"].is_not_null().all()
    # At most one payment per account and month.
    assert payments.select("account_id", "period", "payment_id").unique().group_by(
        "account_id", "period").len()["len"].max() == 1
    debts = read(ws, "history_debts")
    assert debts["charge_period"].n_unique() > 5  # debtors' months, not only the last bill
    readings = read(ws, "history_readings").with_columns(pl.col("value").cast(pl.Decimal(18, 6)))
    assert readings.sort("meter_id", "read_on").select(
        (pl.col("value").diff().over("meter_id").fill_null(0) >= 0).all()).item()


def test_the_same_seed_gives_the_same_bytes(loaded: tuple[Workspace, dict[str, int], MigrationResult],
                                            tmp_path: Path) -> None:
    ws, rows, _ = loaded
    before = digests(ws.home / "migration")
    copy = tmp_path / "copy"
    shutil.copytree(ws.home, copy, ignore=shutil.ignore_patterns("migration", "periods"))
    assert write_bench_export(copy, months=MONTHS, chunk_premises=70) == rows
    assert digests(copy / "migration") == before
    write_bench_export(copy, months=MONTHS, chunk_premises=70, seed=8)
    assert digests(copy / "migration") != before


def table_rows(period: Path, table: str) -> pl.DataFrame:
    """A sealed table of ``period`` (one file or its parts), in a fixed order."""
    single = period / f"{table}.parquet"
    frame = pl.read_parquet(single if single.exists() else sorted((period / table).glob("part-*.parquet")))
    return frame.sort(pl.all(), nulls_last=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_months_rebuilt_in_partitions_are_the_same_months(
        loaded: tuple[Workspace, dict[str, int], MigrationResult], tmp_path: Path, workers: int) -> None:
    """``[migration] partition_accounts`` cuts the accounts into partitions of whole buildings,
    each rebuilt through all 24 months (in this process, or two partitions at once in a pool);
    every sealed month holds exactly the rows of the one-partition load, with the same totals."""
    ws, _, whole = loaded
    copy = Workspace(tmp_path / "home")
    shutil.copytree(ws.home, copy.home, ignore=shutil.ignore_patterns("periods", "store"))
    shutil.copytree(ws.store, copy.store, ignore=shutil.ignore_patterns("migration"))
    settings = copy.home / "settings.toml"
    text = settings.read_text(encoding="utf-8")
    assert "partition_accounts = 25000" in text and "workers = 0\n\n[receipts]" in text
    settings.write_text(text.replace("partition_accounts = 25000", "partition_accounts = 60").replace(
        "workers = 0\n\n[receipts]", f"workers = {workers}\n\n[receipts]"), encoding="utf-8")
    parted = migrate_load(copy)
    assert parted.rejected == 0 and parted.differences == 0 and parted.months == whole.months
    assert parted.rows == whole.rows
    for mine, theirs in zip(parted.periods, whole.periods, strict=True):
        manifest, single = (json.loads((p / "manifest.json").read_text()) for p in (mine, theirs))
        assert manifest["partitions"] >= 3 and single["partitions"] == 1
        assert manifest["migrated"] and manifest["totals_kop"] == single["totals_kop"]
        assert manifest["row_counts"] == single["row_counts"]
        assert (mine / "charges" / "part-0000.parquet").is_file() and not (mine / "charges.parquet").exists()
        for table in single["row_counts"]:
            assert table_rows(mine, table).equals(table_rows(theirs, table)), (mine.name, table)
    # The staged history of every partition went into the store: the history reads as before.
    for register in ("history_charges", "history_balances", "history_meter_volumes"):
        month = whole.months[5]
        files = sorted((copy.store / "migration" / register / month).glob("*.parquet"))
        assert len(files) >= 3 and all("-p" in p.name for p in files)
        assert pl.read_parquet(files).height == pl.read_parquet(
            sorted((ws.store / "migration" / register / month).glob("*.parquet"))).height


def test_a_partition_that_fails_leaves_the_months_as_they_were(
        loaded: tuple[Workspace, dict[str, int], MigrationResult], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A partition failing half-way through a reload (``--replace``): no month of the new load is
    sealed, the months of the load before are back where they were, no staging folder is left."""
    from pipeline.migrate import periods

    ws, _, whole = loaded
    copy = Workspace(tmp_path / "home")
    shutil.copytree(ws.home, copy.home)
    before = {p.name: (p / "manifest.json").read_bytes() for p in whole.periods}
    settings = copy.home / "settings.toml"
    settings.write_text(settings.read_text(encoding="utf-8").replace(
        "partition_accounts = 25000", "partition_accounts = 60").replace(
        "workers = 0\n\n[receipts]", "workers = 1\n\n[receipts]"), encoding="utf-8")
    real = periods._seal_part

    def fails_in_the_second(job: periods._PartJob) -> periods._PartDone:
        if job.index == 1:
            raise RuntimeError("the second partition fails")
        return real(job)

    monkeypatch.setattr(periods, "_seal_part", fails_in_the_second)
    with pytest.raises(RuntimeError, match="second partition"):
        migrate_load(copy, replace=True)
    left = sorted(p.name for p in copy.periods.iterdir())
    assert left == sorted(before)  # nothing staged or set aside is left
    assert {name: (copy.periods / name / "manifest.json").read_bytes() for name in left} == before
