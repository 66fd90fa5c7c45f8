"""A migrated past continues exactly as if it had been closed here.

Workspace A closes 21 months of a three-flat house itself (tariffs from 2024, payments
of A1 short of its bills, A2 and A3 never paying, A1's meter read every month until the
last). Its sealed months are then exported as an old system would export them (one line
per account, service and month; payments with their split; balances; debts by month; the
penalty accrued per debt; meter volumes) and migrated into workspace B. The next month
closed in both must give the same tables, to the kopeck: a debt from 21 months ago accrues
the same penalty (what accrued before the move continues after it), A1's unread meter gets
the same average from the migrated months' volumes and its second meter is measured from
the old system's last reading (workspace B's readings register starts with the next month),
the balances and debts are equal.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pipeline.close import compute, load_inputs, seal
from pipeline.dates import Period, month_periods
from pipeline.ingest.payments import import_payment_file
from pipeline.ingest.registers import ingest
from pipeline.migrate.run import migrate_load
from pipeline.sealed import read_table
from pipeline.workspace import Workspace, init_workspace
from tests.conftest import TOWN, write_registers

FIRST, MONTHS = Period(2024, 12), 21  # 2024-12 … 2026-08 closed in A, migrated into B
NEXT = FIRST.shift(MONTHS)  # 2026-09, closed in both

#: Tariffs before the defaults' first row (2025-07-01), so the history reaches back 21 months.
EARLY_TARIFFS = """cold_water,,2024-01-01,48.10,тест
sewerage,,2024-01-01,38.02,тест
maintenance,,2024-01-01,29.90,тест
heating,,2024-01-01,2650.44,тест
"""


#: A second cold-water meter of flat 1 (kitchen), read every month, the next one too.
KITCHEN = "M2,cold_water,P1,,222,2020-01-01,,2030-01-01,5,0\n"


def readings() -> list[tuple[str, str]]:
    """(day, row): M1 read on the 20th of every month but the next (6.5 m³ a month, more in
    winter), M2 on the 18th of every month including the next."""
    rows, m1, m2 = [], 40_000, 10_000
    for i, period in enumerate(month_periods(FIRST.shift(-1), MONTHS + 2)):
        m2 += 2_000 + 250 * (i % 4)
        day = f"{period.year}-{period.month:02d}"
        rows.append((f"{day}-18", f"M2,{day}-18,{m2 // 1000}.{m2 % 1000:03d},lk"))
        if period < NEXT:
            m1 += 6_500 + (1_250 if period.month in (12, 1, 2) else 0) + 125 * (i % 3)
            rows.append((f"{day}-20", f"M1,{day}-20,{m1 // 1000}.{m1 % 1000:03d},lk"))
    return rows


def readings_csv(rows: list[tuple[str, str]]) -> str:
    return "meter_id,read_on,value,source\n" + "".join(row + "\n" for _, row in rows)


def history_payments() -> str:
    rows = ["payment_id,paid_on,account_id,amount,period,agent"]
    for i, period in enumerate(month_periods(FIRST, MONTHS - 1)):
        paid = period.shift(1)
        rows.append(f"h{i:03d},{paid.year}-{paid.month:02d}-07,A1,{1500 + 37 * i}.{i % 100:02d},,sber")
    return "\n".join(rows) + "\n"


NEXT_PAYMENTS = f"payment_id,paid_on,account_id,amount,period,agent\nn001,{NEXT.year}-{NEXT.month:02d}-05,A1,999.99,,sber\n"


def workspace(path: Path, moved: bool = False) -> Workspace:
    """The house; ``moved``: its readings register starts with the next month (the earlier
    readings come in the old system's export)."""
    ws = init_workspace(path)
    rows = [(day, row) for day, row in readings() if not moved or day >= str(NEXT.first)]
    write_registers(ws, {**TOWN, "meters": TOWN["meters"] + KITCHEN, "readings": readings_csv(rows)})
    tariffs = ws.rules / "tariffs.csv"
    tariffs.write_text(tariffs.read_text(encoding="utf-8") + EARLY_TARIFFS, encoding="utf-8")
    ingest(ws)
    return ws


def close(ws: Workspace, period: Period) -> None:
    inputs = load_inputs(ws, period)
    seal(ws, compute(inputs), inputs)


def export_as_old_system(ws: Workspace, months: list[str], out: Path) -> None:
    """The sealed ``months`` of ``ws`` as an old system's export (our column names, UTF-8)."""
    def table(name: str) -> pl.DataFrame:
        return pl.concat([read_table(ws.period_dir(p), name) for p in months], how="vertical_relaxed")

    key = ["account_id", "period", "service_id", "supplier_id"]
    charges = table("charges").group_by(key).agg(
        pl.col("method").first(), pl.col("volume").sum(),
        pl.when(pl.col("tariff").n_unique() == 1).then(pl.col("tariff").first()).alias("tariff"),
        pl.col("amount").sum())
    penalties = table("penalties")
    penalty_lines = penalties.filter(pl.col("amount") != 0).group_by("account_id", "period", "supplier_id").agg(
        pl.col("amount").sum()).with_columns(pl.lit("penalty").alias("service_id"), pl.lit("imported").alias("method"),
                                             pl.lit(None, pl.Decimal(18, 6)).alias("volume"),
                                             pl.lit(None, pl.Decimal(18, 2)).alias("tariff"))
    pl.concat([charges, penalty_lines.select(charges.columns)], how="vertical_relaxed").sort(key).write_csv(
        out / "history_charges.csv")
    alloc = table("allocations").filter(pl.col("kind").is_in(["payment", "advance", "refund"]))
    alloc.group_by("payment_id", "agent", "account_id", "paid_on", "period", "service_id", "supplier_id",
                   "charge_period").agg(pl.col("amount").sum()).sort("paid_on", "payment_id", "service_id",
                                                                        "charge_period").write_csv(
        out / "history_payments.csv")
    table("service_balances").select("account_id", "period", "service_id", "supplier_id", "opening",
                                     "closing").sort(key).write_csv(out / "history_balances.csv")
    last = ws.period_dir(months[-1])
    # Our debts hold one penalty item per debt it accrued on, under the month it was posted:
    # an export has one row per account, service, supplier and month.
    read_table(last, "debts").group_by("account_id", "service_id", "supplier_id", "charge_period").agg(
        pl.col("outstanding").sum().alias("amount")).sort("account_id", "service_id", "supplier_id",
                                                          "charge_period").write_csv(out / "history_debts.csv")
    read_table(last, "penalties").filter(pl.col("charge_period").is_not_null()).select(
        "account_id", "supplier_id", "charge_period", pl.col("cumulative").alias("accrued")).write_csv(
        out / "history_penalties.csv")
    table("meter_volumes").filter(pl.col("method").is_in(["meter", "average", "norm"])).unique(
        ["meter_id", "period"], keep="first", maintain_order=True).select(
        "meter_id", "period", "method", "volume").write_csv(out / "history_meter_volumes.csv")


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Workspace]:
    root = tmp_path_factory.mktemp("continuity")
    here = workspace(root / "a")
    (root / "history.csv").write_text(history_payments(), encoding="utf-8")
    import_payment_file(here, root / "history.csv")
    months = [str(p) for p in month_periods(FIRST, MONTHS)]
    for period in month_periods(FIRST, MONTHS):
        close(here, period)
    moved = workspace(root / "b", moved=True)
    (moved.home / "migration").mkdir()
    export_as_old_system(here, months, moved.home / "migration")
    (moved.home / "migration" / "history_readings.csv").write_text(
        readings_csv([(day, row) for day, row in readings() if day < str(NEXT.first)]), encoding="utf-8")
    result = migrate_load(moved)
    assert result.months == tuple(months) and result.rejected == 0
    assert result.differences == 0, result.differences
    (root / "next.csv").write_text(NEXT_PAYMENTS, encoding="utf-8")
    for ws in (here, moved):
        shutil.copy(root / "next.csv", ws.inbox / "next.csv")
        import_payment_file(ws, ws.inbox / "next.csv")
        close(ws, NEXT)
    return here, moved


TABLES = {"charges": ["account_id", "service_id", "supplier_id", "line_from"],
          "penalties": ["account_id", "supplier_id", "charge_period"],
          "balances": ["account_id", "supplier_id"],
          "service_balances": ["account_id", "service_id", "supplier_id"],
          "debts": ["account_id", "service_id", "supplier_id", "charge_period"],
          "allocations": ["payment_id", "service_id", "supplier_id", "charge_period"],
          "meter_volumes": ["meter_id", "method"],
          "recalculations": ["account_id", "service_id", "supplier_id", "origin_period"]}


@pytest.mark.parametrize("name", list(TABLES))
def test_the_next_month_is_the_same_as_if_the_past_had_been_closed_here(
        both: tuple[Workspace, Workspace], name: str) -> None:
    here, moved = both
    ours, theirs = (read_table(ws.period_dir(str(NEXT)), name) for ws in (here, moved))
    if name == "debts":
        # Our ledger keeps one penalty item per debt it accrued on, under the month it was posted;
        # the export (and so B) has their sum: the same debt, in fewer rows.
        ours, theirs = (frame.group_by("period", *TABLES[name]).agg(pl.col("outstanding").sum())
                        for frame in (ours, theirs))
    ours, theirs = (frame.sort(TABLES[name], nulls_last=True) for frame in (ours, theirs))
    assert ours.height == theirs.height
    assert ours.equals(theirs), (ours, theirs)


def test_what_the_comparison_covers(both: tuple[Workspace, Workspace]) -> None:
    """The equal tables do hold the cases the issue names (so the comparison cannot pass empty)."""
    here, _ = both
    folder = here.period_dir(str(NEXT))
    penalties = read_table(folder, "penalties")
    oldest = penalties.filter((pl.col("account_id") == "A3") & (pl.col("charge_period") == str(FIRST)))
    # A debt of 21 months to each of the three suppliers, still accruing; most of it before the move.
    assert oldest.height == 3 and (oldest["amount"] > 0).all()
    assert (oldest["cumulative"] > 10 * oldest["amount"]).all()
    volumes = read_table(folder, "meter_volumes").sort("meter_id")
    # M1 unread: the average of the migrated months; M2 measured from the old system's reading.
    assert volumes.select("meter_id", "method").rows() == [("M1", "average"), ("M2", "meter")]
    assert volumes["prev_read_on"][1] == date(2026, 8, 18)
    assert read_table(folder, "allocations")["payment_id"].to_list()[:1] == ["n001"]


def test_the_court_statement_is_the_same(both: tuple[Workspace, Workspace], tmp_path: Path) -> None:
    """The debt and penalty statement for a court, over the migrated months and the next one."""
    from openpyxl import load_workbook

    from pipeline.penalties.court import account_statements

    def cells(ws: Workspace, out: Path) -> list[list[object]]:
        # One statement per claimant (issue 15), all of them.
        return [[c.value for c in row] for files in account_statements(ws, "A3", date(2026, 9, 30), out)
                for sheet in load_workbook(files.xlsx).worksheets for row in sheet.iter_rows()]

    ours, theirs = cells(both[0], tmp_path / "a"), cells(both[1], tmp_path / "b")
    assert len(ours) > 40  # 22 months of debts with their penalty
    assert ours == theirs


def test_a_year_migrated_january_to_november_is_corrected_as_a_whole_year(tmp_path: Path) -> None:
    """January–November 2026 migrated, December closed here: January 2027 corrects every month
    of 2026 to the building meter's actual volume, and for each account the year's correction
    is the year's actual minus the year's charges, to the kopeck (tests/calc/test_yearly_coverage
    proves the same for a year closed here month by month)."""
    from decimal import Decimal

    from tests.calc.test_yearly_coverage import (
        AREAS,
        TRUE_UP,
        expected_true_up,
        heated,
        heating_rows,
        year_2026_readings,
        year_actual_minus_charged,
    )

    old, new = (init_workspace(tmp_path / name) for name in ("old", "new"))
    for ws in (old, new):
        write_registers(ws, TOWN)
        heated(ws, year_2026_readings())
        ingest(ws)
    months = [f"2026-{m:02d}" for m in range(1, 12)]
    for period in months:  # the old system's year, by the 2025 average (formula 3(1))
        close(old, Period.parse(period))
    (new.home / "migration").mkdir()
    export_as_old_system(old, months, new.home / "migration")
    moved = migrate_load(new)
    assert moved.months == tuple(months) and moved.differences == 0
    close(new, Period(2026, 12))
    close(new, Period(2027, 1))
    january = read_table(new.period_dir("2027-01"), "recalculations")
    got = heating_rows(january)
    assert got == expected_true_up(new)
    for account in AREAS:
        year = sum((Decimal(v) for (a, _), v in got.items() if a == account), Decimal(0))
        assert year == year_actual_minus_charged(new, account), account
    assert set(january.filter(pl.col("service_id") == "heating")["reason"]) == {TRUE_UP}
    assert set(january.filter(pl.col("service_id") == "heating")["kind"]) == {"true_up"}
