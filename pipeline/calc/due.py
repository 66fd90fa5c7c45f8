"""Due date of a period's charges (срок оплаты), from the dated ``due_dates`` rule.

The day of the next month comes from the rule in force for the charge period
(10th under ЖК 155 ч.1; 15th from the February 2026 charges, 177-ФЗ); a
non-working day moves to the next working day (ГК 193) by the Russian
production calendar of the ``holidays`` package.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from pipeline.dates import Period


def is_working_day(day: date) -> bool:
    import holidays

    return bool(holidays.RU(years=day.year).is_working_day(day))


def next_working_day(day: date) -> date:
    """``day`` itself when it is a working day, else the next one.

    >>> next_working_day(date(2026, 3, 15))  # a Sunday
    datetime.date(2026, 3, 16)
    """
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def due_date(due_rules: pl.DataFrame, period: Period) -> date | None:
    """The last day to pay the charges of ``period`` without penalty grace counting.

    >>> rules = pl.DataFrame({"from": [date(2016, 1, 1), date(2026, 2, 1)], "day": [10, 15]})
    >>> due_date(rules, Period(2026, 1)), due_date(rules, Period(2026, 2))
    (datetime.date(2026, 2, 10), datetime.date(2026, 3, 16))
    """
    in_force = due_rules.filter(pl.col("from") <= pl.lit(period.first)).sort("from")
    if not in_force.height:
        return None
    day = int(in_force["day"][-1])
    following = period.shift(1)
    return next_working_day(date(following.year, following.month, day))
