"""The documents of a collection case: HTML from Jinja2 templates, PDF through WeasyPrint.

* the п.119 warning (предупреждение) of a person — for hand delivery or post, its text for
  the ЕПД (:func:`warning_text`) and for e-mail;
* the application for a court order (заявление о вынесении судебного приказа, ГПК 121–124):
  court, creditor, debtor's details (:mod:`pipeline.penalties.parties`), the claim split into
  debt and penalty, its grounds, the state duty by the dated rule, the list of attachments;
* an organization's claim (претензия, АПК 4 ч.5) and arbitration claim (исковое заявление).

A court or arbitration package is ONE PDF: the application followed by the court statement
(расчёт задолженности и пени) of :func:`pipeline.penalties.court.court_statement`, pages joined
(stack-notes §WeasyPrint: ``docs[0].copy(all pages).write_pdf()``). The view builders are
pure; only :func:`pdf_bytes` touches WeasyPrint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from pipeline.dates import Period
from pipeline.money import format_rub
from pipeline.penalties.parties import Party

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
CSS_PATH = TEMPLATES_DIR / "collect.css"

#: Court names a document uses when ``--court`` is not given: a placeholder the staff fill in.
DEFAULT_COURT = {"order": "Мировому судье судебного участка № ___ (по месту жительства должника)",
                 "arbitration": "В Арбитражный суд ______________ (по месту нахождения ответчика)"}


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(name: str, view: dict[str, Any]) -> str:
    """The template ``name`` (``warning``, ``court_order``, ``claim``, ``arbitration``) as HTML."""
    return _env().get_template(f"{name}.html.j2").render(d=view)


def day_text(day: date) -> str:
    return f"{day:%d.%m.%Y}"


def span_text(periods: tuple[str, ...] | list[str]) -> str:
    """«с 01.08.2026 по 31.10.2026» for the charge periods (oldest first)."""
    if not periods:
        return "—"
    return f"с {day_text(Period.parse(periods[0]).first)} по {day_text(Period.parse(periods[-1]).last)}"


_MONTHS = ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август", "сентябрь", "октябрь",
           "ноябрь", "декабрь")


def months_text(periods: list[str]) -> str:
    """«август 2026 — октябрь 2026» (one month: «август 2026»)."""
    if not periods:
        return "—"
    ends = (Period.parse(periods[0]), Period.parse(periods[-1]))
    names = [f"{_MONTHS[p.month - 1]} {p.year}" for p in ends]
    return names[0] if periods[0] == periods[-1] else f"{names[0]} — {names[1]}"


@dataclass(frozen=True)
class WarningFacts:
    """What a warning says (all from the case, the registers and the sealed debts)."""

    case_id: str
    account_id: str
    debtor_name: str
    address: str
    creditor_name: str
    creditor_address: str | None
    creditor_phone: str | None
    on: date
    months: list[str]
    services: list[tuple[str, int]]
    restrictable: list[str]
    warning_days: int


def warning_view(f: WarningFacts) -> dict[str, Any]:
    return {
        "case_id": f.case_id, "account_id": f.account_id, "debtor_name": f.debtor_name, "address": f.address,
        "creditor_name": f.creditor_name, "creditor_address": f.creditor_address,
        "creditor_phone": f.creditor_phone, "on": day_text(f.on), "months": months_text(f.months),
        "services": [{"name": n, "debt": format_rub(k)} for n, k in f.services],
        "total": format_rub(sum(k for _, k in f.services)),
        "restrictable": "», «".join(f.restrictable), "warning_days": f.warning_days,
    }


def warning_text(f: WarningFacts) -> str:
    """The warning as plain text: for the ЕПД (п.119 allows it there) and the e-mail body."""
    total = format_rub(sum(k for _, k in f.services))
    text = (f"ПРЕДУПРЕЖДЕНИЕ. По лицевому счёту {f.account_id} на {day_text(f.on)} задолженность перед "
            f"{f.creditor_name} за {months_text(f.months)} — {total} руб.")
    if f.restrictable:
        text += (f" Если она не будет погашена в течение {f.warning_days} дней со дня доставки этого "
                 f"предупреждения, предоставление услуг «{'», «'.join(f.restrictable)}» будет ограничено, "
                 "а затем приостановлено (п.117–119 Правил 354).")
    text += " Неоплаченный долг с пенями будет взыскан в судебном порядке."
    return text


#: The subject of a claim after «плату за» (accusative): what is owed for.
SUBJECT_FOR = {"жилого помещения и коммунальных услуг": "жилое помещение и коммунальные услуги",
               "взносов на капитальный ремонт": "взносы на капитальный ремонт"}


@dataclass(frozen=True)
class CourtFacts:
    """What a court order application, claim or arbitration claim says.

    Attributes:
        debt_kop, penalty_kop: the claim (within the limitation) from the court statement;
        limited: the statement left something out as time-barred.
        penalty_part: «14» (ЖК 155 ч.14) or «14.1» (capital repair).
        warned_on / claim_on: the warning's delivery, the claim's dispatch.
    """

    case_id: str
    account_id: str
    court: str
    creditor: Party
    debtor: Party
    address: str
    services: list[str]
    periods: tuple[str, ...]
    debt_kop: int
    penalty_kop: int
    limited: bool
    until: date
    duty_kop: int
    duty_source: str
    on: date
    penalty_part: str
    subject: str
    warned_on: date | None = None
    claim_on: date | None = None
    warning_days: int = 0


def _common(f: CourtFacts) -> dict[str, Any]:
    return {
        "case_id": f.case_id, "account_id": f.account_id, "court": f.court,
        "creditor": f.creditor.lines(), "debtor": f.debtor.lines(), "creditor_name": f.creditor.name,
        "debtor_name": f.debtor.name, "address": f.address, "services": "», «".join(f.services),
        "span": span_text(f.periods), "debt": format_rub(f.debt_kop), "penalty": format_rub(f.penalty_kop),
        "penalty_kop": f.penalty_kop, "claim": format_rub(f.debt_kop + f.penalty_kop),
        "duty": format_rub(f.duty_kop), "duty_source": f.duty_source,
        "total": format_rub(f.debt_kop + f.penalty_kop + f.duty_kop), "until": day_text(f.until),
        "on": day_text(f.on), "penalty_part": f.penalty_part, "subject": f.subject,
        "subject_for": SUBJECT_FOR.get(f.subject, f.subject),
        "limited": f.limited, "bank": f.creditor.bank, "warning_days": f.warning_days,
    }


def _statement_item(f: CourtFacts) -> str:
    return (f"Расчёт задолженности и пени по лицевому счёту {f.account_id} по {day_text(f.until)} "
            "(в этом пакете).")


def court_order_view(f: CourtFacts) -> dict[str, Any]:
    attachments = [
        _statement_item(f),
        f"Документ об уплате государственной пошлины на {format_rub(f.duty_kop)} руб.",
        "Выписка из ЕГРН (или иной документ) о праве должника на помещение; выписка из лицевого счёта.",
        "Документы об установленных тарифах и нормативах потребления (приказы органа регулирования).",
    ]
    if f.warned_on:
        attachments.append(f"Копия предупреждения о задолженности от {day_text(f.warned_on)} с "
                           "доказательством его доставки.")
    attachments += ["Доверенность представителя взыскателя.",
                    "Копия заявления с приложениями для должника."]
    return {**_common(f), "attachments": attachments,
            "debtor_role": "собственником" if f.debtor.share is None else "собственником доли",
            "warned_on": day_text(f.warned_on) if f.warned_on else None}


def claim_view(f: CourtFacts) -> dict[str, Any]:
    return _common(f)


def arbitration_view(f: CourtFacts) -> dict[str, Any]:
    attachments = [
        _statement_item(f),
        f"Документ об уплате государственной пошлины на {format_rub(f.duty_kop)} руб.",
        f"Претензия от {day_text(f.claim_on) if f.claim_on else '—'} и документ о её направлении ответчику.",
        "Договор (документ о праве ответчика на помещение); документы о тарифах.",
        "Документ о направлении ответчику копии искового заявления с приложениями (ст.126 АПК РФ).",
        "Выписка из ЕГРЮЛ об истце и ответчике; доверенность представителя истца.",
    ]
    return {**_common(f), "attachments": attachments,
            "claim_on": day_text(f.claim_on) if f.claim_on else "—"}


def pdf_bytes(htmls: list[str], appended_html: list[str] | None = None) -> bytes:
    """One PDF of ``htmls`` (this package's stylesheet) followed by ``appended_html`` (documents
    that carry their own styles, e.g. the court statement), pages joined in order."""
    from weasyprint import HTML

    from pipeline.render.receipts import pdf_engine

    engine = pdf_engine(CSS_PATH)
    docs = [engine.document(h) for h in htmls]
    docs += [HTML(string=h).render(font_config=engine.font_config) for h in appended_html or []]
    pdf = docs[0].copy([page for d in docs for page in d.pages]).write_pdf()
    assert pdf is not None
    return bytes(pdf)
