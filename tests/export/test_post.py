"""The post's register (``billing export post``): paper receipts by post index, control sums, read-back."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from openpyxl import load_workbook

from pipeline.app import run_close
from pipeline.export import exports_dir, read_exports_manifest, write_exports
from pipeline.export.post import TITLES, build_files, post_index_expr
from pipeline.ingest.payments import import_payment_file, load_payments
from pipeline.ingest.registers import ingest
from pipeline.sealed import read_table
from pipeline.workspace import Workspace, init_workspace
from tests.conftest import TOWN, write_registers

PERIOD = "2026-08"

BUILDINGS = """\
building_id,address,manager_id,total_area,common_area,post_index
B1,"г. Энск, ул. Ленина, д. 1",UK1,1000.00,100.00,630099
B2,"101000, г. Энск, ул. Тверская, д. 7",UK1,500.00,50.00,
"""
PREMISES = TOWN["premises"] + "P4,B2,10,residential,45.00,1,true\nP5,B2,2а,nonresidential,30.00,,true\n"
ACCOUNTS = """\
account_id,premise_id,payer_kind,payer_name,share,owners,opened_on,closed_on,email,delivery
A1,P1,person,Иванов Иван Иванович,1,1,2020-01-01,,,paper
A2,P2,person,Петрова Анна Сергеевна,1,2,2020-01-01,,a2@example.ru,email
A3,P3,person,Сидоров Пётр Ильич,1,1,2020-01-01,,a3@example.ru,email_only
A4,P4,person,"Константинопольская-Рождественская Александра-Мария Вениаминовна, опекун",1,1,2020-01-01,,,
A5,P5,person,Ёлкина Ё.,1,1,2020-01-01,,,paper
"""
SERVICES = TOWN["building_services"] + "B2,maintenance,UK1,2015-01-01,\nB2,heating,TS,2015-01-01,\n"


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = init_workspace(tmp_path_factory.mktemp("post") / "home")
    write_registers(ws, {**TOWN, "buildings": BUILDINGS, "premises": PREMISES, "accounts": ACCOUNTS,
                         "building_services": SERVICES})
    ingest(ws)
    run_close(ws, PERIOD, receipts=False)
    return ws


def _csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))


def test_paper_receipts_sorted_by_post_index_with_a_footer_matching_the_sealed_balances(
        sealed: Workspace) -> None:
    csv_file, xlsx_file = build_files(sealed, PERIOD)
    assert csv_file.name == "pochta_202608.csv" and xlsx_file.name == "pochta_202608.xlsx"
    header, *body, footer = _csv_rows(csv_file.data)
    assert header == list(TITLES.values())
    # A3 is e-mail only; the index from the address (101000) sorts before B1's column (630099);
    # within B2 flat 2а (a non-residential premise) before 10: numbers as numbers.
    assert [r[4] for r in body] == ["A5", "A4", "A1", "A2"]
    assert [r[1] for r in body] == ["101000", "101000", "630099", "630099"]
    assert [r[3] for r in body] == ["пом. 2а", "кв. 10", "кв. 1", "кв. 2"]
    assert [(r[7], r[8]) for r in body] == [("B2", "1"), ("B2", "2"), ("B1", "1"), ("B1", "2")]
    assert body[1][5] == "Константинопольская-Рождественская Александра-Мария Вениаминовна, опекун"
    # The footer against the sealed tables: receipts and the sum to pay (closing, not below 0).
    balances = read_table(sealed.period_dir(PERIOD), "balances")
    due = balances.filter(pl.col("account_id") != "A3").group_by("account_id").agg(pl.col("closing").sum())
    expected = sum(max(v, Decimal(0)) for v in due["closing"])
    assert footer[0] == "4" and footer[1] == "ИТОГО"
    assert Decimal(footer[6].replace(",", ".")) == expected == sum(
        Decimal(r[6].replace(",", ".")) for r in body)
    assert csv_file.rows == 4 and csv_file.total_kop == int(expected * 100) == xlsx_file.total_kop


def test_the_workbook_reads_back_as_the_csv(sealed: Workspace) -> None:
    csv_file, xlsx_file = build_files(sealed, PERIOD)
    sheet = load_workbook(io.BytesIO(xlsx_file.data), read_only=True)["Реестр"]
    cells = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert cells[0] == list(TITLES.values())
    rows = _csv_rows(csv_file.data)
    assert [c[4] for c in cells[1:-1]] == [r[4] for r in rows[1:-1]]
    assert cells[-1][0] == 4 and cells[-1][1] == "ИТОГО"
    total = Decimal(str(cells[-1][6]))
    assert total == sum(Decimal(str(c[6])) for c in cells[1:-1]) == Decimal(csv_file.total_kop) / 100
    # Deterministic: the same sealed period gives the same bytes, so the export is written once.
    assert build_files(sealed, PERIOD) == [csv_file, xlsx_file]
    report = write_exports(sealed, PERIOD, "post", [csv_file, xlsx_file])
    again = write_exports(sealed, PERIOD, "post", build_files(sealed, PERIOD))
    assert report.written == ("post/pochta_202608.csv", "post/pochta_202608.xlsx") and again.written == ()
    listed = read_exports_manifest(sealed, PERIOD)["files"]["post/pochta_202608.csv"]
    assert listed["rows"] == 4 and listed["total_kop"] == csv_file.total_kop
    assert (exports_dir(sealed, PERIOD) / "post" / "pochta_202608.xlsx").read_bytes() == xlsx_file.data


def test_the_posts_payment_file_comes_back_through_the_agent_csv_import(
        sealed: Workspace, tmp_path: Path) -> None:
    csv_file, _ = build_files(sealed, PERIOD)
    body = _csv_rows(csv_file.data)[1:-1]
    # The post pays what each receipt asked for, in the plain agent CSV of billing payments import.
    lines = ["payment_id;paid_on;account_id;amount;period;agent"] + [
        f"ПР-{n:04d};2026-09-07;{r[4]};{r[6]};2026-08;pochta" for n, r in enumerate(body, start=1)]
    path = tmp_path / "pochta-payments.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = import_payment_file(sealed, path, today=date(2026, 9, 30))
    assert (result.accepted, result.rejected, result.suspense) == (4, 0, 0)
    assert result.accepted_kop == csv_file.total_kop
    stored = load_payments(sealed).filter(pl.col("agent") == "pochta")
    assert sorted(stored["account_id"]) == ["A1", "A2", "A4", "A5"]


def test_post_index_from_the_column_or_the_address() -> None:
    frame = pl.DataFrame({"i": ["630099", " 630099 ", None, "63009", None, None],
                          "a": ["x", "x", "101000, г. Энск", "101000 Энск", "г. Энск, 101000", "1010001, x"]})
    got = frame.select(post_index_expr(pl.col("i"), pl.col("a")))["i"].to_list()
    assert got == ["630099", "630099", "101000", "101000", None, None]


def test_the_fast_workbook_writer_splits_sheets_and_keeps_types(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime

    from pipeline import sheet

    monkeypatch.setattr(sheet, "MAX_SHEET_ROWS", 2)
    frame = pl.DataFrame({"n": [1, 2, 3, 4, 5], "t": ["<a & b>", "x\x01y", None, "Ёж", ""],
                          "d": [date(2026, 8, 31)] * 5, "m": [Decimal("-1.50")] * 5})
    frame = frame.with_columns(pl.col("m").cast(pl.Decimal(18, 2)))
    data = sheet.frame_xlsx_bytes(frame, datetime(2026, 8, 31), sheet="Реестр", titles={"n": "№"})
    assert data == sheet.frame_xlsx_bytes(frame, datetime(2026, 8, 31), sheet="Реестр", titles={"n": "№"})
    book = load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["Реестр", "Реестр (2)", "Реестр (3)"]
    rows = [list(r) for name in book.sheetnames for r in book[name].iter_rows(values_only=True)]
    assert rows[0] == ["№", "t", "d", "m"] == rows[3] == rows[6]
    assert rows[1] == [1, "<a & b>", datetime(2026, 8, 31), -1.5]
    assert rows[2][1] == "xy" and rows[4][1] is None and rows[5][1] == "Ёж" and rows[7][0] == 5
