"""The built-in report SQL files on tiny hand-computed cities written inline (no workspace).

Each test fills the tables the report reads (every other view exists, empty, with the
columns ``billing sql`` gives it) and checks the rows in exact kopecks.
"""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.analytics import _empty_select, empty_schemas, org_predicate
from pipeline.sqlreports import (
    ReportResult,
    builtin_reports,
    for_output,
    parse_spec,
    run_on,
    with_total,
)
from pipeline.workspace import BillingError

ORGANIZATIONS = """\
org_id,name,inn
UK1,ООО «УК Дом»,7707083893
VK,АО «Водоканал»,7707083894
TS,АО «Теплосеть»,7707083895
"""
BUILDINGS = """\
building_id,address,manager_id
B1,"г. Энск, ул. Ленина, д. 1",UK1
B2,"г. Энск, ул. Мира, д. 2",UK2
"""
PREMISES = """\
premise_id,building_id,number,kind
P1,B1,1,residential
P2,B2,5,nonresidential
P3,B1,3,residential
"""
ACCOUNTS = """\
account_id,premise_id,payer_kind,payer_name
A1,P1,person,Иванов Иван Иванович
A2,P2,organization,ООО «Ромашка»
A3,P3,person,Сидоров Пётр Ильич
"""
SERVICES = """\
service_id,name,unit
cold_water,Холодное водоснабжение,м³
sewerage,Водоотведение,м³
"""
#: A1 (B1) owes VK and UK1, A2 (B2) owes VK. Each row: opening + charged + recalculated +
#: penalty − paid = closing, and September opens with August's closing.
BALANCES = """\
period,account_id,supplier_id,opening,charged,recalculated,paid,penalty,closing
2026-08,A1,VK,0.00,100.10,0.00,0.00,0.00,100.10
2026-08,A1,UK1,0.00,200.00,0.00,50.00,0.00,150.00
2026-09,A1,VK,100.10,100.10,-10.00,100.10,1.23,91.33
2026-09,A1,UK1,150.00,200.00,0.00,0.00,0.00,350.00
2026-08,A2,VK,5.00,300.00,0.00,0.00,0.00,305.00
2026-09,A2,VK,305.00,300.00,0.00,305.00,0.00,300.00
2026-09,A3,VK,0.00,0.00,0.00,5.00,0.00,-5.00
"""
ALLOCATIONS = """\
period,payment_id,agent,account_id,service_id,supplier_id,charge_period,amount,paid_on,kind
2026-08,p0,sber,A1,maintenance,UK1,2026-08,50.00,2026-08-10,payment
2026-09,p1,sber,A1,cold_water,VK,2026-08,100.10,2026-09-05,payment
2026-09,p2,post,A2,cold_water,VK,2026-08,305.00,2026-09-06,payment
2026-09,p3,sber,A3,,,,5.00,2026-09-07,advance
2026-09,p1,sber,A1,cold_water,TS,2026-08,7.00,2026-09-05,advance_transfer
"""


def frame(text: str) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(text), infer_schema=False)


def city(**tables: str) -> duckdb.DuckDBPyConnection:
    """Every view of ``billing sql`` as a table of its columns, ``tables`` filled (CSV text)."""
    con = duckdb.connect(":memory:")
    for name, schema in empty_schemas().items():
        con.execute(f'CREATE TABLE "{name}" AS {_empty_select(schema)}')
    base = {"organizations": ORGANIZATIONS, "buildings": BUILDINGS, "premises": PREMISES,
            "accounts": ACCOUNTS, "services": SERVICES}
    for name, text in {**base, **tables}.items():
        con.register("_rows", frame(text).to_arrow())
        con.execute(f'INSERT INTO "{name}" BY NAME SELECT * FROM _rows')
        con.unregister("_rows")
    return con


def run(name: str, periods: list[str], given: dict[str, str] | None = None,
        **tables: str) -> ReportResult:
    con = city(**tables)
    try:
        return run_on(con, builtin_reports()[name], periods, None, given)
    finally:
        con.close()


def kop(result: ReportResult, *columns: str) -> list[tuple]:
    return with_total(result).select(columns).rows()


def test_every_builtin_report_has_a_title_and_russian_column_titles() -> None:
    specs = builtin_reports()
    assert {"osv-account", "osv-building", "osv-supplier", "osv-service", "charges", "collection-rate",
            "top-debtors", "debt-ageing", "meter-anomalies", "recalculations", "supplier-act"} <= set(specs)
    for name, spec in specs.items():
        assert spec.title and spec.about, name
        assert set(spec.money) <= set(spec.titles), name
        result = run(name, ["2026-08", "2026-09"])  # empty tables: the columns are still there
        assert set(result.frame.columns) == {f"{c}_kop" if c in spec.money else c for c in spec.titles}, name
        assert all(t == "№" or any("а" <= ch <= "я" for ch in t.lower()) for t in spec.titles.values()), name


def test_osv_by_account_building_and_supplier() -> None:
    periods = ["2026-08", "2026-09"]
    money = ("opening_kop", "charged_kop", "recalculated_kop", "penalty_kop", "paid_kop", "closing_kop")
    by_account = run("osv-account", periods, balances=BALANCES)
    assert kop(by_account, "account_id", *money) == [
        ("A1", 0, 60_020, -1_000, 123, 15_010, 44_133),
        ("A2", 500, 60_000, 0, 0, 30_500, 30_000),
        ("A3", 0, 0, 0, 0, 500, -500),
        ("Итого", 500, 120_020, -1_000, 123, 46_010, 73_633),
    ]
    assert by_account.frame["address"].to_list() == [
        "г. Энск, ул. Ленина, д. 1, кв. 1", "г. Энск, ул. Мира, д. 2, пом. 5", "г. Энск, ул. Ленина, д. 1, кв. 3"]
    by_building = run("osv-building", periods, balances=BALANCES)
    assert kop(by_building, "building_id", "accounts", *money) == [
        ("B1", 2, 0, 60_020, -1_000, 123, 15_510, 43_633),
        ("B2", 1, 500, 60_000, 0, 0, 30_500, 30_000),
        ("Итого", 3, 500, 120_020, -1_000, 123, 46_010, 73_633),
    ]
    by_supplier = run("osv-supplier", periods, balances=BALANCES)
    assert kop(by_supplier, "supplier_id", "supplier_name", *money) == [
        ("UK1", "ООО «УК Дом»", 0, 40_000, 0, 0, 5_000, 35_000),
        ("VK", "АО «Водоканал»", 500, 80_020, -1_000, 123, 41_010, 38_633),
        ("Итого", None, 500, 120_020, -1_000, 123, 46_010, 73_633),
    ]
    for result in (by_account, by_building, by_supplier):  # the balance identity, row by row
        for r in with_total(result).iter_rows(named=True):
            assert r["opening_kop"] + r["charged_kop"] + r["recalculated_kop"] + r["penalty_kop"] \
                - r["paid_kop"] == r["closing_kop"]


def test_osv_by_service() -> None:
    rows = """\
period,account_id,service_id,supplier_id,opening,charged,recalculated,paid,penalty,closing
2026-08,A1,cold_water,VK,0.00,60.10,0.00,0.00,0.00,60.10
2026-08,A1,sewerage,VK,0.00,40.00,0.00,0.00,0.00,40.00
2026-09,A1,cold_water,VK,60.10,60.10,-10.00,60.10,1.23,51.33
2026-09,A1,sewerage,VK,40.00,40.00,0.00,40.00,0.00,40.00
"""
    result = run("osv-service", ["2026-08", "2026-09"], service_balances=rows)
    assert kop(result, "service_id", "service_name", "opening_kop", "charged_kop", "recalculated_kop",
               "penalty_kop", "paid_kop", "closing_kop") == [
        ("cold_water", "Холодное водоснабжение", 0, 12_020, -1_000, 123, 6_010, 5_133),
        ("sewerage", "Водоотведение", 0, 8_000, 0, 0, 4_000, 4_000),
        ("Итого", None, 0, 20_020, -1_000, 123, 10_010, 9_133),
    ]


def test_charges_by_service_and_building() -> None:
    charges = """\
period,account_id,service_id,supplier_id,method,volume,tariff,amount
2026-08,A1,cold_water,VK,meter,7.500000,52.28,392.10
2026-09,A1,cold_water,VK,norm,9.490000,52.28,496.14
2026-08,A2,cold_water,VK,norm,4.745000,52.28,248.07
2026-10,A2,cold_water,VK,norm,4.745000,52.28,248.07
"""
    recalcs = """\
period,account_id,service_id,supplier_id,origin_period,amount,reason
2026-09,A1,cold_water,VK,2026-08,-52.28,показания
"""
    result = run("charges", ["2026-08", "2026-09"], charges=charges, recalculations=recalcs)
    assert kop(result, "building_id", "service_name", "supplier_name", "accounts", "volume", "charged_kop",
               "recalculated_kop", "total_kop") == [
        # B1: 392,10 + 496,14 = 888,24 for 7.5 + 9.49 m³, less the recalculation 52,28 → 835,96.
        ("B1", "Холодное водоснабжение", "АО «Водоканал»", 1, Decimal("16.99"), 88_824, -5_228, 83_596),
        ("B2", "Холодное водоснабжение", "АО «Водоканал»", 1, Decimal("4.745"), 24_807, 0, 24_807),
        ("Итого", None, None, None, None, 113_631, -5_228, 108_403),
    ]


def test_collection_rate_by_month_exact_and_half_up() -> None:
    balances = BALANCES + "2026-10,A1,VK,91.33,8.00,0.00,0.01,0.00,99.32\n"
    allocations = ALLOCATIONS + "2026-10,p4,sber,A1,cold_water,VK,2026-10,0.01,2026-10-05,payment\n"
    result = run("collection-rate", ["2026-08", "2026-10"], balances=balances, allocations=allocations)
    assert result.frame.select("period", "charged_kop", "paid_kop", "rate", "closing_kop").rows() == [
        # 50,00 / 600,10 = 8,3319…%; 410,10 / 590,10 = 69,4967…% (the advance of 5,00 is money
        # received, the advance transfer between suppliers is not); 0,01 / 8,00 = 0,125% → 0,13.
        ("2026-08", 60_010, 5_000, Decimal("8.33"), 55_510),
        ("2026-09", 59_010, 41_010, Decimal("69.50"), 73_633),
        ("2026-10", 800, 1, Decimal("0.13"), 9_932),
    ]
    assert isinstance(result.frame.schema["rate"], pl.Decimal)


def test_top_debtors_first_n() -> None:
    debts = """\
period,account_id,service_id,supplier_id,charge_period,outstanding
2026-09,A1,cold_water,VK,2026-08,0.10
2026-09,A1,cold_water,VK,2026-09,91.23
2026-09,A1,maintenance,UK1,2026-09,350.00
2026-09,A2,cold_water,VK,2026-09,300.00
2026-08,A2,cold_water,VK,2026-07,1.00
"""
    result = run("top-debtors", ["2026-09"], balances=BALANCES, debts=debts, allocations=ALLOCATIONS)
    assert result.frame.select("place", "account_id", "payer_kind", "debt_kop", "months", "oldest",
                               "last_paid_on").rows() == [
        (1, "A1", "гражданин", 44_133, 2, "2026-08", date(2026, 9, 5)),
        (2, "A2", "организация", 30_000, 1, "2026-09", date(2026, 9, 6)),
    ]  # A3 has paid in advance: no debt, not listed
    first = run("top-debtors", ["2026-09"], {"top": "1"}, balances=BALANCES, debts=debts)
    assert first.frame["account_id"].to_list() == ["A1"] and first.params == {"top": 1}
    with pytest.raises(BillingError, match="нет параметра «n»"):
        run("top-debtors", ["2026-09"], {"n": "1"})
    with pytest.raises(BillingError, match="целое число"):
        run("top-debtors", ["2026-09"], {"top": "много"})


def test_debt_ageing_buckets() -> None:
    debts = """\
period,account_id,service_id,supplier_id,charge_period,outstanding
2026-09,A1,cold_water,VK,2026-09,10.00
2026-09,A1,cold_water,VK,2026-08,20.00
2026-09,A1,cold_water,VK,2026-07,30.00
2026-09,A1,cold_water,VK,2026-06,40.00
2026-09,A1,cold_water,VK,2026-05,50.00
2026-09,A1,cold_water,VK,2026-03,60.00
2026-09,A2,cold_water,VK,2026-02,70.00
2026-09,A2,cold_water,VK,2025-09,80.00
2026-09,A2,cold_water,VK,2025-08,90.00
2026-09,A3,maintenance,UK1,2024-01,1.01
2026-08,A1,cold_water,VK,2026-01,999.00
"""
    result = run("debt-ageing", ["2026-09"], debts=debts)
    assert kop(result, "supplier_id", "accounts", "upto_1_kop", "m1_3_kop", "m3_6_kop", "m6_12_kop",
               "over_12_kop", "total_kop") == [
        # ages 0, 1 → до 1; 2, 3 → 1–3; 4, 6 → 3–6; 7, 12 → 6–12; 13 → более 12 (August's snapshot ignored)
        ("UK1", 1, 0, 0, 0, 0, 101, 101),
        ("VK", 2, 3_000, 7_000, 11_000, 15_000, 9_000, 45_000),
        ("Итого", 3, 3_000, 7_000, 11_000, 15_000, 9_101, 45_101),
    ]


def test_meter_anomalies_rule() -> None:
    meters = """\
meter_id,service_id,premise_id,building_id
M1,cold_water,P1,
M2,cold_water,,B1
"""
    volumes = """\
period,meter_id,service_id,premise_id,method,volume,curr_read_on
2026-02,M1,cold_water,P1,meter,6.000000,2026-02-20
2026-03,M1,cold_water,P1,meter,6.000000,2026-03-20
2026-04,M1,cold_water,P1,meter,6.000000,2026-04-20
2026-05,M1,cold_water,P1,meter,6.000000,2026-05-20
2026-06,M1,cold_water,P1,meter,6.000000,2026-06-20
2026-07,M1,cold_water,P1,meter,6.000000,2026-07-20
2026-08,M1,cold_water,P1,meter,18.000000,2026-08-20
2026-09,M1,cold_water,P1,meter,0.000000,2026-09-20
2026-09,M2,cold_water,,meter,-1.500000,2026-09-25
2026-09,M3,cold_water,P3,norm,0.000000,
"""
    issues = """\
meter_id,read_on,reason,value,period
M1,2026-09-21,показание меньше предыдущего,5.000000,2026-09
M1,2026-07-21,показание меньше предыдущего,5.000000,2026-07
"""
    result = run("meter-anomalies", ["2026-08", "2026-09"], meters=meters, meter_volumes=volumes,
                 reading_issues=issues)
    assert result.frame.select("period", "meter_id", "address", "anomaly", "value", "average").rows() == [
        # 18 ≥ 3 × 6 (six months before August); September's 0 is zero, not a jump (its average
        # 48/6 = 8 over March–August); M2 is a building meter; M3's zero is a norm charge, not read.
        ("2026-08", "M1", "г. Энск, ул. Ленина, д. 1, кв. 1", "Скачок расхода", Decimal("18"), Decimal("6")),
        ("2026-09", "M1", "г. Энск, ул. Ленина, д. 1, кв. 1", "Нулевой расход", Decimal("0"), None),
        ("2026-09", "M1", "г. Энск, ул. Ленина, д. 1, кв. 1", "Показание отклонено", Decimal("5"), None),
        ("2026-09", "M2", "г. Энск, ул. Ленина, д. 1 (общедомовой)", "Отрицательный расход",
         Decimal("-1.5"), None),
    ]
    stricter = run("meter-anomalies", ["2026-08"], {"jump": "4"}, meters=meters, meter_volumes=volumes)
    assert stricter.frame.height == 0


def test_recalculations_by_reason() -> None:
    recalcs = """\
period,account_id,service_id,supplier_id,origin_period,amount,reason
2026-09,A1,cold_water,VK,2026-08,-10.00,перерыв в подаче
2026-09,A2,cold_water,VK,2026-08,-5.55,перерыв в подаче
2026-09,A1,cold_water,VK,2026-07,52.28,показания
2026-09,A1,cold_water,VK,2026-08,-52.28,показания
2026-09,A1,sewerage,VK,2026-08,0.00,показания
2026-07,A1,cold_water,VK,2026-06,-1.00,перерыв в подаче
"""
    result = run("recalculations", ["2026-09"], recalculations=recalcs)
    assert kop(result, "reason", "service_id", "lines", "accounts", "added_kop", "removed_kop", "amount_kop") == [
        ("перерыв в подаче", "cold_water", 2, 2, 0, -1_555, -1_555),
        ("показания", "cold_water", 2, 1, 5_228, -5_228, 0),
        ("Итого", None, 4, None, 5_228, -6_783, -1_555),
    ]


def test_supplier_settlement_act() -> None:
    settlements = """\
settlement_id,agent,received_on,amount_kop,days
s1,sber,2026-09-08,10010,"05.09.2026, 06.09.2026"
"""
    result = run("supplier-act", ["2026-08", "2026-09"], balances=BALANCES, allocations=ALLOCATIONS,
                 agent_settlements=settlements)
    assert kop(result, "supplier_id", "inn", "opening_kop", "charged_kop", "collected_kop", "transferred_kop",
               "owed_kop", "closing_kop") == [
        # UK1: 50,00 collected by Sber on 10.08, a day no transfer covers; VK: Sber's 100,10 of
        # 05.09 transferred, the post's 305,00 of 06.09 not (only Sber's settlement names that day).
        ("UK1", "7707083893", 0, 40_000, 5_000, 0, 5_000, 35_000),
        ("VK", "7707083894", 500, 80_020 - 1_000 + 123, 40_510, 10_010, 30_500, 38_633),
        ("Итого", None, 500, 119_143, 45_510, 10_010, 35_500, 73_633),
    ]


# --------------------------------------------------------------------------- the runner itself

def test_header_is_parsed() -> None:
    spec = parse_spec("mine", Path("mine.sql"), """\
-- title: Мой отчёт
-- about: Первая строка
-- about: вторая.
-- param: top = 10 — сколько строк
-- param: kind = person — вид плательщика
-- column: a = Колонка А
-- money: a, b
-- total: a
-- chart: x=a bars=b line=c
SELECT 1
""", builtin=False)
    assert (spec.title, spec.about, spec.money, spec.total) == ("Мой отчёт", "Первая строка вторая.", ("a", "b"), "a")
    assert [(p.name, p.default, p.about) for p in spec.params] == [("top", 10, "сколько строк"),
                                                                    ("kind", "person", "вид плательщика")]
    assert spec.chart is not None and (spec.chart.x, spec.chart.bars, spec.chart.line) == ("a", ("b",), "c")
    with pytest.raises(BillingError, match="нет строки «-- title"):
        parse_spec("bad", Path("bad.sql"), "SELECT 1", builtin=False)


def _adhoc(sql: str, money: str = "m") -> ReportResult:
    spec = parse_spec("adhoc", Path("adhoc.sql"), f"-- title: Т\n-- money: {money}\n-- total: k\n{sql}", False)
    con = city()
    try:
        return run_on(con, spec, ["2026-09"])
    finally:
        con.close()


def test_money_is_exact_kopecks_and_float_refused() -> None:
    result = _adhoc("SELECT 'x' AS k, CAST(0.1 AS DECIMAL(18,2)) + CAST(0.2 AS DECIMAL(18,2)) AS m")
    assert result.frame.rows() == [("x", 30)]
    out, _ = for_output(result)
    assert out.rows() == [("x", Decimal("0.30")), ("Итого", Decimal("0.30"))]
    with pytest.raises(BillingError, match="деньги, но его тип Float64"):
        _adhoc("SELECT 'x' AS k, 0.1::DOUBLE AS m")
    with pytest.raises(BillingError, match="деньги, но его тип Decimal"):
        _adhoc("SELECT 'x' AS k, CAST(0.125 AS DECIMAL(18,3)) AS m")
    with pytest.raises(BillingError, match="«COPY» запрещена"):
        _adhoc("COPY (SELECT 1) TO '/tmp/x.csv'")
    with pytest.raises(BillingError, match=r"параметр \$secret не объявлен"):
        _adhoc("SELECT $secret AS k, 1.00 AS m")
    with pytest.raises(BillingError, match="один запрос SELECT"):
        _adhoc("SELECT 1 AS k, 1.00 AS m; SELECT 2 AS k, 1.00 AS m")


@pytest.mark.parametrize(("view", "columns", "expected"), [
    ("balances", ["period", "account_id", "supplier_id"],
     "(supplier_id = 'VK' OR account_id IN (SELECT account_id FROM _org_accounts WHERE managed))"),
    ("building_services", ["building_id", "service_id", "supplier_id"],
     "(supplier_id = 'VK' OR building_id IN (SELECT building_id FROM _org_managed))"),
    ("accounts", ["account_id", "premise_id"], "account_id IN (SELECT account_id FROM _org_accounts)"),
    ("premises", ["premise_id", "building_id"], "premise_id IN (SELECT premise_id FROM _org_premises)"),
    ("buildings", ["building_id", "manager_id"], "building_id IN (SELECT building_id FROM _org_buildings)"),
    ("readings", ["meter_id", "read_on"], "meter_id IN (SELECT meter_id FROM _org_meters)"),
    ("absences", ["person_id", "from"], "person_id IN (SELECT person_id FROM _org_persons)"),
    ("benefits", ["person_id", "account_id"], "(account_id IN (SELECT account_id FROM _org_accounts) "
                                              "OR person_id IN (SELECT person_id FROM _org_persons))"),
    ("tariffs", ["service_id", "from", "price"], None),
    ("organizations", ["org_id", "name"], None),
    ("something_new", ["x"], "false"),
])
def test_org_predicate(view: str, columns: list[str], expected: str | None) -> None:
    assert org_predicate(view, columns, "VK") == expected
