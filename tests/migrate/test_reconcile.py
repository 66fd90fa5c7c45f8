"""Reconciliation of a migration: differences in exact kopecks, the reports, acceptance and the guard."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.errors import BillingError
from pipeline.migrate import reconcile as rec
from pipeline.migrate.model import History, internal_schema, save_history
from pipeline.workspace import Workspace, atomic_write_bytes, init_workspace, write_parquet_atomic
from schemas.history import HISTORY
from schemas.outputs import to_sealed

MONTHS = ("2025-01", "2025-02", "2025-03")
DUE = pl.DataFrame({"from": [date(2016, 1, 1)], "day": [10]})
REGS = {
    "accounts": pl.DataFrame({"account_id": ["A1", "A2"], "premise_id": ["P1", "P2"]}),
    "premises": pl.DataFrame({"premise_id": ["P1", "P2"], "building_id": ["B1", "B2"]}),
    "buildings": pl.DataFrame({"building_id": ["B1", "B2"], "address": ["ул. Ленина, 1", "ул. Мира, 2"]}),
    "organizations": pl.DataFrame({"org_id": ["VK"], "name": ["АО «Водоканал»"]}),
}
SB_COLUMNS = ["period", "account_id", "service_id", "supplier_id", "opening_kop", "charged_kop",
              "recalculated_kop", "paid_kop", "penalty_kop", "closing_kop"]


def frame(register: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = internal_schema(register)
    full = [{c: r.get(c) for c in schema} for r in rows]
    return pl.DataFrame(full, schema=schema)


def history(balances: list[dict[str, Any]], debts: list[dict[str, Any]] | None = None) -> History:
    frames = {name: frame(name, []) for name in HISTORY}
    frames["history_balances"] = frame("history_balances", balances)
    frames["history_debts"] = frame("history_debts", debts or [])
    return History("Квартплата 24", MONTHS, frames, {"history_balances.csv": "0" * 64})


def chain(account: str, opening: int, flows: list[tuple[int, int]]) -> tuple[list[dict[str, Any]], pl.DataFrame]:
    """Both sides of one account's cold water: (charged, paid) per month, the closings agreeing."""
    theirs, ours, balance = [], [], opening
    for month, (charged, paid) in zip(MONTHS, flows, strict=True):
        closing = balance + charged - paid
        theirs.append({"account_id": account, "period": month, "service_id": "cold_water", "supplier_id": "VK",
                       "opening_kop": balance, "closing_kop": closing})
        ours.append((month, account, "cold_water", "VK", balance, charged, 0, paid, 0, closing))
        balance = closing
    return theirs, pl.DataFrame(ours, schema=SB_COLUMNS, orient="row")


def test_nothing_when_all_agree() -> None:
    theirs, ours = chain("A1", 10_000, [(5_000, 3_000), (5_000, 5_000), (5_100, 0)])
    out = rec.differences(history(theirs), ours, REGS, 0, DUE)
    assert out.height == 0
    assert out.schema == rec.DIFF_SCHEMA


def test_closing_mismatch_in_month_two_is_reported_once_with_its_sign() -> None:
    theirs, ours = chain("A1", 10_000, [(5_000, 3_000), (5_000, 5_000), (5_100, 0)])
    # The old system lost a payment of 123,45 ₽ in February: its closings from February on are higher.
    for row in theirs[1:]:
        row["closing_kop"] += 12_345
    theirs[2]["opening_kop"] += 12_345
    out = rec.differences(history(theirs), ours, REGS, 0, DUE)
    assert out.height == 1
    row = out.row(0, named=True)
    assert (row["kind"], row["account_id"], row["building_id"], row["period"]) == ("closing", "A1", "B1", "2025-02")
    assert (row["theirs_kop"], row["ours_kop"], row["difference_kop"]) == (24_345, 12_000, 12_345)
    assert "1 месяц" in row["note"] and "2025-03" in row["note"] and "следуют из этого месяца" in row["note"]
    assert "123,45" not in row["note"] and "120,00" in row["note"]  # ours spelled out: 120,00 ₽

    # The other way round: the old system's closing lower → a negative difference.
    theirs2, ours2 = chain("A2", 0, [(1_000, 0), (1_000, 0), (1_000, 0)])
    theirs2[1]["closing_kop"] -= 1  # an isolated typo in February only
    out2 = rec.differences(history(theirs2), ours2, REGS, 0, DUE)
    assert out2.select("period", "difference_kop", "building_id").rows() == [("2025-02", -1, "B2")]
    assert "следующих месяцах" not in out2["note"][0]


def test_tolerance_and_a_missing_side() -> None:
    theirs, ours = chain("A1", 0, [(1_000, 0), (1_000, 0), (1_000, 0)])
    theirs[0]["closing_kop"] += 1
    theirs[1]["closing_kop"] += 1
    theirs[2]["closing_kop"] += 1
    assert rec.differences(history(theirs), ours, REGS, 1, DUE).height == 0
    assert rec.differences(history(theirs), ours, REGS, 0, DUE)["difference_kop"].to_list() == [1]
    # A row only the old system has (ours counts 0), and one only we have (theirs counts 0).
    extra = [{"account_id": "A2", "period": "2025-03", "service_id": "heating", "supplier_id": "TS",
              "closing_kop": 700}]
    mine = pl.DataFrame([("2025-01", "A2", "sewerage", "VK", 0, 300, 0, 0, 0, 300)], schema=SB_COLUMNS,
                        orient="row")
    out = rec.differences(history(theirs + extra), pl.concat([ours, mine]), REGS, 1, DUE)
    assert out.select("account_id", "service_id", "period", "theirs_kop", "ours_kop", "difference_kop").rows() == [
        ("A2", "heating", "2025-03", 700, 0, 700), ("A2", "sewerage", "2025-01", 0, 300, -300)]
    assert "нет ни сальдо" in out["note"][0] and "нет строки" in out["note"][1]


def test_debts_against_the_last_closing() -> None:
    theirs, ours = chain("A1", 10_000, [(5_000, 3_000), (5_000, 5_000), (5_100, 0)])  # last closing 17 100
    debts = [
        {"account_id": "A1", "service_id": "cold_water", "supplier_id": "VK", "charge_period": "2025-02",
         "amount_kop": 12_000, "due_date": date(2025, 3, 10)},
        {"account_id": "A1", "service_id": "cold_water", "supplier_id": "VK", "charge_period": "2025-03",
         "amount_kop": 5_000, "due_date": None},
    ]
    out = rec.differences(history(theirs, debts), ours, REGS, 0, DUE)
    assert out.select("kind", "period", "theirs_kop", "ours_kop", "difference_kop").rows() == [
        ("debts", "2025-03", 17_000, 17_100, -100)]
    assert "2 строки" in out["note"][0]
    assert rec.differences(history(theirs, debts), ours, REGS, 100, DUE).height == 0
    # No debts in the export: no debts kind at all.
    assert rec.differences(history(theirs), ours, REGS, 0, DUE).height == 0


def test_due_date_kind() -> None:
    theirs, ours = chain("A1", 0, [(5_000, 0), (5_000, 0), (0, 0)])
    debts = [
        {"account_id": "A1", "service_id": "cold_water", "supplier_id": "VK", "charge_period": "2025-01",
         "amount_kop": 5_000, "due_date": date(2025, 2, 10)},   # ours: 10.02.2025 (Monday)
        {"account_id": "A1", "service_id": "cold_water", "supplier_id": "VK", "charge_period": "2025-02",
         "amount_kop": 5_000, "due_date": date(2025, 3, 25)},   # ours: 10.03.2025
    ]
    out = rec.differences(history(theirs, debts), ours, REGS, 0, DUE)
    assert out.select("kind", "period", "theirs_kop", "difference_kop").rows() == [("due_date", "2025-02", None, None)]
    assert "25.03.2025" in out["note"][0] and "10.03.2025" in out["note"][0] and "50,00" in out["note"][0]


def test_sorted_and_digest_stable() -> None:
    theirs, ours = chain("A2", 0, [(1_000, 0), (1_000, 0), (1_000, 0)])
    theirs1, ours1 = chain("A1", 0, [(1_000, 0), (1_000, 0), (1_000, 0)])
    theirs[0]["closing_kop"] += 5
    theirs1[2]["closing_kop"] += 7
    a = rec.differences(history(theirs + theirs1), pl.concat([ours, ours1]), REGS, 0, DUE)
    b = rec.differences(history(theirs1[::-1] + theirs), pl.concat([ours1, ours])[::-1], REGS, 0, DUE)
    assert a["account_id"].to_list() == ["A1", "A2"]
    assert a.equals(b) and rec.digest(a) == rec.digest(b)
    assert rec.digest(a) != rec.digest(a.head(1))


# --------------------------------------------------------------------------- workspace


def _seal(ws: Workspace, balances: pl.DataFrame, migrated: bool = True) -> None:
    for month in balances["period"].unique().sort().to_list():
        folder = ws.period_dir(month)
        write_parquet_atomic(to_sealed(balances.filter(pl.col("period") == month), "service_balances"),
                             folder / "service_balances.parquet")
        atomic_write_bytes(folder / "manifest.json", json.dumps({"period": month, "migrated": migrated}).encode())


@pytest.fixture()
def ws(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "home")


def test_accept_and_check_reconciled(ws: Workspace) -> None:
    rec.check_reconciled(ws)  # no migration: nothing to check
    theirs, ours = chain("A1", 0, [(1_000, 0), (1_000, 0), (1_000, 0)])
    h = history(theirs)
    save_history(ws, h)
    _seal(ws, ours)
    with pytest.raises(BillingError, match="migrate report"):
        rec.check_reconciled(ws)  # migrated, never reconciled
    periods = rec.migrated_periods(ws)
    assert periods == list(MONTHS)
    diffs = pl.DataFrame([("closing", "A1", "B1", "VK", "cold_water", "2025-02", 2_500, 2_000, 500, "заметка"),
                          ("closing", "A2", "B2", "VK", "cold_water", "2025-01", 0, 30_000, -30_000, "заметка")],
                         schema=rec.DIFF_SCHEMA, orient="row")
    reports = {"xlsx": "migration/reports/reconciliation.xlsx", "pdf": "migration/reports/reconciliation.pdf"}
    rec.store_reconciliation(ws, diffs, periods=periods, tolerance_kop=0, source=h.source, months=h.months,
                             reports=reports)
    with pytest.raises(BillingError) as err:
        rec.check_reconciled(ws)
    text = str(err.value)
    assert "2 расхождения" in text and "305,00 ₽" in text and "reconciliation.xlsx" in text
    assert "billing migrate load --replace" in text and "billing migrate accept --reason" in text

    with pytest.raises(BillingError, match="причину"):
        rec.accept(ws, "  ")
    record = rec.accept(ws, "Расхождения прежней системы, акт от 01.12.2026", user="Оператор")
    assert record["digest"] == rec.digest(diffs) and record["differences"] == 2
    rec.check_reconciled(ws)  # accepted: the close may run
    log = [json.loads(line) for line in (ws.audit / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert log[-1]["command"] == "migrate accept" and log[-1]["digest"] == record["digest"]
    assert log[-1]["operator"] == "Оператор" and log[-1]["reason"].startswith("Расхождения")

    # A new reconciliation with other differences needs a new acceptance.
    rec.store_reconciliation(ws, diffs.head(1), periods=periods, tolerance_kop=0, source=h.source,
                             months=h.months, reports=reports)
    with pytest.raises(BillingError, match="другие"):
        rec.check_reconciled(ws)
    # The history loaded again after the reconciliation: the stored one is stale.
    save_history(ws, History(h.source, h.months, h.frames, {"history_balances.csv": "1" * 64}))
    with pytest.raises(BillingError, match="устарела"):
        rec.check_reconciled(ws)
    with pytest.raises(BillingError, match="устарела"):
        rec.accept(ws, "причина")
    # Once an ordinary period is sealed, the first close has passed: nothing to check.
    atomic_write_bytes(ws.period_dir("2025-04") / "manifest.json", b'{"period": "2025-04"}')
    rec.check_reconciled(ws)


def test_reconcile_writes_reports(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from openpyxl import load_workbook

    import pipeline.ingest.registers as registers

    monkeypatch.setattr(registers, "load_store", lambda ws, version=None, names=None: REGS)
    theirs, ours = chain("A1", 10_000, [(5_000, 3_000), (5_000, 5_000), (5_100, 0)])
    for row in theirs[1:]:
        row["closing_kop"] += 12_345
    theirs2, ours2 = chain("A2", 0, [(1_000, 0), (1_000, 0), (1_000, 0)])
    theirs2[0]["closing_kop"] -= 5
    save_history(ws, history(theirs + theirs2))
    _seal(ws, pl.concat([ours, ours2]))
    result = rec.reconcile(ws)
    assert result.counts == {"closing": 2, "debts": 0, "due_date": 0}
    assert result.total_abs_kop == 12_350
    assert result.xlsx_path == ws.home / "migration" / "reports" / "reconciliation.xlsx"

    book = load_workbook(result.xlsx_path)
    assert book.sheetnames == ["Расхождения", "По домам", "По поставщикам"]
    rows = list(book["Расхождения"].iter_rows(values_only=True))
    assert rows[0][0] == "Вид расхождения" and len(rows) == 3
    assert rows[1][:6] == ("Сальдо на конец месяца", "A1", "B1", "VK", "cold_water", "2025-02")
    assert round(rows[1][8] * 100) == 12_345 and round(rows[2][8] * 100) == -5
    assert book["Расхождения"].cell(2, 9).number_format == "#,##0.00"
    buildings = list(book["По домам"].iter_rows(values_only=True))
    assert [r[:3] for r in buildings[1:]] == [("B1", "ул. Ленина, 1", 1), ("B2", "ул. Мира, 2", 1)]
    suppliers = list(book["По поставщикам"].iter_rows(values_only=True))
    assert suppliers[1][:3] == ("VK", "АО «Водоканал»", 2) and round(suppliers[1][7] * 100) == 12_350

    assert result.pdf_path.read_bytes()[:4] == b"%PDF"
    html = rec.html_text(result.differences, result.by_building, result.by_supplier, "Квартплата 24", MONTHS, 0)
    assert "Квартплата 24" in html and "123,45" in html and "2025-01 — 2025-03 (3 месяца)" in html
    assert "Подпись" in html

    stored = json.loads((ws.store / "migration" / "reconciliation.json").read_text(encoding="utf-8"))
    assert stored["digest"] == result.digest == rec.digest(result.differences)
    assert stored["counts"]["closing"] == 2 and stored["reports"]["pdf"] == "migration/reports/reconciliation.pdf"
    assert pl.read_parquet(ws.store / "migration" / "reconciliation.parquet").equals(result.differences)
    xlsx_before = result.xlsx_path.read_bytes()
    assert rec.reconcile(ws).xlsx_path.read_bytes() == xlsx_before  # the same data, the same bytes
    with pytest.raises(BillingError, match="2 расхождения на 123,50"):
        rec.check_reconciled(ws)
    rec.accept(ws, "проверено")
    rec.check_reconciled(ws)
