"""Benefits given as a discount reach the exports: the bank and agent registers, the post's
register and the ГИС ЖКХ payment documents ask exactly the receipt's «к оплате», to the kopeck.

The three-flat town closed for 2026-08 with ``[receipts] benefits = "discount"``:

* A1: an ЕДК of 150,25 ₽ for cold water and a subsidy of 100,00 ₽ for all services;
* A2: a subsidy of 100 000,00 ₽ — more than it owes: every payee's part comes to 0;
* A3: no welfare amount.

The receipts are rebuilt from the sealed tables (``sealed_receipts``, as ``billing receipts
print`` does: the same ``workspace_receipts`` as the close), so the expected figures are the
receipt's own ``Receipt.to_pay`` and ``Payee.to_pay`` — what the QR codes' ``Sum`` carries
(tests/integration/test_welfare_receipt.py reads them back from the PDF). In ``info`` mode
the same exports carry the undiscounted balances.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import polars as pl
import pytest

from pipeline.app import run_close
from pipeline.export import banks, gis, post
from pipeline.export.amounts import load_discounts
from pipeline.export.gis_schema import schema
from pipeline.ingest.registers import ingest
from pipeline.ingest.welfare import import_welfare_file
from pipeline.render.receipts import Receipt
from pipeline.render.reprint import sealed_receipts
from pipeline.sealed import read_internal
from pipeline.workspace import Workspace
from tests.conftest import TOWN, write_registers
from tests.export.test_gis import GIS, NS

PERIOD = "2026-08"
ANSWER = """\
Период;Лицевой счёт;Код гражданина;Услуга;Сумма ЕДК;Сумма субсидии
08.2026;A1;R1;cold_water;150,25;
08.2026;A1;;;;100,00
08.2026;A2;;;;100000,00
"""
EDK, SUBSIDY = 15025, 10000
GUIDS = {f"22222222-2222-4222-8222-22222222222{n}": f"A{n}" for n in (1, 2, 3)}
GIS_IDS = "account_id,service_id,els,izhku,from,account_guid\n" + "".join(
    f"{acc},,75da53331{acc[1]},,2020-01-01,{guid}\n" for guid, acc in GUIDS.items())
ALL = ["cold_water", "sewerage", "maintenance", "heating"]
AGENTS = f"""
[[banks.agents]]
code = "sber"
org_id = "UK1"

[[banks.agents]]
code = "kassa"
layout = "csv"

[[banks.agents]]
code = "water"
file_name = "water_{{period}}.txt"
services = ["cold_water"]
columns = ["account", "period", "services", "amount"]

[[banks.agents]]
code = "all"
file_name = "all_{{period}}.txt"
services = {ALL!r}
columns = ["account", "period", "services", "amount"]
""".replace("'", '"')


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    from pipeline.workspace import init_workspace

    ws = init_workspace(tmp_path_factory.mktemp("discount") / "home")
    write_registers(ws, {**TOWN, **GIS, "gis_ids": GIS_IDS})
    assert ingest(ws).total_rejected == 0
    settings = ws.settings_path.read_text(encoding="utf-8")
    assert 'benefits = "info"' in settings
    ws.settings_path.write_text(settings.replace('benefits = "info"', 'benefits = "discount"') + AGENTS,
                                encoding="utf-8")
    answer = ws.home / "uszn.csv"
    answer.write_bytes(ANSWER.encode("cp1251"))
    assert import_welfare_file(ws, answer).accepted == 3
    run_close(ws, PERIOD, receipts=False)
    return ws


@contextmanager
def _mode(ws: Workspace, mode: str) -> Iterator[None]:
    original = ws.settings_path.read_text(encoding="utf-8")
    ws.settings_path.write_text(original.replace('benefits = "discount"', f'benefits = "{mode}"'),
                                encoding="utf-8")
    try:
        yield
    finally:
        ws.settings_path.write_text(original, encoding="utf-8")


def _receipts(ws: Workspace) -> dict[str, Receipt]:
    return {r.account_id: r for r in sealed_receipts(ws, PERIOD)}


def _kop(text: str) -> int:
    value = Decimal(text.replace(",", "."))
    assert value == value.quantize(Decimal("0.01"))
    return int(value * 100)


def _bank_amounts(ws: Workspace) -> dict[str, dict[str, int]]:
    """agent → account → the amount its register asks (kopecks); footers checked."""
    out: dict[str, dict[str, int]] = {}
    for f in banks.build_files(ws, PERIOD):
        agent = f.name.split("/")[0]
        if f.name.endswith("_control.csv"):
            continue
        if agent == "kassa":
            rows = list(csv.DictReader(io.StringIO(f.data.decode("utf-8"))))
            amounts = {r["account_id"]: _kop(r["amount"]) for r in rows}
        else:
            lines = [ln.split(";") for ln in f.data.decode("cp1251").removesuffix("\r\n").split("\r\n")]
            body, footer = lines[:-1], lines[-1]
            column = 5 if agent == "sber" else -1
            amounts = {ln[0]: _kop(ln[column]) for ln in body}
            assert footer == [f"={len(body)}", _rub(sum(amounts.values()))]
        assert f.total_kop == sum(amounts.values()) and f.rows == len(amounts)
        out[agent] = amounts
    return out


def _rub(kop: int) -> str:
    return f"{kop // 100},{kop % 100:02d}"


def _post_amounts(ws: Workspace) -> dict[str, int]:
    csv_file = next(f for f in post.build_files(ws, PERIOD) if f.name.endswith(".csv"))
    rows = list(csv.reader(io.StringIO(csv_file.data.decode("utf-8-sig")), delimiter=";"))
    header, body, footer = rows[0], rows[1:-1], rows[-1]
    acc, pay = header.index("Лицевой счёт"), header.index("К оплате, руб.")
    amounts = {r[acc]: _kop(r[pay]) for r in body}
    assert _kop(footer[pay]) == sum(amounts.values()) == csv_file.total_kop
    return amounts


def _gis_docs(ws: Workspace) -> dict[str, ET.Element]:
    docs: dict[str, ET.Element] = {}
    for f in gis.build_files(ws, PERIOD):
        if f.name.startswith("pd/"):
            assert schema("bills").is_valid(f.data)  # the vendored 16.3.0.0 schemas
            for d in ET.fromstring(f.data).findall("bills:PaymentDocument", NS):
                guid = d.findtext("ab:AccountGuid", namespaces=NS)
                assert guid is not None
                docs[GUIDS[guid]] = d
    return docs


def _money(elem: ET.Element, path: str) -> int:
    text = elem.findtext(path, namespaces=NS)
    return 0 if text is None else _kop(text)


def _closing(ws: Workspace) -> dict[str, int]:
    bal = read_internal(ws.period_dir(PERIOD), "balances").group_by("account_id").agg(pl.col("closing_kop").sum())
    return dict(bal.iter_rows())


def _service_closing(ws: Workspace, service: str) -> dict[str, int]:
    sb = read_internal(ws.period_dir(PERIOD), "service_balances").filter(pl.col("service_id") == service)
    return dict(sb.group_by("account_id").agg(pl.col("closing_kop").sum()).iter_rows())


def test_the_receipts_deduct_the_benefits(closed: Workspace) -> None:
    receipts = _receipts(closed)
    closing = _closing(closed)
    a1, a2, a3 = receipts["A1"], receipts["A2"], receipts["A3"]
    assert a1.discount == EDK + SUBSIDY and a1.to_pay == closing["A1"] - EDK - SUBSIDY > 0
    assert a2.discount == closing["A2"] > 0 and a2.to_pay == 0  # capped at the debt
    assert a3.discount == 0 and a3.to_pay == closing["A3"] > 0


def test_the_payees_discounts_are_the_receipts(closed: Workspace) -> None:
    """One rule: pipeline.export.amounts gives every payee the discount the receipt gives it."""
    receipts = _receipts(closed)
    found = {(r["account_id"], r["supplier_id"]): r["discount_kop"]
             for r in load_discounts(closed, PERIOD).payees.iter_rows(named=True)}
    expected = {(r.account_id, p.org_id): p.discount for r in receipts.values() for p in r.payees if p.discount}
    assert found == expected and sum(found.values()) == sum(r.discount for r in receipts.values())


def test_bank_registers_ask_the_receipts_amount(closed: Workspace) -> None:
    receipts = _receipts(closed)
    amounts = _bank_amounts(closed)
    to_pay = {acc: r.to_pay for acc, r in receipts.items()}
    assert amounts["sber"] == amounts["kassa"] == amounts["all"] == to_pay
    # A register of cold water only: the water supplier's discount, spread over its lines, falls
    # on cold water first (its ЕДК) and then on its lines in print order — cold water asks more,
    # so it carries the supplier's whole discount (the subsidy for all services went to the
    # first payee in print order, the water supplier).
    vk = next(p for p in receipts["A1"].payees if p.org_id == "VK")
    assert receipts["A1"].payees[0] is vk and vk.discount == EDK + SUBSIDY
    water = _service_closing(closed, "cold_water")
    assert water["A1"] > vk.discount
    assert amounts["water"]["A1"] == water["A1"] - vk.discount
    assert amounts["water"]["A2"] == 0 and amounts["water"]["A3"] == water["A3"]


def test_the_post_register_asks_the_receipts_amount(closed: Workspace) -> None:
    receipts = _receipts(closed)
    assert _post_amounts(closed) == {acc: r.to_pay for acc, r in receipts.items()}


def test_gis_documents_ask_the_receipts_amount_and_carry_the_discount(closed: Workspace) -> None:
    receipts = _receipts(closed)
    docs = _gis_docs(closed)
    assert sorted(docs) == ["A1", "A2", "A3"]
    for acc, doc in docs.items():
        r = receipts[acc]
        total = _money(doc, "bills:TotalPayableByPDWithDebtAndAdvance")
        assert total == r.to_pay, acc
        assert _money(doc, "bills:SubsidiesCompensationSocialSupport") == r.discount
        charge_infos = doc.findall("bills:ChargeInfo", NS)
        services = [next(iter(ci)) for ci in charge_infos]
        discounts = sum(_money(s, "bills:ServiceCharge/bills:MoneyDiscount") for s in services)
        assert discounts == r.discount  # every payee here has lines: spread over them in full
        by_charge = sum(_money(s, "bills:TotalPayable") for s in services)
        assert by_charge == _money(doc, "bills:TotalPayableByChargeInfo")
        debt = _money(doc, "bills:DebtPreviousPeriods") - _money(doc, "bills:AdvanceBllingPeriod")
        assert by_charge + debt + _money(doc, "bills:TotalByPenaltiesAndCourtCosts") == total
        # per payee: what its part of the receipt (and its QR code) asks
        details = doc.findall("bills:DetailsPaymentInformation", NS)
        asked = sorted(_money(d, "bills:TotalPayableWithDebtAndAdvance") for d in details)
        assert asked == sorted(p.to_pay for p in r.payees if p.org_id)
    a1 = receipts["A1"]
    water = next(ci for ci in docs["A1"].findall("bills:ChargeInfo", NS)
                 if next(iter(ci)).findtext("bills:ServiceType/nsi:Code", namespaces=NS) == "1.1")
    # the water supplier's discount (ЕДК and subsidy) on its first line, cold water
    assert _money(next(iter(water)), "bills:ServiceCharge/bills:MoneyDiscount") == a1.payees[0].discount
    assert a1.payees[0].discount == EDK + SUBSIDY


def test_information_mode_keeps_every_export_undiscounted(closed: Workspace) -> None:
    with _mode(closed, "info"):
        receipts = _receipts(closed)
        closing = _closing(closed)
        assert {a: r.to_pay for a, r in receipts.items()} == {a: max(c, 0) for a, c in closing.items()}
        amounts = _bank_amounts(closed)
        post_amounts = _post_amounts(closed)
        docs = _gis_docs(closed)
    to_pay = {a: max(c, 0) for a, c in closing.items()}
    assert amounts["sber"] == amounts["kassa"] == amounts["all"] == post_amounts == to_pay
    assert amounts["water"] == {a: max(c, 0) for a, c in _service_closing(closed, "cold_water").items()}
    for acc, doc in docs.items():
        assert _money(doc, "bills:TotalPayableByPDWithDebtAndAdvance") == closing[acc]
        assert doc.find("bills:SubsidiesCompensationSocialSupport", NS) is None
        assert not doc.findall("bills:ChargeInfo/*/bills:ServiceCharge", NS)
