"""Receipt rendering: HTML text, PDFs, print batches, the process pool."""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import sys
import threading
import zlib
from dataclasses import replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from pipeline.render.receipts import (
    UA_ELEMENTS,
    Payee,
    Receipt,
    ReceiptLine,
    amount_in_words,
    check_pdf_stack,
    render_html,
    render_pdf,
    render_receipts,
)

NBSP = "\u00a0"

_SERVICES = [
    ("Содержание жилого помещения", "м²", "по площади", "54.3", "32.15", "uk"),
    ("Холодное водоснабжение", "м³", "по счётчику", "4.745", "52.28", "voda"),
    ("Горячее водоснабжение", "м³", "по счётчику", "3.1", "248.01", "voda"),
    ("Водоотведение", "м³", "по счётчику", "7.845", "38.40", "voda"),
    ("Электроснабжение, день", "кВт·ч", "по счётчику", "180", "6.43", "uk"),
    ("Электроснабжение, ночь", "кВт·ч", "по счётчику", "95", "2.51", "uk"),
    ("Отопление", "Гкал", "по нормативу", "1.2543", "2781.55", "uk"),
    ("ХВС на СОИ", "м³", "по нормативу", "0.2715", "52.28", "voda"),
    ("ГВС на СОИ", "м³", "по нормативу", "0.1986", "248.01", "voda"),
    ("Электроэнергия на СОИ", "кВт·ч", "по нормативу ×1,5", "12.4", "6.43", "uk"),
    ("Обращение с ТКО", "чел.", "по нормативу", "3", "165.20", "uk"),
    ("Домофон", "кв.", "фиксированная плата", None, "45.00", "uk"),
    ("Вывоз снега", "м²", "по площади", "54.3", "1.05", "uk"),
    ("Антенна", "кв.", "фиксированная плата", None, "120.00", "uk"),
    ("Взнос на капремонт", "м²", "по площади", "54.3", "19.74", "fkr"),
]


_SUPPLIERS = ("uk", "voda", "fkr")


def _payee(org_id: str, name: str, charged: int, opening: int, paid: int) -> Payee:
    return Payee(
        org_id=org_id,
        name=name,
        inn="7701234567",
        kpp="770101001",
        bank_name="ПАО «Банк»",
        bik="044525225",
        account="40702810938000012345",
        corr_account="30101810400000000225",
        opening=opening,
        charged=charged,
        recalculated=0,
        paid=paid,
        penalty=0,
        closing=opening + charged - paid,
    )


def make_receipt(
    account_id: str = "1000001",
    building_id: str = "B001",
    *,
    paid_extra: int = 0,
    due_date: date | None = date(2026, 11, 10),
) -> Receipt:
    """A realistic 15-line receipt; ``paid_extra`` kopecks overpaid to each payee: an advance."""
    lines = []
    for name, unit, method, volume, tariff, supplier in _SERVICES:
        vol = None if volume is None else Decimal(volume)
        price = Decimal(tariff)
        amount = int(((vol or Decimal(1)) * price * 100).quantize(Decimal(1), ROUND_HALF_UP))
        lines.append(ReceiptLine(name, unit, method, vol, price, amount, supplier))
    charged = {s: sum(ln.amount for ln in lines if ln.supplier_id == s) for s in _SUPPLIERS}
    payees = (
        _payee("uk", "ООО «УК Домовой»", charged["uk"], 150_000, 150_000 + paid_extra),
        _payee("voda", "АО «Водоканал»", charged["voda"], 0, paid_extra),
        _payee("fkr", "Фонд капремонта", charged["fkr"], 107_182, 107_182 + paid_extra),
    )

    def total(field: str) -> int:
        return sum(getattr(p, field) for p in payees)

    return Receipt(
        account_id=account_id,
        period="2026-10",
        payer_name="Иванов Иван Иванович",
        address="г. Тверь, ул. Советская, д. 5, кв. 12",
        total_area=Decimal("54.3"),
        residents=3,
        manager_name="ООО «УК Домовой»",
        manager_contacts="г. Тверь, ул. Ленина, 1; +7 4822 00-00-00; uk@example.ru",
        lines=tuple(lines),
        payees=payees,
        opening=total("opening"),
        charged=total("charged"),
        recalculated=total("recalculated"),
        paid=total("paid"),
        penalty=total("penalty"),
        closing=total("closing"),
        due_date=due_date,
        building_id=building_id,
    )


def _pages(pdf: Path) -> int:
    """Page objects in a PDF, looking inside compressed object streams too."""
    data = pdf.read_bytes()
    chunks = [data]
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        with contextlib.suppress(zlib.error):
            chunks.append(zlib.decompress(stream))
    return sum(len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", c)) for c in chunks)


def _rub(text: str) -> str:
    return text.replace(" ", NBSP)


# --------------------------------------------------------------------------- HTML


def test_amount_in_words() -> None:
    assert amount_in_words(101) == "Один рубль 01 копейка"
    assert amount_in_words(222) == "Два рубля 22 копейки"
    assert amount_in_words(0) == "Ноль рублей 00 копеек"
    assert amount_in_words(100_000_000) == "Один миллион рублей 00 копеек"
    assert amount_in_words(123_456) == "Одна тысяча двести тридцать четыре рубля 56 копеек"


def test_html_contents() -> None:
    receipt = make_receipt()
    html = render_html(receipt)
    assert "Платёжный документ (квитанция) за октябрь 2026 г." in html
    assert "Иванов Иван Иванович" in html
    assert "ул. Советская, д. 5, кв. 12" in html
    assert "54,3 м²" in html and "3 чел." in html
    for line in receipt.lines:
        assert line.service_name in html
    assert "4,745" in html and "52,28" in html and "по нормативу ×1,5" in html
    # 54.3 × 32.15 = 1 745,75 ₽ (the first line), grouped with a no-break space
    assert f">{_rub('1 745,75')}<" in html
    assert receipt.to_pay > 100_000
    to_pay = _rub(f"{receipt.to_pay // 100:,}".replace(",", " ")) + f",{receipt.to_pay % 100:02d}"
    assert f"Итого к оплате: {to_pay} ₽" in html
    assert amount_in_words(receipt.to_pay) in html
    assert "Оплатить до 10.11.2026" in html
    assert "Аванс" not in html
    # per-payee subtotals are in the payees table (Начислено), not repeated under the lines
    assert html.count('class="group"') == 3
    assert "БИК 044525225" in html and "р/с 40702810938000012345" in html


def test_html_escapes_and_advance() -> None:
    receipt = replace(make_receipt(paid_extra=2_000_000, due_date=None), payer_name="<b>Х</b>")
    assert receipt.closing < 0 and receipt.to_pay == 0
    html = render_html(receipt)
    assert "&lt;b&gt;Х&lt;/b&gt;" in html
    advance = -receipt.closing
    text = f"{advance // 100:,}".replace(",", NBSP) + f",{advance % 100:02d}"
    assert f"Аванс: {text} ₽" in html
    assert "Итого к оплате: 0,00 ₽" in html
    assert "Ноль рублей 00 копеек" in html
    assert "Оплатить до" not in html


def test_recalculations_are_printed_with_their_reasons() -> None:
    from pipeline.render.receipts import RecalcLine

    receipt = make_receipt()
    assert "Перерасчёты" not in render_html(receipt)
    lines = (RecalcLine("Холодное водоснабжение", "2026-09", "изменение числа зарегистрированных "
                        "(проживающих)", 12003),
             RecalcLine("Отопление", "2026-10", "перерыв в предоставлении услуги", -118))
    html = render_html(replace(receipt, recalculations=lines, recalculated=11885))
    assert "Перерасчёты (доначисления +, уменьшения −)" in html
    assert "изменение числа зарегистрированных (проживающих)" in html and "сентябрь 2026 г." in html
    assert f">{_rub('120,03')}<" in html and ">-1,18<" in html


def test_template_stays_inside_the_small_ua_stylesheet() -> None:
    html = render_html(make_receipt(paid_extra=2_000_000))
    tags = set(re.findall(r"<([a-z][a-z0-9]*)", html))
    assert tags <= UA_ELEMENTS, tags - UA_ELEMENTS


def test_unknown_supplier_is_refused() -> None:
    receipt = make_receipt()
    bad = replace(receipt, lines=(*receipt.lines, replace(receipt.lines[0], supplier_id="x")))
    with pytest.raises(ValueError, match="не указан среди получателей"):
        render_html(bad)


def test_inconsistent_totals_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    receipt = replace(make_receipt(), closing=1)
    with caplog.at_level(logging.WARNING, logger="pipeline.render"):
        render_html(receipt)
    assert any("сальдо на конец" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- PDF


def test_check_pdf_stack() -> None:
    check_pdf_stack()  # libharfbuzz-subset0 and DejaVu are installed here
    handlers = logging.getLogger("weasyprint").handlers
    assert any(type(h).__name__ == "_WeasyPrintBridge" for h in handlers)


@pytest.mark.parametrize("broken", ["import", "harfbuzz", "font"])
def test_check_pdf_stack_names_the_install_line(broken: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import weasyprint.text.ffi

    from pipeline.render import receipts

    monkeypatch.setattr(receipts, "_STACK_OK", False)
    if broken == "import":
        monkeypatch.setitem(sys.modules, "weasyprint", None)
    elif broken == "harfbuzz":
        monkeypatch.setattr(weasyprint.text.ffi, "harfbuzz_subset", None)
    else:
        monkeypatch.setattr(receipts, "FONT_FAMILY", "Нет Такого Шрифта")
    with pytest.raises(RuntimeError, match=re.escape(receipts.INSTALL_HINT)):
        check_pdf_stack()


def test_weasyprint_warnings_reach_pipeline_logger(caplog: pytest.LogCaptureFixture) -> None:
    check_pdf_stack()
    with caplog.at_level(logging.WARNING, logger="pipeline.render"):
        logging.getLogger("weasyprint").warning("Failed to load image at %r", "qr.png")
    messages = [r.getMessage() for r in caplog.records if r.name == "pipeline.render"]
    assert messages == ["weasyprint: Failed to load image at 'qr.png'"]


def test_render_pdf_atomic(tmp_path: Path) -> None:
    target = tmp_path / "one.pdf"
    render_pdf(make_receipt(), target)
    assert target.read_bytes().startswith(b"%PDF")
    assert _pages(target) == 2  # one A4 sheet: the front (15 lines, 3 payees' codes) and the back
    assert not list(tmp_path.glob("*.tmp"))


def test_render_receipts_in_process(tmp_path: Path) -> None:
    receipts = [
        make_receipt("1000001"),
        make_receipt("1000002", paid_extra=2_000_000),
        make_receipt("1000003", "B002"),
    ]
    report = render_receipts(receipts, tmp_path, workers=1)
    assert (report.count, report.batches, report.out_dir) == (3, 2, tmp_path)
    for r in receipts:
        pdf = tmp_path / f"{r.account_id}.pdf"
        assert pdf.read_bytes().startswith(b"%PDF")
    assert _pages(tmp_path / "batches" / "B001.pdf") == 4
    assert _pages(tmp_path / "batches" / "B002.pdf") == 2
    assert not list(tmp_path.rglob("*.tmp"))


def test_big_building_is_split_into_numbered_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.render import receipts

    monkeypatch.setattr(receipts, "MAX_BATCH_PAGES", 4)
    report = render_receipts([make_receipt(f"300000{i}") for i in range(3)], tmp_path, workers=1)
    assert (report.count, report.batches) == (3, 2)
    assert sorted(p.name for p in (tmp_path / "batches").iterdir()) == ["B001-1.pdf", "B001-2.pdf"]
    assert _pages(tmp_path / "batches" / "B001-1.pdf") == 4  # two receipts of two pages
    assert _pages(tmp_path / "batches" / "B001-2.pdf") == 2


def test_duplicate_accounts_and_unsafe_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="дважды"):
        render_receipts([make_receipt("1"), make_receipt("1")], tmp_path, workers=1)
    with pytest.raises(ValueError, match="имени файла"):
        render_receipts([make_receipt("../x")], tmp_path, workers=1)
    assert not list(tmp_path.iterdir())


def test_failed_run_leaves_no_tmp(tmp_path: Path) -> None:
    good = make_receipt("1000001")
    bad = replace(good, account_id="1000002", lines=(replace(good.lines[0], supplier_id="x"),))
    with pytest.raises(ValueError):
        render_receipts([good, bad], tmp_path, workers=1)
    assert not list(tmp_path.rglob("*.tmp"))


def test_pool_from_threaded_caller(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """workers=2 (forkserver) while another thread is alive, as inside a Prefect task."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    receipts = [make_receipt(f"200000{i}", f"B00{i % 2}") for i in range(4)]
    receipts[3] = replace(receipts[3], closing=receipts[3].closing + 1)  # logged in the worker
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["report"] = render_receipts(receipts, tmp_path, workers=2)
        except BaseException as exc:  # re-raised below, in the test thread
            result["error"] = exc

    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.render"):
            worker = threading.Thread(target=run)
            worker.start()
            worker.join(timeout=120)
        assert not worker.is_alive()
    finally:
        stop.set()
    error = result.get("error")
    if isinstance(error, BaseException):
        raise AssertionError("render_receipts failed") from error
    assert any("ЛС 2000003" in r.getMessage() for r in caplog.records)
    report = result["report"]
    assert getattr(report, "count", None) == 4 and getattr(report, "batches", None) == 2
    for r in receipts:
        assert (tmp_path / f"{r.account_id}.pdf").read_bytes().startswith(b"%PDF")
    assert _pages(tmp_path / "batches" / "B000.pdf") == 4
    assert _pages(tmp_path / "batches" / "B001.pdf") == 4
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_organization_overrides_a_block_of_the_form(tmp_path: Path) -> None:
    from pipeline.render.build import template_dir

    own = tmp_path / "templates" / "uk"
    own.mkdir(parents=True)
    (own / "receipt.html.j2").write_text(
        '{% extends "default/receipt.html.j2" %}{% block header %}<h1>ООО «УК Домовой» — счёт-извещение '
        "{{ r.account_id }}</h1>{% endblock %}", encoding="utf-8")
    assert template_dir(tmp_path / "templates", "uk") == str(own)
    assert template_dir(tmp_path / "templates", "other") == ""  # no workspace-wide template either
    html = render_html(replace(make_receipt(), template_dir=str(own)))
    assert "ООО «УК Домовой» — счёт-извещение 1000001" in html
    assert "Платёжный документ (квитанция)" not in html  # the block is replaced …
    assert "Расчёт размера платы" in html and "Куда платить" in html  # … the rest is the default form


def test_receipts_run_in_the_postmans_order() -> None:
    import polars as pl

    from pipeline.render.build import _delivery_order

    accounts = pl.DataFrame({
        "account_id": ["a10", "a2", "a1b", "a1", "b1", "x"],
        "building_id": ["B1", "B1", "B1", "B1", "B0", "B1"],
        "number": ["10", "2", "1", "1", "1", "2а"],
        "entrance": [1, 1, 2, 1, None, 1],
        "floor": [3, 1, 1, 1, None, 1],
    })
    assert _delivery_order(accounts)["account_id"].to_list() == ["b1", "a1", "a2", "x", "a10", "a1b"]


def test_living_area_is_printed_when_known() -> None:
    html = render_html(replace(make_receipt(), living_area=Decimal("38.2"), living=2))
    assert "общая 54,3 м², жилая 38,2 м²" in html and "3 чел., проживает 2 чел." in html


def test_a_broken_own_template_is_named(tmp_path: Path) -> None:
    from pipeline.workspace import BillingError

    (tmp_path / "receipt.html.j2").write_text(
        '{% extends "default/receipt.html.j2" %}\n{% block header %}{{ v.no_such }}{% endblock %}',
        encoding="utf-8")
    with pytest.raises(BillingError, match=r"Шаблон квитанции .*receipt\.html\.j2: .*no_such"):
        render_html(replace(make_receipt(), template_dir=str(tmp_path)))


def test_the_debt_warning_names_only_suppliers_of_restrictable_utilities() -> None:
    from pipeline.render.build import _warning_suppliers

    svc = {"cold_water": {"kind": "metered"}, "maintenance": {"kind": "area"}, "heating": {"kind": "heating"}}
    rows = [{"supplier_id": "voda", "service_id": "cold_water"}, {"supplier_id": "uk", "service_id": "maintenance"},
            {"supplier_id": "ts", "service_id": "heating"}]
    debtor = [_payee(org, org, charged=1_000, opening=5_000, paid=0) for org in ("voda", "uk", "ts")]
    assert _warning_suppliers(tuple(debtor), rows, svc, 2) == ("voda",)
    paid_up = [_payee("voda", "voda", charged=1_000, opening=5_000, paid=3_000)]
    assert _warning_suppliers(tuple(paid_up), rows, svc, 2) == ()  # 2 000 left: not over 2 months


def _many_payees() -> Receipt:
    """The realistic receipt with its 15 lines spread over 7 payees: 7 payment parts."""
    base = make_receipt()
    names = [f"Поставщик {n}" for n in range(1, 8)]
    lines = tuple(replace(ln, supplier_id=f"s{n % 7 + 1}") for n, ln in enumerate(base.lines))
    payees = tuple(_payee(f"s{n}", names[n - 1], sum(ln.amount for ln in lines if ln.supplier_id == f"s{n}"),
                          0, 0) for n in range(1, 8))
    return replace(base, lines=lines, payees=payees, opening=0, paid=0,
                   charged=sum(p.charged for p in payees), closing=sum(p.closing for p in payees))


def _page_text(pdf: Path, page: int) -> str:
    return subprocess.run(["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(pdf), "-"],
                          check=True, capture_output=True, text=True).stdout


def test_many_payees_still_take_one_sheet(tmp_path: Path) -> None:
    """Seven payment parts do not fit under the calculation: they open the back instead of
    taking a page of their own (which made the receipt two sheets)."""
    from pipeline.render.receipts import pdf_engine

    receipt = _many_payees()
    as_made = pdf_engine().document(render_html(receipt))
    assert len(as_made.pages) == 3  # the front cannot hold them
    render_pdf(receipt, tmp_path / "one.pdf")
    report = render_receipts([receipt], tmp_path / "pool", workers=1)
    for pdf in (tmp_path / "one.pdf", report.out_dir / f"{receipt.account_id}.pdf"):
        assert _pages(pdf) == 2
        front, back = _page_text(pdf, 1), _page_text(pdf, 2)
        assert "Куда платить" not in front and "Расчёт размера платы" in front
        assert back.index("Куда платить") < back.index("Получатели платежа и расчёты с ними")
        assert all(name in back for name in (p.name for p in receipt.payees))
    # Three payees fit on the front, as before.
    render_pdf(make_receipt(), tmp_path / "three.pdf")
    assert "Куда платить" in _page_text(tmp_path / "three.pdf", 1)
