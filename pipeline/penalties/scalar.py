"""Exact penalty of one charge bucket as intervals (pure Python, ``Fraction``).

The reference engine behind the calculator, the court statement and
``accrue_intervals``: the bucket's days ``D+1 … until`` are cut at every point
where something changes — the end of the grace days, the share step, the day
after each payment, moratorium edges and (for the ``daily`` rate basis) rate
changes — and each piece is priced as ``debt × rate × share × days`` exactly.
Nothing is rounded until :attr:`BucketPenalty.penalty_kop` (once per bucket).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from fractions import Fraction

from pipeline.dates import Period
from pipeline.money import div_half_up_int
from pipeline.penalties.policy import PenaltyPolicy, SchemeRule

ONE_DAY = timedelta(days=1)


def round_fraction(value: Fraction) -> int:
    """Round an exact amount of kopecks once, half away from zero (the project rule)."""
    return div_half_up_int(value.numerator, value.denominator)


@dataclass(frozen=True)
class Portion:
    """A part of the debt that lives from the first overdue day to ``end`` inclusive.

    A paid part ends on its payment day (the debt drops from the next day); the
    unpaid rest ends on the calculation day. ``basis`` is the day whose rate it
    bears (``None`` for the ``daily`` basis), ``paid_on`` is ``None`` for the rest.
    """

    amount_kop: int
    end: date
    paid_on: date | None
    basis: date | None
    rate_bp: int | None


@dataclass(frozen=True)
class IntervalRow:
    """Days ``start..end`` of equal debt, share and rate; ``share_kop`` is exact."""

    start: date
    end: date
    debt_kop: int
    fraction: Fraction
    rate_bp: int
    moratorium: bool
    share_kop: Fraction
    basis: date | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def penalty_kop(self) -> int:
        """This row's share rounded — for display only; the total is rounded once."""
        return round_fraction(self.share_kop)

    @property
    def fraction_text(self) -> str:
        return "0" if self.fraction == 0 else f"{self.fraction.numerator}/{self.fraction.denominator}"


@dataclass(frozen=True)
class BucketPenalty:
    """The penalty of one charge bucket up to ``until`` inclusive."""

    period: Period
    scheme: str
    amount_kop: int
    due_date: date
    until: date
    rule: SchemeRule
    portions: tuple[Portion, ...]
    rows: tuple[IntervalRow, ...]
    exact_kop: Fraction

    @property
    def penalty_kop(self) -> int:
        return round_fraction(self.exact_kop)

    @property
    def paid_kop(self) -> int:
        return sum(p.amount_kop for p in self.portions if p.paid_on is not None)

    @property
    def debt_kop(self) -> int:
        """Unpaid at ``until`` (payments after ``until`` are not counted)."""
        return sum(p.amount_kop for p in self.portions if p.paid_on is None)

    @property
    def first_day(self) -> date:
        return self.due_date + ONE_DAY

    @property
    def moratorium_days(self) -> int:
        """Overdue days inside a moratorium while a debt was outstanding (no penalty)."""
        return sum(r.days for r in _unique_spans(self.rows) if r.moratorium)

    @property
    def penalty_days(self) -> int:
        """Days that bore a penalty (share > 0, outside moratoriums)."""
        return sum(r.days for r in _unique_spans(self.rows) if not r.moratorium and r.fraction)


def _unique_spans(rows: Iterable[IntervalRow]) -> list[IntervalRow]:
    seen: dict[tuple[date, date], IntervalRow] = {}
    for r in rows:
        seen.setdefault((r.start, r.end), r)
    return list(seen.values())


def split_portions(amount_kop: int, payments: Iterable[tuple[date, int]], until: date,
                   policy: PenaltyPolicy) -> list[Portion]:
    """Payments (up to ``until``, oldest first) against the bucket; the excess is ignored."""
    left = max(amount_kop, 0)
    portions: list[Portion] = []
    for paid_on, kop in sorted((p for p in payments if p[0] <= until and p[1] > 0), key=lambda p: p[0]):
        part = min(kop, left)
        if part <= 0:
            continue
        left -= part
        portions.append(_portion(part, paid_on, paid_on, policy, until))
    if left > 0:
        portions.append(_portion(left, until, None, policy, until))
    return portions


def _portion(amount: int, end: date, paid_on: date | None, policy: PenaltyPolicy, until: date) -> Portion:
    if policy.fixed_rate_bp is not None:
        return Portion(amount, end, paid_on, None, policy.fixed_rate_bp)
    if policy.rate_basis == "daily":
        return Portion(amount, end, paid_on, None, None)
    basis = paid_on if (policy.rate_basis == "payment_date" and paid_on is not None) else until
    return Portion(amount, end, paid_on, basis, policy.rate_on(basis))


def bucket_penalty(amount_kop: int, period: Period, due: date, until: date,
                   payments: Sequence[tuple[date, int]], policy: PenaltyPolicy,
                   scheme: str = "standard") -> BucketPenalty:
    """Penalty of one monthly charge ``amount_kop`` for ``period`` due on ``due``.

    ``payments`` are (paid_on, kopecks) already allocated to this bucket; a payment
    reduces the debt from the day after it is made. ``until`` is the last day
    counted, inclusive, and the day whose rate the unpaid rest bears.
    """
    rule = policy.scheme_rule(scheme, period)
    portions = tuple(split_portions(amount_kop, payments, until, policy))
    first = due + ONE_DAY
    if until < first or not portions:
        return BucketPenalty(period, scheme, amount_kop, due, until, rule, portions, (), Fraction(0))
    moratoria = policy.moratoria_for(period)
    cuts = {first, due + timedelta(days=rule.grace_days + 1), due + timedelta(days=rule.step_day + 1),
            until + ONE_DAY}
    cuts.update(p.end + ONE_DAY for p in portions)
    for m in moratoria:
        cuts.update((m.start, m.end + ONE_DAY))
    daily = policy.rate_basis == "daily" and policy.fixed_rate_bp is None
    if daily:
        cuts.update(policy.rate_changes(first, until))
    edges = sorted(c for c in cuts if first <= c <= until + ONE_DAY)

    rows: list[IntervalRow] = []
    last_by_rate: dict[int, int] = {}
    for start, nxt in itertools.pairwise(edges):
        end = nxt - ONE_DAY
        alive = [p for p in portions if p.end >= start]
        if not alive:
            break
        n = (start - due).days
        fraction = rule.fraction(n)
        in_moratorium = any(m.start <= start <= m.end for m in moratoria)
        groups: dict[int, tuple[int, date | None]] = {}
        for p in alive:
            rate = policy.rate_on(start) if daily else p.rate_bp
            assert rate is not None
            debt, basis = groups.get(rate, (0, p.basis))
            groups[rate] = (debt + p.amount_kop, basis)
        days = (end - start).days + 1
        for rate, (debt, basis) in sorted(groups.items()):
            share = Fraction(0) if in_moratorium else Fraction(debt * rate * days, 10_000) * fraction
            row = IntervalRow(start, end, debt, fraction, rate, in_moratorium, share,
                              start if daily else basis)
            i = last_by_rate.get(rate, -1)
            prev = rows[i] if i >= 0 else None
            if (prev is not None and prev.end + ONE_DAY == start and prev.debt_kop == debt
                    and prev.fraction == fraction and prev.moratorium == in_moratorium):
                rows[i] = replace(prev, end=end, share_kop=prev.share_kop + share)
            else:
                last_by_rate[rate] = len(rows)
                rows.append(row)
    rows.sort(key=lambda r: (r.start, r.rate_bp))
    total = sum((r.share_kop for r in rows), Fraction(0))
    return BucketPenalty(period, scheme, amount_kop, due, until, rule, portions, tuple(rows), total)
