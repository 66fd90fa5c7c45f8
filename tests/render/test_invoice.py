"""Invoices and acts for organization payers: VAT rules, per-line VAT, HTML and PDF."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.errors import BillingError
from pipeline.render import invoice as invoice_mod
from pipeline.render.invoice import (
    DEFAULT_VAT_RATES,
    Invoice,
    InvoiceLine,
    build_invoices,
    invoices_for,
    line_vat,
    load_vat_rates,
    parse_vat_rates,
    render_invoice_html,
    render_invoice_pdf,
    render_invoices,
    vat_for_lines,
    vat_rule_for,
)
from pipeline.render.receipts import UA_ELEMENTS, amount_in_words
from pipeline.workspace import Workspace

NBSP = "\u00a0"

HEADER = "supplier_id,service_id,from,rate,source\n"

RULES = HEADER + "\n".join([
    ',,2000-01-01,none,"по умолчанию"',
    ",,2026-01-01,22,общая ставка с 2026",
    ",heating,2020-01-01,20,услуга",
    "voda,,2019-01-01,10,поставщик",
    "voda,,2026-01-01,20 %,поставщик позже",
    "voda,cold_water,2018-01-01,0,поставщик и услуга",
    "teplo,,2026-02-01,10,с февраля",
]) + "\n"

ORGS: dict[str, dict[str, str | None]] = {
    "voda": {"org_id": "voda", "name": "АО «Водоканал»", "inn": "7701234567", "kpp": "770101001",
             "address": "г. Город, ул. Водная, 1", "bank_name": "ПАО Сбербанк", "bik": "044525225",
             "account": "40702810900000000001", "corr_account": "30101810400000000225"},
    "teplo": {"org_id": "teplo", "name": "ООО «Теплосеть»", "inn": "7707654321", "kpp": None,
              "address": None, "bank_name": "АО «Банк»", "bik": "044525999",
              "account": "40702810900000000002", "corr_account": "30101810400000000999"},
}

ACCOUNT: dict[str, Any] = {"account_id": "9000000001", "payer_name": "ООО «Ромашка»", "payer_inn": "7712345678",
           "payer_kpp": "771201001", "payer_address": "г. Город, ул. Цветочная, 5, пом. 1"}


def _rates() -> pl.DataFrame:
    return parse_vat_rates(RULES)


def _line(service_id: str, amount: int, supplier: str = "voda", name: str | None = None,
          volume: str | None = "1", price: str | None = None) -> InvoiceLine:
    return InvoiceLine(
        service_id=service_id, service_name=name or f"Услуга {service_id}", unit="м³",
        volume=None if volume is None else Decimal(volume),
        price=Decimal(price) if price else Decimal(amount) / 100, amount_kop=amount, supplier_id=supplier)


# --------------------------------------------------------------------------- rule selection


@pytest.mark.parametrize(
    ("supplier", "service", "on", "rate"),
    [
        ("voda", "cold_water", date(2026, 3, 31), 0),   # supplier+service beats newer supplier rows
        ("voda", "hot_water", date(2026, 3, 31), 20),   # supplier: latest from
        ("voda", "hot_water", date(2025, 12, 31), 10),  # supplier: the 2026 row not yet in force
        ("teplo", "heating", date(2026, 3, 31), 10),    # supplier beats service
        ("teplo", "heating", date(2026, 1, 31), 20),    # teplo's row starts in February: service row
        ("other", "heating", date(2026, 3, 31), 20),    # service beats any
        ("other", "waste", date(2026, 3, 31), 22),      # any: latest from
        ("other", "waste", date(2025, 12, 31), None),   # any: «Без НДС» before 2026
    ],
)
def test_most_specific_rule_then_latest_from(supplier: str, service: str, on: date, rate: int | None) -> None:
    assert vat_rule_for(supplier, service, on, _rates())["rate_pct"] == rate


def test_period_uses_its_last_day() -> None:
    rates = parse_vat_rates(HEADER + ",,2000-01-01,none,\n,,2026-01-31,20,\n")
    (jan,) = vat_for_lines([_line("waste", 120)], "2026-01", rates)
    (dec,) = vat_for_lines([_line("waste", 120)], "2025-12", rates)
    assert (jan.rate, jan.vat, jan.source_row) == (20, 20, 3)
    assert (dec.rate, dec.vat, dec.source_row) == (None, 0, 2)


def test_no_applicable_rule_is_refused() -> None:
    rates = parse_vat_rates(HEADER + "voda,,2026-01-01,20,\n")
    with pytest.raises(BillingError, match="нет правила НДС для поставщика «teplo»"):
        vat_for_lines([_line("heating", 100, "teplo")], "2026-03", rates)
    with pytest.raises(BillingError, match="нет правила НДС"):
        vat_for_lines([_line("heating", 100, "voda")], "2025-12", rates)


def test_absent_file_is_the_default_and_the_shipped_default_taxes_nothing(tmp_path: Path) -> None:
    assert load_vat_rates(tmp_path).equals(DEFAULT_VAT_RATES)
    shipped = load_vat_rates(Path(invoice_mod.__file__).resolve().parents[2] / "rules" / "defaults")
    assert shipped.height == 1
    assert shipped.row(0, named=True) | {"source": ""} == {
        "supplier_id": None, "service_id": None, "from": date(2000, 1, 1), "rate": "none",
        "rate_pct": None, "source": "", "source_row": 2}


# --------------------------------------------------------------------------- bad rows


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (",,2026-01-01,18,\n", "vat_rates.csv, строка 2, столбец «rate»: ставка НДС «18» не допускается"),
        (",,2000-01-01,none,\nvoda,,2026-01-01,двадцать,\n", "vat_rates.csv, строка 3, столбец «rate»"),
        (",,2026-01-01,,\n", "vat_rates.csv, строка 2, столбец «rate»"),
        (",,01.01.2026,20,\n", "vat_rates.csv, строка 2, столбец «from»: нужна дата в виде ГГГГ-ММ-ДД"),
        (",,2026-13-01,20,\n", "vat_rates.csv, строка 2, столбец «from»"),
        (",,20260101,20,\n", "vat_rates.csv, строка 2, столбец «from»"),
        (",,2026-01-01,20,\n,,2026-01-01,none,\n", "vat_rates.csv, строка 3, столбец «from»: повтор строки 2"),
        (",,2026-01-01,20,с 2026, по закону\n", "vat_rates.csv, строка 2: больше полей, чем в заголовке"),
    ],
)
def test_bad_rows_are_refused_naming_file_row_and_column(tmp_path: Path, body: str, where: str) -> None:
    (tmp_path / "vat_rates.csv").write_text(HEADER + body, encoding="utf-8")
    with pytest.raises(BillingError) as err:
        load_vat_rates(tmp_path)
    assert str(err.value).startswith(where), str(err.value)


def test_missing_column_is_refused(tmp_path: Path) -> None:
    (tmp_path / "vat_rates.csv").write_text("supplier_id;service_id;from;source\n;;2026-01-01;x\n",
                                            encoding="cp1251")
    with pytest.raises(BillingError, match=r"vat_rates.csv, строка 1: нет столбца «rate»"):
        load_vat_rates(tmp_path)


def test_semicolons_cp1251_and_blank_lines_are_read(tmp_path: Path) -> None:
    text = "supplier_id;service_id;from;rate;source\n;;2000-01-01;Без НДС;УСН\n\nvoda;;2026-01-01;22%;ст.164\n"
    (tmp_path / "vat_rates.csv").write_bytes(text.encode("cp1251"))
    rates = load_vat_rates(tmp_path)
    assert rates.select("supplier_id", "rate", "rate_pct", "source_row").rows() == [
        (None, "none", None, 2), ("voda", "22", 22, 4)]


# --------------------------------------------------------------------------- VAT arithmetic


def test_line_vat_is_included_in_the_price_and_rounded_half_up() -> None:
    assert line_vat(12_000, 20) == 2_000        # 120,00 incl. 20 % → 20,00
    assert line_vat(10_000, 22) == 1_803        # 100,00 × 22/122 = 18,0327…
    assert line_vat(61, 22) == 11               # 0,61 × 22/122 = 0,11 exactly
    assert line_vat(3, 20) == 1                 # 0,5 kopeck rounds up
    assert line_vat(-3, 20) == -1               # a reduction: half away from zero
    assert line_vat(10_000, 10) == 909
    assert line_vat(10_000, 0) == 0
    assert line_vat(10_000, None) == 0


def test_vat_is_rounded_per_line_and_totals_are_sums_of_lines() -> None:
    lines = [_line("hot_water", 100, name=f"Услуга {n}") for n in range(3)]
    (inv,) = invoices_for(ACCOUNT, lines, ORGS, "2026-03", None, _rates())
    assert [v.vat for v in inv.vat] == [17, 17, 17]         # 1,00 × 20/120 = 0,1667 → 0,17 each
    assert inv.vat_total == 51 == sum(v.vat for v in inv.vat)
    assert line_vat(inv.total, 20) == 50                    # rounding the total would give 0,50
    assert inv.total == 300 == sum(ln.amount_kop for ln in inv.lines)
    assert inv.vat_by_rate == {20: 51}
    html = render_invoice_html(inv)
    assert f"В том числе НДС (20{NBSP}%):</td><td class=\"n\">0,51</td>" in html
    assert "<td>Итого:</td><td class=\"n\">3,00</td>" in html


def test_mixed_rates_print_one_vat_line_per_rate_and_the_untaxed_sum() -> None:
    rates = parse_vat_rates(HEADER + ",,2000-01-01,none,\nvoda,hot_water,2026-01-01,20,\n"
                                     "voda,sewerage,2026-01-01,10,\n")
    lines = [_line("hot_water", 12_345), _line("sewerage", 5_555), _line("cold_water", 1_000),
             _line("hot_water", 101)]
    (inv,) = invoices_for(ACCOUNT, lines, ORGS, "2026-03", None, rates)
    assert [(v.rate, v.vat) for v in inv.vat] == [(20, 2_058), (10, 505), (None, 0), (20, 17)]
    assert inv.vat_by_rate == {20: 2_075, 10: 505}
    assert inv.vat_total == 2_580 and inv.untaxed == 1_000 and inv.total == 19_001
    html = render_invoice_html(inv)
    assert html.index(f"НДС (20{NBSP}%)") < html.index(f"НДС (10{NBSP}%)")
    assert ">20,75<" in html and ">5,05<" in html
    assert "без налога (НДС), на сумму:</td><td class=\"n\">10,00<" in html


def test_without_vat_prints_bez_naloga() -> None:
    (inv,) = invoices_for(ACCOUNT, [_line("hot_water", 12_000)], ORGS, "2026-03", None, DEFAULT_VAT_RATES)
    assert inv.vat == (invoice_mod.LineVat(None, 0, 0),)
    html = render_invoice_html(inv)
    assert html.count("Без налога (НДС)") == 2  # invoice and act
    assert "В том числе НДС" not in html


# --------------------------------------------------------------------------- builder


def test_one_invoice_per_seller_numbered_by_position() -> None:
    lines = [_line("cold_water", 5_228, "voda"), _line("heating", 278_155, "teplo"),
             _line("hot_water", 24_801, "voda")]
    invoices = invoices_for(ACCOUNT, lines, ORGS, "2026-03", date(2026, 4, 15), _rates())
    assert [(i.number, i.seller.org_id, i.total, i.to_pay) for i in invoices] == [
        ("9000000001-202603-1", "voda", 30_029, 30_029),
        ("9000000001-202603-2", "teplo", 278_155, 278_155),
    ]
    voda, teplo = invoices
    assert [ln.service_id for ln in voda.lines] == ["cold_water", "hot_water"]
    assert [v.rate for v in voda.vat] == [0, 20]
    assert teplo.seller.kpp == "" and teplo.seller.address == ""
    assert voda.date == voda.act_date == date(2026, 3, 31)
    assert voda.buyer.inn == "7712345678" and voda.due_date == date(2026, 4, 15)


def test_amount_due_can_be_passed_and_an_advance_pays_nothing() -> None:
    lines = [_line("cold_water", 5_000, "voda"), _line("heating", 7_000, "teplo")]
    voda, teplo = invoices_for(ACCOUNT, lines, ORGS, "2026-03", None, _rates(),
                               amounts_due={"voda": 8_000, "teplo": -100}, issued=date(2026, 4, 1))
    assert (voda.to_pay, voda.total, teplo.to_pay) == (8_000, 5_000, 0)
    assert voda.date == date(2026, 4, 1) and voda.act_date == date(2026, 3, 31)
    html = render_invoice_html(voda)
    assert "Всего к оплате:</td><td class=\"n\">80,00<" in html
    assert "Всего наименований 1, на сумму 50,00 руб." in html
    assert "С учётом расчётов прошлых периодов" in html
    assert amount_in_words(8_000) in html and amount_in_words(5_000) in html  # invoice / act


def test_unknown_seller_and_line_without_service_are_refused() -> None:
    with pytest.raises(ValueError, match="поставщик «nobody» не найден в реестре организаций"):
        invoices_for(ACCOUNT, [_line("waste", 100, "nobody")], ORGS, "2026-03", None, _rates())
    with pytest.raises(ValueError, match="не указан код услуги"):
        invoices_for(ACCOUNT, [_line("", 100, "voda", name="Пени")], ORGS, "2026-03", None, _rates())


def test_invoice_refuses_misaligned_vat() -> None:
    (inv,) = invoices_for(ACCOUNT, [_line("hot_water", 100)], ORGS, "2026-03", None, _rates())
    with pytest.raises(ValueError, match="НДС указан не для каждой строки"):
        Invoice(**{**inv.__dict__, "vat": ()})


# --------------------------------------------------------------------------- HTML


def _sample() -> Invoice:
    lines = [
        _line("hot_water", 1_234_567, name="Горячее водоснабжение", volume="46.518", price="265.40"),
        _line("cold_water", 26_140, name="Холодное водоснабжение", volume="5", price="52.28"),
        _line("sewerage", 4_500, name="Абонентская плата", volume=None, price="45"),
    ]
    (inv,) = invoices_for(ACCOUNT, lines, ORGS, "2026-11", date(2026, 12, 15), _rates())
    return inv


def test_html_has_the_invoice_and_the_act() -> None:
    inv = _sample()
    html = render_invoice_html(inv)
    # 12 345,67 at 20 % → 2 057,61; cold water 0 %; sewerage (voda) 20 %: 45,00 → 7,50
    assert [v.vat for v in inv.vat] == [205_761, 0, 750]
    for text in [
        "Счёт на оплату № 9000000001-202611-1 от 30.11.2026",
        "Банк получателя", "ПАО Сбербанк", "БИК</td><td>044525225", "Сч. №</td><td rowspan=\"2\">40702810900000000001",
        "Корр. сч.</td><td>30101810400000000225", "ИНН 7701234567", "КПП 770101001", "Получатель",
        "Поставщик (исполнитель):", "АО «Водоканал», ИНН 7701234567 КПП 770101001, г. Город, ул. Водная, 1",
        "Покупатель (заказчик):", "ООО «Ромашка», ИНН 7712345678 КПП 771201001",
        "<th>№</th><th>Наименование работ, услуг</th><th>Кол-во</th><th>Ед.</th><th>Цена</th><th>Сумма</th>",
        f"<td class=\"n\">46,518</td><td class=\"c\">м³</td><td class=\"n\">265,40</td>"
        f"<td class=\"n\">12{NBSP}345,67</td>",
        "<td class=\"n\">—</td><td class=\"c\">м³</td><td class=\"n\">45,00</td><td class=\"n\">45,00</td>",
        f"Итого:</td><td class=\"n\">12{NBSP}652,07</td>",
        f"В том числе НДС (20{NBSP}%):</td><td class=\"n\">2{NBSP}065,11</td>",
        f"В том числе НДС (0{NBSP}%):</td><td class=\"n\">0,00</td>",
        f"Всего к оплате:</td><td class=\"n\">12{NBSP}652,07</td>",
        f"Всего наименований 3, на сумму 12{NBSP}652,07 руб.",
        "Двенадцать тысяч шестьсот пятьдесят два рубля 07 копеек",
        "Оплатить до 15.12.2026",
        "Акт № 9000000001-202611-1 от 30.11.2026",
        "Исполнитель:", "Заказчик:", "услуги за ноябрь 2026 г.",
        "Вышеперечисленные услуги выполнены полностью и в срок. Заказчик претензий по объёму, "
        "качеству и срокам оказания услуг не имеет.",
        "<td>Исполнитель</td><td class=\"line\">______", "<td>Заказчик</td><td class=\"line\">______",
    ]:
        assert text.replace("\"", "&#34;") in html or text in html, text
    assert html.count("Всего к оплате") == 1  # the act has no amount to pay
    assert "С учётом расчётов прошлых периодов" not in html


def test_html_escapes_and_stays_inside_the_small_ua_stylesheet() -> None:
    inv = _sample()
    bad = invoice_mod.Buyer(name="<b>ООО</b> & Ко")
    html = render_invoice_html(Invoice(**{**inv.__dict__, "buyer": bad, "due_date": None}))
    assert "&lt;b&gt;ООО&lt;/b&gt; &amp; Ко" in html
    assert "Оплатить до" not in html
    tags = set(re.findall(r"<([a-z][a-z0-9]*)", html))
    assert tags <= UA_ELEMENTS, tags - UA_ELEMENTS


# --------------------------------------------------------------------------- PDF


def test_pdf_renders_with_number_total_and_vat(tmp_path: Path) -> None:
    from pypdf import PdfReader

    inv = _sample()
    path = tmp_path / "inv.pdf"
    render_invoice_pdf(inv, path)
    reader = PdfReader(path)
    assert len(reader.pages) == 2
    pages = [" ".join((page.extract_text() or "").replace(NBSP, " ").split()) for page in reader.pages]
    first, act = pages
    assert "Счёт на оплату № 9000000001-202611-1 от 30.11.2026" in first
    assert "Всего к оплате: 12 652,07" in first
    assert "В том числе НДС (20 %): 2 065,11" in first
    assert "Акт № 9000000001-202611-1 от 30.11.2026" in act
    assert "Заказчик претензий по объёму, качеству и срокам оказания услуг не имеет." in act
    assert not list(tmp_path.glob("*.tmp"))


def test_render_invoices_writes_one_pdf_per_invoice(tmp_path: Path) -> None:
    lines = [_line("cold_water", 5_228, "voda"), _line("heating", 278_155, "teplo")]
    invoices = invoices_for(ACCOUNT, lines, ORGS, "2026-03", None, _rates())
    assert render_invoices(invoices, tmp_path / "out") == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "9000000001-202603-1.pdf", "9000000001-202603-2.pdf"]


# --------------------------------------------------------------------------- from a close


def _organization_close(town: Workspace, person: str, organization: str) -> tuple[Any, Any]:
    """``town`` with the account row starting ``person`` made the payer ``organization``, ingested
    and August computed: (inputs, result)."""
    from pipeline.close import compute, load_inputs
    from pipeline.dates import Period
    from pipeline.ingest.registers import ingest

    accounts = town.registers / "accounts.csv"
    account = person.split(",")[0]
    accounts.write_text(accounts.read_text(encoding="utf-8").replace(
        person, f"{account},{person.split(',')[1]},organization,{organization}"), encoding="utf-8")
    ingest(town)
    inputs = load_inputs(town, Period(2026, 8))
    return inputs, compute(inputs)


def test_build_invoices_from_a_close(town: Workspace) -> None:
    """A3 made an organization: one invoice per supplier of its charges, VAT by the workspace rule."""
    (town.rules / "vat_rates.csv").write_text(HEADER + ",,2000-01-01,none,\nTS,,2026-01-01,22,\n",
                                              encoding="utf-8")
    inputs, result = _organization_close(town, "A3,P3,person,Сидоров Пётр Ильич", "ООО «Сидоров и партнёры»")
    regs = inputs.registers()
    invoices = list(build_invoices(result, regs, inputs.rules.services, load_vat_rates(town.rules)))
    assert {i.account_id for i in invoices} == {"A3"}
    a3 = result.lines.filter(pl.col("account_id") == "A3")
    by_supplier = dict(a3.group_by("supplier_id").agg(pl.col("amount_kop").sum()).iter_rows())
    assert {i.seller.org_id: i.total for i in invoices} == by_supplier
    assert [i.number for i in invoices] == [f"A3-202608-{n}" for n in range(1, len(invoices) + 1)]
    assert sum(len(i.lines) for i in invoices) == a3.height
    for inv in invoices:
        assert inv.buyer.name == "ООО «Сидоров и партнёры»"
        assert inv.buyer.address == "г. Энск, ул. Ленина, д. 1, кв. 3"
        assert inv.to_pay == inv.total and inv.due_date == result.due_date
        rate = 22 if inv.seller.org_id == "TS" else None
        assert all(v.rate == rate for v in inv.vat)
        assert inv.vat_total == sum(line_vat(ln.amount_kop, rate) for ln in inv.lines)
    assert any(i.seller.org_id == "TS" and i.vat_total > 0 for i in invoices)
    closing = list(build_invoices(result, regs, inputs.rules.services, DEFAULT_VAT_RATES, amounts_due="closing"))
    bal = {b["supplier_id"]: b["closing_kop"] for b in
           result.balances.filter(pl.col("account_id") == "A3").iter_rows(named=True)}
    assert {i.seller.org_id: i.to_pay for i in closing} == {k: max(v, 0) for k, v in bal.items() if k in by_supplier}


def test_quantity_times_price_is_the_sum_with_an_increasing_coefficient(town: Workspace) -> None:
    """A2's cold water is charged by the norm × 3 (no meter where one can be fitted): its invoice
    line prices the unit at tariff × 3 and says so, so that quantity × price = sum on every line."""
    from decimal import ROUND_HALF_UP

    inputs, result = _organization_close(town, "A2,P2,person,Петрова Анна Сергеевна", "ООО «Петрова»")
    invoices = list(build_invoices(result, inputs.registers(), inputs.rules.services, DEFAULT_VAT_RATES))
    lines = [ln for inv in invoices for ln in inv.lines if ln.volume is not None]
    assert lines and all(
        int((ln.volume * ln.price * 100).quantize(Decimal(1), ROUND_HALF_UP)) == ln.amount_kop for ln in lines)
    cold = next(ln for ln in lines if ln.service_id == "cold_water")
    assert cold.service_name.endswith("(повышающий коэффициент 3)")
    assert (cold.volume, cold.price, cold.amount_kop) == (Decimal("4.745"), Decimal("156.84"), 74421)


def test_render_invoices_with_nothing_creates_no_folder(tmp_path: Path) -> None:
    assert render_invoices([], tmp_path / "out") == 0
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- recalculations and penalties


def _mixed() -> list[InvoiceLine]:
    return [
        _line("hot_water", 12_000),
        InvoiceLine(service_id="hot_water", service_name="Перерасчёт: ГВС за июль 2026 (показания)", unit="",
                    volume=None, price=None, amount_kop=-1_201, supplier_id="voda", kind="recalculation"),
        InvoiceLine(service_id=invoice_mod.PENALTY_SERVICE, service_name="Пени (ЖК РФ ст.155 ч.14)", unit="",
                    volume=None, price=None, amount_kop=345, supplier_id="voda", kind="penalty"),
    ]


def test_recalculation_on_invoice_and_act_penalty_on_the_invoice_only() -> None:
    rates = parse_vat_rates(HEADER + ",,2000-01-01,20,всё облагается\n")
    (inv,) = invoices_for(ACCOUNT, _mixed(), ORGS, "2026-08", None, rates)
    # The catch-all 20 % taxes the service and its correction, never the penalty.
    assert [(v.rate, v.vat) for v in inv.vat] == [(20, 2_000), (20, -200), (None, 0)]
    assert inv.total == 12_000 - 1_201 + 345 == inv.to_pay
    assert [ln.kind for ln, _ in inv.act_items] == ["service", "recalculation"]
    html = render_invoice_html(inv)
    invoice_part, act_part = html.split('<article class="act"')
    assert "Пени (ЖК РФ ст.155 ч.14)" in invoice_part and "Пени" not in act_part
    assert "Перерасчёт: ГВС за июль 2026 (показания)" in invoice_part and "Перерасчёт: ГВС" in act_part
    assert ">-12,01<" in invoice_part and ">-12,01<" in act_part
    assert '<td>Итого:</td><td class="n">111,44</td>' in invoice_part
    assert '<td>Итого:</td><td class="n">107,99</td>' in act_part
    assert f"В том числе НДС (20{NBSP}%):</td><td class=\"n\">18,00<" in invoice_part
    assert "без налога (НДС), на сумму:</td><td class=\"n\">3,45<" in invoice_part
    assert f"В том числе НДС (20{NBSP}%):</td><td class=\"n\">18,00<" in act_part
    assert "без налога" not in act_part
    assert "Всего наименований 3, на сумму 111,44" in invoice_part
    assert "Всего оказано услуг 2, на сумму 107,99" in act_part


def test_a_penalty_is_taxed_only_by_a_row_that_names_it() -> None:
    rates = parse_vat_rates(HEADER + ",,2000-01-01,none,\n,penalty,2026-01-01,20,пени облагаются\n"
                                     "teplo,penalty,2026-01-01,none,\n")
    (inv,) = invoices_for(ACCOUNT, _mixed(), ORGS, "2026-08", None, rates)
    assert [(v.rate, v.vat, v.source_row) for v in inv.vat] == [(None, 0, 2), (None, 0, 2), (20, 58, 3)]
    # Before the row is in force, «Без НДС».
    (early,) = invoices_for(ACCOUNT, _mixed(), ORGS, "2025-12", None, rates)
    assert early.vat[2] == invoice_mod.LineVat(None, 0, 0)


def test_a_seller_with_only_a_penalty_gets_an_invoice_without_an_act() -> None:
    (inv,) = invoices_for(ACCOUNT, _mixed()[2:], ORGS, "2026-08", None, DEFAULT_VAT_RATES)
    html = render_invoice_html(inv)
    assert "Счёт на оплату" in html and '<article class="act"' not in html
    assert inv.act_items == ()


def test_build_invoices_lists_recalculations_and_penalties(town: Workspace) -> None:
    from dataclasses import replace

    inputs, result = _organization_close(town, "A3,P3,person,Сидоров Пётр Ильич", "ООО «Сидоров и партнёры»")
    a3 = result.lines.filter(pl.col("account_id") == "A3")
    service, supplier = a3.row(0, named=True)["service_id"], a3.row(0, named=True)["supplier_id"]
    recalcs = pl.DataFrame({"account_id": ["A3", "A1"], "service_id": [service, service],
                            "supplier_id": [supplier, supplier], "origin_period": ["2026-07", "2026-07"],
                            "amount_kop": [-150, 999], "reason": ["перерасчёт по акту", "другой счёт"]})
    penalties = pl.DataFrame({"account_id": ["A3", "A3"], "supplier_id": [supplier, supplier],
                              "charge_period": ["2026-05", "2026-06"], "amount_kop": [120, 30]})
    result = replace(result, recalculations=recalcs, penalties=penalties)
    regs = inputs.registers()
    invoices = list(build_invoices(result, regs, inputs.rules.services, DEFAULT_VAT_RATES))
    (inv,) = [i for i in invoices if i.seller.org_id == supplier]
    kinds = [(ln.kind, ln.amount_kop) for ln in inv.lines if ln.kind != "service"]
    assert kinds == [("recalculation", -150), ("penalty", 150)]
    name = inputs.rules.services.filter(pl.col("service_id") == service)["name"][0]
    assert inv.lines[-2].service_name == f"Перерасчёт: {name} за июль 2026 г. (перерасчёт по акту)"
    assert inv.lines[-1].service_name == "Пени (ЖК РФ ст.155 ч.14)"
    charged = int(a3.filter(pl.col("supplier_id") == supplier)["amount_kop"].sum())
    assert inv.total == charged - 150 + 150 == inv.to_pay
    assert {i.account_id for i in invoices} == {"A3"}  # A1's recalculation is on its receipt
