"""The penalty policy: every rule table the penalty engine uses, read once.

:func:`load_policy` reads ``penalty_schemes.csv``, ``penalty_rate_caps.csv``,
``moratoriums.csv``, ``key_rates.csv``, ``due_dates.csv``, ``legal_thresholds.csv``
(the limitation of a court statement) and the switches of
``penalty_policy.toml`` from a rules directory into a frozen
:class:`PenaltyPolicy`. Rates are integers in basis points (percent × 100, the
``rate_bp`` of :mod:`rules`), dates are :class:`datetime.date`, fractions are
integer denominators (1/300 → 300).
"""

from __future__ import annotations

import bisect
import itertools
import math
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from fractions import Fraction
from pathlib import Path

import polars as pl

from pipeline.dates import Period
from pipeline.workspace import BillingError

#: How the rate is chosen (``[rate] basis`` of ``penalty_policy.toml``).
RATE_BASES = ("payment_date", "calc_date", "daily")
DEFAULT_RATE_BASIS = "payment_date"
DEFAULT_MORATORIUM_VARIANT = "law"
POLICY_FILE = "penalty_policy.toml"
#: Tables the penalty engine needs in a workspace's ``rules/``.
PENALTY_TABLES = ("penalty_schemes", "penalty_rate_caps", "moratoriums", "key_rates", "due_dates")


@dataclass(frozen=True)
class SchemeRule:
    """Day shares of one scheme for charge periods from ``valid_from`` (ч.14 / ч.14.1).

    Overdue day ``n`` (day 1 = the day after the due date) carries the share 0 for
    ``n ≤ grace_days``, ``1/den_before`` for ``n ≤ step_day`` and ``1/den_after`` after.
    """

    scheme: str
    valid_from: date
    grace_days: int
    step_day: int
    den_before: int
    den_after: int
    source: str = ""

    def fraction(self, n: int) -> Fraction:
        """Share of the rate for overdue day ``n`` (1-based).

        >>> r = SchemeRule("standard", date(2016, 1, 1), 30, 90, 300, 130)
        >>> r.fraction(30), r.fraction(31), r.fraction(90), r.fraction(91)
        (Fraction(0, 1), Fraction(1, 300), Fraction(1, 300), Fraction(1, 130))
        """
        if n <= self.grace_days:
            return Fraction(0)
        if n <= self.step_day:
            return Fraction(1, self.den_before)
        return Fraction(1, self.den_after)


@dataclass(frozen=True)
class Moratorium:
    """Days ``start..end`` (inclusive) carry no penalty; the overdue-day count runs on.

    ``arisen_before``: the window covers only debts of charge periods that ended
    before this date (ПП 497: obligations arisen before 01.04.2022); ``None`` — all.
    """

    start: date
    end: date
    arisen_before: date | None = None
    source: str = ""

    def applies_to(self, period: Period) -> bool:
        return self.arisen_before is None or period.last < self.arisen_before


@dataclass(frozen=True)
class RateCap:
    """For a payment (or calculation) day in ``start..end``: ``fixed`` replaces the key
    rate by ``rate_bp``; ``min`` takes the lesser of the two (ПП 474 and its successors)."""

    start: date
    end: date
    kind: str
    rate_bp: int
    source: str = ""

    def apply(self, key_bp: int) -> int:
        return self.rate_bp if self.kind == "fixed" else min(self.rate_bp, key_bp)


@dataclass(frozen=True)
class PenaltyPolicy:
    """Everything the penalty engines need, as plain immutable data.

    Attributes:
        schemes: scheme rules, sorted by (scheme, valid_from).
        key_rates: (from, rate_bp) steps of the Bank of Russia key rate, sorted.
        caps: rate caps by payment/calculation day.
        moratoriums: the windows of the selected variant (empty when switched off).
        rate_basis: ``payment_date`` | ``calc_date`` | ``daily`` (see the package docstring).
        moratorium_variant: the variant of ``moratoriums.csv`` in use.
        due_rules: (from, day) rows of ``due_dates.csv``, sorted.
        fixed_rate_bp: one rate for every day, caps not applied (calculator ``--rate``).
        legal_thresholds: the rows of ``legal_thresholds.csv`` (:meth:`limitation_years`).
    """

    schemes: tuple[SchemeRule, ...]
    key_rates: tuple[tuple[date, int], ...]
    caps: tuple[RateCap, ...] = ()
    moratoriums: tuple[Moratorium, ...] = ()
    rate_basis: str = DEFAULT_RATE_BASIS
    moratorium_variant: str = DEFAULT_MORATORIUM_VARIANT
    due_rules: tuple[tuple[date, int], ...] = ()
    fixed_rate_bp: int | None = None
    legal_thresholds: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False, compare=False)
    _key_dates: tuple[date, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key_dates", tuple(d for d, _ in self.key_rates))
        if self.rate_basis not in RATE_BASES:
            raise BillingError(
                f"{POLICY_FILE}: неизвестная база ставки «{self.rate_basis}» "
                f"(допустимо: {', '.join(RATE_BASES)})"
            )
        ordered = sorted(self.moratoriums, key=lambda m: m.start)
        for a, b in itertools.pairwise(ordered):
            if b.start <= a.end:
                raise BillingError(
                    f"moratoriums.csv: окна {a.start:%d.%m.%Y}–{a.end:%d.%m.%Y} и "
                    f"{b.start:%d.%m.%Y}–{b.end:%d.%m.%Y} пересекаются"
                )
        object.__setattr__(self, "moratoriums", tuple(ordered))

    # -- switches --------------------------------------------------------------------
    def with_fixed_rate(self, rate_bp: int) -> PenaltyPolicy:
        """One rate for every day; caps do not apply (calculator ``--rate``)."""
        return replace(self, fixed_rate_bp=rate_bp)

    def without_moratoriums(self) -> PenaltyPolicy:
        return replace(self, moratoriums=(), moratorium_variant="none")

    def with_rate_basis(self, basis: str) -> PenaltyPolicy:
        return replace(self, rate_basis=basis)

    # -- lookups ---------------------------------------------------------------------
    @property
    def denominator(self) -> int:
        """Least common multiple of every share denominator: shares × this are integers."""
        return math.lcm(*(d for s in self.schemes for d in (s.den_before, s.den_after)), 1)

    def limitation_years(self, day: date) -> int:
        """The limitation period in years on ``day`` (ГК РФ ст.196; ``legal_thresholds.csv``)."""
        from rules import threshold

        return threshold(self.legal_thresholds, "limitation_years", day)

    def scheme_rule(self, scheme: str, period: Period) -> SchemeRule:
        rows = [s for s in self.schemes if s.scheme == scheme and s.valid_from <= period.first]
        if not rows:
            raise BillingError(
                f"penalty_schemes.csv: нет правила схемы «{scheme}» для начислений за {period}"
            )
        return rows[-1]

    def moratoria_for(self, period: Period) -> tuple[Moratorium, ...]:
        return tuple(m for m in self.moratoriums if m.applies_to(period))

    def key_rate(self, day: date) -> int:
        i = bisect.bisect_right(self._key_dates, day) - 1
        if i < 0:
            first = self._key_dates[0] if self._key_dates else None
            raise BillingError(
                f"key_rates.csv: нет ключевой ставки на {day:%d.%m.%Y}"
                + (f" (таблица начинается с {first:%d.%m.%Y})" if first else " (таблица пуста)")
            )
        return self.key_rates[i][1]

    def cap_on(self, day: date) -> RateCap | None:
        for cap in self.caps:
            if cap.start <= day <= cap.end:
                return cap
        return None

    def rate_on(self, day: date) -> int:
        """The rate (basis points) for a penalty paid or computed on ``day``, capped."""
        if self.fixed_rate_bp is not None:
            return self.fixed_rate_bp
        key = self.key_rate(day)
        cap = self.cap_on(day)
        return cap.apply(key) if cap else key

    def rate_note(self, day: date) -> str:
        """Where the rate of :meth:`rate_on` comes from, in Russian (for statements)."""
        if self.fixed_rate_bp is not None:
            return f"ставка {_pct(self.fixed_rate_bp)} % задана вручную"
        key = self.key_rate(day)
        text = f"ключевая ставка на {day:%d.%m.%Y} — {_pct(key)} %"
        cap = self.cap_on(day)
        if cap is None:
            return text
        act = cap.source.split(":")[0] if cap.source else "ограничение"
        if cap.kind == "fixed":
            return f"{text}; применяется {_pct(cap.rate_bp)} % ({act})"
        if cap.rate_bp < key:
            return f"{text}, ограничена {_pct(cap.rate_bp)} % ({act})"
        return f"{text} (не выше {_pct(cap.rate_bp)} %, {act})"

    def rate_changes(self, start: date, end: date) -> list[date]:
        """Days in ``start..end`` on which :meth:`rate_on` may change (for daily rates)."""
        if self.fixed_rate_bp is not None:
            return []
        days = {d for d in self._key_dates}
        for cap in self.caps:
            days.add(cap.start)
            days.add(cap.end + timedelta(days=1))
        return sorted(d for d in days if start < d <= end)

    def due_date(self, period: Period) -> date:
        """Due date of ``period``'s charges: :func:`pipeline.calc.due.due_date` over ``due_rules``."""
        from pipeline.calc.due import due_date

        rules = pl.DataFrame(
            {"from": [d for d, _ in self.due_rules], "day": [n for _, n in self.due_rules]},
            schema={"from": pl.Date, "day": pl.Int64},
        )
        due = due_date(rules, period)
        if due is None:
            raise BillingError(f"due_dates.csv: нет срока оплаты для начислений за {period}")
        return due


def fmt_rate(rate_bp: int) -> str:
    """Basis points as a percent with two decimals.

    >>> fmt_rate(950), fmt_rate(1625)
    ('9.50', '16.25')
    """
    return f"{rate_bp // 100}.{rate_bp % 100:02d}"


def _pct(rate_bp: int) -> str:
    return fmt_rate(rate_bp).replace(".", ",")


def _text(value: object) -> str:
    return "" if value is None else str(value)


def load_policy(rules_dir: Path, moratorium_variant: str | None = None,
                rate_basis: str | None = None) -> PenaltyPolicy:
    """Read the penalty rules of a rules directory (a workspace's ``rules/`` or the defaults).

    ``moratorium_variant`` and ``rate_basis`` override the choices of
    ``penalty_policy.toml`` (which may be absent: then ``law`` and ``payment_date``).
    """
    from rules import missing_thresholds_rejects, read_rule_table, rule_errors_message

    for name in PENALTY_TABLES:
        if not (rules_dir / f"{name}.csv").is_file():
            raise BillingError(
                f"Нет таблицы правил {rules_dir / (name + '.csv')}: скопируйте её из rules/defaults"
            )
    switches: dict[str, dict[str, object]] = {}
    toml_path = rules_dir / POLICY_FILE
    if toml_path.is_file():
        try:
            with open(toml_path, "rb") as fh:
                switches = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise BillingError(f"{toml_path}: ошибка разбора TOML: {err}") from None
    basis = rate_basis or str(switches.get("rate", {}).get("basis", DEFAULT_RATE_BASIS))
    variant = moratorium_variant or str(
        switches.get("moratoriums", {}).get("variant", DEFAULT_MORATORIUM_VARIANT)
    )

    schemes = read_rule_table(rules_dir, "penalty_schemes").sort("scheme", "from")
    scheme_rules = []
    for r in schemes.iter_rows(named=True):
        if r["step_day"] < r["grace_days"]:
            raise BillingError(
                f"penalty_schemes.csv, строка {r['source_row']}: step_day меньше grace_days"
            )
        scheme_rules.append(SchemeRule(
            r["scheme"], r["from"], r["grace_days"], r["step_day"], r["den_before"], r["den_after"],
            _text(r["source"]),
        ))
    key_rates = read_rule_table(rules_dir, "key_rates").sort("from")
    rates = tuple((d, int(rate * 100)) for d, rate in zip(key_rates["from"], key_rates["rate"], strict=True))
    caps = tuple(
        RateCap(r["from"], r["to"], r["kind"], int(r["rate"] * 100), _text(r["source"]))
        for r in read_rule_table(rules_dir, "penalty_rate_caps").sort("from").iter_rows(named=True)
    )
    for a, b in itertools.pairwise(caps):
        if b.start <= a.end:
            raise BillingError(
                f"penalty_rate_caps.csv: периоды с {a.start:%d.%m.%Y} и с {b.start:%d.%m.%Y} пересекаются"
            )
    all_moratoria = read_rule_table(rules_dir, "moratoriums")
    variants = set(all_moratoria["variant"].to_list())
    if variant != "none" and variant not in variants:
        raise BillingError(
            f"moratoriums.csv: нет варианта «{variant}» (есть: {', '.join(sorted(variants)) or 'ни одного'})"
        )
    moratoria = tuple(
        Moratorium(r["from"], r["to"], r["arisen_before"], _text(r["source"]))
        for r in all_moratoria.filter(pl.col("variant") == variant).iter_rows(named=True)
    )
    due = read_rule_table(rules_dir, "due_dates").sort("from")
    due_rules = tuple(zip(due["from"].to_list(), due["day"].to_list(), strict=True))
    thresholds = read_rule_table(rules_dir, "legal_thresholds")
    missing = missing_thresholds_rejects(thresholds)
    if missing.height:
        raise BillingError(rule_errors_message(missing))
    return PenaltyPolicy(
        schemes=tuple(scheme_rules), key_rates=rates, caps=caps, moratoriums=moratoria,
        rate_basis=basis, moratorium_variant=variant, due_rules=due_rules,
        legal_thresholds=thresholds,
    )
