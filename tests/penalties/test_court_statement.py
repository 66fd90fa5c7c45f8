"""The court statement of one account to one claimant (issue 15), read back from its PDF.

The three-flat town with a capital-repair fund (FKR) as a fourth supplier. Three months
sealed (August–October 2026): A1 pays far ahead in September (an advance), A3 pays 300 ₽
for August and then nothing, and gets a second resident from August entered in September —
a recalculation of August's water and sewerage (VK). A2 pays nothing; its payer's birth
date, place and document are in the register, VK has an ОГРН.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from pipeline.app import run_close
from pipeline.cli import app
from pipeline.dates import Period
from pipeline.ingest.payments import import_payment_file
from pipeline.ingest.registers import ingest
from pipeline.money import format_rub
from pipeline.penalties import load_policy
from pipeline.penalties.court import (
    account_statement,
    account_statements,
    account_suppliers,
    court_statement,
    sealed_registers,
)
from pipeline.penalties.monthly import PAYING_KINDS
from pipeline.penalties.parties import UNKNOWN, creditor, debtor
from pipeline.penalties.scalar import bucket_penalty
from pipeline.sealed import read_internal
from pipeline.workspace import BillingError, Workspace, init_workspace
from tests.conftest import (
    ACCOUNTS,
    BUILDING_SERVICES,
    ORGS,
    RESIDENTS,
    TOWN,
    pdf_layout_text,
    write_registers,
)

UNTIL = date(2027, 3, 31)
PERIODS = ("2026-08", "2026-09", "2026-10")
VK_OGRN = "1027700132195"

FUND = ("FKR,НКО «Фонд капремонта»,7707083893,770701001,capital_repair,ПАО Сбербанк,044525225,"
        "40703810400000000004,30101810400000000225,\"г. Энск, ул. Фондовая, д. 2\",+7 000,\n")

PAYMENTS = """\
payment_id,paid_on,account_id,amount,period,agent
p1,2026-09-05,A1,100000.00,,sber
p2,2026-09-06,A3,300.00,2026-08,post
"""


def collecting_town(home: Path) -> Workspace:
    """The town above, three months sealed (a few seconds)."""
    ws = init_workspace(home)
    orgs = ORGS.strip("\n").split("\n")
    orgs_text = "\n".join([orgs[0] + ",ogrn", *[line + (f",{VK_OGRN}" if line.startswith("VK,") else ",")
                                               for line in orgs[1:]]]) + "\n" + FUND
    accounts = ACCOUNTS.strip("\n").split("\n")
    accounts_text = "\n".join([accounts[0] + ",payer_birth_date,payer_birth_place,payer_document", *[
        line + (",1990-01-01,г. Энск,СНИЛС 112-233-445 95" if line.startswith("A2,") else ",,,")
        for line in accounts[1:]]]) + "\n"
    write_registers(ws, {**TOWN, "organizations": orgs_text, "accounts": accounts_text,
                         "building_services": BUILDING_SERVICES + "B1,capital_repair,FKR,2015-01-01,\n"})
    ingest(ws)
    assert not list(ws.rejects.glob("*.csv")), [p.read_text() for p in ws.rejects.glob("*.csv")]
    run_close(ws, "2026-08")
    path = home / "payments.csv"
    path.write_text(PAYMENTS, encoding="utf-8")
    import_payment_file(ws, path, today=date(2026, 9, 30))
    write_registers(ws, {"residents": RESIDENTS + "R5,A3,Сидорова Ольга Петровна,1972-01-01,permanent,2026-08-01,\n"})
    ingest(ws)
    run_close(ws, "2026-09")
    run_close(ws, "2026-10")
    return ws


@pytest.fixture(scope="module")
def town4(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return collecting_town(tmp_path_factory.mktemp("court") / "home")


pdf_text = pdf_layout_text


def rub(kop: int) -> str:
    return format_rub(kop).replace("\u00a0", " ")


def sealed(ws: Workspace, table: str) -> pl.DataFrame:
    return pl.concat([read_internal(ws.period_dir(p), table) for p in PERIODS], how="diagonal_relaxed")


def expected_buckets(ws: Workspace, account: str, supplier: str) -> dict[str, tuple[int, int]]:
    """charge period → (charged + recalculated, recalculated), from the sealed tables."""
    mine = (pl.col("account_id") == account) & (pl.col("supplier_id") == supplier)
    out: dict[str, list[int]] = {}
    for r in sealed(ws, "charges").filter(mine).iter_rows(named=True):
        out.setdefault(r["period"], [0, 0])[0] += r["amount_kop"]
    for r in sealed(ws, "recalculations").filter(mine).iter_rows(named=True):
        # None of these is a heating correction: the money goes back to its origin period.
        assert r["kind"] != "true_up"
        out.setdefault(r["origin_period"], [0, 0])[0] += r["amount_kop"]
        out[r["origin_period"]][1] += r["amount_kop"]
    return {p: (a, b) for p, (a, b) in out.items()}


def test_one_supplier_of_a_multi_supplier_account(town4: Workspace, tmp_path: Path) -> None:
    assert account_suppliers(town4, "A3") == ["FKR", "TS", "UK1", "VK"]
    buckets = expected_buckets(town4, "A3", "VK")
    recalculated = buckets["2026-08"][1]
    assert recalculated == 24_807 + 19_535  # August's water and sewerage once more for the second resident
    paid = sealed(town4, "allocations").filter(
        (pl.col("account_id") == "A3") & (pl.col("supplier_id") == "VK") & pl.col("kind").is_in(PAYING_KINDS)
        & (pl.col("amount_kop") > 0))
    assert set(paid["charge_period"]) == {"2026-08"} and set(paid["paid_on"]) == {date(2026, 9, 6)}
    vk_paid = int(paid["amount_kop"].sum())
    # The penalty of each month, recomputed from the sealed money alone.
    policy = load_policy(town4.rules, rate_basis="calc_date")
    penalty = sum(
        bucket_penalty(amount, Period.parse(p), policy.due_date(Period.parse(p)), UNTIL,
                       [(date(2026, 9, 6), vk_paid)] if p == "2026-08" else [], policy).penalty_kop
        for p, (amount, _) in buckets.items())

    cs = court_statement(town4, "A3", UNTIL, "VK")
    assert cs.supplier_id == "VK" and cs.periods == PERIODS
    assert cs.debt_total_kop == sum(a for a, _ in buckets.values()) - vk_paid == 271_535
    assert cs.penalty_total_kop == penalty
    assert (cs.debt_kop, cs.penalty_kop) == (cs.debt_total_kop, cs.penalty_total_kop)  # all within 3 years
    # The principal is the ledger's: what the last close left open for VK (its penalty items aside).
    debts = read_internal(town4.period_dir(PERIODS[-1]), "debts").filter(
        (pl.col("account_id") == "A3") & (pl.col("supplier_id") == "VK") & (pl.col("service_id") != "penalty"))
    assert int(debts["outstanding_kop"].sum()) == cs.debt_total_kop

    pdf, xlsx = account_statement(town4, "A3", UNTIL, tmp_path, supplier_id="VK")
    assert pdf.name == "A3-VK-penalty-2027-03-31.pdf" and xlsx.exists()
    text = pdf_text(pdf)
    assert "Взыскатель: АО «Водоканал»" in text and f"ОГРН {VK_OGRN}" in text
    assert "р/с 40702810500000000002" in text
    assert "Должник: Сидоров Пётр Ильич" in text and "ул. Ленина, д. 1, кв. 3" in text
    assert f"Дата рождения: {UNKNOWN}" in text
    # Only VK's money: no other supplier, no code instead of a name.
    for other in ("УК Дом", "Теплосеть", "Фонд капремонта", "Отопление", "Содержание жилого", "капитальный"):
        assert other not in text
    assert not re.search(r"поставщик (VK|fkr|FKR)\b", text)
    assert "Холодное водоснабжение, Водоотведение" in text
    # The recalculation is in August's debt, said so.
    assert f"перерасчёт {rub(recalculated)} ₽, итого к оплате {rub(buckets['2026-08'][0])} ₽" in text
    assert rub(cs.debt_total_kop) in text and rub(cs.penalty_total_kop) in text
    # The moratorium windows once each.
    assert text.count("06.04.2020–31.12.2020") == 1 and text.count("01.04.2022–01.10.2022") == 1
    assert "ч.14.1" not in text and "с 91-го дня 1/130" in text


def test_capital_repair_is_described_as_computed(town4: Workspace) -> None:
    cs = court_statement(town4, "A3", UNTIL, "FKR")
    assert "ст.155 ч.14.1" in cs.html
    assert "с 31-го дня 1/300 ставки (ступени 1/130 нет)" in cs.html
    assert "1/130" not in cs.html.replace("ступени 1/130 нет", "")
    assert "Взнос на капитальный ремонт" in cs.html and "Водоканал" not in cs.html


def test_a_statement_is_one_claimants(town4: Workspace, tmp_path: Path) -> None:
    with pytest.raises(BillingError, match="на одного взыскателя — укажите --supplier"):
        account_statement(town4, "A3", UNTIL, tmp_path)
    with pytest.raises(BillingError, match="нет начислений поставщика XX"):
        court_statement(town4, "A3", UNTIL, "XX")
    files = account_statements(town4, "A3", UNTIL, tmp_path)
    assert [f.supplier_id for f in files] == ["FKR", "TS", "UK1", "VK"]
    assert all(f.pdf.name.startswith(f"A3-{f.supplier_id}-penalty-") for f in files)
    res = CliRunner().invoke(app, ["statement", "A3", "--until", "31.03.2027", "--out", str(tmp_path / "cli"),
                                   "--home", str(town4.home)])
    assert res.exit_code == 0, res.output
    assert "Долги нескольким поставщикам (FKR, TS, UK1, VK)" in res.output
    assert len(list((tmp_path / "cli").glob("A3-*-penalty-2027-03-31.pdf"))) == 4
    res = CliRunner().invoke(app, ["statement", "A3", "--until", "31.03.2027", "--supplier", "TS",
                                   "--out", str(tmp_path / "ts"), "--home", str(town4.home)])
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "ts").glob("*.pdf")] == ["A3-TS-penalty-2027-03-31.pdf"]


def test_parties_from_the_sealed_snapshot(town4: Workspace) -> None:
    regs = sealed_registers(town4)
    known = debtor(regs, "A2")
    assert known.lines() == [
        "Петрова Анна Сергеевна",
        "Адрес (место жительства): г. Энск, ул. Ленина, д. 1, кв. 2",
        "Дата рождения: 01.01.1990; место рождения: г. Энск",
        "Идентификатор (СНИЛС, ИНН, паспорт): СНИЛС 112-233-445 95",
    ]
    unknown = debtor(regs, "A3").lines()
    assert unknown[2] == f"Дата рождения: {UNKNOWN}; место рождения: {UNKNOWN}"
    assert unknown[3] == f"Идентификатор (СНИЛС, ИНН, паспорт): {UNKNOWN}"
    fund = creditor(regs, "FKR")
    assert fund.lines()[:3] == ["НКО «Фонд капремонта»", "Адрес: г. Энск, ул. Фондовая, д. 2",
                                "ИНН 7707083893, КПП 770701001"]
    assert fund.bank == ("р/с 40703810400000000004 в ПАО Сбербанк, БИК 044525225, "
                         "к/с 30101810400000000225")
    with pytest.raises(BillingError, match="нет строки организации «NOPE»"):
        creditor(regs, "NOPE")
