"""``billing report NAME`` (SQL reports), ``billing sql`` (shell, ``--db``) and ``--org`` on
real sealed periods.

The three-flat town of tests/conftest.py (its kopecks are worked out in
tests/integration/test_russian_ux.py) and, for ``--org``, the same town with a second
house managed by another company: every view and every report limited to one
organization shows nothing of the other house.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from pipeline.analytics import SCOPE_VIEWS, connect, view_names
from pipeline.cli import app
from pipeline.close import compute, load_inputs, seal
from pipeline.dates import Period
from pipeline.ingest.payments import import_payment_file
from pipeline.ingest.registers import ingest, load_store
from pipeline.reports import account_card, osv, read_sealed
from pipeline.sqlreports import builtin_reports, csv_bytes, run_report
from pipeline.workspace import Workspace, init_workspace
from tests.conftest import (
    ACCOUNTS,
    BUILDING_SERVICES,
    BUILDINGS,
    ORGS,
    PREMISES,
    RESIDENTS,
    TOWN,
    write_registers,
)

PAYMENTS = """\
payment_id,paid_on,account_id,amount,period,agent
p1,2026-09-05,A1,1000.00,2026-08,sber
p2,2026-09-06,A2,500.00,,post
"""
PERIODS = ["2026-08", "2026-09"]


def close(ws: Workspace, period: str) -> None:
    inputs = load_inputs(ws, Period.parse(period))
    seal(ws, compute(inputs), inputs)


def two_months(ws: Workspace, tmp: Path, payments: str = PAYMENTS) -> Workspace:
    ingest(ws)
    close(ws, "2026-08")
    path = tmp / "payments.csv"
    path.write_text(payments, encoding="utf-8")
    import_payment_file(ws, path, today=date(2026, 9, 30))
    close(ws, "2026-09")
    return ws


def _copy(built: Workspace, tmp_path: Path) -> Workspace:
    """A test's own copy of a workspace built once per module (tests may add files to it)."""
    home = tmp_path / "home"
    shutil.copytree(built.home, home)
    return Workspace(home)


@pytest.fixture(scope="module")
def _sealed(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    tmp = tmp_path_factory.mktemp("sealed")
    ws = init_workspace(tmp / "home")
    write_registers(ws, TOWN)
    return two_months(ws, tmp)


@pytest.fixture
def sealed(_sealed: Workspace, tmp_path: Path) -> Workspace:
    """The town's August and September sealed, two payments made in September."""
    return _copy(_sealed, tmp_path)


def cli(*args: str, home: Path) -> str:
    res = CliRunner().invoke(app, [*args, "--home", str(home)], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    return res.output


# --------------------------------------------------------------------------- reports on the town

@pytest.mark.parametrize(("report", "by"), [("osv-account", "account"), ("osv-building", "building"),
                                           ("osv-supplier", "supplier")])
def test_sql_turnover_sheets_are_the_osv_command_byte_for_byte(sealed: Workspace, tmp_path: Path,
                                                               report: str, by: str) -> None:
    ours, theirs = tmp_path / "sql.csv", tmp_path / "osv.csv"
    cli("report", report, "--period", "2026-08", "--to", "2026-09", "--format", "csv", "--out", str(ours),
        home=sealed.home)
    cli("report", "osv", "--period", "2026-08", "--to", "2026-09", "--by", by, "--format", "csv", "--out",
        str(theirs), home=sealed.home)
    assert ours.read_bytes() == theirs.read_bytes()
    if by == "account":  # the kopecks test_russian_ux works out: A1 charged 5121,26 + 5307,22
        lines = ours.read_bytes().decode("utf-8-sig").splitlines()
        assert lines[1] == "A1;Иванов Иван Иванович;г. Энск, ул. Ленина, д. 1, кв. 1;0,00;10428,48;0,00;" \
                           "0,00;1000,00;9428,48"
        assert lines[-1] == "Итого;;;0,00;30875,94;0,00;0,00;1500,00;29375,94"


def test_turnover_by_service_and_charges(sealed: Workspace) -> None:
    result = run_report(sealed, builtin_reports()["osv-service"], PERIODS)
    rows = {r["service_id"]: r for r in result.frame.iter_rows(named=True)}
    # Cold water: A1 392,10 (7.5 m³ × 52,28) + 496,14 (9.49 m³), A2 744,21 × 2, A3 248,07 × 2;
    # paid: p1's 1000,00 shared over A1's August debt (392,10 / 5121,26 × 1000 = 76,56) and p2's
    # 500,00 over A2's (744,21 / 6243,91 × 500 = 59,59).
    assert rows["cold_water"]["charged_kop"] == 39_210 + 49_614 + 2 * 74_421 + 2 * 24_807 == 287_280
    assert rows["cold_water"]["paid_kop"] == 7_656 + 5_959
    assert rows["cold_water"]["closing_kop"] == 287_280 - 13_615
    assert sum(r["closing_kop"] for r in rows.values()) == 2_937_594
    charges = run_report(sealed, builtin_reports()["charges"], PERIODS)
    heating = charges.frame.filter(pl.col("service_id") == "heating").row(0, named=True)
    # 150 m² × 0.0198 Gcal × 2874,12 per month, per flat rounded: (2845,38 + 3414,45 + 2276,30) × 2
    assert (heating["accounts"], heating["volume"], heating["charged_kop"]) == (3, Decimal("5.94"), 1_707_226)


def test_collection_rate_chart_and_table(sealed: Workspace, tmp_path: Path) -> None:
    text = cli("report", "collection-rate", "--period", "2026-08", "--to", "2026-09", home=sealed.home)
    # August: 15 344,99 charged, nothing paid; September: 1500,00 of 15 530,95 = 9,658 % → 9,66.
    assert "2026-08  15\u00a0344,99      0,00             0,00" in text
    assert "2026-09  15\u00a0530,95  1\u00a0500,00             9,66" in text
    png = tmp_path / "rate.png"
    cli("report", "collection-rate", "--period", "2026-08", "--to", "2026-09", "--format", "png", "--out",
        str(png), home=sealed.home)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 10_000
    book = tmp_path / "rate.xlsx"
    cli("report", "collection-rate", "--period", "2026-08", "--to", "2026-09", "--format", "xlsx", "--out",
        str(book), home=sealed.home)
    from openpyxl import load_workbook

    rows = list(load_workbook(book).active.iter_rows(values_only=True))
    assert rows[0] == ("Период", "Начислено", "Оплачено", "Собираемость, %", "Долг на конец месяца")
    assert rows[2][0] == "2026-09" and Decimal(str(rows[2][1])) == Decimal("15530.95")
    assert Decimal(str(rows[2][3])) == Decimal("9.66")
    refused = CliRunner().invoke(app, ["report", "charges", "--period", "2026-08", "--format", "png",
                                       "--home", str(sealed.home)])
    assert refused.exit_code == 2 and "нет графика" in refused.output


def test_top_debtors_into_an_xlsx_template(sealed: Workspace, tmp_path: Path) -> None:
    from openpyxl import Workbook, load_workbook

    template = Workbook()
    sheet = template.active
    sheet["A1"] = "{title} на конец {period_to}"
    sheet["A3"] = "Место"
    sheet["B3"] = "Счёт"
    sheet["A4"] = "{rows}"
    (sealed.home / "reports").mkdir(exist_ok=True)
    template.save(sealed.home / "reports" / "top-debtors.xlsx")
    out = tmp_path / "top.xlsx"
    cli("report", "top-debtors", "--period", "2026-09", "--param", "top=2", "--format", "xlsx", "--out", str(out),
        home=sealed.home)
    rows = list(load_workbook(out).active.iter_rows(values_only=True))
    assert rows[0][0] == "Крупнейшие должники на конец 2026-09"
    assert rows[3][:2] == (1, "A2") and rows[4][:2] == (2, "A1") and len(rows) == 5
    # A2: 12 488,02 charged − 500,00 paid
    assert Decimal(str(rows[3][5])) == Decimal("11988.02")


def test_an_organization_drops_in_its_own_report(sealed: Workspace, tmp_path: Path) -> None:
    own = sealed.home / "reports"
    own.mkdir(exist_ok=True)
    (own / "heating-debt.sql").write_text(textwrap.dedent("""\
        -- title: Долг за отопление
        -- param: above = 0 — показывать долг больше, руб.
        -- column: account_id = Лицевой счёт
        -- column: debt = Долг
        -- money: debt
        -- total: account_id
        SELECT account_id, sum(outstanding) AS debt FROM debts
        WHERE period = $period_to AND service_id = 'heating'
        GROUP BY account_id HAVING sum(outstanding) > $above ORDER BY account_id
        """), encoding="utf-8")
    (own / "osv-account.sql").write_text("-- title: Подмена\nSELECT 1 AS x\n", encoding="utf-8")
    listing = cli("report", "list", home=sealed.home)
    assert "heating-debt     Долг за отопление" in listing
    assert "osv-account.sql не используется: так называется встроенный отчёт" in listing
    out = tmp_path / "heat.csv"
    cli("report", "heating-debt", "--period", "2026-09", "--param", "above=5000", "--format", "csv", "--out",
        str(out), home=sealed.home)
    # A1 heating 2845,38 × 2 − 555,60 paid = 5135,16; A2 3414,45 × 2 − 273,42 = 6555,48; A3 4552,60 < 5000
    assert out.read_bytes().decode("utf-8-sig").splitlines() == [
        "Лицевой счёт;Долг", "A1;5135,16", "A2;6555,48", "Итого;11690,64"]
    # The built-in name still runs the built-in report.
    assert "Иванов Иван Иванович" in cli("report", "osv-account", "--period", "2026-09", home=sealed.home)
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "report", "--help"], capture_output=True,
                         text=True, env={**os.environ, "BILLING_HOME": str(sealed.home), "COLUMNS": "200"})
    assert "heating-debt" in res.stdout and "Акт сверки с поставщиком" in res.stdout


def test_a_report_needs_sealed_periods_and_a_known_name(sealed: Workspace) -> None:
    res = CliRunner().invoke(app, ["report", "charges", "--period", "2026-09", "--to", "2026-10",
                                   "--home", str(sealed.home)])
    assert res.exit_code == 1 and "Период 2026-10 не закрыт" in str(res.exception)
    res = CliRunner().invoke(app, ["report", "no-such", "--period", "2026-09", "--home", str(sealed.home)])
    assert res.exit_code == 2 and "Нет отчёта «no-such»" in res.output


# --------------------------------------------------------------------------- billing sql: shell and --db

def test_shell_reads_statements_from_stdin(sealed: Workspace) -> None:
    script = ".tables\nselect account_id, sum(closing) as debt\n  from balances where period = '2026-09'\n" \
             "  group by 1 order by 1;\ncopy (select 1) to '/tmp/x.csv';\nselect count(*) as n from accounts;\n" \
             ".quit\nselect 'never';\n"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "sql", "--home", str(sealed.home)],
                          input=script, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 1  # one statement was refused
    assert out.startswith("billing sql: представлений ")
    assert "billing> " in out and "     ..> " in out
    assert "balances" in out and "residents" in out  # .tables
    assert re.search("A1 +9\u00a0428,48\nA2 +11\u00a0988,02\n", out)  # closing over the suppliers
    assert "Команда SQL «COPY» запрещена" in out and not Path("/tmp/x.csv").exists()
    assert "never" not in out


def test_db_file_opens_in_another_process(sealed: Workspace, tmp_path: Path) -> None:
    db = tmp_path / "billing.duckdb"
    cli("sql", "--db", str(db), home=sealed.home)
    query = "select sum(closing) from balances where period = '2026-09'; "
    code = f"import duckdb; c = duckdb.connect({str(db)!r}, read_only=True); print(c.sql({query!r}).fetchall())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[(Decimal('29375.94'),)]"
    vk = tmp_path / "vk.duckdb"
    cli("sql", "--db", str(vk), "--org", "VK", home=sealed.home)
    code = f"import duckdb; c = duckdb.connect({str(vk)!r}, read_only=True); " \
           "print(c.sql('select distinct supplier_id from charges').fetchall())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[('VK',)]"


# --------------------------------------------------------------------------- --org

TWO_HOUSES = {
    "organizations": ORGS + "UK2,ООО «УК Мир»,7707083893,770701001,management,ПАО Сбербанк,044525225,"
                            "40702810200000000001,30101810400000000225,г. Энск,+7 000\n",
    "buildings": BUILDINGS + 'B2,"г. Энск, ул. Мира, д. 2",UK2,500.00,50.00\n',
    "premises": PREMISES + "P4,B2,4,residential,45.00,2,false\n",
    "accounts": ACCOUNTS + "A4,P4,person,Кузнецова Ольга Петровна,1,1,2020-01-01,,\n",
    "building_services": BUILDING_SERVICES + "B2,cold_water,VK,2015-01-01,\nB2,maintenance,UK2,2015-01-01,\n",
    "residents": RESIDENTS + "R5,A4,Кузнецова Ольга Петровна,1975-01-01,permanent,2020-01-01,\n",
}
#: What each organization may see: the houses it manages, and those it supplies.
MANAGED = {"UK1": {"B1"}, "UK2": {"B2"}, "VK": set(), "TS": set()}
SEES = {"UK1": {"B1"}, "UK2": {"B2"}, "VK": {"B1", "B2"}, "TS": {"B1"}}


@pytest.fixture(scope="module")
def _two_houses(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    tmp = tmp_path_factory.mktemp("two_houses")
    ws = init_workspace(tmp / "home")
    write_registers(ws, {**TOWN, **TWO_HOUSES})
    return two_months(ws, tmp, PAYMENTS + "p3,2026-09-07,A4,300.00,,sber\n")


@pytest.fixture
def two_houses(_two_houses: Workspace, tmp_path: Path) -> Workspace:
    """B1 (managed by UK1; water VK, heating TS) and B2 (managed by UK2; water VK), two months."""
    return _copy(_two_houses, tmp_path)


def _houses(ws: Workspace) -> dict[str, dict[str, str]]:
    """key column → key → building, from the whole registers."""
    regs = load_store(ws)
    account = dict(regs["accounts"].join(regs["premises"], on="premise_id").select(
        "account_id", "building_id").iter_rows())
    premise = dict(regs["premises"].select("premise_id", "building_id").iter_rows())
    meter = {m: premise.get(p) or b for m, p, b in regs["meters"].select(
        "meter_id", "premise_id", "building_id").iter_rows()}
    person = {p: account[a] for p, a in regs["residents"].select("person_id", "account_id").iter_rows()}
    return {"account_id": account, "premise_id": premise, "meter_id": meter, "person_id": person,
            "building_id": {b: b for b in regs["buildings"]["building_id"]}}


def _foreign_rows(con: duckdb.DuckDBPyConnection, houses: dict[str, dict[str, str]], org: str) -> dict[str, int]:
    """view → rows the organization must not see (a house it neither manages nor supplies, or
    another supplier's row outside the houses it manages)."""
    bad: dict[str, int] = {}
    for view in view_names(con):
        frame = con.sql(f'SELECT * FROM "{view}"').pl()
        keys = [k for k in houses if k in frame.columns]
        if not keys or view in ("organizations",):
            continue
        count = 0
        for row in frame.iter_rows(named=True):
            where = {houses[k].get(row[k]) for k in keys if row[k] is not None} - {None}
            other_house = not where <= SEES[org]
            other_supplier = "supplier_id" in frame.columns and row["supplier_id"] != org and (
                not where or not where <= MANAGED[org])
            count += other_house or other_supplier
        if count:
            bad[view] = count
    return bad


@pytest.mark.parametrize("org", ["UK1", "UK2", "VK", "TS"])
def test_org_limits_every_view(two_houses: Workspace, org: str) -> None:
    houses = _houses(two_houses)
    whole = connect(two_houses)
    try:  # without the limit the check finds the other house: it would fail if --org did nothing
        unlimited = _foreign_rows(whole, houses, org)
    finally:
        whole.close()
    expected = {"accounts", "premises", "residents", "charges", "balances", "service_balances", "debts"}
    if org != "VK":
        assert expected <= set(unlimited), unlimited
    else:  # VK supplies both houses: what it must not see is the other suppliers' money
        assert {"charges", "balances", "debts", "allocations"} <= set(unlimited), unlimited
    limited = connect(two_houses, org)
    try:
        assert _foreign_rows(limited, houses, org) == {}
        assert not set(SCOPE_VIEWS) & set(view_names(limited))
        seen = {b for (b,) in limited.sql("SELECT building_id FROM buildings").fetchall()}
        assert seen == SEES[org]
        assert limited.execute("SELECT count(*) FROM charges").fetchall()[0][0] > 0
    finally:
        limited.close()


#: What must not show in an organization's reports: the other house's codes, addresses and
#: payers, and (for a supplier) the other suppliers.
FOREIGN = {
    "UK2": ("B1", "ул. Ленина", "A1;", "A2;", "A3;", "Иванов", "Петрова", "Сидоров", "TS", "Теплосеть", "UK1",
            "УК Дом"),
    "TS": ("B2", "ул. Мира", "A4;", "Кузнецова", "UK2", "УК Мир", "Водоканал", "УК Дом"),
}


@pytest.mark.parametrize("org", list(FOREIGN))
def test_org_limits_every_report_csv(two_houses: Workspace, org: str) -> None:
    seen_somewhere = set()
    for name, spec in builtin_reports().items():
        periods = ["2026-09"] if name == "top-debtors" else PERIODS
        whole = csv_bytes(run_report(two_houses, spec, periods)).decode("utf-8-sig")
        seen_somewhere |= {m for m in FOREIGN[org] if m in whole}
        mine = csv_bytes(run_report(two_houses, spec, periods, org)).decode("utf-8-sig")
        assert not [m for m in FOREIGN[org] if m in mine], (name, mine)
        assert mine.count("\n") > 1 or name in ("recalculations", "meter-anomalies"), (name, mine)
    assert seen_somewhere == set(FOREIGN[org])  # without --org each shows in some report


def test_org_limits_the_money(two_houses: Workspace) -> None:
    # The money adds up to the other house's only: A4 in B2, cold water (VK) and maintenance (UK2).
    osv_uk2 = run_report(two_houses, builtin_reports()["osv-account"], PERIODS, "UK2").frame
    everyone = run_report(two_houses, builtin_reports()["osv-account"], PERIODS).frame
    assert osv_uk2.rows() == everyone.filter(pl.col("account_id") == "A4").rows()
    # A supplier sees its own money only, in both houses.
    for name in ("osv-supplier", "debt-ageing", "supplier-act", "osv-service"):
        frame = run_report(two_houses, builtin_reports()[name], PERIODS, "VK").frame
        assert frame["supplier_id"].unique().to_list() == ["VK"], name
    # The osv and card commands use the same limit.
    tables = read_sealed(two_houses, PERIODS, "UK2")
    assert set(tables["balances"]["account_id"]) == {"A4"}
    sheet = osv(tables["balances"], load_store(two_houses), PERIODS, "supplier")
    assert set(sheet["supplier_id"]) == {"VK", "UK2"}
    vk = read_sealed(two_houses, PERIODS, "VK")
    card = account_card("A1", vk, load_store(two_houses), {}, PERIODS)
    assert not card.filter(pl.col("detail").str.contains("Отопление|heating|maintenance")).height
    out = cli("report", "osv", "--period", "2026-08", "--to", "2026-09", "--by", "building", "--org", "TS",
              home=two_houses.home)
    assert "ул. Ленина" in out and "ул. Мира" not in out


def test_org_in_sql_and_unknown_org(two_houses: Workspace) -> None:
    out = cli("sql", "--org", "UK2", "select building_id, count(*) as n from premises group by 1",
              home=two_houses.home)
    assert "B2" in out and "B1" not in out
    res = CliRunner().invoke(app, ["sql", "--org", "NOPE", "select 1", "--home", str(two_houses.home)])
    assert res.exit_code == 1 and "Организация «NOPE» не найдена" in str(res.exception)
    # The limit cannot be stepped around by naming a sealed file: the file is readable without --org.
    charges = two_houses.period_dir("2026-08") / "charges.parquet"
    assert charges.is_file()
    for query, said in ((f"select * from read_parquet('{charges}')", "Функция «read_parquet» недоступна"),
                        (f"select * from '{charges}'", "недоступен при --org"),
                        ("select * from glob('/etc/*')", "Функция «glob» недоступна")):
        res = CliRunner().invoke(app, ["sql", "--org", "UK2", query, "--home", str(two_houses.home)])
        assert res.exit_code == 1 and said in str(res.exception), query
    assert "14" in cli("sql", f"select count(*) from '{charges}'", home=two_houses.home)  # 3 flats × 4 services + A4 × 2
    own = two_houses.home / "reports"
    own.mkdir(exist_ok=True)
    (own / "sneak.sql").write_text(f"-- title: Обход\nSELECT * FROM read_parquet('{charges}')\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["report", "sneak", "--period", "2026-08", "--org", "UK2",
                                   "--home", str(two_houses.home)])
    assert res.exit_code == 1 and "недоступна при --org" in str(res.exception)


def test_org_limits_the_collection_cases(two_houses: Workspace) -> None:
    folder = two_houses.store / "collection"
    folder.mkdir(parents=True)
    pl.DataFrame({"case_id": ["c1", "c2", "c3"], "account_id": ["A1", "A4", "A2"],
                  "supplier_id": ["TS", "VK", "VK"], "debt_kop": [100, 200, 300]}).write_parquet(
        folder / "cases.parquet")
    pl.DataFrame({"case_id": ["c1", "c2", "c2", "c3"], "seq": [1, 1, 2, 1]}).write_parquet(
        folder / "events.parquet")

    def cases(org: str | None) -> tuple[list[str], list[str]]:
        con = connect(two_houses, org)
        try:
            return ([r[0] for r in con.execute("SELECT case_id FROM collection_cases ORDER BY 1").fetchall()],
                    [r[0] for r in con.execute("SELECT DISTINCT case_id FROM collection_events ORDER BY 1")
                     .fetchall()])
        finally:
            con.close()

    assert cases(None) == (["c1", "c2", "c3"], ["c1", "c2", "c3"])
    assert cases("UK2") == (["c2"], ["c2"])  # B2's account, whoever claims
    assert cases("UK1") == (["c1", "c3"], ["c1", "c3"])  # B1's accounts
    assert cases("VK") == (["c2", "c3"], ["c2", "c3"])  # its own claims in both houses
    assert cases("TS") == (["c1"], ["c1"])
