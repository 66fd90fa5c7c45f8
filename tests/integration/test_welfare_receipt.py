"""The welfare body's amounts in the ЕПД's benefits column, read back from the PDF's text layer:
as information (the default) and deducted from the amount to pay (``[receipts] benefits = "discount"``).

One close of the three-flat town (without its own rendering: the receipts are rebuilt from the
sealed tables as ``billing receipts print`` rebuilds them, through the same
``workspace_receipts``): A1 gets an ЕДК for cold water and a subsidy for all services.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.app import run_close
from pipeline.ingest.registers import ingest
from pipeline.ingest.welfare import import_welfare_file
from pipeline.money import format_rub
from pipeline.render.qr import parse_payload
from pipeline.render.receipts import Receipt, amount_in_words, render_pdf
from pipeline.render.reprint import sealed_receipts
from pipeline.sealed import read_internal
from pipeline.workspace import Workspace
from tests.integration.test_receipt_form import _text

ANSWER = """\
Период;Лицевой счёт;Код гражданина;Услуга;Сумма ЕДК;Сумма субсидии
08.2026;A1;R1;cold_water;150,25;
08.2026;A1;;;;100,00
"""
EDK, SUBSIDY = 15025, 10000


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    from pipeline.workspace import init_workspace
    from tests.conftest import TOWN, write_registers

    ws = init_workspace(tmp_path_factory.mktemp("welfare") / "home")
    write_registers(ws, TOWN)
    ingest(ws)
    answer = ws.home / "uszn.csv"
    answer.write_bytes(ANSWER.encode("cp1251"))
    assert import_welfare_file(ws, answer).accepted == 2
    run_close(ws, "2026-08", receipts=False)
    return ws


def _rub(kop: int) -> str:
    return format_rub(kop).replace("\u00a0", " ")


def _closing(ws: Workspace, account: str) -> int:
    balances = read_internal(ws.period_dir("2026-08"), "balances").filter(pl.col("account_id") == account)
    return int(balances["closing_kop"].sum())


def _receipts(ws: Workspace, mode: str) -> dict[str, Receipt]:
    settings = ws.settings_path
    original = settings.read_text(encoding="utf-8")
    settings.write_text(original.replace('benefits = "info"', f'benefits = "{mode}"'),
                        encoding="utf-8")
    try:
        return {r.account_id: r for r in sealed_receipts(ws, "2026-08")}
    finally:
        settings.write_text(original, encoding="utf-8")


def _pdf_text(receipt: Receipt, folder: Path) -> str:
    pdf = folder / f"{receipt.account_id}.pdf"
    render_pdf(receipt, pdf)
    return _text(pdf)


def test_information_mode_shows_the_benefits_and_leaves_the_total(closed: Workspace, tmp_path: Path) -> None:
    receipts = _receipts(closed, "info")
    assert receipts["A1"].benefits == EDK + SUBSIDY and receipts["A1"].discount == 0
    text = _pdf_text(receipts["A1"], tmp_path)
    assert "Льготы, субси" in text  # the column's header
    assert _rub(EDK) in text and "Льготы, субсидии на все услуги" in text and _rub(SUBSIDY) in text
    assert (f"Льготы и субсидии по ответу органа соцзащиты за август 2026 г.: ЕДК {_rub(EDK)} ₽, "
            f"субсидия {_rub(SUBSIDY)} ₽ — справочно") in text
    closing = _closing(closed, "A1")
    assert f"Итого к оплате: {_rub(closing)} ₽" in text
    # No answer for A2: no benefits line.
    assert receipts["A2"].benefits == 0 and not receipts["A2"].benefits_note


def test_discount_mode_deducts_them_to_the_kopeck(closed: Workspace, tmp_path: Path) -> None:
    from tests.render.test_qr import decoded_codes

    receipts = _receipts(closed, "discount")
    a1 = receipts["A1"]
    lines = sum(ln.amount + ln.recalculated for ln in a1.lines)
    assert a1.opening == 0 and a1.paid == 0  # the first period: the closing is the lines
    assert (a1.benefits, a1.discount) == (EDK + SUBSIDY, EDK + SUBSIDY)
    assert a1.to_pay == lines - EDK - SUBSIDY == _closing(closed, "A1") - EDK - SUBSIDY
    assert sum(p.to_pay for p in a1.payees) == a1.to_pay
    # The water's ЕДК comes off the water supplier's part.
    water = next(p for p in a1.payees if p.org_id == "VK")
    assert water.discount >= EDK
    assert receipts["A2"].discount == 0 and receipts["A2"].to_pay == _closing(closed, "A2")

    pdf = tmp_path / "A1.pdf"
    render_pdf(a1, pdf)
    text = _text(pdf)
    assert f"Итого к оплате: {_rub(a1.to_pay)} ₽" in text
    assert amount_in_words(a1.to_pay) in text
    assert "вычтены из" in text and f"-{_rub(SUBSIDY)}" in text
    assert f"Всего за период {_rub(lines)} {_rub(EDK + SUBSIDY)} {_rub(a1.to_pay)}" in text
    sums = sorted(int(parse_payload(c).get("sum", "0")) for c in decoded_codes(pdf))
    assert sums == sorted(p.to_pay for p in a1.payees if p.to_pay)
