"""The ЕПД's sections read back from the PDF's text layer (``pdftotext``) against the sealed tables.

Three months of the three-flat town: A1 pays by its meter and pays part of August in
September, A2 is charged by the norm with the coefficient and pays nothing (penalties from
October), A3 gets a second resident from August entered in September (a recalculation of
August). Every figure the receipt prints is compared with the sealed period's tables.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from pipeline.app import run_close
from pipeline.ingest.fiscal import import_fiscal_file
from pipeline.ingest.payments import import_payment_file
from pipeline.ingest.registers import ingest
from pipeline.money import div_half_up_int, format_rub
from pipeline.render.qr import parse_payload
from pipeline.sealed import read_internal
from pipeline.workspace import Workspace
from tests.conftest import RESIDENTS, pdf_layout_text, write_registers
from tests.render.test_qr import decoded_codes

PAYMENTS = """\
payment_id,paid_on,account_id,amount,period,agent
p1,2026-09-05,A1,1000.00,2026-08,sber
p2,2026-09-12,A1,234.56,2026-08,sber
"""

READINGS = """\
meter_id,read_on,value,source
M1,2026-07-20,100.000,lk
M1,2026-08-20,107.500,lk
M1,2026-09-20,113.250,lk
M1,2026-10-20,118.000,lk
"""


_text = pdf_layout_text


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    from pipeline.workspace import init_workspace

    ws = init_workspace(tmp_path_factory.mktemp("form") / "home")
    from tests.conftest import TOWN

    write_registers(ws, {**TOWN, "readings": READINGS})
    ingest(ws)
    run_close(ws, "2026-08")
    path = ws.home / "payments.csv"
    path.write_text(PAYMENTS, encoding="utf-8")
    import_payment_file(ws, path, today=date(2026, 9, 30))
    fiscal = ws.home / "ofd.csv"
    fiscal.write_text("payment_id,agent,fn,fd,fp,issued_at,amount\n"
                      "p2,sber,9287440300123456,12345,1234567890,2026-09-12 14:30,234.56\n", encoding="utf-8")
    assert import_fiscal_file(ws, fiscal).accepted == 1
    write_registers(ws, {
        "residents": RESIDENTS + "R5,A3,Сидорова Ольга Петровна,1972-01-01,permanent,2026-08-01,\n",
        "gis_ids": "account_id,service_id,els,izhku,from\nA2,,75da533315,,2020-01-01\n"
                   "A2,cold_water,75da533315,75da533315-01,2020-01-01\n",
        "instalments": "account_id,supplier_id,service_id,period,amount,interest_rate,interest\n"
                       "A2,VK,cold_water,2026-09,350.00,9.5,2.77\n",
    })
    ingest(ws)
    run_close(ws, "2026-09")
    run_close(ws, "2026-10")
    return ws


def _rub(kop: int) -> str:
    return format_rub(kop).replace("\u00a0", " ")


def test_every_charge_line_prints_its_sealed_volume_tariff_and_amount(closed: Workspace) -> None:
    folder = closed.period_dir("2026-09")
    charges = read_internal(folder, "charges")
    for account in ("A1", "A2", "A3"):
        text = _text(folder / "receipts" / f"{account}.pdf")
        for line in charges.filter(pl.col("account_id") == account).iter_rows(named=True):
            assert _rub(line["amount_kop"]) in text, (account, line["service_id"])
            assert _rub(line["price_kop"]) in text
    # The coefficient's excess, its own figure: the line less volume × tariff.
    a2 = charges.filter((pl.col("account_id") == "A2") & (pl.col("method") == "norm_increased")).row(0, named=True)
    plain = div_half_up_int(a2["volume_micro"] * a2["price_kop"], 1_000_000)
    text = _text(folder / "receipts" / "A2.pdf")
    assert _rub(a2["amount_kop"] - plain) in text and "с повышающим" in text


def test_payer_executor_and_footer(closed: Workspace) -> None:
    folder = closed.period_dir("2026-09")
    text = _text(folder / "receipts" / "A1.pdf")
    assert "Платёжный документ (квитанция) за сентябрь 2026 г." in text
    assert "Иванов Иван Иванович" in text and "г. Энск, ул. Ленина, д. 1, кв. 1" in text
    assert "общая 50 м²" in text and "2 чел., проживает 2 чел." in text
    balances = read_internal(folder, "balances").filter(pl.col("account_id") == "A1")
    opening, closing = int(balances["opening_kop"].sum()), int(balances["closing_kop"].sum())
    assert f"Задолженность на начало периода: {_rub(opening)} ₽" in text
    assert "последний платёж 12.09.2026 на 234,56 ₽" in text
    assert "Кассовый чек: ФН 9287440300123456, ФД 12345, ФП 1234567890, 12.09.2026 14:30" in text
    assert f"Итого к оплате: {_rub(closing)} ₽" in text
    assert "Оплатить до 15.10.2026" in text


def test_reference_data_shows_the_meter_norms_and_house(closed: Workspace) -> None:
    folder = closed.period_dir("2026-09")
    volumes = read_internal(folder, "meter_volumes").filter(pl.col("meter_id") == "M1").row(0, named=True)
    text = _text(folder / "receipts" / "A1.pdf")
    assert "Справочная информация" in text
    assert "20.08.2026" in text and "107,5" in text and "20.09.2026" in text and "113,25" in text
    assert str(Decimal(volumes["volume_micro"]) / 1_000_000).replace(".", ",").rstrip("0") in text
    assert "по показаниям" in text
    charges = read_internal(folder, "charges")
    house_water = charges.filter(pl.col("service_id") == "cold_water")["volume_micro"].sum()
    assert "Объём по дому за период" in text
    assert f"Холодное водоснабжение {Decimal(house_water) / 1_000_000:f}".replace(".", ",").rstrip("0") in text
    norm = charges.filter((pl.col("account_id") == "A2") & (pl.col("service_id") == "cold_water"))["norm_micro"][0]
    norm_text = f"{Decimal(norm) / 1_000_000:f}".replace(".", ",").rstrip("0")
    assert f"Холодное водоснабжение — {norm_text} м³ на 1 чел. в месяц" in _text(folder / "receipts" / "A2.pdf")


def test_recalculations_and_penalties_print_as_sealed(closed: Workspace) -> None:
    folder = closed.period_dir("2026-09")
    recalcs = read_internal(folder, "recalculations").filter(pl.col("account_id") == "A3")
    assert recalcs.height, "the second resident of A3 recalculates August"
    text = _text(folder / "receipts" / "A3.pdf")
    for r in recalcs.iter_rows(named=True):
        assert _rub(r["amount_kop"]) in text
    october = closed.period_dir("2026-10")
    penalties = read_internal(october, "penalties").filter(pl.col("account_id") == "A2")
    total = int(penalties["amount_kop"].sum())
    assert total > 0
    text = _text(october / "receipts" / "A2.pdf")
    assert "Пени" in text and _rub(total) in text


def test_where_to_pay_each_payee_its_amount_and_code(closed: Workspace) -> None:
    folder = closed.period_dir("2026-09")
    balances = read_internal(folder, "balances").filter(pl.col("account_id") == "A2")
    due = {r["supplier_id"]: max(r["closing_kop"], 0) for r in balances.iter_rows(named=True)}
    text = _text(folder / "receipts" / "A2.pdf")
    assert "Куда платить" in text
    codes = decoded_codes(folder / "receipts" / "A2.pdf")
    sums = sorted(int(parse_payload(c).get("sum", "0")) for c in codes)
    assert sums == sorted(due.values())
    for amount in due.values():
        assert f"к оплате {_rub(amount)} ₽" in text


def test_a_duplicate_prints_what_the_original_printed(closed: Workspace) -> None:
    from tests.conftest import run_billing

    proc = run_billing("receipts", "print", "--period", "2026-09", "--account", "A1", "--account", "A3",
                       home=closed.home)
    assert "Дубликаты квитанций за 2026-09: 2" in proc.stdout
    for account in ("A1", "A3"):
        original = _text(closed.period_dir("2026-09") / "receipts" / f"{account}.pdf")
        duplicate = _text(closed.home / "duplicates" / "2026-09" / f"{account}.pdf")
        marks = [line for line in duplicate.splitlines() if line.startswith("ДУБЛИКАТ")]
        assert len(marks) == 1 and "по данным закрытого периода" in marks[0]
        assert duplicate.replace(marks[0] + "\n", "") == original
    missing = run_billing("receipts", "print", "--period", "2026-09", "--account", "Z9", home=closed.home,
                          check=False)
    assert missing.returncode == 1 and "нет квитанции лицевого счёта Z9" in missing.stderr + missing.stdout


def test_gis_identifiers_and_the_instalment(closed: Workspace) -> None:
    text = _text(closed.period_dir("2026-09") / "receipts" / "A2.pdf")
    assert "ЕЛС 75da533315" in text and "ИЖКУ: 75da533315-01 (Холодное водоснабжение)" in text
    assert "Рассрочка платежа" in text
    assert re.search(r"Холодное водоснабжение АО «Водоканал» 350,00 9,5 2,77 352,77", text)
    assert "Рассрочка" not in _text(closed.period_dir("2026-10") / "receipts" / "A2.pdf")
