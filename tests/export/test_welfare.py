"""The register to social welfare (``billing export welfare``): per beneficiary and service,
within the norms, control sums against the sealed tables to the kopeck, cp1251, read-back."""

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
from pipeline.dates import Period
from pipeline.export import write_exports
from pipeline.export.welfare import (
    MONEY,
    TITLES,
    beneficiaries_in,
    build_files,
    welfare_csv,
)
from pipeline.ingest.payments import import_payment_file
from pipeline.ingest.registers import ingest
from pipeline.sealed import read_table
from pipeline.settings import ExportWelfare, load_section
from pipeline.workspace import BillingError, Workspace, init_workspace
from rules import welfare_categories, welfare_categories_on
from tests.conftest import TOWN, write_registers

PERIOD = "2026-09"
LONG = "Справка МСЭ-2019 № 0123456 выдана бюро медико-социальной экспертизы " * 4

ACCOUNTS = """\
account_id,premise_id,payer_kind,payer_name,share,owners,opened_on,closed_on,email,repayment_agreement_until
A1,P1,person,Иванов Иван Иванович,1,1,2020-01-01,,,
A2,P2,person,Петрова Анна Сергеевна,1,2,2020-01-01,,,2027-12-31
A3,P3,person,Сидоров Пётр Ильич,1,1,2020-01-01,,,2026-08-31
"""
RESIDENTS = TOWN["residents"] + "R5,A3,Əliyeva Gülnarə Рашидовна,1950-03-08,permanent,2020-01-01,\n"
BENEFITS = f"""\
person_id,category,from,to,account_id,document
R1,disabled,2019-05-01,,,"Справка МСЭ; бессрочно"
R2,veteran_labour,2020-01-01,,,
R3,large_family,2020-01-01,,A2,{LONG.strip()}
R5,disabled,2020-01-01,,,
R4,veteran_labour,2020-01-01,2026-08-31,,
"""
PAYMENTS = """\
payment_id,paid_on,account_id,amount,period,agent
w1,2026-09-05,A1,1000.00,2026-08,sber
w2,2026-09-06,A3,200.00,2026-08,sber
"""
#: Who is in the register and on which account; the disabled get no maintenance (0 %).
EXPECTED = {("R1", "disabled"): "A1", ("R2", "veteran_labour"): "A1", ("R3", "large_family"): "A2",
            ("R5", "disabled"): "A3"}


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """August closed, payments and an absence for August entered, September closed."""
    ws = init_workspace(tmp_path_factory.mktemp("welfare") / "home")
    write_registers(ws, {**TOWN, "accounts": ACCOUNTS, "residents": RESIDENTS, "benefits": BENEFITS})
    ingest(ws)
    run_close(ws, "2026-08", receipts=False)
    path = ws.home / "payments.csv"
    path.write_text(PAYMENTS, encoding="utf-8")
    import_payment_file(ws, path, today=date(2026, 9, 30))
    # An absence in August found later: a recalculation of A3's norm charges in September.
    write_registers(ws, {"absences": "person_id,from,to\nR4,2026-08-03,2026-08-20\n"})
    ingest(ws)
    run_close(ws, PERIOD, receipts=False)
    return ws


def _parse(data: bytes) -> tuple[list[str], list[dict[str, str]], list[str]]:
    header, *body, footer = list(csv.reader(io.StringIO(data.decode("cp1251")), delimiter=";"))
    return header, [dict(zip(header, r, strict=True)) for r in body], footer


def _rub(text: str) -> Decimal:
    return Decimal(text.replace(",", ".")) if text else Decimal(0)


def _expected_sums(ws: Workspace) -> dict[str, Decimal]:
    """The register's money columns summed straight from the sealed tables."""
    folder = ws.period_dir(PERIOD)
    wanted = pl.DataFrame([{"account_id": a, "category": c} for (_, c), a in EXPECTED.items()])

    def per_service(frame: pl.DataFrame, value: str) -> Decimal:
        sums = frame.group_by("account_id", "service_id").agg(pl.col(value).sum())
        picked = wanted.join(sums, on="account_id").filter(
            ~((pl.col("category") == "disabled") & (pl.col("service_id") == "maintenance")))
        return Decimal(picked[value].sum() or 0)

    debts = read_table(folder, "debts").filter(pl.col("charge_period") < PERIOD)
    return {"charged": per_service(read_table(folder, "charges"), "amount"),
            "recalculated": per_service(read_table(folder, "recalculations"), "amount"),
            "paid": per_service(read_table(folder, "service_balances"), "paid"),
            "debt": per_service(debts, "outstanding")}


def test_footer_counts_and_sums_match_the_sealed_tables_to_the_kopeck(sealed: Workspace) -> None:
    csv_file, xlsx_file = build_files(sealed, PERIOD)
    assert csv_file.name == "uszn_202609.csv" and xlsx_file.name == "uszn_202609.xlsx"
    header, rows, footer = _parse(csv_file.data)
    assert header == [t.replace("²", "2") for t in TITLES.values()]
    assert {(r["Код гражданина"], r["Категория"]): r["Лицевой счёт"] for r in rows} == EXPECTED
    assert footer[0] == "ИТОГО" and int(footer[1]) == len(rows) == csv_file.rows
    sums = {m: sum(_rub(r[TITLES[m]]) for r in rows) for m in MONEY}
    assert {m: _rub(footer[header.index(TITLES[m])]) for m in MONEY} == sums
    expected = _expected_sums(sealed)
    assert expected["paid"] > 0 and expected["debt"] > 0 and expected["recalculated"] != 0
    assert {m: sums[m] for m in expected} == expected
    assert csv_file.total_kop == int(expected["charged"] * 100) == csv_file.extra["sums_kop"]["charged"]
    assert csv_file.extra["beneficiaries"] == 4 and csv_file.extra["unplaced_beneficiaries"] == 0
    assert not any(r["Код услуги"] == "maintenance" and r["Категория"] == "disabled" for r in rows)
    # Deterministic bytes: written once, a second export is a no-op.
    assert build_files(sealed, PERIOD) == [csv_file, xlsx_file]
    assert write_exports(sealed, PERIOD, "welfare", [csv_file, xlsx_file]).written == (
        "welfare/uszn_202609.csv", "welfare/uszn_202609.xlsx")


def test_within_the_norm_by_area_and_volume(sealed: Workspace) -> None:
    _, rows, _ = _parse(build_files(sealed, PERIOD)[0].data)
    by = {(r["Код гражданина"], r["Код услуги"]): r for r in rows}
    # A1: two registered; the veteran's area within 42 m² of 50: maintenance 50 m² × 31.50.
    main = by[("R2", "maintenance")]
    assert (main["Зарегистрировано"], main["Имеют право"], main["Социальная норма площади, м2"]) == ("2", "1", "42,00")
    assert _rub(main["Начислено, руб."]) == Decimal("1575.00")
    assert _rub(main["Начислено в пределах норматива, руб."]) == Decimal("1323.00")
    assert _rub(main["Компенсация (справочно), руб."]) == Decimal("330.75")  # 50 % of half (1 of 2)
    # The disabled person's heating is not limited by area (no area norm in the category's row).
    assert by[("R1", "heating")]["Начислено в пределах норматива, руб."] == by[("R1", "heating")]["Начислено, руб."]
    # A2 without a meter pays the norm × 3 (no meter): within the norm is volume × tariff only.
    water = by[("R3", "cold_water")]
    assert _rub(water["Начислено, руб."]) > _rub(water["Начислено в пределах норматива, руб."]) == (
        _rub(water["Объём в пределах норматива"]) * _rub(water["Тариф, руб."])).quantize(Decimal("0.01"))
    assert water["Соглашение о погашении"] == "да" and by[("R1", "heating")]["Соглашение о погашении"] == "нет"


def test_cyrillic_long_and_empty_fields_in_cp1251_and_the_workbook(sealed: Workspace) -> None:
    csv_file, xlsx_file = build_files(sealed, PERIOD)
    _, rows, _ = _parse(csv_file.data)
    by = {r["Код гражданина"]: r for r in rows}
    assert by["R1"]["Документ"] == "Справка МСЭ; бессрочно"  # the separator inside a field is quoted
    assert by["R3"]["Документ"] == LONG.strip() and len(LONG.strip()) > 250
    assert by["R2"]["Документ"] == "" and by["R1"]["Жилая площадь, м2"] == ""
    assert by["R5"]["ФИО"] == "?liyeva G?lnar? Рашидовна"  # cp1251 lacks Ə, ü, ə: counted
    assert csv_file.extra["replaced_characters"] == 3 * sum(1 for r in rows if r["Код гражданина"] == "R5")
    assert by["R1"]["Дата рождения"] == "01.01.1980"
    sheet = load_workbook(io.BytesIO(xlsx_file.data), read_only=True)["Реестр"]
    cells = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert cells[0] == list(TITLES.values()) and len(cells) == len(rows) + 2
    names = {c[2] for c in cells[1:-1]}
    assert "Əliyeva Gülnarə Рашидовна" in names  # the workbook keeps every letter
    col = list(TITLES).index("charged")
    assert cells[-1][0] == "ИТОГО" and Decimal(str(cells[-1][col])) == Decimal(csv_file.total_kop) / 100
    assert Decimal(str(cells[-1][col])) == sum(Decimal(str(c[col])) for c in cells[1:-1])


def test_settings_cut_long_texts_and_bad_settings_are_refused(sealed: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"

    def load(text: str) -> ExportWelfare:
        path.write_text(f"[export_welfare]\n{text}\n", encoding="utf-8")
        return load_section(path, ExportWelfare)

    settings = load('text_limit = 20\nencoding = "utf-8"\nseparator = "\\t"\ndecimal_comma = false')
    assert settings == ExportWelfare("utf-8", "\t", False, "uszn_{period}", 20)
    from pipeline.export import welfare

    rows = welfare.welfare_rows(  # the same frames as build_files reads, through the pure function
        Period.parse(PERIOD), *_frames(sealed))
    data, lost = welfare_csv(rows, settings)
    assert lost == 0 and "Əliyeva Gülnarə Раши\t" in data.decode()
    first = data.decode().splitlines()[1].split("\t")
    assert first[6] == "Справка МСЭ; бессроч" and "." in first[16]  # decimal point
    for bad, message in [('codepage = "x"', "codepage"), ('encoding = "koi9"', "известная кодировка"),
                         ('separator = ";;"', "один символ"), ('text_limit = "5"', "text_limit"),
                         ('name = "../x"', "не годится")]:
        with pytest.raises(BillingError, match=message):
            load(bad)


def _frames(ws: Workspace) -> tuple:
    import json

    from pipeline.ingest.registers import load_store
    from pipeline.sealed import read_internal
    from rules import read_rule_table

    folder = ws.period_dir(PERIOD)
    regs = load_store(ws, json.loads((folder / "manifest.json").read_text())["store_version"])
    p = Period.parse(PERIOD)
    return (beneficiaries_in(p, regs["benefits"], regs["residents"]),
            welfare_categories_on(welfare_categories(ws.rules), p.last), regs,
            {n: read_internal(folder, n) for n in ("charges", "recalculations", "service_balances", "debts")},
            read_rule_table(ws.rules, "services"), read_rule_table(ws.rules, "norms"))


def test_unknown_category_is_refused_naming_it(sealed: Workspace) -> None:
    people, categories, *rest = _frames(sealed)
    from pipeline.export.welfare import welfare_rows

    with pytest.raises(BillingError, match=r"«chernobyl» нет в rules/welfare_categories\.csv"):
        welfare_rows(Period.parse(PERIOD), people.with_columns(pl.lit("chernobyl").alias("category")),
                     categories, *rest)


def test_welfare_categories_are_a_dated_checked_rule_table(tmp_path: Path) -> None:
    (tmp_path / "welfare_categories.csv").write_text(
        "category,service_id,from,to,percent,area_1\n"
        "a,*,2020-01-01,,50,33\n"
        "a,*,2026-09-01,,30,\n"
        "a,heating,2020-01-01,2026-08-31,25,\n"
        "b,*,2020-01-01,,100,\n", encoding="utf-8")
    table = welfare_categories(tmp_path)
    assert table.columns[:6] == ["category", "service_id", "from", "to", "title", "percent_bp"]
    aug = welfare_categories_on(table, date(2026, 8, 31))
    sep = welfare_categories_on(table, date(2026, 9, 30))
    assert aug.select("category", "service_id", "percent_bp", "area_1_centi").rows() == [
        ("a", "*", 5000, 3300), ("a", "heating", 2500, None), ("b", "*", 10000, None)]
    assert sep.select("category", "service_id", "percent_bp").rows() == [("a", "*", 3000), ("b", "*", 10000)]
    assert set(table["scope"]) == {"person"} and table["within_norm"].all()
    assert welfare_categories(tmp_path / "нет").height == 0  # no file: no category known
    (tmp_path / "welfare_categories.csv").write_text(
        "category,service_id,from,percent\na,*,2020-01-01,150\n", encoding="utf-8")
    with pytest.raises(BillingError, match=r"welfare_categories.csv, строка 2, столбец percent"):
        welfare_categories(tmp_path)
    defaults = welfare_categories(Path(__file__).resolve().parents[2] / "rules" / "defaults")
    assert {"disabled", "veteran_labour", "large_family"} <= set(defaults["category"])
    assert defaults["source"].is_not_null().all() and defaults["confidence"].is_not_null().all()
