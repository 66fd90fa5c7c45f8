"""Invoices (счёт на оплату) and acts of services rendered (акт) for organization payers.

An account whose ``payer_kind`` is ``organization`` gets, instead of the household
receipt, one document per seller (the supplier the money goes to): page 1 is the
invoice, page 2 the act for the same lines. A company pays every supplier by its own
payment order, so there is one invoice per supplier of the account.

VAT (НДС) rule table ``rules/vat_rates.csv``
============================================

Columns ``supplier_id,service_id,from,rate,source``:

* ``supplier_id`` — ``org_id`` of the organizations register; empty = any supplier;
* ``service_id`` — from ``services.csv``; empty = any service;
* ``from`` — ISO date ``YYYY-MM-DD`` the row applies from;
* ``rate`` — percent as text: ``0``, ``10``, ``20``, ``22`` (a trailing ``%`` is
  allowed) or ``none`` (also ``без ндс``) = «Без НДС»: the supplier is not a VAT payer
  (e.g. on УСН) or the service is exempt (НК РФ ст.149);
* ``source`` — the reason, free text.

The default table has one row ``,,2000-01-01,none,…``: nothing is taxed until the
workspace says so. An absent file means the same default. A present file must cover
every (supplier, service, date) it is asked about — add a catch-all ``,,2000-01-01,none``
row — otherwise :class:`BillingError` names what is missing: a legal document is not
printed with a guessed VAT.

Rule selection, for a line of supplier S and service V in period P:

1. rows with ``from`` ≤ the last day of P, whose supplier is S or empty and whose
   service is V or empty;
2. the most specific wins: supplier+service > supplier only > service only > any;
3. among those, the latest ``from``.

Example (NOT a default; the standard rate is 20 % until 31.12.2025 and 22 % from
01.01.2026 by Federal law 425-ФЗ of 28.11.2025 — UNVERIFIED, written from memory;
check НК РФ ст.164 before use)::

    supplier_id,service_id,from,rate,source
    ,,2000-01-01,none,"Поставщики на УСН"
    vodokanal,,2025-01-01,20,"НК РФ ст.164 п.3"
    vodokanal,,2026-01-01,22,"НК РФ ст.164 п.3 в ред. 425-ФЗ (проверить)"
    vodokanal,sewerage,2000-01-01,none,"пример освобождения по ст.149"

VAT is included in the price (housing tariffs are set with VAT). Per line, once:
``vat = round_half_up(amount × rate / (100 + rate))`` in kopecks; every total is the sum
of the rounded lines (so the printed total VAT is exactly Σ line VAT).

Numbering
=========

The invoice and its act share the number ``{account_id}-{YYYYMM}-{n}``, where ``n`` is the
seller's position (1, 2, …) among the account's sellers in the order their first line
appears in ``lines`` (the print order of ``services.csv``, as on the receipts). The
invoice is dated ``issued`` (default: the last day of the period), the act the last day
of the period.

Amount due
==========

``Всего к оплате`` is the sum of the seller's lines unless ``amounts_due`` (org_id →
kopecks, e.g. the closing debt of the balances, ``Payee.to_pay``) is passed to
:func:`invoices_for`; a negative amount (an advance) prints as 0. A seller with no lines in
the period gets no document (an act needs services).

Recalculations and penalties
============================

From a close, :func:`build_invoices` does it all for the accounts with ``payer_kind =
organization``, and :func:`render_invoices` writes ``{number}.pdf`` per invoice. Besides the
period's charge lines an invoice lists

* each recalculation of the seller's services (``Перерасчёт: <service> за <month>``, its reason
  in brackets; the sign as posted), on the invoice and on the act: it corrects the services of
  an earlier month, so the act of this period states it; VAT by the service's rule in force on
  this period's last day (the correction is posted in this period);
* the period's penalty of the seller (ЖК РФ ст.155 ч.14, or ч.14.1 for capital repair), on the
  invoice only: a penalty is no service, so the act does not list it. A penalty is not taxed —
  a penalty for late payment is not a payment for the services (НК РФ ст.162 п.1 пп.2 read with
  п.15 of Постановление Пленума ВАС РФ от 30.05.2014 № 33; UNVERIFIED: written from memory, the
  domain notes have no VAT source) — unless ``vat_rates.csv`` has a row for ``service_id =
  penalty`` (a catch-all row does not apply to penalties): the choice is data.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline.dates import Period
from pipeline.errors import BillingError
from pipeline.ingest.readers import decode_text, sniff_separator
from pipeline.money import div_half_up_int, format_rub
from pipeline.render.receipts import (
    TEMPLATES_DIR,
    amount_in_words,
    fmt_decimal,
    pdf_engine,
    period_text,
    template,
    write_atomic,
)

if TYPE_CHECKING:
    from pipeline.close import CloseResult

__all__ = [
    "ALLOWED_VAT_RATES",
    "DEFAULT_VAT_RATES",
    "LINE_KINDS",
    "PENALTY_SERVICE",
    "VAT_FILE",
    "Buyer",
    "Invoice",
    "InvoiceLine",
    "LineVat",
    "Seller",
    "build_invoices",
    "invoices_for",
    "line_vat",
    "load_vat_rates",
    "organization_accounts",
    "parse_vat_rates",
    "penalty_article",
    "period_penalties",
    "render_invoice_html",
    "render_invoice_pdf",
    "render_invoices",
    "vat_by_rate",
    "vat_for_lines",
    "vat_rule_for",
]

_LOG = logging.getLogger("pipeline.render")

VAT_FILE = "vat_rates.csv"
VAT_COLUMNS = ("supplier_id", "service_id", "from", "rate", "source")

#: The rates a row may name, percent (``none`` — «Без НДС» — is the other choice).
ALLOWED_VAT_RATES = (0, 10, 20, 22)

TEMPLATE_NAME = "invoice.html.j2"
CSS_PATH = TEMPLATES_DIR / "invoice.css"

#: Columns of a parsed VAT table. ``rate_pct`` is null for «Без НДС»; ``rate`` is the
#: canonical text (``"20"`` or ``"none"``); ``supplier_id``/``service_id`` null = any.
VAT_SCHEMA: dict[str, Any] = {
    "supplier_id": pl.String, "service_id": pl.String, "from": pl.Date, "rate": pl.String,
    "rate_pct": pl.Int64, "source": pl.String, "source_row": pl.Int64,
}

_DEFAULT_SOURCE = "По умолчанию НДС не начисляется (таблица vat_rates.csv не задана)"

#: What an absent ``vat_rates.csv`` means: nothing is taxed.
DEFAULT_VAT_RATES = pl.DataFrame(
    [{"supplier_id": None, "service_id": None, "from": date(2000, 1, 1), "rate": "none",
      "rate_pct": None, "source": _DEFAULT_SOURCE, "source_row": 0}],
    schema=VAT_SCHEMA,
)

_NBSP = "\u00a0"


# --------------------------------------------------------------------------- VAT rules


def _parse_rate(text: str) -> int | None:
    """``"20"``, ``"20 %"`` → 20; ``"none"``, ``"Без НДС"`` → ``None``; else ``ValueError``."""
    cleaned = text.strip().casefold().replace(_NBSP, " ")
    if cleaned in ("none", "без ндс"):
        return None
    cleaned = cleaned.removesuffix("%").strip()
    if cleaned.isdigit() and int(cleaned) in ALLOWED_VAT_RATES:
        return int(cleaned)
    allowed = ", ".join(str(r) for r in ALLOWED_VAT_RATES)
    raise ValueError(f"ставка НДС «{text}» не допускается (нужно {allowed} или none — без НДС)")


def parse_vat_rates(text: str, file: str = VAT_FILE) -> pl.DataFrame:
    """Parse the text of a VAT rule table; :class:`BillingError` names file, row and column.

    Rows are numbered as in a spreadsheet: the header is row 1. Blank lines are skipped.
    Two rows for the same supplier, service and date are refused (which one would win?).
    """
    if not text.strip():
        raise BillingError(f"{file}: файл пуст (нет даже строки заголовка)")
    separator = sniff_separator(text.split("\n", 1)[0])
    records = list(csv.reader(io.StringIO(text), delimiter=separator, quotechar='"'))
    header = [h.strip() for h in records[0]]
    missing = [c for c in VAT_COLUMNS if c not in header]
    if missing:
        raise BillingError(f"{file}, строка 1: нет столбца «{'», «'.join(missing)}» "
                           f"(нужны {','.join(VAT_COLUMNS)})")
    index = {c: header.index(c) for c in VAT_COLUMNS}
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str | None, str | None, date], int] = {}
    for number, fields in enumerate(records[1:], start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) > len(header):
            raise BillingError(f"{file}, строка {number}: больше полей, чем в заголовке "
                               f"({len(fields)} вместо {len(header)}); текст с запятой возьмите в кавычки")
        cell = {c: (fields[i].strip() if i < len(fields) else "") for c, i in index.items()}

        def refuse(column: str, reason: str, number: int = number,
                   cell: dict[str, str] = cell) -> BillingError:
            return BillingError(f"{file}, строка {number}, столбец «{column}»: {reason} "
                                f"(значение «{cell[column]}»)")

        try:
            start = date.fromisoformat(cell["from"])
        except ValueError:
            raise refuse("from", "нужна дата в виде ГГГГ-ММ-ДД") from None
        if len(cell["from"]) != 10:
            raise refuse("from", "нужна дата в виде ГГГГ-ММ-ДД")
        try:
            rate = _parse_rate(cell["rate"])
        except ValueError as err:
            raise refuse("rate", str(err)) from None
        supplier = cell["supplier_id"] or None
        service = cell["service_id"] or None
        key = (supplier, service, start)
        if key in seen:
            raise refuse("from", f"повтор строки {seen[key]}: тот же поставщик, услуга и дата")
        seen[key] = number
        rows.append({"supplier_id": supplier, "service_id": service, "from": start,
                     "rate": "none" if rate is None else str(rate), "rate_pct": rate,
                     "source": cell["source"], "source_row": number})
    return pl.DataFrame(rows, schema=VAT_SCHEMA)


def load_vat_rates(rules_dir: Path) -> pl.DataFrame:
    """``rules_dir / vat_rates.csv`` parsed (columns of :data:`VAT_SCHEMA`).

    An absent file is :data:`DEFAULT_VAT_RATES` (nothing taxed). UTF-8 or Windows-1251,
    separator ``,``, ``;`` or TAB as in the other rule tables.
    """
    path = Path(rules_dir) / VAT_FILE
    if not path.is_file():
        return DEFAULT_VAT_RATES
    text, _ = decode_text(path.read_bytes(), VAT_FILE)
    return parse_vat_rates(text, VAT_FILE)


@dataclass(frozen=True)
class LineVat:
    """VAT of one line: the rule that applied and the VAT in kopecks."""

    #: Percent; ``None`` — «Без НДС».
    rate: int | None
    #: VAT included in the line's amount, kopecks (0 for «Без НДС» and 0 %).
    vat: int
    #: Row of ``vat_rates.csv`` that chose the rate (0 — the built-in default).
    source_row: int


def line_vat(amount_kop: int, rate: int | None) -> int:
    """VAT included in ``amount_kop`` at ``rate`` %, rounded half up once.

    >>> line_vat(12_000, 20), line_vat(100, 20), line_vat(-100, 20), line_vat(500, None)
    (2000, 17, -17, 0)
    """
    if not rate:
        return 0
    return div_half_up_int(amount_kop * rate, 100 + rate)


def _specificity(row: Mapping[str, Any]) -> int:
    return (2 if row["supplier_id"] is not None else 0) + (1 if row["service_id"] is not None else 0)


def vat_rule_for(supplier_id: str, service_id: str, on: date,
                 rates: pl.DataFrame | Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The row of ``rates`` that applies: most specific first, then the latest ``from`` ≤ ``on``.

    Raises :class:`BillingError` when no row applies.
    """
    rows = rates.to_dicts() if isinstance(rates, pl.DataFrame) else rates
    best: Mapping[str, Any] | None = None
    for row in rows:
        if row["from"] > on:
            continue
        if row["supplier_id"] not in (None, supplier_id) or row["service_id"] not in (None, service_id):
            continue
        if best is None or (_specificity(row), row["from"]) > (_specificity(best), best["from"]):
            best = row
    if best is None:
        raise BillingError(
            f"{VAT_FILE}: нет правила НДС для поставщика «{supplier_id}», услуги «{service_id}» "
            f"на {on:%d.%m.%Y}; добавьте общую строку «,,2000-01-01,none» (без НДС) или нужную ставку")
    return best


def vat_by_rate(vats: Iterable[LineVat]) -> dict[int, int]:
    """VAT per taxed rate (0 % included), highest rate first, kopecks."""
    out: dict[int, int] = {}
    for v in sorted(vats, key=lambda v: -(v.rate or 0)):
        if v.rate is not None:
            out[v.rate] = out.get(v.rate, 0) + v.vat
    return out


@dataclass(frozen=True)
class InvoiceLine:
    """One line of an invoice and its act: one service of one supplier."""

    #: ``services.csv`` id; picks the VAT rule. Never empty.
    service_id: str
    #: As printed, e.g. "Холодное водоснабжение".
    service_name: str
    #: Unit, e.g. "м³"; empty for none.
    unit: str
    #: Quantity in ``unit``; ``None`` for a fixed fee.
    volume: Decimal | None
    #: Price per unit, rubles, VAT included; ``None`` when there is no price.
    price: Decimal | None
    #: Amount, kopecks, VAT included (already rounded by the charge stage).
    amount_kop: int
    #: ``org_id`` of the supplier (the seller of this line).
    supplier_id: str
    #: ``service`` (a charge of the period), ``recalculation`` (a correction of an earlier
    #: month: invoice and act) or ``penalty`` (invoice only: no service, no act line).
    kind: str = "service"


#: The ``service_id`` of a penalty line, and the only ``vat_rates.csv`` rows that tax it.
PENALTY_SERVICE = "penalty"
LINE_KINDS = ("service", "recalculation", "penalty")


def vat_for_lines(lines: Sequence[InvoiceLine], period: str, rates: pl.DataFrame) -> tuple[LineVat, ...]:
    """VAT of every line (aligned with ``lines``), by the rule in force on the period's last day."""
    on = Period.parse(period).last
    rows = rates.to_dicts()
    # A penalty is taxed only by a row that names it (module docstring): else «Без НДС».
    penalty_rows = [r for r in rows if r["service_id"] == PENALTY_SERVICE]
    untaxed: Mapping[str, Any] = {"rate_pct": None, "source_row": 0}
    out = []
    for line in lines:
        if not line.service_id:
            raise ValueError(f"строка «{line.service_name}»: не указан код услуги — ставку НДС не выбрать")
        if line.kind not in LINE_KINDS:
            raise ValueError(f"строка «{line.service_name}»: неизвестный вид строки «{line.kind}»")
        if line.kind == "penalty":
            named = [r for r in penalty_rows if r["from"] <= on
                     and r["supplier_id"] in (None, line.supplier_id)]
            rule = vat_rule_for(line.supplier_id, PENALTY_SERVICE, on, named) if named else untaxed
        else:
            rule = vat_rule_for(line.supplier_id, line.service_id, on, rows)
        out.append(LineVat(rule["rate_pct"], line_vat(line.amount_kop, rule["rate_pct"]),
                           int(rule["source_row"])))
    return tuple(out)


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Seller:
    """The supplier (поставщик, исполнитель) with its bank details."""

    org_id: str
    name: str
    inn: str = ""
    kpp: str = ""
    address: str = ""
    bank_name: str = ""
    bik: str = ""
    account: str = ""
    corr_account: str = ""


@dataclass(frozen=True)
class Buyer:
    """The organization payer (покупатель, заказчик); ИНН/КПП may be unknown."""

    name: str
    inn: str = ""
    kpp: str = ""
    address: str = ""


@dataclass(frozen=True)
class Invoice:
    """One invoice and its act: one account, one period, one seller."""

    #: ``{account_id}-{YYYYMM}-{n}``; also the act's number and the PDF file name.
    number: str
    #: Date of the invoice.
    date: dt.date
    #: Billing period ``YYYY-MM``.
    period: str
    seller: Seller
    buyer: Buyer
    #: Personal account (лицевой счёт) of the payer.
    account_id: str
    lines: tuple[InvoiceLine, ...]
    #: VAT of each line, aligned with ``lines``.
    vat: tuple[LineVat, ...]
    #: Pay by; ``None`` prints no due line.
    due_date: dt.date | None
    #: Всего к оплате, kopecks (≥ 0).
    to_pay: int

    def __post_init__(self) -> None:
        if len(self.vat) != len(self.lines):
            raise ValueError(f"счёт № {self.number}: НДС указан не для каждой строки")
        if self.to_pay < 0:
            raise ValueError(f"счёт № {self.number}: сумма к оплате отрицательна")

    @property
    def total(self) -> int:
        """Σ line amounts, kopecks (VAT included)."""
        return sum(ln.amount_kop for ln in self.lines)

    @property
    def vat_total(self) -> int:
        """Σ line VAT, kopecks."""
        return sum(v.vat for v in self.vat)

    @property
    def vat_by_rate(self) -> dict[int, int]:
        """VAT per taxed rate (0 % included), highest rate first, kopecks."""
        return vat_by_rate(self.vat)

    @property
    def untaxed(self) -> int:
        """Σ amounts of the «Без НДС» lines, kopecks."""
        return sum(ln.amount_kop for ln, v in zip(self.lines, self.vat, strict=True) if v.rate is None)

    @property
    def act_items(self) -> tuple[tuple[InvoiceLine, LineVat], ...]:
        """The act's lines with their VAT: every line but the penalties (no service)."""
        return tuple((ln, v) for ln, v in zip(self.lines, self.vat, strict=True) if ln.kind != "penalty")

    @property
    def act_date(self) -> dt.date:
        """The act is dated the last day of the period."""
        return Period.parse(self.period).last


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def invoices_for(
    account: Mapping[str, Any],
    lines: Sequence[InvoiceLine],
    orgs: Mapping[str, Mapping[str, Any]],
    period: str,
    due_date: date | None,
    rates: pl.DataFrame,
    *,
    amounts_due: Mapping[str, int] | None = None,
    issued: date | None = None,
) -> list[Invoice]:
    """One :class:`Invoice` per seller of the account's ``lines`` (order of first appearance).

    ``account`` has ``account_id`` and ``payer_name`` and optionally ``payer_inn``,
    ``payer_kpp``, ``payer_address``. ``orgs`` maps ``org_id`` → organizations register row
    (``name``, ``inn``, ``kpp``, ``address``, ``bank_name``, ``bik``, ``account``,
    ``corr_account``). ``amounts_due`` (org_id → kopecks) overrides «Всего к оплате»,
    which is otherwise the sum of the seller's lines. ``issued`` dates the invoices
    (default: the period's last day). Raises ``ValueError`` for a seller not in ``orgs``.
    """
    p = Period.parse(period)
    account_id = _text(account["account_id"])
    buyer = Buyer(name=_text(account["payer_name"]), inn=_text(account.get("payer_inn")),
                  kpp=_text(account.get("payer_kpp")), address=_text(account.get("payer_address")))
    vats = vat_for_lines(lines, str(p), rates)
    grouped: dict[str, list[tuple[InvoiceLine, LineVat]]] = {}
    for line, vat in zip(lines, vats, strict=True):
        grouped.setdefault(line.supplier_id, []).append((line, vat))
    out = []
    for n, (org_id, items) in enumerate(grouped.items(), start=1):
        org = orgs.get(org_id)
        if org is None:
            raise ValueError(f"ЛС {account_id}: поставщик «{org_id}» не найден в реестре организаций")
        seller = Seller(org_id=org_id, **{k: _text(org.get(k)) for k in (
            "name", "inn", "kpp", "address", "bank_name", "bik", "account", "corr_account")})
        if not (seller.account and seller.bik):
            _LOG.warning("ЛС %s: у поставщика «%s» не указан расчётный счёт или БИК — счёт без реквизитов",
                         account_id, seller.name)
        total = sum(ln.amount_kop for ln, _ in items)
        due = total if amounts_due is None else amounts_due.get(org_id, total)
        out.append(Invoice(
            number=f"{account_id}-{p.year:04d}{p.month:02d}-{n}",
            date=issued or p.last, period=str(p), seller=seller, buyer=buyer, account_id=account_id,
            lines=tuple(ln for ln, _ in items), vat=tuple(v for _, v in items), due_date=due_date,
            to_pay=max(due, 0),
        ))
    return out


def organization_accounts(accounts: pl.DataFrame) -> set[str]:
    """``account_id`` of the accounts whose ``payer_kind`` is ``organization``."""
    if "payer_kind" not in accounts.columns:
        return set()
    return set(accounts.filter(pl.col("payer_kind") == "organization")["account_id"].to_list())


def _priced(name: str, price_kop: int, coef_milli: int | None) -> tuple[str, Decimal]:
    """A charge line's name and unit price as an invoice prints them: quantity × price = sum.

    A line charged with an increasing coefficient (Правила 354 п.42, формула 4(1)) costs the
    tariff × the coefficient a unit (the charge stage rounds that product once, so the printed
    price and quantity give the line's sum to the kopeck); the name says which coefficient.

    >>> _priced("Холодное водоснабжение", 5861, 3000)
    ('Холодное водоснабжение (повышающий коэффициент 3)', Decimal('175.83'))
    >>> _priced("Отопление", 322209, None)
    ('Отопление', Decimal('3222.09'))
    """
    coef = 1000 if coef_milli is None else coef_milli
    price = Decimal(price_kop) * coef / 100_000
    if coef == 1000:
        return name, price
    return f"{name} (повышающий коэффициент {fmt_decimal(Decimal(coef) / 1000)})", price


def build_invoices(
    result: CloseResult, regs: Mapping[str, pl.DataFrame], services: pl.DataFrame, rates: pl.DataFrame,
    *, amounts_due: str = "lines", issued: date | None = None,
) -> Iterator[Invoice]:
    """The invoices of a close: every organization account with charges gets one per supplier.

    Lines are the period's charge lines in ``services.csv`` order (as on the receipts), then
    the recalculations (same order, then the month corrected) and the penalty of each seller
    (module docstring). The buyer's address is the premises' address. ``amounts_due``:
    ``"lines"`` (default) — «Всего к оплате» is the sum of the lines; ``"closing"`` — the
    closing debt of the supplier's balance (old debt, advances and payments included).
    """
    if amounts_due not in ("lines", "closing"):
        raise ValueError(f"amounts_due: «{amounts_due}» — нужно lines или closing")
    wanted = organization_accounts(regs["accounts"])
    if not wanted:
        return
    period = str(result.period)
    orgs = {r["org_id"]: r for r in regs["organizations"].iter_rows(named=True)}
    svc = {r["service_id"]: r for r in services.iter_rows(named=True)}
    order = {k: v["order"] for k, v in svc.items()}
    charge_lines = result.lines.filter(pl.col("account_id").is_in(sorted(wanted))).with_columns(
        pl.col("service_id").replace_strict(order, default=0).alias("_order")
    ).sort("account_id", "_order", "supplier_id", "line_from")
    by_account: dict[str, list[InvoiceLine]] = {}
    for ln in charge_lines.iter_rows(named=True):
        meta = svc.get(ln["service_id"], {"name": ln["service_id"], "unit": ""})
        name, price = _priced(meta["name"], ln["price_kop"], ln.get("coef_milli"))
        by_account.setdefault(ln["account_id"], []).append(InvoiceLine(
            service_id=ln["service_id"], service_name=name, unit=meta["unit"] or "",
            volume=None if ln["method"] == "fixed" else Decimal(ln["volume_micro"]) / 1_000_000,
            price=price, amount_kop=ln["amount_kop"], supplier_id=ln["supplier_id"]))
    # Invoices go to the accounts charged this period (the others get a receipt: a statement of
    # their debt, pipeline.render.build), with their recalculations and penalties.
    charged = set(by_account)
    for account_id, line in itertools.chain(_recalculation_lines(result, charged, svc, order),
                                            _penalty_lines(result, charged)):
        by_account[account_id].append(line)
    closing: dict[str, dict[str, int]] = {}
    if amounts_due == "closing":
        for b in result.balances.filter(pl.col("account_id").is_in(sorted(wanted))).iter_rows(named=True):
            if b["supplier_id"]:
                closing.setdefault(b["account_id"], {})[b["supplier_id"]] = b["closing_kop"]
    accounts = (
        regs["accounts"].filter(pl.col("account_id").is_in(sorted(by_account)))
        .join(regs["premises"].select("premise_id", "building_id", "number", "kind"), on="premise_id")
        .join(regs["buildings"].select("building_id", pl.col("address").alias("_b_address")),
              on="building_id")
        .sort("account_id")
    )
    for acc in accounts.iter_rows(named=True):
        place = "кв." if acc["kind"] == "residential" else "пом."
        account = {"account_id": acc["account_id"], "payer_name": acc["payer_name"],
                   "payer_inn": acc.get("payer_inn"), "payer_kpp": acc.get("payer_kpp"),
                   "payer_address": f"{acc['_b_address']}, {place} {acc['number']}"}
        yield from invoices_for(account, by_account[acc["account_id"]], orgs, period, result.due_date, rates,
                                amounts_due=closing.get(acc["account_id"], {}) if amounts_due == "closing"
                                else None, issued=issued)


def _recalculation_lines(result: CloseResult, wanted: set[str], svc: Mapping[str, Mapping[str, Any]],
                         order: Mapping[str, int]) -> Iterator[tuple[str, InvoiceLine]]:
    """(account, line) of every recalculation of the organization accounts, in print order."""
    if result.recalculations is None:
        return
    rows = result.recalculations.filter(pl.col("account_id").is_in(sorted(wanted))
                                        & (pl.col("amount_kop") != 0)).with_columns(
        pl.col("service_id").replace_strict(order, default=0).alias("_order")
    ).sort("account_id", "_order", "supplier_id", "origin_period", "reason")
    for rc in rows.iter_rows(named=True):
        name = svc.get(rc["service_id"], {"name": rc["service_id"]})["name"]
        reason = f" ({rc['reason']})" if rc.get("reason") else ""
        yield rc["account_id"], InvoiceLine(
            service_id=rc["service_id"],
            service_name=f"Перерасчёт: {name} за {period_text(rc['origin_period'])}{reason}",
            unit="", volume=None, price=None, amount_kop=rc["amount_kop"], supplier_id=rc["supplier_id"],
            kind="recalculation")


def period_penalties(penalties: pl.DataFrame | None) -> pl.DataFrame:
    """A close's penalty per account, supplier and scheme (account_id, supplier_id, scheme,
    amount_kop), the sums that are not zero, sorted: the penalty lines of a receipt or an invoice."""
    if penalties is None or not penalties.height:
        return pl.DataFrame(schema={"account_id": pl.String, "supplier_id": pl.String, "scheme": pl.String,
                                    "amount_kop": pl.Int64})
    if "scheme" not in penalties.columns:
        penalties = penalties.with_columns(pl.lit("standard").alias("scheme"))
    return penalties.group_by("account_id", "supplier_id", "scheme").agg(pl.col("amount_kop").sum()).filter(
        pl.col("amount_kop") != 0).sort("account_id", "supplier_id", "scheme")


def penalty_article(scheme: str | None) -> str:
    """The article a penalty line cites: ЖК РФ ст.155 ч.14.1 for capital repair, else ч.14."""
    return "ЖК РФ ст.155 ч.14.1" if scheme == "capital_repair" else "ЖК РФ ст.155 ч.14"


def _penalty_lines(result: CloseResult, wanted: set[str]) -> Iterator[tuple[str, InvoiceLine]]:
    """(account, line) of the period's penalty per organization account and seller."""
    rows = period_penalties(result.penalties).filter(pl.col("account_id").is_in(sorted(wanted)))
    for p in rows.iter_rows(named=True):
        yield p["account_id"], InvoiceLine(
            service_id=PENALTY_SERVICE, service_name=f"Пени ({penalty_article(p['scheme'])})", unit="",
            volume=None, price=None, amount_kop=p["amount_kop"], supplier_id=p["supplier_id"], kind="penalty")


# --------------------------------------------------------------------------- HTML


def _vat_rows(items: Sequence[tuple[InvoiceLine, LineVat]]) -> list[dict[str, str]]:
    """«В том числе НДС (20 %)» per rate, highest first, and the untaxed sum where both occur."""
    rows = [{"label": f"В том числе НДС ({rate}{_NBSP}%):", "amount": format_rub(amount)}
            for rate, amount in vat_by_rate(v for _, v in items).items()]
    if not rows:
        rows.append({"label": "Без налога (НДС)", "amount": "—"})
    elif any(v.rate is None for _, v in items):
        untaxed = sum(ln.amount_kop for ln, v in items if v.rate is None)
        rows.append({"label": "В том числе без налога (НДС), на сумму:", "amount": format_rub(untaxed)})
    return rows


def _line_views(items: Sequence[tuple[InvoiceLine, LineVat]]) -> list[dict[str, Any]]:
    return [
        {
            "n": i,
            "name": ln.service_name,
            "volume": "—" if ln.volume is None else fmt_decimal(ln.volume),
            "unit": ln.unit or "—",
            "price": "—" if ln.price is None else fmt_decimal(ln.price, 2),
            "amount": format_rub(ln.amount_kop),
        }
        for i, (ln, _) in enumerate(items, start=1)
    ]


def _view(inv: Invoice) -> dict[str, Any]:
    """Everything the template prints, already formatted as text (``act_*``: the act's lines)."""
    items = tuple(zip(inv.lines, inv.vat, strict=True))
    act = inv.act_items
    act_total = sum(ln.amount_kop for ln, _ in act)
    s = inv.seller
    return {
        "date": f"{inv.date:%d.%m.%Y}",
        "act_date": f"{inv.act_date:%d.%m.%Y}",
        "period_text": period_text(inv.period),
        "seller_inn_kpp": f"ИНН {s.inn or '—'}" + (f" КПП {s.kpp}" if s.kpp else ""),
        "lines": _line_views(items),
        "count": len(inv.lines),
        "total": format_rub(inv.total),
        "vat_rows": _vat_rows(items),
        "act_lines": _line_views(act),
        "act_count": len(act),
        "act_total": format_rub(act_total),
        "act_vat_rows": _vat_rows(act),
        "act_total_words": amount_in_words(act_total),
        "to_pay": format_rub(inv.to_pay),
        "to_pay_words": amount_in_words(inv.to_pay),
        "differs": inv.to_pay != inv.total,
        "due_date": None if inv.due_date is None else f"{inv.due_date:%d.%m.%Y}",
    }


def render_invoice_html(invoice: Invoice) -> str:
    """The invoice (page 1) and its act (page 2) as one HTML page, Russian text."""
    return template(TEMPLATE_NAME).render(i=invoice, v=_view(invoice))


# --------------------------------------------------------------------------- PDF

def render_invoice_pdf(invoice: Invoice, path: Path) -> None:
    """Render one invoice with its act (2 pages or more) to ``path``, atomically, in this process."""
    document = pdf_engine(CSS_PATH).document(render_invoice_html(invoice))
    write_atomic(Path(path), document.write_pdf)


def render_invoices(invoices: Iterable[Invoice], out_dir: Path) -> int:
    """Render every invoice to ``out_dir / f"{number}.pdf"``; returns the count.

    Organization payers are few, so this runs in this process, one document at a time.
    ``out_dir`` is created only when there is an invoice to write.
    """
    out_dir = Path(out_dir)
    count = 0
    for invoice in invoices:
        if "/" in invoice.number or invoice.number.startswith("."):
            raise ValueError(f"номер счёта «{invoice.number}» не годится для имени файла")
        out_dir.mkdir(parents=True, exist_ok=True)
        render_invoice_pdf(invoice, out_dir / f"{invoice.number}.pdf")
        count += 1
    return count
