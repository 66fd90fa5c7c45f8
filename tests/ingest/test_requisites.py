"""Payee requisites: a wrong ИНН, КПП, БИК or account never reaches a receipt."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.ingest.registers import ingest, load_store
from pipeline.ingest.requisites import account_problem, bik_problem, inn_problem, kpp_problem
from pipeline.workspace import Workspace
from tests.conftest import write_registers


@pytest.mark.parametrize(("inn", "reason"), [
    ("7707083893", None),                     # ПАО Сбербанк
    ("500100732259", None),                   # 12 digits, both check digits right
    ("7707083890", "неверное контрольное число ИНН"),
    ("500100732250", "неверное контрольное число ИНН"),
    ("770708389", "в ИНН должно быть 10 цифр (организация) или 12 (предприниматель)"),
    ("77070838 93", "ИНН должен состоять из цифр"),
])
def test_inn(inn: str, reason: str | None) -> None:
    assert inn_problem(inn) == reason


@pytest.mark.parametrize(("kpp", "ok"), [("770701001", True), ("7707AB001", True),
                                         ("77070100", False), ("7707ab001", False)])
def test_kpp(kpp: str, ok: bool) -> None:
    assert (kpp_problem(kpp) is None) is ok


@pytest.mark.parametrize(("bik", "ok"), [("044525225", True), ("045004711", True),
                                         ("44525225", False), ("144525225", False)])
def test_bik(bik: str, ok: bool) -> None:
    assert (bik_problem(bik) is None) is ok


@pytest.mark.parametrize(("account", "bik", "corr", "ok"), [
    ("40702810200000000001", "044525225", False, True),
    ("40702810000000000001", "044525225", False, False),  # one digit of the key off
    ("30101810400000000225", "044525225", True, True),    # Сбербанк's correspondent account
    ("30101810500000000225", "044525225", True, False),
    ("40702810400000000225", "044525225", True, False),   # not a 301… account
    ("40702810036387797186", "045004711", False, True),
    ("0310064300000001", "014525988", False, False),      # too short
    ("03100643000000017300", "014525988", False, True),   # treasury: length only
    ("40702810200000000001", None, False, False),         # no БИК to check against
])
def test_account_key(account: str, bik: str | None, corr: bool, ok: bool) -> None:
    assert (account_problem(account, bik, corr=corr) is None) is ok


def test_period_form() -> None:
    from pipeline.ingest.requisites import period_problem

    assert period_problem("2026-09") is None
    assert period_problem("2026-9") == period_problem("2026-13") == "период — ГГГГ-ММ, например 2026-09"


ORGS = """\
org_id,name,inn,kpp,role,bank_name,bik,account,corr_account,address,phone
UK1,ООО «УК Дом»,7707083893,770701001,management,ПАО Сбербанк,044525225,40702810200000000001,30101810400000000225,г. Энск,+7 000
VK,АО «Водоканал»,7707083890,770701001,supplier,ПАО Сбербанк,044525225,40702810500000000002,30101810400000000225,г. Энск,+7 000
TS,АО «Теплосеть»,7707083893,770701001,supplier,ПАО Сбербанк,044525225,40702810000000000003,30101810400000000225,г. Энск,+7 000
"""


def test_an_organization_with_a_wrong_requisite_is_refused_with_the_reason(town: Workspace) -> None:
    write_registers(town, {"organizations": ORGS})
    result = ingest(town)
    rejects = pl.read_csv(result.rejects_path, separator=";", infer_schema=False)
    orgs = rejects.filter(pl.col("file") == "organizations.csv")
    by_cell = {(int(r["row"]), r["column"]): (r["value"], r["reason"]) for r in orgs.iter_rows(named=True)}
    assert by_cell == {
        (3, "inn"): ("7707083890", "неверное контрольное число ИНН"),
        (4, "account"): ("40702810000000000003", "контрольный ключ счёта не сходится с БИК 044525225"),
    }
    assert load_store(town)["organizations"]["org_id"].to_list() == ["UK1"]
