"""``billing penalty``: the penalty of one monthly charge, under the workspace's rules.

::

    billing penalty --amount 1000 --period 2019-05 --until 2024-04-18 \\
        --payment 2020-01-01=100 --rate 9.5 [--no-moratoriums] [--scheme standard] [--json]

The due date comes from ``due_dates.csv`` (moved to the next working day), the
rate from ``key_rates.csv`` capped by ``penalty_rate_caps.csv`` on the day given by
``penalty_policy.toml`` (``--rate`` fixes one rate for every day and switches the
caps off), moratoriums from ``moratoriums.csv`` (the variant chosen in
``penalty_policy.toml``). ``--until`` is the last day counted, inclusive; a payment
reduces the debt from the day after it is made. Exit codes: 1 for a business
error (:class:`~pipeline.workspace.BillingError`), 2 for bad usage
(:class:`typer.BadParameter`).
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cliargs import DAY_FORMS, DAY_METAVAR, PERIOD_FORMS, PERIOD_METAVAR, day_option, period_option

# Everything else is imported where it is used: `register` runs at every start of `billing`,
# and polars with the rule machinery (pipeline.money, .policy, .scalar) would make
# `billing --help` slow.
if TYPE_CHECKING:
    from pipeline.penalties.scalar import BucketPenalty

SCHEME_TITLES = {
    "standard": "ЖКУ, ЖК РФ ст.155 ч.14",
    "capital_repair": "взносы на капремонт, ЖК РФ ст.155 ч.14.1",
}
BASIS_TITLES = {
    "payment_date": "оплаченная часть — по ставке на день оплаты, остаток — на последний день расчёта",
    "calc_date": "по ставке на последний день расчёта",
    "daily": "по ставке, действовавшей в каждый день просрочки",
}
VARIANT_TITLES = {
    "law": "по закону (ПП 424: 06.04–31.12.2020; ПП 497: 01.04–01.10.2022 для долгов до 01.04.2022)",
    "penalty_calc": "границы калькулятора penalty-calc (06.04.2020–01.01.2021, 31.03–01.10.2022)",
    "none": "не применяются",
}


def parse_day(text: str, option: str) -> date:
    """``YYYY-MM-DD`` or ``DD.MM.YYYY``; a bad value is a usage error (exit 2)."""
    return day_option(text, option)


def _positive_rubles(text: str, option: str) -> int:
    from pipeline.money import parse_rubles

    try:
        kop = parse_rubles(text)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=option) from None
    if kop <= 0:
        raise typer.BadParameter(f"сумма должна быть больше нуля, получено «{text}»", param_hint=option)
    return kop


def parse_payment(text: str) -> tuple[date, int]:
    """``DATE=RUB`` → (date, kopecks).

    >>> parse_payment("2020-01-01=100")
    (datetime.date(2020, 1, 1), 10000)
    """
    day, sep, amount = text.partition("=")
    if not sep:
        raise typer.BadParameter(f"оплата задаётся как ДАТА=РУБ, получено «{text}»", param_hint="--payment")
    return parse_day(day, "--payment"), _positive_rubles(amount, "--payment")


def parse_rate(text: str) -> int:
    """A percent with at most two decimals → basis points (``9,5`` → 950)."""
    from pipeline.money import parse_fixed

    try:
        bp = parse_fixed(text.strip().rstrip("%").strip(), 2)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--rate") from None
    if not 0 < bp <= 100_00:
        raise typer.BadParameter(f"ставка должна быть больше 0 и не больше 100 %, получено «{text}»",
                                 param_hint="--rate")
    return bp


def _rub(kop: int) -> str:
    from pipeline.money import to_decimal

    return str(to_decimal(kop))


def result_json(result: BucketPenalty) -> dict[str, object]:
    """``{"total": "835.05", "rows": [...]}`` — rubles as strings, rates as percent strings."""
    from pipeline.penalties.policy import fmt_rate

    return {
        "total": _rub(result.penalty_kop),
        "rows": [
            {
                "from": r.start.isoformat(),
                "to": r.end.isoformat(),
                "days": r.days,
                "debt": _rub(r.debt_kop),
                "fraction": r.fraction_text,
                "rate": fmt_rate(r.rate_bp),
                "moratorium": r.moratorium,
                "penalty": _rub(r.penalty_kop),
            }
            for r in result.rows
        ],
    }


def result_text(result: BucketPenalty, payments: list[tuple[date, int]], rate_basis: str,
                fixed: bool, variant: str) -> str:
    """A readable Russian table."""
    from pipeline.money import format_rub
    from pipeline.penalties.policy import fmt_rate

    lines = [
        f"Пени: {SCHEME_TITLES.get(result.scheme, result.scheme)}",
        f"Начисление за {result.period}: {format_rub(result.amount_kop)} ₽; срок оплаты "
        f"{result.due_date:%d.%m.%Y}, первый день просрочки {result.first_day:%d.%m.%Y}; "
        f"расчёт по {result.until:%d.%m.%Y} включительно",
        f"Доли ставки: дни 1–{result.rule.grace_days} без пени, до {result.rule.step_day}-го дня "
        f"1/{result.rule.den_before}, далее 1/{result.rule.den_after}",
        "Ставка: " + ("задана вручную, ограничения ставки не применяются" if fixed
                      else BASIS_TITLES.get(rate_basis, rate_basis)),
        f"Моратории: {VARIANT_TITLES.get(variant, variant)}",
    ]
    if payments:
        paid = {p.paid_on: p.amount_kop for p in result.portions if p.paid_on is not None}
        parts = []
        for day, kop in sorted(payments):
            note = "" if day <= result.until else " (после расчётной даты, не учтена)"
            parts.append(f"{day:%d.%m.%Y} — {format_rub(kop)} ₽{note}")
        lines.append("Оплаты: " + "; ".join(parts))
        excess = sum(k for d, k in payments if d <= result.until) - sum(paid.values())
        if excess > 0:
            lines.append(f"  переплата {format_rub(excess)} ₽ на пени не влияет")
    lines.append("")
    header = ("С", "По", "Дней", "Долг, ₽", "Доля", "Ставка, %", "Пени, ₽", "")
    table = [header]
    for r in result.rows:
        table.append((
            f"{r.start:%d.%m.%Y}", f"{r.end:%d.%m.%Y}", str(r.days), format_rub(r.debt_kop),
            r.fraction_text, fmt_rate(r.rate_bp).replace(".", ","), format_rub(r.penalty_kop),
            "мораторий" if r.moratorium else ("льготные дни" if not r.fraction else ""),
        ))
    if len(table) == 1:
        lines.append("Просроченных дней нет: пени 0,00 ₽.")
    else:
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        right = {2, 3, 6}
        for row in table:
            cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                               strict=True))]
            lines.append("  ".join(cells).rstrip())
    lines.append("")
    lines.append(f"Итого пени: {format_rub(result.penalty_kop)} ₽ (дней с пени: {result.penalty_days}, "
                 f"исключено по мораторию: {result.moratorium_days})")
    lines.append(f"Остаток долга на {result.until:%d.%m.%Y}: {format_rub(result.debt_kop)} ₽")
    return "\n".join(lines)


def penalty_command(amount: str, period: str, until: str, payments: list[str], rate: str | None,
                    no_moratoriums: bool, scheme: str, as_json: bool, home: Path) -> None:
    """Body of ``billing penalty`` (see the module docstring)."""
    from pipeline.dates import Period
    from pipeline.penalties.policy import load_policy
    from pipeline.penalties.scalar import bucket_penalty
    from pipeline.workspace import Workspace, audit

    amount_kop = _positive_rubles(amount, "--amount")
    charge_period = Period.parse(period_option(period, "--period"))
    last_day = parse_day(until, "--until")
    paid = [parse_payment(p) for p in payments or []]
    rate_bp = parse_rate(rate) if rate is not None else None
    from schemas.rules import PENALTY_SCHEMES  # pandera comes with it: keep `billing --help` fast

    if scheme not in PENALTY_SCHEMES:
        raise typer.BadParameter(
            f"схема должна быть одной из: {', '.join(PENALTY_SCHEMES)}; получено «{scheme}»",
            param_hint="--scheme",
        )

    ws = Workspace(home).require()
    policy = load_policy(ws.rules)
    if no_moratoriums:
        policy = policy.without_moratoriums()
    if rate_bp is not None:
        policy = policy.with_fixed_rate(rate_bp)
    due = policy.due_date(charge_period)
    result = bucket_penalty(amount_kop, charge_period, due, last_day, paid, policy, scheme)
    if as_json:
        typer.echo(json.dumps(result_json(result), ensure_ascii=False, indent=1))
    else:
        fixed = rate_bp is not None
        typer.echo(result_text(result, paid, policy.rate_basis, fixed, policy.moratorium_variant))
    if ws.audit.is_dir():
        audit(ws, "penalty", inputs={
            "amount": amount, "period": period, "until": until, "payments": payments, "rate": rate,
            "no_moratoriums": no_moratoriums, "scheme": scheme,
        }, outputs={"penalty": _rub(result.penalty_kop)})


def register(app: typer.Typer) -> None:
    """Add ``billing penalty`` to the CLI app."""

    @app.command("penalty")
    def penalty(
        amount: Annotated[str, typer.Option(
            "--amount", metavar="РУБ", help="Сумма начисления за период, руб. (1000 или 1000,50).")],
        period: Annotated[str, typer.Option(
            "--period", metavar=PERIOD_METAVAR, help=f"Период начисления: {PERIOD_FORMS}.")],
        until: Annotated[str, typer.Option(
            "--until", metavar=DAY_METAVAR, help=f"Последний день расчёта (включительно): {DAY_FORMS}.")],
        payment: Annotated[list[str] | None, typer.Option(
            "--payment", metavar="ДАТА=РУБ",
            help=f"Оплата ДАТА=РУБ, дата {DAY_FORMS} (можно повторять); уменьшает долг со "
                 "следующего дня.")] = None,
        rate: Annotated[str | None, typer.Option(
            "--rate", metavar="ПРОЦЕНТ",
            help="Одна ставка, % на все дни (ограничения ставки не применяются).")] = None,
        no_moratoriums: Annotated[bool, typer.Option(
            "--no-moratoriums", help="Не применять моратории на пени.")] = False,
        scheme: Annotated[str, typer.Option(
            "--scheme", metavar="СХЕМА",
            help="Схема: standard (ЖКУ, ч.14) или capital_repair (капремонт, ч.14.1)."
        )] = "standard",
        as_json: Annotated[bool, typer.Option("--json", help="Вывести результат в JSON.")] = False,
        home: Annotated[Path | None, typer.Option(
            "--home", metavar="КАТАЛОГ",
            help="Рабочее пространство (по умолчанию BILLING_HOME или ./billing-home).")] = None,
    ) -> None:
        """Рассчитать пени по одному начислению (ЖК РФ ст.155 ч.14 и ч.14.1)."""
        root = (home or Path(os.environ.get("BILLING_HOME") or "./billing-home")).resolve()
        penalty_command(amount, period, until, payment or [], rate, no_moratoriums, scheme, as_json, root)
