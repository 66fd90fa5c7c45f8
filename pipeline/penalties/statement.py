"""Расчёт задолженности и пени для суда: one account, PDF (Jinja2 + WeasyPrint) and XLSX.

:func:`write_statement` takes plain data — the account's buckets and payments in
the :func:`pipeline.penalties.accrue` contract (a Polars frame or a list of dicts)
and a :class:`~pipeline.penalties.PenaltyPolicy` — and reads nothing from the
workspace. Per charge period it shows the amount, the due date, the payments
applied (date, amount, the part that paid this period), the interval table (days,
share, rate and its basis, moratorium days excluded, penalty) and the period's
penalty (exact sum rounded once); then totals of debt and penalty separately, and
the same within the 3-year limitation (ГК РФ ст.196, 200; a penalty expires with
its debt, ст.207). A period is inside the limitation when its due date is on or
after the cut-off date = statement date − the years of ``limitation_years`` in
``legal_thresholds.csv`` on the statement date (3).

For a court the rate basis is usually the decision date (ВС РФ, Обзор № 3 (2016),
вопрос 3): pass ``policy.with_rate_basis("calc_date")`` and the decision date as
``until``.

A :class:`Heading` adds what a court reads besides the figures: the claimant and the
debtor (:mod:`pipeline.penalties.parties`) and names instead of supplier and service
codes. The scheme is described as its rule computes it (:func:`shares_text`: one share
when the rule has no step, as ч.14.1), and each moratorium window is printed once, from
the rule table. The template is ``pipeline/render/templates/statement.html.j2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from pipeline.dates import Period
from pipeline.money import format_rub, to_decimal
from pipeline.penalties.calculator import BASIS_TITLES, SCHEME_TITLES
from pipeline.penalties.parties import Party
from pipeline.penalties.policy import PenaltyPolicy, SchemeRule, fmt_rate
from pipeline.penalties.scalar import BucketPenalty, bucket_penalty, round_fraction
from pipeline.progress import plural
from pipeline.workspace import atomic_write_bytes
from pipeline.xlsx import workbook_bytes

Rows = pl.DataFrame | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Heading:
    """Who claims from whom, and the names to print instead of codes (all optional).

    ``creditor``/``debtor``: the parties (:mod:`pipeline.penalties.parties`);
    ``supplier_names``/``service_names``: code → name (organizations.name, services.name).
    """

    creditor: Party | None = None
    debtor: Party | None = None
    supplier_names: Mapping[str, str] | None = None
    service_names: Mapping[str, str] | None = None

    def supplier(self, code: str) -> str:
        return (self.supplier_names or {}).get(code, code)

    def service(self, code: str) -> str:
        return (self.service_names or {}).get(code, code)


@dataclass(frozen=True)
class StatementResult:
    """A statement's figures and its HTML (:func:`statement_result`)."""

    html: str
    debt_kop: int
    penalty_kop: int
    debt_in_kop: int
    penalty_in_kop: int
    periods: tuple[str, ...]

def limitation_cutoff(until: date, years: int) -> date:
    """``until`` minus ``years`` years (29 February → 28 February).

    >>> limitation_cutoff(date(2024, 2, 29), 3)
    datetime.date(2021, 2, 28)
    """
    try:
        return until.replace(year=until.year - years)
    except ValueError:
        return until.replace(year=until.year - years, day=28)


def _cutoff(policy: PenaltyPolicy, until: date) -> date:
    """The limitation cut-off of a statement dated ``until`` (the years in force on that day)."""
    return limitation_cutoff(until, policy.limitation_years(until))


@dataclass(frozen=True)
class _Applied:
    paid_on: date
    amount_kop: int
    applied_kop: int


@dataclass(frozen=True)
class _Section:
    supplier_id: str
    result: BucketPenalty
    payments: tuple[_Applied, ...]
    in_time: bool
    recalculated_kop: int = 0
    services: tuple[str, ...] = ()


def _records(data: Rows) -> list[dict[str, Any]]:
    if isinstance(data, pl.DataFrame):
        return list(data.iter_rows(named=True))
    return [dict(r) for r in data]


def _sections(buckets: Rows, payments: Rows, policy: PenaltyPolicy, until: date) -> list[_Section]:
    cutoff = _cutoff(policy, until)
    pays: dict[tuple[str, str], list[tuple[date, int]]] = {}
    for p in _records(payments):
        key = (str(p.get("supplier_id") or ""), str(p["charge_period"]))
        pays.setdefault(key, []).append((p["paid_on"], int(p["amount_kop"])))
    sections = []
    def order(r: dict[str, Any]) -> tuple[str, str]:
        return str(r["charge_period"]), str(r.get("supplier_id") or "")

    for b in sorted(_records(buckets), key=order):
        supplier = str(b.get("supplier_id") or "")
        period = Period.parse(str(b["charge_period"]))
        due = b.get("due_date") or policy.due_date(period)
        own = pays.get((supplier, str(period)), [])
        result = bucket_penalty(int(b["amount_kop"]), period, due, until, own, policy,
                                str(b.get("scheme") or "standard"))
        applied_by_day: dict[date, int] = {}
        for portion in result.portions:
            if portion.paid_on is not None:
                applied_by_day[portion.paid_on] = applied_by_day.get(portion.paid_on, 0) + portion.amount_kop
        applied = []
        for day, kop in sorted(own):
            part = min(kop, applied_by_day.get(day, 0)) if day <= until else 0
            applied_by_day[day] = applied_by_day.get(day, 0) - part
            applied.append(_Applied(day, kop, part))
        sections.append(_Section(supplier, result, tuple(applied), due >= cutoff,
                                 int(b.get("recalculated_kop") or 0), tuple(b.get("services") or ())))
    return sections



def _row_basis(policy: PenaltyPolicy, basis: date | None) -> str:
    if policy.fixed_rate_bp is not None:
        return "задана вручную"
    return policy.rate_note(basis) if basis is not None else ""


def shares_text(rule: SchemeRule) -> str:
    """The day shares of a scheme as they are computed (one share when there is no step).

    >>> shares_text(SchemeRule("capital_repair", date(2016, 1, 1), 30, 90, 300, 300))
    'дни 1–30 после срока оплаты без пени, с 31-го дня 1/300 ставки (ступени 1/130 нет)'
    >>> shares_text(SchemeRule("standard", date(2016, 1, 1), 30, 90, 300, 130))
    'дни 1–30 после срока оплаты без пени, с 31-го по 90-й день 1/300 ставки, с 91-го дня 1/130'
    """
    grace = f"дни 1–{rule.grace_days} после срока оплаты без пени, " if rule.grace_days else ""
    first = rule.grace_days + 1
    if rule.den_before == rule.den_after or rule.step_day <= rule.grace_days:
        den = rule.den_after if rule.step_day <= rule.grace_days else rule.den_before
        return f"{grace}с {first}-го дня 1/{den} ставки (ступени 1/130 нет)"
    return (f"{grace}с {first}-го по {rule.step_day}-й день 1/{rule.den_before} ставки, "
            f"с {rule.step_day + 1}-го дня 1/{rule.den_after}")


def _moratoria(policy: PenaltyPolicy) -> list[str]:
    """Each moratorium once: its days, whose debts it covers, its act (the source up to its details)."""
    out = []
    for m in policy.moratoriums:
        act = m.source.split(" (")[0].split(";")[0].split(":")[0].strip()
        whose = f" — по долгам, возникшим до {m.arisen_before:%d.%m.%Y}" if m.arisen_before else ""
        out.append(f"{m.start:%d.%m.%Y}–{m.end:%d.%m.%Y}{whose}" + (f" ({act})" if act else ""))
    return out


def _view(account_id: str, sections: list[_Section], policy: PenaltyPolicy, until: date,
          heading: Heading | None = None) -> dict[str, Any]:
    heading = heading or Heading()
    cutoff = _cutoff(policy, until)
    view_sections = []
    for s in sections:
        r = s.result
        view_sections.append({
            "period": str(r.period),
            "supplier": heading.supplier(s.supplier_id) if s.supplier_id else "",
            "services": ", ".join(heading.service(c) for c in s.services),
            "recalculated": format_rub(s.recalculated_kop) if s.recalculated_kop else "",
            "charged": format_rub(r.amount_kop - s.recalculated_kop),
            "scheme": SCHEME_TITLES.get(r.scheme, r.scheme),
            "amount": format_rub(r.amount_kop),
            "due": f"{r.due_date:%d.%m.%Y}",
            "first_day": f"{r.first_day:%d.%m.%Y}",
            "shares": shares_text(r.rule),
            "source": r.rule.source,
            "payments": [
                {"date": f"{p.paid_on:%d.%m.%Y}", "amount": format_rub(p.amount_kop),
                 "applied": format_rub(p.applied_kop)}
                for p in s.payments
            ],
            "rows": [
                {
                    "from": f"{row.start:%d.%m.%Y}", "to": f"{row.end:%d.%m.%Y}", "days": row.days,
                    "debt": format_rub(row.debt_kop), "fraction": row.fraction_text,
                    "rate": fmt_rate(row.rate_bp).replace(".", ","),
                    "basis": _row_basis(policy, row.basis),
                    "moratorium_days": row.days if row.moratorium else 0,
                    "penalty": format_rub(row.penalty_kop),
                }
                for row in r.rows
            ],
            "debt": format_rub(r.debt_kop),
            "penalty": format_rub(r.penalty_kop),
            "moratorium_days": r.moratorium_days,
            "in_time": s.in_time,
        })
    debt = sum(s.result.debt_kop for s in sections)
    penalty = sum(s.result.penalty_kop for s in sections)
    debt_in = sum(s.result.debt_kop for s in sections if s.in_time)
    penalty_in = sum(s.result.penalty_kop for s in sections if s.in_time)
    schemes = sorted({s.result.scheme for s in sections})
    suppliers = sorted({s.supplier_id for s in sections if s.supplier_id})
    return {
        "account_id": account_id,
        "creditor": heading.creditor.lines() if heading.creditor else [],
        "debtor": heading.debtor.lines() if heading.debtor else [],
        "one_supplier": heading.supplier(suppliers[0]) if len(suppliers) == 1 else "",
        "laws": ", ".join(("ч.14" if sc == "standard" else "ч.14.1") for sc in schemes) or "ч.14",
        "schemes": [{"title": SCHEME_TITLES.get(sc, sc),
                     "shares": shares_text(next(s.result.rule for s in sections if s.result.scheme == sc))}
                    for sc in schemes],
        "until": f"{until:%d.%m.%Y}",
        "cutoff": f"{cutoff:%d.%m.%Y}",
        "limitation": plural(policy.limitation_years(until), "год", "года", "лет"),
        "basis": "ставка задана вручную, ограничения не применяются" if policy.fixed_rate_bp is not None
        else BASIS_TITLES.get(policy.rate_basis, policy.rate_basis),
        # The variant's title already names its windows: print the windows once, from the rule
        # table (issue 15: the statement printed them twice).
        "moratoria": _moratoria(policy) if policy.moratoriums
        else ["не применяются"],
        "recalculated": format_rub(sum(s.recalculated_kop for s in sections)),
        "has_recalc": any(s.recalculated_kop for s in sections),
        "sections": view_sections,
        "charged": format_rub(sum(s.result.amount_kop for s in sections)),
        "paid": format_rub(sum(s.result.paid_kop for s in sections)),
        "debt": format_rub(debt),
        "penalty": format_rub(penalty),
        "total": format_rub(debt + penalty),
        "debt_in": format_rub(debt_in),
        "penalty_in": format_rub(penalty_in),
        "total_in": format_rub(debt_in + penalty_in),
    }


#: The statement's Jinja2 template (a file among the receipts' templates: package data).
TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "render" / "templates" / "statement.html.j2"


def _html(account_id: str, sections: list[_Section], policy: PenaltyPolicy, until: date,
          heading: Heading | None) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(TEMPLATE_PATH.read_text(encoding="utf-8"))
    return template.render(v=_view(account_id, sections, policy, until, heading))


def render_html(account_id: str, buckets: Rows, payments: Rows, policy: PenaltyPolicy, until: date,
                heading: Heading | None = None) -> str:
    """The statement's HTML (see :func:`write_statement` for the inputs)."""
    return _html(account_id, _sections(buckets, payments, policy, until), policy, until, heading)


def statement_result(account_id: str, buckets: Rows, payments: Rows, policy: PenaltyPolicy, until: date,
                     heading: Heading | None = None) -> StatementResult:
    """The statement's HTML and its totals in kopecks (all and within the limitation)."""
    sections = _sections(buckets, payments, policy, until)
    return StatementResult(
        html=_html(account_id, sections, policy, until, heading),
        debt_kop=sum(s.result.debt_kop for s in sections),
        penalty_kop=sum(s.result.penalty_kop for s in sections),
        debt_in_kop=sum(s.result.debt_kop for s in sections if s.in_time),
        penalty_in_kop=sum(s.result.penalty_kop for s in sections if s.in_time),
        periods=tuple(sorted({str(s.result.period) for s in sections if s.result.debt_kop > 0})),
    )


def _xlsx(account_id: str, sections: list[_Section], policy: PenaltyPolicy, until: date,
          heading: Heading | None = None) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    money = "#,##0.00"
    bold = Font(bold=True)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Расчёт"
    cutoff = _cutoff(policy, until)
    claimant = f", взыскатель {heading.creditor.name}" if heading is not None and heading.creditor else ""
    ws.append([f"Расчёт задолженности и пени, лицевой счёт {account_id}{claimant}, "
               f"по {until:%d.%m.%Y} включительно"])
    name = (heading or Heading()).supplier
    ws["A1"].font = bold
    ws.append(["Ставка", "задана вручную" if policy.fixed_rate_bp is not None
               else BASIS_TITLES.get(policy.rate_basis, policy.rate_basis)])
    ws.append(["Моратории", "; ".join(_moratoria(policy)) or "не применяются"])
    ws.append(["Срок исковой давности: начисления со сроком оплаты ранее", cutoff])
    ws.append([])
    header = ["Период", "Поставщик", "Схема", "Начислено, ₽", "Срок оплаты", "С", "По", "Дней", "Долг, ₽",
              "Доля", "Ставка, %", "Основание ставки", "Мораторий, дн.", "Пени, ₽", "В пределах давности"]
    ws.append(header)
    for cell in ws[ws.max_row]:
        cell.font = bold
    for s in sections:
        r = s.result
        head = [str(r.period), name(s.supplier_id), r.scheme, to_decimal(r.amount_kop), r.due_date]
        in_time = "да" if s.in_time else "нет"
        if not r.rows:
            ws.append([*head, None, None, None, None, None, None, None, None, 0, in_time])
        for row in r.rows:
            ws.append([*head, row.start, row.end, row.days, to_decimal(row.debt_kop), row.fraction_text,
                       to_decimal(row.rate_bp), _row_basis(policy, row.basis),
                       row.days if row.moratorium else 0, to_decimal(row.penalty_kop), in_time])
        ws.append([f"Итого {r.period}", name(s.supplier_id), None, to_decimal(r.amount_kop), r.due_date, None,
                   None, None, to_decimal(r.debt_kop), None, None, None, r.moratorium_days,
                   to_decimal(r.penalty_kop), in_time])
        for cell in ws[ws.max_row]:
            cell.font = bold
    for row in ws.iter_rows(min_row=7):
        for cell in row:
            if cell.column in (4, 9, 14):
                cell.number_format = money
            elif cell.column in (5, 6, 7):
                cell.number_format = "DD.MM.YYYY"
    widths = (10, 24, 14, 13, 12, 11, 11, 7, 13, 7, 9, 60, 12, 12, 10)
    for col, width in zip("ABCDEFGHIJKLMNO", widths, strict=True):
        ws.column_dimensions[col].width = width

    pays = wb.create_sheet("Оплаты")
    pays.append(["Период", "Поставщик", "Дата оплаты", "Сумма, ₽", "В счёт периода, ₽"])
    for cell in pays[1]:
        cell.font = bold
    for s in sections:
        for p in s.payments:
            pays.append([str(s.result.period), name(s.supplier_id), p.paid_on, to_decimal(p.amount_kop),
                         to_decimal(p.applied_kop)])
            pays.cell(pays.max_row, 3).number_format = "DD.MM.YYYY"
            pays.cell(pays.max_row, 4).number_format = money
            pays.cell(pays.max_row, 5).number_format = money

    totals = wb.create_sheet("Итоги")
    debt = sum(s.result.debt_kop for s in sections)
    penalty = sum(s.result.penalty_kop for s in sections)
    debt_in = sum(s.result.debt_kop for s in sections if s.in_time)
    penalty_in = sum(s.result.penalty_kop for s in sections if s.in_time)
    totals.append(["", "Всего, ₽", "В пределах срока исковой давности, ₽"])
    totals.append(["Основной долг", to_decimal(debt), to_decimal(debt_in)])
    totals.append(["Пени", to_decimal(penalty), to_decimal(penalty_in)])
    totals.append(["Всего", to_decimal(debt + penalty), to_decimal(debt_in + penalty_in)])
    totals.append(["Срок оплаты не ранее", cutoff])
    for row in totals.iter_rows(min_row=2, max_row=4):
        for cell in row[1:]:
            cell.number_format = money
    totals.cell(5, 2).number_format = "DD.MM.YYYY"
    totals.column_dimensions["A"].width = 22
    totals.column_dimensions["B"].width = 16
    totals.column_dimensions["C"].width = 36
    if heading is not None and (heading.creditor or heading.debtor):
        parties = wb.create_sheet("Стороны")
        for title, party in (("Взыскатель", heading.creditor), ("Должник", heading.debtor)):
            if party is not None:
                for i, line in enumerate(party.lines()):
                    parties.append([title if i == 0 else None, line])
        parties.column_dimensions["A"].width = 14
        parties.column_dimensions["B"].width = 90
    # Stamped with the calculation day: the same statement gives the same bytes.
    return workbook_bytes(wb, datetime.combine(until, time()))


def write_statement(account_id: str, buckets: Rows, payments: Rows, policy: PenaltyPolicy, until: date,
                    out_dir: Path, heading: Heading | None = None) -> tuple[Path, Path]:
    """Write ``<account>-penalty-<until>.pdf`` and ``.xlsx`` into ``out_dir``; return both paths
    (``<account>-<supplier>-penalty-<until>`` when every bucket is of one supplier and a
    ``heading`` names the parties — a court statement).

    ``buckets``: charge_period, amount_kop, due_date (empty → from the policy's
    due-date rule), scheme (default ``standard``), supplier_id (optional),
    recalculated_kop (optional: the part of amount_kop that recalculations brought),
    services (optional: the service codes of the bucket).
    ``payments``: charge_period, paid_on, amount_kop, supplier_id (optional),
    already allocated to those periods.
    """
    from weasyprint import HTML

    sections = _sections(buckets, payments, policy, until)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suppliers = {s.supplier_id for s in sections}
    one = next(iter(suppliers)) if len(suppliers) == 1 and heading is not None else ""
    stem = f"{account_id}-{one}-penalty-{until:%Y-%m-%d}" if one else f"{account_id}-penalty-{until:%Y-%m-%d}"
    pdf_path, xlsx_path = out_dir / f"{stem}.pdf", out_dir / f"{stem}.xlsx"
    pdf = HTML(string=_html(account_id, sections, policy, until, heading)).write_pdf()
    assert pdf is not None
    atomic_write_bytes(pdf_path, pdf)
    atomic_write_bytes(xlsx_path, _xlsx(account_id, sections, policy, until, heading))
    return pdf_path, xlsx_path


__all__ = ["Heading", "StatementResult", "limitation_cutoff", "render_html", "round_fraction", "shares_text",
           "statement_result", "write_statement"]
