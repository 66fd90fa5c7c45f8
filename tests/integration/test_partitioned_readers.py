"""Readers of sealed periods give the same answers whether a table is one file or parts.

Two workspaces with the same registers and payments close August and September: one as a
single partition (``charges.parquet``), one with ``[close] partition_accounts = 2`` so that
the close cuts the region into two partitions of whole buildings and writes every table as
``charges/part-0000.parquet``, ``part-0001.parquet``. ``billing sql``, ``billing explain``,
the court statement, ``billing report osv|card`` and the payment-file revert check must not
see the difference; ``billing verify`` hashes each part.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from pipeline.analytics import query_frame
from pipeline.cli import app
from pipeline.close import close_in_parts, load_inputs
from pipeline.dates import Period
from pipeline.explain import explain_account
from pipeline.ingest.payments import import_payment_file, revert_payment_file
from pipeline.ingest.registers import ingest, load_store
from pipeline.penalties.court import account_statements
from pipeline.reports import account_card, osv, read_sealed
from pipeline.sealed import table_files
from pipeline.verify import verify_all, verify_period
from pipeline.workspace import BillingError, Workspace, init_workspace
from schemas.outputs import OUTPUT_TABLES
from tests.conftest import TOWN, run_billing, write_registers

#: The town of tests/conftest.py and a second house: B1 (A1–A3) and B2 (A4) are two partitions
#: of two accounts' size (a building is never split).
REGISTERS = {
    **TOWN,
    "buildings": TOWN["buildings"] + 'B2,"г. Энск, ул. Мира, д. 7",UK1,500.00,50.00\n',
    "premises": TOWN["premises"] + "P4,B2,1,residential,45.00,2,false\n",
    "accounts": TOWN["accounts"] + "A4,P4,person,Козлова Ольга Николаевна,1,1,2020-01-01,,\n",
    "building_services": TOWN["building_services"] + "B2,cold_water,VK,2015-01-01,\n"
                                                      "B2,maintenance,UK1,2015-01-01,\n",
    "residents": TOWN["residents"] + "R5,A4,Козлова Ольга Николаевна,1985-01-01,permanent,2020-01-01,\n",
}

#: Paid in September, in both partitions: p1 names August, p2 and p3 no period.
PAYMENTS = """\
payment_id,paid_on,account_id,amount,period,agent
p1,2026-09-05,A1,1000.00,2026-08,sber
p2,2026-09-06,A2,500.00,,post
p3,2026-09-07,A4,300.00,,sber
"""

PERIODS = ["2026-08", "2026-09"]
ACCOUNTS = ["A1", "A2", "A3", "A4"]


def _close(ws: Workspace, period: str) -> dict[str, Any]:
    """Close as ``billing close`` does: in partitions of the workspace's ``[close]`` size."""
    inputs = load_inputs(ws, Period.parse(period))
    return close_in_parts(ws, inputs, ws.typed_settings().close.partition_accounts)


def _workspace(home: Path, payments: Path, partition_accounts: int | None) -> Workspace:
    ws = init_workspace(home)
    write_registers(ws, REGISTERS)
    if partition_accounts is not None:
        text = ws.settings_path.read_text(encoding="utf-8")
        assert "partition_accounts = 250000" in text
        ws.settings_path.write_text(text.replace("partition_accounts = 250000",
                                                 f"partition_accounts = {partition_accounts}"),
                                    encoding="utf-8")
    ingest(ws)
    assert _close(ws, "2026-08")["partitions"] == (1 if partition_accounts is None else 2)
    import_payment_file(ws, payments, today=date(2026, 9, 30))
    _close(ws, "2026-09")
    return ws


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Workspace]:
    """(single, parted): the same two months sealed as one file per table and as parts."""
    root = tmp_path_factory.mktemp("shapes")
    payments = root / "payments.csv"
    payments.write_text(PAYMENTS, encoding="utf-8")
    return _workspace(root / "single", payments, None), _workspace(root / "parted", payments, 2)


def test_the_two_shapes_are_what_they_claim(shapes: tuple[Workspace, Workspace]) -> None:
    single, parted = shapes
    for period in PERIODS:
        one, parts = single.period_dir(period), parted.period_dir(period)
        for table in OUTPUT_TABLES:
            assert table_files(one, table) == [one / f"{table}.parquet"]
            assert table_files(parts, table) == [parts / table / "part-0000.parquet",
                                                 parts / table / "part-0001.parquet"]
            assert not (parts / f"{table}.parquet").exists()
    # Both houses' accounts are charged, in separate parts.
    owners = [set(pl.read_parquet(f)["account_id"])
              for f in table_files(parted.period_dir("2026-08"), "charges")]
    assert owners == [{"A1", "A2", "A3"}, {"A4"}]


QUERIES = [
    "select period, account_id, service_id, supplier_id, method, volume, tariff, amount from charges "
    "order by all",
    "select period, account_id, supplier_id, opening, charged, paid, penalty, closing from balances "
    "order by all",
    "select period, payment_id, account_id, service_id, charge_period, amount, kind from allocations "
    "order by all",
    "select period, account_id, service_id, supplier_id, charge_period, outstanding from debts order by all",
    "select period, count(*) as n, sum(amount) as total from charges group by period order by period",
    "select period, meter_id, method, volume from meter_volumes order by all",
    *[f"select '{t}' as t, count(*) as n from {t}" for t in OUTPUT_TABLES],
]


@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
def test_sql_gives_the_same_answer(shapes: tuple[Workspace, Workspace], query: str) -> None:
    single, parted = shapes
    one, parts = query_frame(single, query), query_frame(parted, query)
    assert one is not None and parts is not None and one.height
    assert_frame_equal(parts, one)


def test_billing_sql_over_parts_is_confined(shapes: tuple[Workspace, Workspace]) -> None:
    parted = shapes[1]
    runner = CliRunner()
    query = "select account_id, sum(amount) as total from charges group by 1 order by 1"
    said = [runner.invoke(app, ["sql", query, "--home", str(ws.home)]) for ws in shapes]
    assert [r.exit_code for r in said] == [0, 0], said[1].output
    assert said[1].output == said[0].output and "A4" in said[0].output
    # The parts' directory is readable for its view, nothing beside it.
    folder = parted.period_dir("2026-08")
    for path in (folder / "manifest.json", folder / "charges" / ".." / "manifest.json",
                 parted.store / "verified.json", parted.registers / "accounts.csv"):
        with pytest.raises(BillingError, match="запрещён"):
            query_frame(parted, f"select * from read_text('{path}')")


def test_explain_is_the_same(shapes: tuple[Workspace, Workspace]) -> None:
    single, parted = shapes
    for period in PERIODS:
        for account in ACCOUNTS:
            text = explain_account(single, account, period)
            assert explain_account(parted, account, period) == text
    said = [CliRunner().invoke(app, ["explain", "A4", "--period", "2026-09", "--home", str(ws.home)])
            for ws in shapes]
    assert said[0].exit_code == 0 and "Итого начислено" in said[0].output
    assert said[1].output == said[0].output


def test_statement_is_the_same(shapes: tuple[Workspace, Workspace], monkeypatch: pytest.MonkeyPatch,
                               tmp_path: Path) -> None:
    import pipeline.penalties.court as court

    seen: list[list[tuple[pl.DataFrame, pl.DataFrame]]] = [[], []]
    shape = [0]

    def capture(account_id: str, buckets: pl.DataFrame, payments: pl.DataFrame, *args: Any
                ) -> tuple[Path, Path]:
        seen[shape[0]].append((buckets, payments))
        return tmp_path / "x.pdf", tmp_path / "x.xlsx"

    with monkeypatch.context() as m:
        m.setattr(court, "write_statement", capture)
        for account in ACCOUNTS:
            for i, ws in enumerate(shapes):
                shape[0] = i
                account_statements(ws, account, date(2027, 3, 31))  # one statement per supplier
    for (buckets, payments), (parted_buckets, parted_payments) in zip(seen[0], seen[1], strict=True):
        assert buckets.height
        assert_frame_equal(parted_buckets, buckets)
        # Payments of one day come in no fixed order (the statement sorts them itself).
        assert_frame_equal(parted_payments.sort(pl.all()), payments.sort(pl.all()))
    assert any(p.height for _, p in seen[0])  # payments reach the statement (A1, A2, A4)
    # The workbooks themselves, end to end.
    from openpyxl import load_workbook

    cells = [[c.value for f in account_statements(ws, "A4", date(2027, 3, 31), tmp_path / ws.home.name)
              for sheet in load_workbook(f.xlsx).worksheets for row in sheet.iter_rows() for c in row]
             for ws in shapes]
    assert cells[0] and cells[1] == cells[0]


def test_reports_are_the_same(shapes: tuple[Workspace, Workspace]) -> None:
    regs = load_store(shapes[0])
    tables = [read_sealed(ws, PERIODS) for ws in shapes]
    for by in ("account", "building", "supplier"):
        assert_frame_equal(osv(tables[1]["balances"], regs, PERIODS, by), osv(tables[0]["balances"], regs,
                                                                              PERIODS, by))
    services = {"cold_water": "ХВС", "sewerage": "Водоотведение", "maintenance": "Содержание",
                "heating": "Отопление"}
    for account in ACCOUNTS:
        assert_frame_equal(account_card(account, tables[1], regs, services, PERIODS),
                           account_card(account, tables[0], regs, services, PERIODS))
    runner = CliRunner()
    for command in (["osv", "--by", "building"], ["card", "A4"]):
        said = [runner.invoke(app, ["report", *command, "--period", PERIODS[0], "--to", PERIODS[1],
                                    "--home", str(ws.home)]) for ws in shapes]
        assert said[0].exit_code == 0, said[0].output
        assert said[1].output == said[0].output


def test_a_payment_file_used_by_a_parted_close_is_not_reverted(shapes: tuple[Workspace, Workspace]
                                                               ) -> None:
    for ws in shapes:
        with pytest.raises(BillingError, match="2026-09"):
            revert_payment_file(ws, "payments.csv")


def test_verify_hashes_every_part(shapes: tuple[Workspace, Workspace], tmp_path: Path) -> None:
    single, parted = shapes
    import json
    import shutil

    manifest = json.loads((parted.period_dir("2026-09") / "manifest.json").read_text(encoding="utf-8"))
    assert {"charges/part-0000.parquet", "charges/part-0001.parquet"} <= set(manifest["files"])
    report, one = verify_all(parted), verify_all(single)
    assert report.periods == 2 and report.files == one.files + 2 * len(OUTPUT_TABLES)
    proc = run_billing("verify", home=parted.home)
    assert "Проверено периодов: 2" in proc.stdout and "всё совпадает" in proc.stdout

    # A copy with one part changed: every reader refuses it, naming the part.
    broken = Workspace(tmp_path / "broken")
    shutil.copytree(parted.home, broken.home)
    part = broken.period_dir("2026-08") / "charges" / "part-0001.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    proc = run_billing("verify", home=broken.home, check=False)
    assert proc.returncode != 0
    assert re.search(r"Период 2026-08 повреждён: файл charges/part-0001\.parquet не совпадает",
                     proc.stdout + proc.stderr), proc.stdout + proc.stderr
    with pytest.raises(BillingError, match=r"charges/part-0001\.parquet"):
        query_frame(broken, "select count(*) from charges")
    with pytest.raises(BillingError, match=r"charges/part-0001\.parquet"):
        explain_account(broken, "A4", "2026-08")

    # A part added to a sealed table is refused too.
    extra = broken.period_dir("2026-09") / "balances" / "part-0002.parquet"
    shutil.copy(broken.period_dir("2026-09") / "balances" / "part-0001.parquet", extra)
    with pytest.raises(BillingError, match=r"balances/part-0002\.parquet не указан"):
        verify_period(broken, "2026-09")
