"""Billing periods and date ranges: the one place that does calendar arithmetic.

A period (расчётный период, п.37 Правил 354) is a calendar month written
``YYYY-MM``. Date ranges in registers are inclusive on both ends; an empty end
means open-ended. :func:`overlap_days` is the single helper that intersects a
register row's range with a period, in Python and as a Polars expression.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

_PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

#: Stand-in for an open end of a date range; far enough for any billing horizon.
OPEN_END = date(9999, 12, 31)


@dataclass(frozen=True, order=True)
class Period:
    """A billing month (расчётный период)."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        """Parse ``YYYY-MM``; raises ``ValueError`` with a Russian message.

        >>> Period.parse("2026-02").days
        28
        """
        m = _PERIOD_RE.match(text.strip())
        if not m:
            raise ValueError(f"период должен быть в виде ГГГГ-ММ, получено «{text}»")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, day: date) -> Period:
        return cls(day.year, day.month)

    @property
    def first(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last(self) -> date:
        return date(self.year, self.month, self.days)

    @property
    def days(self) -> int:
        return calendar.monthrange(self.year, self.month)[1]

    def shift(self, months: int) -> Period:
        """The period ``months`` later (earlier when negative).

        >>> str(Period(2026, 1).shift(-1)), str(Period(2026, 12).shift(1))
        ('2025-12', '2027-01')
        """
        index = self.year * 12 + self.month - 1 + months
        return Period(index // 12, index % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def overlap_days(start: date, end: date | None, period: Period) -> int:
    """Days of the inclusive range ``[start, end]`` that fall inside the period.

    >>> overlap_days(date(2026, 3, 10), None, Period(2026, 3))
    22
    >>> overlap_days(date(2026, 1, 1), date(2026, 3, 1), Period(2026, 3))
    1
    """
    lo = max(start, period.first)
    hi = min(end or OPEN_END, period.last)
    return max((hi - lo).days + 1, 0)


def overlap_days_expr(start: str, end: str, period: Period) -> pl.Expr:
    """:func:`overlap_days` for date columns ``start`` and ``end`` (null end = open)."""
    lo = pl.max_horizontal(pl.col(start), pl.lit(period.first))
    hi = pl.min_horizontal(pl.col(end).fill_null(pl.lit(OPEN_END)), pl.lit(period.last))
    return ((hi - lo).dt.total_days() + 1).clip(lower_bound=0).cast(pl.Int64)


def month_periods(first: Period, count: int) -> list[Period]:
    """``count`` consecutive periods starting with ``first``."""
    return [first.shift(i) for i in range(count)]


def day_after(day: date) -> date:
    return day + timedelta(days=1)
