"""Plain payment documents (квитанции, v1) as PDF: data model, HTML, WeasyPrint pool.

This is the *plain* receipt. Its template is laid out in the sections of the
ЕПД form (Приказ Минстроя 43/пр, see ``shared/domain/law.md`` §5): payer and
executor, calculation, where to pay, totals. Each section is a Jinja2 block,
so the full ЕПД (QR code, reference data, recalculation reasons, instalments)
can extend ``receipt.html.j2`` instead of copying it.

Money is ``int`` kopecks throughout; it becomes text only through
:func:`pipeline.money.format_rub` and :func:`pipeline.money.to_decimal`.

Throughput notes (``stack-notes.md`` §3): one ``FontConfiguration`` and one
parsed ``CSS`` per process, reused for every document; ``table-layout: fixed``;
one worker process per core; HarfBuzz subsetting (checked by
:func:`check_pdf_stack`). WeasyPrint is imported lazily, inside functions, so
importing this module does not cost the ≈1 s WeasyPrint import. Rendering is
meant to run on one thread per process; parallelism comes from processes.

Sign convention (assumed, shared with the ledger): ``opening`` and ``closing``
are positive for a debt and negative for an advance;
``closing = opening + charged + recalculated + penalty - paid``. A mismatch is
logged as a warning, not refused, because the ledger owns these numbers.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gc
import hashlib
import logging
import math
import multiprocessing
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from babel.dates import format_date
from num2words import num2words

from pipeline.dates import Period
from pipeline.errors import BillingError
from pipeline.money import format_rub, to_decimal
from pipeline.pool import die_with
from pipeline.render.qr import (
    DEFAULT_QR_POLICY,
    QrPayee,
    QrPolicy,
    parse_payload,
    payment_payload,
    qr_data_uri,
)

__all__ = [
    "INSTALL_HINT",
    "MAX_BATCH_PAGES",
    "HouseRow",
    "InstalmentRow",
    "MeterRow",
    "NormRow",
    "Payee",
    "PdfEngine",
    "Receipt",
    "ReceiptLine",
    "RenderReport",
    "amount_in_words",
    "check_pdf_stack",
    "fmt_decimal",
    "pdf_engine",
    "period_text",
    "render_html",
    "render_pdf",
    "render_receipts",
    "template",
    "write_atomic",
]

_LOG = logging.getLogger("pipeline.render")

#: Folder with ``receipt.html.j2`` and ``receipt.css``.
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "receipt.html.j2"
CSS_PATH = TEMPLATES_DIR / "receipt.css"

#: The one font family of the document; checked through fontconfig at start-up.
FONT_FAMILY = "DejaVu Sans"

#: Debian/Ubuntu packages WeasyPrint needs at speed (stack-notes §3.1).
INSTALL_HINT = "apt-get install -y libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core"

#: Largest print batch, in pages; also the most receipts one pool task lays out.
MAX_BATCH_PAGES = 200

#: Receipts per pool task when no batches are built (small tasks balance better).
_UNBATCHED_CHUNK = 16

#: Account and building ids become file names: no separators, no leading dot.
_SAFE_ID = re.compile(r"^[0-9A-Za-zА-Яа-яЁё_-][0-9A-Za-zА-Яа-яЁё._-]{0,99}$")

_NBSP = "\u00a0"


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ReceiptLine:
    """One charge line of the receipt (one service of one supplier)."""

    #: Service as printed, e.g. "Холодное водоснабжение".
    service_name: str
    #: Unit of the volume and of the tariff, e.g. "м³", "кВт·ч", "м²".
    unit: str
    #: How the volume was found, e.g. "по счётчику", "по нормативу ×1,5".
    method_label: str
    #: Billed volume in ``unit``; ``None`` for a fixed fee with no volume.
    volume: Decimal | None
    #: Price per unit, rubles (exact Decimal, as set by the tariff decision);
    #: ``None`` for a line without a price (penalties).
    tariff: Decimal | None
    #: Charge for the period, kopecks (already rounded by the charge stage).
    amount: int
    #: ``Payee.org_id`` of the supplier the money goes to.
    supplier_id: str
    #: A resource for common property (КР на СОИ): volume and charge go to the СОИ columns.
    soi: bool = False
    #: The part of ``amount`` the increasing coefficient added, kopecks (43/пр: its own figure).
    excess: int = 0
    #: Recalculations of this service in the period, kopecks (on the service's first line).
    recalculated: int = 0
    #: ЕДК and subsidies of this service by the welfare body's answer, kopecks (on the
    #: service's first line; ``billing import welfare``): the ЕПД's benefits column.
    benefit: int = 0


@dataclass(frozen=True)
class NormRow:
    """A norm the period's charges used (ЕПД section 4)."""

    service_name: str
    #: The norm as printed with its basis, e.g. "2,5 м³ на 1 чел. в месяц".
    text: str
    soi: bool = False


@dataclass(frozen=True)
class MeterRow:
    """One meter's readings in the period (ЕПД section 4), individual or the building's."""

    service_name: str
    serial: str
    prev_on: date | None
    prev_value: Decimal | None
    curr_on: date | None
    curr_value: Decimal | None
    #: Volume the period took from the meter (``None`` for a building meter row).
    volume: Decimal | None
    #: How the volume was found, or why a reading was not accepted.
    note: str = ""


@dataclass(frozen=True)
class InstalmentRow:
    """An instalment due in the period (ЕПД section 6, the ``instalments`` register)."""

    service_name: str
    supplier_name: str
    #: Due this period under the instalment, kopecks.
    amount: int
    #: Interest for the instalment, kopecks, and its rate (percent a year).
    interest: int
    rate: Decimal


@dataclass(frozen=True)
class HouseRow:
    """The house's volume of one resource in the period (ЕПД section 4)."""

    service_name: str
    unit: str
    premises: Decimal
    common: Decimal | None


@dataclass(frozen=True)
class RecalcLine:
    """One recalculation printed with its reason (ЕПД section 5, Правила 354 п.69)."""

    #: Service as printed.
    service_name: str
    #: The period it corrects, ``YYYY-MM`` (the current one for interruptions and settlements).
    origin_period: str
    #: Reason as posted by the recalculation stage.
    reason: str
    #: Amount, kopecks: extra charge > 0, reduction < 0.
    amount: int


@dataclass(frozen=True)
class Payee:
    """One recipient of money (поставщик / исполнитель) with its bank details and balance."""

    #: Organisation id; ``ReceiptLine.supplier_id`` points here.
    org_id: str
    #: Name as printed and as used in the payment order.
    name: str
    #: ИНН (10 digits for an organisation, 12 for an entrepreneur).
    inn: str
    #: КПП (9 digits; empty for an entrepreneur).
    kpp: str
    #: Bank name.
    bank_name: str
    #: БИК of the bank (9 digits).
    bik: str
    #: Settlement account (р/с, 20 digits).
    account: str
    #: Correspondent account of the bank (к/с, 20 digits).
    corr_account: str
    #: Balance at period start, kopecks: debt > 0, advance < 0.
    opening: int
    #: Charged in the period, kopecks.
    charged: int
    #: Recalculations in the period, kopecks (reductions negative).
    recalculated: int
    #: Paid in the period, kopecks.
    paid: int
    #: Penalties (пени) charged in the period, kopecks.
    penalty: int
    #: Balance at period end, kopecks: debt > 0, advance < 0.
    closing: int
    #: Benefits deducted from the amount due (``[receipts] benefits = "discount"``), kopecks.
    discount: int = 0

    @property
    def to_pay(self) -> int:
        """Amount due to this payee, kopecks: the closing debt less deducted benefits, 0 for an advance."""
        return max(self.closing - self.discount, 0)


@dataclass(frozen=True)
class Receipt:
    """Everything one printed receipt shows, for one personal account and one month."""

    #: Personal account number (лицевой счёт); also the PDF file name.
    account_id: str
    #: Billing period ``YYYY-MM``.
    period: str
    #: Owner or tenant as printed.
    payer_name: str
    #: Postal address of the premises.
    address: str
    #: Total area of the premises, m²; ``None`` when unknown.
    total_area: Decimal | None
    #: Registered residents.
    residents: int
    #: Managing organisation (исполнитель услуг) as printed.
    manager_name: str
    #: Its address, phone, e-mail and site, one printed line.
    manager_contacts: str
    #: Charge lines, in print order.
    lines: tuple[ReceiptLine, ...]
    #: Recipients of money, in print order; every line's supplier must be here.
    payees: tuple[Payee, ...]
    #: Balance at period start, kopecks (sum over payees): debt > 0, advance < 0.
    opening: int
    #: Charged in the period, kopecks.
    charged: int
    #: Recalculations in the period, kopecks.
    recalculated: int
    #: Paid in the period, kopecks.
    paid: int
    #: Penalties charged in the period, kopecks.
    penalty: int
    #: Balance at period end, kopecks: debt > 0, advance < 0.
    closing: int
    #: Last day to pay without penalty (ЖК 155 ч.1); ``None`` prints no due line.
    due_date: date | None
    #: Building the premises are in; groups receipts into print batches.
    building_id: str
    #: Recalculations of the period with their reasons; they add up to ``recalculated``.
    recalculations: tuple[RecalcLine, ...] = ()
    #: The collecting agent (ЕИРЦ) paid instead of each payee (``[receipts] pay_to = "agent"``):
    #: one part of "where to pay" and one QR code for the whole amount; ``None`` — a part per payee.
    agent: Payee | None = None
    #: The switches of the payment QR codes (``rules/payment_qr.toml``).
    qr_policy: QrPolicy = DEFAULT_QR_POLICY
    #: Printed on paper: ``False`` for a payer who chose e-mail only (``accounts.delivery``),
    #: whose receipt is left out of the print batches.
    paper: bool = True
    #: Reference data (ЕПД section 4): norms used, the flat's and the building's meters,
    #: the house's volumes.
    norms: tuple[NormRow, ...] = ()
    meters: tuple[MeterRow, ...] = ()
    building_meters: tuple[MeterRow, ...] = ()
    house: tuple[HouseRow, ...] = ()
    #: The account's last payment in the period: (date, kopecks).
    last_payment: tuple[date, int] | None = None
    #: The fiscal receipt of that payment with how to get it (``billing payments fiscal``).
    fiscal: str = ""
    #: Printed again from the sealed tables on this day (``billing receipts print``): a duplicate.
    duplicate_on: date | None = None
    #: ЕЛС of ГИС ЖКХ and the ИЖКУ of services, (service, ИЖКУ) (the ``gis_ids`` register).
    els: str = ""
    izhku: tuple[tuple[str, str], ...] = ()
    #: ИПД ГИС ЖКХ gave this payment document (``billing import gis-documents``), once known.
    ipd: str = ""
    #: Instalments due in the period (ЕПД section 6).
    instalments: tuple[InstalmentRow, ...] = ()
    #: A folder with the organization's own ``receipt.html.j2`` (``HOME/templates/<org_id>/`` or
    #: ``HOME/templates/``); empty — the default 43/пр form.
    template_dir: str = ""
    #: Suppliers whose overdue debt makes the warning of Правила 354 п.119 due.
    warning_suppliers: tuple[str, ...] = ()
    #: The п.119 warning of an open debt collection case (``pipeline.collect.texts``); it
    #: replaces the ``warning_suppliers`` proxy.
    warning_text: str = ""
    #: Total and living area of the premises, registered and actually living persons.
    living_area: Decimal | None = None
    living: int | None = None
    #: ЕДК and subsidies of the welfare body's answer shown on this receipt, kopecks (the
    #: lines' ``benefit`` plus amounts for all services); ``discount``: the part deducted from
    #: the amount to pay (the payees' ``discount``; 0 with ``[receipts] benefits = "info"``);
    #: ``benefits_deducted``: the region gives benefits as a discount; ``benefits_note``: the
    #: printed explanation.
    benefits: int = 0
    discount: int = 0
    benefits_deducted: bool = False
    benefits_note: str = ""
    #: ``[receipts] tear_off``: "where to pay" is a tear-off slip (извещение) under a cut line at
    #: the end of the front, with the payer, the amount and a place for the signature.
    tear_off: bool = False

    @property
    def to_pay(self) -> int:
        """Total amount due, kopecks: the closing debt less the deducted benefits, 0 when there is
        an advance."""
        return max(self.closing - self.discount, 0)


@dataclass(frozen=True)
class RenderReport:
    """Outcome of :func:`render_receipts`."""

    #: Receipt PDFs written (one per account).
    count: int
    #: Print-batch PDFs written under ``out_dir / "batches"``.
    batches: int
    #: Wall time of the whole call, seconds.
    seconds: float
    #: Folder the PDFs were written to.
    out_dir: Path
    #: Receipts whose HTML was unchanged since an earlier run: copied from the cache, not laid out.
    reused: int = 0

    @property
    def per_second(self) -> float:
        """Receipts per second of wall time."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------- HTML


def fmt_decimal(value: Decimal, min_places: int = 0) -> str:
    """A Decimal the Russian way, trailing zeros dropped down to ``min_places``.

    >>> fmt_decimal(Decimal("4.745000")), fmt_decimal(Decimal("52.2"), 2)
    ('4,745', '52,20')
    >>> fmt_decimal(Decimal("12345.5")), fmt_decimal(Decimal("1E+1"))
    ('12\\xa0345,5', '10')
    >>> fmt_decimal(Decimal("-0.50")), fmt_decimal(Decimal("-0.00"))
    ('-0,5', '0')
    """
    if not value.is_finite():
        raise ValueError(f"не число: {value}")
    text = format(abs(value), "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(min_places, "0")
    sign = "-" if value < 0 and (int(whole) or frac.strip("0")) else ""
    grouped = f"{int(whole):,}".replace(",", _NBSP)
    return f"{sign}{grouped},{frac}" if frac else f"{sign}{grouped}"


def amount_in_words(kopecks: int) -> str:
    """Amount in Russian words, capitalised, kopecks in digits (as on payment documents).

    >>> amount_in_words(101), amount_in_words(222), amount_in_words(0)
    ('Один рубль 01 копейка', 'Два рубля 22 копейки', 'Ноль рублей 00 копеек')
    >>> amount_in_words(100_000_000)
    'Один миллион рублей 00 копеек'
    """
    text: str = num2words(
        to_decimal(kopecks), lang="ru", to="currency", currency="RUB", separator="", cents=False
    )
    return text[:1].upper() + text[1:]


@lru_cache(maxsize=64)
def period_text(period: str) -> str:
    """``2026-10`` → ``октябрь 2026 г.`` (babel stand-alone month name)."""
    p = Period.parse(period)
    return format_date(date(p.year, p.month, 1), "LLLL y", locale="ru") + " г."



def _payee_view(payee: Payee) -> dict[str, Any]:
    return {
        "org_id": payee.org_id,
        "name": payee.name,
        "inn": payee.inn,
        "kpp": payee.kpp,
        "bank_name": payee.bank_name,
        "bik": payee.bik,
        "account": payee.account,
        "corr_account": payee.corr_account,
        "opening": format_rub(payee.opening),
        "charged": format_rub(payee.charged),
        "recalculated": format_rub(payee.recalculated),
        "paid": format_rub(payee.paid),
        "penalty": format_rub(payee.penalty),
        "closing": format_rub(payee.closing),
        "to_pay": format_rub(payee.to_pay),
        "advance": format_rub(-payee.closing) if payee.closing < 0 else None,
        "discount": format_rub(payee.discount) if payee.discount else None,
    }


def _pay_parts(receipt: Receipt) -> list[dict[str, Any]]:
    """ЕПД section 2, "where to pay": per payee (or the one agent) its bank details, the
    amount due to it and its ГОСТ Р 56042 QR code. A payee whose details cannot make a
    payment order prints without a code, and the reason is logged."""
    where = f"ЛС {receipt.account_id}, {receipt.period}"
    targets = [(receipt.agent, receipt.to_pay)] if receipt.agent else [(p, p.to_pay) for p in receipt.payees]
    parts = []
    for payee, amount in targets:
        if not payee.org_id:
            continue  # an undistributed advance has nobody to pay
        part = _payee_view(payee) | {"amount": format_rub(amount), "qr": None, "purpose": None}
        if not (payee.account and payee.bik):
            if amount > 0:
                _LOG.warning("%s: получателю «%s» к оплате %s, но нет р/с или БИК — без QR-кода",
                             where, payee.name, format_rub(amount))
            parts.append(part)
            continue
        try:
            payload = payment_payload(
                QrPayee(payee.name, payee.account, payee.bank_name, payee.bik, payee.corr_account,
                        payee.inn, payee.kpp),
                sum_kop=amount, account_id=receipt.account_id, period=receipt.period,
                payer_name=receipt.payer_name, payer_address=receipt.address, policy=receipt.qr_policy)
        except ValueError as err:
            _LOG.warning("%s: QR-код получателя «%s» не построен: %s", where, payee.name, err)
            parts.append(part)
            continue
        for note in payload.notes:
            _LOG.info("%s: QR-код получателя «%s»: %s", where, payee.name, note)
        part["qr"] = qr_data_uri(payload, receipt.qr_policy)
        part["purpose"] = parse_payload(payload.text)["purpose"]
        parts.append(part)
    return parts


def _meter_view(m: MeterRow) -> dict[str, Any]:
    def value(v: Decimal | None) -> str:
        return "—" if v is None else fmt_decimal(v)

    def day(d: date | None) -> str:
        return "—" if d is None else d.strftime("%d.%m.%Y")

    return {"service_name": m.service_name, "serial": m.serial, "prev_on": day(m.prev_on),
            "prev_value": value(m.prev_value), "curr_on": day(m.curr_on), "curr_value": value(m.curr_value),
            "volume": "" if m.volume is None else fmt_decimal(m.volume), "note": m.note}


def _check_balances(receipt: Receipt) -> None:
    """Log (not refuse) totals that do not add up; the ledger owns these numbers."""
    where = f"ЛС {receipt.account_id}, {receipt.period}"
    rows: list[tuple[str, Receipt | Payee]] = [("итог квитанции", receipt)]
    rows += [(f"получатель {p.org_id}", p) for p in receipt.payees]
    for label, x in rows:
        expected = x.opening + x.charged + x.recalculated + x.penalty - x.paid
        if expected != x.closing:
            _LOG.warning(
                "%s, %s: сальдо на конец %s ≠ %s "
                "(начало + начислено + перерасчёт + пени − оплачено)",
                where, label, format_rub(x.closing), format_rub(expected),
            )  # fmt: skip
    if receipt.payees:
        for name in ("opening", "charged", "recalculated", "paid", "penalty", "closing"):
            by_payees = sum(getattr(p, name) for p in receipt.payees)
            if by_payees != getattr(receipt, name):
                _LOG.warning(
                    "%s: поле %s квитанции (%s) ≠ сумме по получателям (%s)",
                    where, name, format_rub(getattr(receipt, name)), format_rub(by_payees),
                )  # fmt: skip
    if receipt.payees and sum(p.discount for p in receipt.payees) != receipt.discount:
        _LOG.warning("%s: вычет льгот %s ≠ сумме вычетов по получателям", where, format_rub(receipt.discount))
    if receipt.discount > receipt.benefits:
        _LOG.warning("%s: вычет льгот %s больше самих льгот %s", where, format_rub(receipt.discount),
                     format_rub(receipt.benefits))
    if receipt.recalculations and sum(r.amount for r in receipt.recalculations) != receipt.recalculated:
        _LOG.warning("%s: сумма перерасчётов по строкам ≠ перерасчёту %s",
                     where, format_rub(receipt.recalculated))
    # Lines are the period's charges plus its penalty lines (ЖК 155 ч.14, own line each).
    lines_total = sum(line.amount for line in receipt.lines)
    if lines_total != receipt.charged + receipt.penalty:
        _LOG.warning(
            "%s: сумма строк %s ≠ начислено с пени %s",
            where, format_rub(lines_total), format_rub(receipt.charged + receipt.penalty),
        )  # fmt: skip


def _view(receipt: Receipt) -> dict[str, Any]:
    """Everything the template prints, already formatted as text."""
    payees = {p.org_id: p for p in receipt.payees}
    if len(payees) != len(receipt.payees):
        raise ValueError(f"ЛС {receipt.account_id}: получатель платежа указан дважды")
    grouped: dict[str, list[ReceiptLine]] = {p.org_id: [] for p in receipt.payees}
    for line in receipt.lines:
        if line.supplier_id not in grouped:
            raise ValueError(
                f"ЛС {receipt.account_id}: у строки «{line.service_name}» поставщик "
                f"«{line.supplier_id}» не указан среди получателей платежа"
            )
        grouped[line.supplier_id].append(line)
    _check_balances(receipt)
    deducted = receipt.benefits_deducted

    def line_total(ln: ReceiptLine) -> int:
        """The line's «Итого»: charge and recalculation, less its benefit where benefits are a discount."""
        return ln.amount + ln.recalculated - (ln.benefit if deducted else 0)

    def line_view(ln: ReceiptLine) -> dict[str, Any]:
        volume = "—" if ln.volume is None else fmt_decimal(ln.volume)
        amount = format_rub(ln.amount) if ln.amount or ln.volume is not None else ""
        return {
            "service_name": ln.service_name,
            "unit": ln.unit,
            "method_label": ln.method_label,
            "volume": volume,
            "tariff": "—" if ln.tariff is None else fmt_decimal(ln.tariff, 2),
            "amount": format_rub(ln.amount),
            "vol_ind": "" if ln.soi else volume,
            "vol_soi": volume if ln.soi else "",
            "charge_ind": "" if ln.soi else amount,
            "charge_soi": amount if ln.soi else "",
            "excess": format_rub(ln.excess) if ln.excess else "",
            "recalculated": format_rub(ln.recalculated) if ln.recalculated else "",
            "benefit": format_rub(ln.benefit) if ln.benefit else "",
            "total": format_rub(line_total(ln)),
        }

    groups = [
        {
            "payee": payees[org_id],
            "lines": [line_view(ln) for ln in lines],
            "subtotal": format_rub(sum(ln.amount for ln in lines)),
        }
        for org_id, lines in grouped.items()
        if lines
    ]
    soi_total = sum(ln.amount for ln in receipt.lines if ln.soi)
    # Benefits for all services (or a service without a line this month): a row of their own.
    other_benefits = receipt.benefits - sum(ln.benefit for ln in receipt.lines)
    lines_recalc = sum(ln.recalculated for ln in receipt.lines)
    columns = {
        "ind": format_rub(sum(ln.amount for ln in receipt.lines if not ln.soi)),
        "soi": format_rub(soi_total) if soi_total else "",
        "excess": format_rub(sum(ln.excess for ln in receipt.lines)) if any(ln.excess for ln in receipt.lines)
        else "",
        "recalculated": format_rub(lines_recalc) if lines_recalc else "",
        "benefit": format_rub(receipt.benefits) if receipt.benefits else "",
        "total": format_rub(sum(line_total(ln) for ln in receipt.lines)
                            - (other_benefits if deducted else 0)),
    }
    living = receipt.living
    return {
        "period_text": period_text(receipt.period),
        "area": None if receipt.total_area is None else fmt_decimal(receipt.total_area),
        "groups": groups,
        "lines_total": format_rub(sum(ln.amount for ln in receipt.lines)),
        "columns": columns,
        "living": living,
        "living_area": None if receipt.living_area is None else fmt_decimal(receipt.living_area),
        "norms": [{"service_name": n.service_name, "text": n.text, "soi": n.soi} for n in receipt.norms],
        "meters": [_meter_view(m) for m in receipt.meters],
        "building_meters": [_meter_view(m) for m in receipt.building_meters],
        "house": [{"service_name": h.service_name, "unit": h.unit, "premises": fmt_decimal(h.premises),
                   "common": "—" if h.common is None else fmt_decimal(h.common)} for h in receipt.house],
        "last_payment": None if receipt.last_payment is None else {
            "on": receipt.last_payment[0].strftime("%d.%m.%Y"),
            "amount": format_rub(receipt.last_payment[1])},
        "warning_suppliers": list(receipt.warning_suppliers),
        "warning_text": receipt.warning_text,
        "fiscal": receipt.fiscal,
        "other_benefits": format_rub(other_benefits) if other_benefits else None,
        "benefits_note": receipt.benefits_note,
        "els": receipt.els,
        "ipd": receipt.ipd,
        "izhku": [{"service_name": n, "izhku": i} for n, i in receipt.izhku],
        "instalments": [{"service_name": i.service_name, "supplier_name": i.supplier_name,
                         "amount": format_rub(i.amount), "interest": format_rub(i.interest),
                         "rate": fmt_decimal(i.rate), "total": format_rub(i.amount + i.interest)}
                        for i in receipt.instalments],
        "duplicate_on": None if receipt.duplicate_on is None else receipt.duplicate_on.strftime("%d.%m.%Y"),
        "payees": [_payee_view(p) for p in receipt.payees],
        "pay_parts": _pay_parts(receipt),
        "agent": None if receipt.agent is None else receipt.agent.name,
        "opening": format_rub(receipt.opening),
        "opening_abs": format_rub(abs(receipt.opening)),
        "charged": format_rub(receipt.charged),
        "recalculated": format_rub(receipt.recalculated),
        "paid": format_rub(receipt.paid),
        "penalty": format_rub(receipt.penalty),
        "closing": format_rub(receipt.closing),
        "to_pay": format_rub(receipt.to_pay),
        "to_pay_words": amount_in_words(receipt.to_pay),
        "advance": format_rub(-receipt.closing) if receipt.closing < 0 else None,
        "due_date": None if receipt.due_date is None else receipt.due_date.strftime("%d.%m.%Y"),
        "recalculations": [
            {"service_name": r.service_name, "origin": period_text(r.origin_period), "reason": r.reason,
             "amount": format_rub(r.amount)}
            for r in receipt.recalculations
        ],
    }


@lru_cache(maxsize=16)
def template(name: str = TEMPLATE_NAME, folder: str = "") -> jinja2.Template:
    """The template ``name``, from ``folder`` (a workspace's or organization's own ``templates/``)
    when it has one, else the default; one Jinja2 environment per folder and process.

    An own template usually extends the default and overrides blocks:
    ``{% extends "default/receipt.html.j2" %}{% block payer %}…{% endblock %}``.
    """
    default = jinja2.FileSystemLoader(TEMPLATES_DIR)
    loaders: list[jinja2.BaseLoader] = [jinja2.PrefixLoader({"default": default}), default]
    if folder:
        loaders.insert(0, jinja2.FileSystemLoader(folder))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
    )
    return env.get_template(name)


def render_html(receipt: Receipt, *, pay_on_back: bool = False, view: dict[str, Any] | None = None) -> str:
    """The receipt as an HTML page (Russian text, money as ``1 234,56``).

    ``pay_on_back``: "where to pay" opens the back of the sheet instead of closing the front
    (:meth:`PdfEngine.fit`); ``view``: the receipt's view made already (its QR codes are
    not made twice). Raises ``ValueError`` when a line's supplier is not among the payees.
    """
    view = {**(view if view is not None else _view(receipt)), "pay_on_back": pay_on_back}
    if not receipt.template_dir:
        return template(TEMPLATE_NAME).render(r=receipt, v=view)
    try:  # an organization's own template: its mistakes are named, not a traceback
        return template(TEMPLATE_NAME, receipt.template_dir).render(r=receipt, v=view)
    except jinja2.TemplateError as err:
        where = getattr(err, "filename", None) or f"{receipt.template_dir}/{TEMPLATE_NAME}"
        line = getattr(err, "lineno", None)
        raise BillingError(f"Шаблон квитанции {where}{f', строка {line}' if line else ''}: {err}") from None


# --------------------------------------------------------------------------- PDF stack

_STACK_OK = False
#: Pages of one A4 sheet printed on both sides: what a receipt should take.
SHEET_PAGES = 2
_ENGINE_LOCK = threading.Lock()
_CURRENT_ACCOUNT: contextvars.ContextVar[str] = contextvars.ContextVar("pipeline_render_account", default="")


def _matched_font_family(family: str) -> str | None:
    """The family fontconfig really gives for ``family``; ``None`` if it cannot be asked."""
    try:
        from weasyprint.text.ffi import ffi, fontconfig

        config = fontconfig.FcInitLoadConfigAndFonts()
        pattern = fontconfig.FcPatternCreate()
        try:
            fontconfig.FcPatternAddString(pattern, b"family", family.encode())
            fontconfig.FcConfigSubstitute(config, pattern, fontconfig.FcMatchPattern)
            fontconfig.FcDefaultSubstitute(pattern)
            result = ffi.new("FcResult *")
            match = fontconfig.FcFontMatch(config, pattern, result)
            if match == ffi.NULL:
                return ""
            try:
                out = ffi.new("FcChar8 **")
                if fontconfig.FcPatternGetString(match, b"family", 0, out) != 0:
                    return ""
                return str(ffi.string(out[0]).decode("utf-8", "replace"))
            finally:
                fontconfig.FcPatternDestroy(match)
        finally:
            fontconfig.FcPatternDestroy(pattern)
            fontconfig.FcConfigDestroy(config)
    except Exception:  # the check is a courtesy; never fail on the asking itself
        _LOG.debug("не удалось опросить fontconfig", exc_info=True)
        return None


def check_pdf_stack() -> None:
    """Make sure WeasyPrint loads and runs at speed; raise ``RuntimeError`` if not.

    Checks that WeasyPrint imports (Pango, HarfBuzz, fontconfig present), that
    HarfBuzz-Subset is there (without it every PDF is subset by slow
    fontTools, stack-notes §3.1) and that fontconfig finds DejaVu Sans.
    The error message names the exact install line.
    """
    global _STACK_OK
    if _STACK_OK:
        return
    _install_log_bridge()  # before the import, which already logs (INFO) its own CSS parsing
    try:
        import weasyprint  # noqa: F401
        from weasyprint.text.ffi import harfbuzz_subset
    except (ImportError, OSError) as exc:
        raise RuntimeError(
            f"WeasyPrint не загружается ({exc}). Установите системные библиотеки: {INSTALL_HINT}"
        ) from exc
    if harfbuzz_subset is None:
        raise RuntimeError(
            "Не найдена библиотека libharfbuzz-subset: WeasyPrint будет урезать шрифты "
            f"медленным fontTools (в 2 раза медленнее). Установите: {INSTALL_HINT}"
        )
    family = _matched_font_family(FONT_FAMILY)
    if family is not None and family.casefold() != FONT_FAMILY.casefold():
        raise RuntimeError(
            f"Шрифт «{FONT_FAMILY}» не найден (fontconfig подставляет «{family}»), "
            f"в квитанции может не оказаться символов ₽ и м³. Установите: {INSTALL_HINT}"
        )
    _STACK_OK = True


class _WeasyPrintBridge(logging.Handler):
    """Re-logs WeasyPrint warnings and errors on ``pipeline.render`` with the account id."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            account = _CURRENT_ACCOUNT.get()
            where = f" (ЛС {account})" if account else ""
            _LOG.log(record.levelno, "weasyprint%s: %s", where, record.getMessage())
        except Exception:
            self.handleError(record)


def _install_log_bridge() -> None:
    """Attach :class:`_WeasyPrintBridge` to the ``weasyprint`` logger once per process.

    WeasyPrint's logger only has a ``NullHandler``, so a missing font or image
    would otherwise pass silently when it runs as a library.
    """
    wlog = logging.getLogger("weasyprint")
    if not any(isinstance(h, _WeasyPrintBridge) for h in wlog.handlers):
        wlog.addHandler(_WeasyPrintBridge(logging.WARNING))
    if wlog.level == logging.NOTSET:
        wlog.setLevel(logging.WARNING)


#: Elements the template may use: :data:`_UA_CSS` gives them their HTML meaning.
UA_ELEMENTS = frozenset(
    {
        *("html", "head", "title", "meta", "body", "article", "section", "header", "footer"),
        *("main", "div", "p", "h1", "h2", "h3", "span", "b", "strong", "i", "em", "small"),
        *("sub", "sup", "br", "img", "table", "caption", "colgroup", "col", "thead", "tbody"),
        *("tfoot", "tr", "th", "td", "ul", "ol", "li"),
    }
)

#: A small user-agent stylesheet replacing WeasyPrint's full HTML5 one (256 lines, with
#: 16 page-margin boxes and attribute rules matched on every element). Measured ≈15–20 ms
#: less layout per receipt. It covers :data:`UA_ELEMENTS` only; ``tests/render/test_render.py``
#: checks that the template stays inside that set.
_UA_CSS = """
[hidden], head, title, meta, style, script, template, link, base { display: none }
html, body, article, section, header, footer, main, div, p, h1, h2, h3, ul, ol { display: block }
li { display: list-item }
table { display: table; box-sizing: border-box; border-spacing: 2px;
        border-collapse: separate; text-indent: initial }
caption { display: table-caption }
colgroup { display: table-column-group }
col { display: table-column }
thead { display: table-header-group; vertical-align: middle }
tbody { display: table-row-group; vertical-align: middle }
tfoot { display: table-footer-group; vertical-align: middle }
tr { display: table-row; vertical-align: inherit }
td, th { display: table-cell; vertical-align: inherit; padding: 1px }
b, strong, th, h1, h2, h3 { font-weight: bold }
i, em { font-style: italic }
small { font-size: smaller }
sub { vertical-align: sub; font-size: smaller }
sup { vertical-align: super; font-size: smaller }
p, ul, ol { margin-top: 1em; margin-bottom: 1em }
ul, ol { padding-left: 40px }
ul { list-style-type: disc }
ol { list-style-type: decimal }
h1, h2, h3 { break-after: avoid; break-inside: avoid }
br::before { content: "\\A"; white-space: pre-line }
img { overflow: hidden }
"""


@dataclass
class PdfEngine:
    """Per-process WeasyPrint state for one stylesheet: reused for every document it renders.

    One ``FontConfiguration``, the stylesheet parsed once and the small user-agent stylesheet
    (:data:`_UA_CSS`) instead of WeasyPrint's full HTML one. Receipts and invoices each have
    one (:func:`pdf_engine`).
    """

    html_cls: Any
    font_config: Any
    css: Any

    def document(self, html: str) -> Any:
        """Lay out ``html`` (resources relative to the templates folder) into a document."""
        page = self.html_cls(string=html, base_url=str(TEMPLATES_DIR) + os.sep)
        return page.render(stylesheets=[self.css], font_config=self.font_config)

    def layout(self, receipt: Receipt) -> Any:
        """Lay out one receipt into a ``weasyprint.Document`` (one sheet where it can be: :meth:`fit`)."""
        view = _view(receipt)
        return self.fit(receipt, self.document(render_html(receipt, view=view)), view)

    def fit(self, receipt: Receipt, document: Any, view: dict[str, Any]) -> Any:
        """``document`` (the receipt laid out from ``view`` as :func:`render_html` makes it), or
        the receipt laid out again with "where to pay" opening the back, when that takes fewer pages.

        The back of the sheet starts a page of its own; when the front cannot hold the payees'
        payment parts (many payees, each with its QR code), they used to take a page alone and
        the receipt ran to a second sheet. Only such receipts are laid out twice; a tear-off
        slip (:attr:`Receipt.tear_off`) is never moved.
        """
        if len(document.pages) <= SHEET_PAGES or len(view["pay_parts"]) < 2 or receipt.tear_off:
            return document  # a tear-off slip stays on the front, where it is cut off
        moved = self.document(render_html(receipt, pay_on_back=True, view=view))
        return moved if len(moved.pages) < len(document.pages) else document


_ENGINES: dict[str, PdfEngine] = {}


def pdf_engine(css_path: Path = CSS_PATH) -> PdfEngine:
    """The process's :class:`PdfEngine` for ``css_path``, built on first use (stack check included)."""
    key = str(css_path)
    engine = _ENGINES.get(key)
    if engine is None:
        with _ENGINE_LOCK:
            engine = _ENGINES.get(key)
            if engine is None:
                check_pdf_stack()
                from weasyprint import CSS, HTML
                from weasyprint.text.fonts import FontConfiguration

                font_config = FontConfiguration()
                ua_css = CSS(string=_UA_CSS, font_config=font_config)

                class _SmallUaHTML(HTML):
                    """HTML with the small UA stylesheet (private hook, WeasyPrint is pinned)."""

                    def _ua_stylesheets(self, *args: Any, **kwargs: Any) -> list[Any]:
                        return [ua_css]

                css = CSS(filename=key, font_config=font_config)
                engine = _ENGINES[key] = PdfEngine(_SmallUaHTML, font_config, css)
    return engine


def _engine() -> PdfEngine:
    """The process's receipt engine."""
    return pdf_engine(CSS_PATH)


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write through ``<name>.pdf.tmp`` and ``os.replace``, so readers never see half a PDF."""
    tmp = path.with_suffix(".pdf.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render_pdf(receipt: Receipt, path: Path) -> None:
    """Render one receipt to ``path`` (atomically), in this process."""
    path = Path(path)
    engine = _engine()
    token = _CURRENT_ACCOUNT.set(receipt.account_id)
    try:
        document = engine.layout(receipt)
        write_atomic(path, document.write_pdf)
    finally:
        _CURRENT_ACCOUNT.reset(token)


# --------------------------------------------------------------------------- content cache


@lru_cache(maxsize=1)
def _engine_key() -> bytes:
    """What, besides a receipt's HTML, decides its PDF's bytes: the stylesheets and versions."""
    import pydyf
    import weasyprint

    digest = hashlib.sha256()
    for part in (weasyprint.__version__, pydyf.__version__, _UA_CSS, FONT_FAMILY):
        digest.update(part.encode() + b"\0")
    digest.update(CSS_PATH.read_bytes())
    return digest.digest()


def content_key(html: str) -> str:
    """The receipt's content hash: its HTML (QR codes included, as data URIs) and the engine.

    Two receipts with one key render to the same bytes (the PDF carries no clock: see
    ``tests/flows/test_dask.py``), so a re-run may copy the earlier PDF instead of laying it out.
    """
    return hashlib.sha256(_engine_key() + html.encode()).hexdigest()


def _cached(cache: Path, key: str) -> tuple[Path, int] | None:
    """The cached PDF of ``key`` and its page count (kept in the name), if any."""
    for path in (cache / key[:2]).glob(f"{key}-*.pdf"):
        pages = path.stem.rpartition("-")[2]
        if pages.isdigit():
            return path, int(pages)
    return None


def _remember(cache: Path, key: str, pdf: Path, pages: int) -> None:
    """Copy a freshly written ``pdf`` into the cache (atomically: a killed run leaves scratch only)."""
    folder = cache / key[:2]
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = folder / f".{key}.{uuid.uuid4().hex}.tmp"
    try:
        shutil.copyfile(pdf, tmp)
        os.replace(tmp, folder / f"{key}-{pages}.pdf")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- batch run


@dataclass(frozen=True)
class _Task:
    """One unit of pool work: a chunk of one building's receipts (or any chunk, unbatched)."""

    building_id: str
    chunk: int
    receipts: tuple[Receipt, ...]
    out_dir: Path
    batches: bool
    run_token: str
    cache: Path | None = None


@dataclass(frozen=True)
class _Part:
    """A print-batch part written under a temporary name, renamed by the parent."""

    chunk: int
    part: int
    tmp_path: Path
    pages: int


@dataclass(frozen=True)
class _TaskResult:
    """What a task sends back: counts, batch parts to rename, log records to re-emit."""

    building_id: str
    count: int
    parts: tuple[_Part, ...]
    logs: tuple[tuple[int, str], ...]
    reused: int = 0


class _Collector(logging.Handler):
    """In a pool worker: keeps ``pipeline.render`` records to send back to the parent."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append((record.levelno, record.getMessage()))
        except Exception:
            self.handleError(record)


_COLLECTOR: _Collector | None = None


#: Garbage-collector thresholds while laying out: layout allocates millions of short-lived
#: objects, and with the default (700, 10, 10) the cyclic GC costs ≈10 % of the render time,
#: more while a 200-page batch is held in memory.
_GC_THRESHOLDS = (50_000, 10, 10)


@contextlib.contextmanager
def relaxed_gc() -> Iterator[None]:
    """Collect garbage less often for the duration (process-wide; restored afterwards)."""
    old = gc.get_threshold()
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _init_worker(main_pid: int) -> None:
    """Pool initializer: build FontConfiguration + CSS once, route logs to the parent."""
    global _COLLECTOR
    die_with(main_pid)
    _COLLECTOR = _Collector()
    _LOG.addHandler(_COLLECTOR)
    _LOG.setLevel(logging.INFO)
    _LOG.propagate = False
    _engine()
    gc.freeze()  # start-up objects (WeasyPrint, fonts, CSS) are never garbage: stop scanning them
    gc.set_threshold(*_GC_THRESHOLDS)


def _pack_pages(page_lists: Sequence[list[Any]], limit: int) -> list[list[Any]]:
    """Group receipts' pages into parts of at most ``limit`` pages, never splitting a receipt.

    >>> [len(p) for p in _pack_pages([[1], [2, 3], [4], [5]], 2)]
    [1, 2, 2]
    """
    parts: list[list[Any]] = []
    current: list[Any] = []
    for pages in page_lists:
        if current and len(current) + len(pages) > limit:
            parts.append(current)
            current = []
        current.extend(pages)
    if current:
        parts.append(current)
    return parts


def _run_task(task: _Task) -> _TaskResult:
    """Render a chunk: one PDF per receipt, then its batch parts from those files.

    A batch is the receipts' PDFs concatenated with pypdf (≈5 ms a page) rather than
    the laid-out pages written a second time by WeasyPrint (≈30 ms a page); the
    documents need not stay in memory either.

    With ``task.cache``, a receipt whose :func:`content_key` is in the cache is copied from
    it instead of being laid out; a receipt laid out is added to the cache.
    """
    engine = _engine()
    singles: list[tuple[Path, str, list[None]]] = []
    written: list[Path] = []
    reused = 0
    try:
        for receipt in task.receipts:
            token = _CURRENT_ACCOUNT.set(receipt.account_id)
            try:
                view = _view(receipt)
                html = render_html(receipt, view=view)
                path = task.out_dir / f"{receipt.account_id}.pdf"
                key = content_key(html) if task.cache is not None else ""
                hit = _cached(task.cache, key) if task.cache is not None else None
                if hit is not None:
                    source, n_pages = hit
                    write_atomic(path, functools.partial(shutil.copyfile, source))
                    reused += 1
                else:
                    document = engine.fit(receipt, engine.document(html), view)
                    write_atomic(path, document.write_pdf)
                    n_pages = len(document.pages)
                    del document
                    if task.cache is not None:
                        _remember(task.cache, key, path, n_pages)
            finally:
                _CURRENT_ACCOUNT.reset(token)
            if task.batches and receipt.paper:
                singles.append((path, receipt.account_id, [None] * n_pages))
        parts: list[_Part] = []
        if task.batches and singles:
            from pypdf import PdfWriter

            batch_dir = task.out_dir / "batches"
            title = f"Квитанции за {period_text(task.receipts[0].period)}, дом {task.building_id}"
            packed = _pack_pages([pages for _, _, pages in singles], MAX_BATCH_PAGES)
            queue = iter(singles)
            for number, pages in enumerate(packed, start=1):
                tmp = batch_dir / (
                    f".{task.building_id}.{task.run_token}.{task.chunk:05d}-{number:03d}.pdf.tmp"
                )
                written.append(tmp)
                writer = PdfWriter()
                taken = 0
                while taken < len(pages):
                    path, account_id, receipt_pages = next(queue)
                    writer.append(path, outline_item=f"Лицевой счёт {account_id}")
                    taken += len(receipt_pages)
                writer.add_metadata({"/Title": title})
                with open(tmp, "wb") as fh:
                    writer.write(fh)
                parts.append(_Part(task.chunk, number, tmp, len(pages)))
    except BaseException:
        for tmp in written:
            tmp.unlink(missing_ok=True)
        raise
    logs: tuple[tuple[int, str], ...] = ()
    if _COLLECTOR is not None:
        logs = tuple(_COLLECTOR.records)
        _COLLECTOR.records.clear()
    return _TaskResult(task.building_id, len(task.receipts), tuple(parts), logs, reused)


class _Batches:
    """Parent side: renames a building's parts to their final names once all chunks are in."""

    def __init__(self, batch_dir: Path, chunks: dict[str, int]) -> None:
        self.batch_dir = batch_dir
        self.remaining = dict(chunks)
        self.parts: dict[str, list[_Part]] = {}
        self.written = 0

    def add(self, result: _TaskResult) -> None:
        building = result.building_id
        if building not in self.remaining:
            return
        self.parts.setdefault(building, []).extend(result.parts)
        self.remaining[building] -= 1
        if self.remaining[building] == 0:
            parts = sorted(self.parts.pop(building), key=lambda p: (p.chunk, p.part))
            single = len(parts) == 1
            for number, part in enumerate(parts, start=1):
                name = f"{building}.pdf" if single else f"{building}-{number}.pdf"
                os.replace(part.tmp_path, self.batch_dir / name)
                self.written += 1


def _check_id(kind: str, value: str) -> None:
    if not _SAFE_ID.match(value):
        raise ValueError(
            f"{kind} «{value}» не годится для имени файла "
            "(допустимы буквы, цифры, «_», «-», «.», не в начале)"
        )


def _plan(
    receipts: Iterable[Receipt], out_dir: Path, batches: bool, workers: int, run_token: str,
    cache: Path | None = None,
) -> tuple[list[_Task], dict[str, int]]:
    """Split the run into tasks; also return the number of chunks per building."""
    by_building: dict[str, list[Receipt]] = {}
    seen: set[str] = set()
    for receipt in receipts:
        _check_id("лицевой счёт", receipt.account_id)
        _check_id("дом", receipt.building_id)
        if receipt.account_id in seen:
            raise ValueError(f"лицевой счёт «{receipt.account_id}» встречается дважды")
        seen.add(receipt.account_id)
        by_building.setdefault(receipt.building_id, []).append(receipt)
    tasks: list[_Task] = []
    chunks: dict[str, int] = {}
    if batches:
        for building, items in by_building.items():
            n_chunks = math.ceil(len(items) / MAX_BATCH_PAGES)
            size = math.ceil(len(items) / n_chunks)
            chunks[building] = n_chunks
            for i in range(n_chunks):
                part = tuple(items[i * size : (i + 1) * size])
                tasks.append(_Task(building, i, part, out_dir, True, run_token, cache))
    else:
        flat = [r for items in by_building.values() for r in items]
        size = max(1, min(_UNBATCHED_CHUNK, math.ceil(len(flat) / (workers * 4))))
        for i in range(0, len(flat), size):
            tasks.append(_Task("", i // size, tuple(flat[i : i + size]), out_dir, False, run_token,
                               cache))
    tasks.sort(key=lambda t: -len(t.receipts))  # biggest first: better balance at the tail
    return tasks, chunks


def _relog(result: _TaskResult) -> None:
    for level, message in result.logs:
        _LOG.log(level, "%s", message)


def render_receipts(
    receipts: Iterable[Receipt],
    out_dir: Path,
    workers: int | None = None,
    batches: bool = True,
    cache: Path | None = None,
) -> RenderReport:
    """Render one PDF per account, ``out_dir / f"{account_id}.pdf"``, plus print batches.

    With ``batches``, every building also gets ``out_dir / "batches" /
    f"{building_id}.pdf"`` holding all its receipts, assembled from the pages
    already laid out for the single PDFs (no second layout). A batch is at most
    :data:`MAX_BATCH_PAGES` pages; a bigger building is split evenly into
    ``{building_id}-1.pdf``, ``{building_id}-2.pdf``, … (never inside a receipt).

    Work is done by a ``ProcessPoolExecutor`` (start method ``forkserver``, safe
    when the caller has threads, e.g. inside a Prefect task) with ``workers``
    processes (default ``os.cpu_count()``), each warmed once with
    FontConfiguration + CSS; a task is one building's receipts (≤ 200). With one
    worker, or a single task, everything runs in this process. Every file is
    written atomically. Worker log records come back to ``pipeline.render`` here.

    The receipts are held in memory (grouped by building); a worker holds up to
    200 laid-out pages while it builds a batch. Account and building ids must be
    safe file names; duplicate accounts are refused. Batch files left by an
    earlier run into the same ``out_dir`` are not removed.

    ``cache``: a folder of PDFs by :func:`content_key` (``<key[:2]>/<key>-<pages>.pdf``): a
    receipt whose HTML an earlier run already laid out is copied from there, so a re-run (a
    close that failed after rendering, a region closed again after one register was mended)
    lays out only the receipts whose content changed. The caller owns the folder's lifetime.

    As with any ``forkserver``/``spawn`` pool, a script calling this must guard
    its entry point with ``if __name__ == "__main__":`` (workers import the main
    module). Do not call it from two threads of one process at once.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    if n_workers < 1:
        raise ValueError(f"workers должно быть ≥ 1, получено {n_workers}")
    run_token = uuid.uuid4().hex[:8]
    tasks, chunks = _plan(receipts, out_dir, batches, n_workers, run_token, cache)
    check_pdf_stack()
    out_dir.mkdir(parents=True, exist_ok=True)
    batch_dir = out_dir / "batches"
    if batches and tasks:
        batch_dir.mkdir(exist_ok=True)
    finisher = _Batches(batch_dir, chunks)
    count = reused = 0
    n_workers = min(n_workers, len(tasks))
    try:
        if n_workers <= 1:
            with relaxed_gc():
                for task in tasks:
                    result = _run_task(task)
                    finisher.add(result)
                    count += result.count
                    reused += result.reused
        else:
            context = multiprocessing.get_context("forkserver")
            with ProcessPoolExecutor(n_workers, context, initializer=_init_worker,
                                     initargs=(os.getpid(),)) as pool:
                futures = [pool.submit(_run_task, task) for task in tasks]
                try:
                    for future in as_completed(futures):
                        result = future.result()
                        _relog(result)
                        finisher.add(result)
                        count += result.count
                        reused += result.reused
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    except BaseException:
        if batches and batch_dir.is_dir():  # drop this run's unfinished batch parts
            for tmp in batch_dir.glob(f".*.{run_token}.*.pdf.tmp"):
                tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    _LOG.info(
        "квитанции: %d PDF (%d без изменений взяты из кэша), %d пачек за %.1f с (%.1f квит./с), %s",
        count, reused, finisher.written, seconds, count / seconds if seconds else 0.0, out_dir,
    )  # fmt: skip
    return RenderReport(count=count, batches=finisher.written, seconds=seconds, out_dir=out_dir,
                        reused=reused)
