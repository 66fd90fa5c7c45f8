"""Penalties (пени) for late payment, ЖК РФ ст.155 ч.14 (ЖКУ) and ч.14.1 (капремонт).

Sources: ``shared/domain/law.md`` §2–3 and ``law-penalties-checked.md`` (which wins).

Rules as data (``HOME/rules/``, defaults in ``rules/defaults/``; every CSV row names
its legal source; all tables are declared in ``schemas/rules.py``)
==========================================================================================

=========================  ==================================================================
``due_dates.csv``          due day of the next month by charge period (10th; 15th from the
                           February 2026 charges, 177-ФЗ), moved to the next working day by the
                           Russian production calendar (ГК 193) — :func:`pipeline.calc.due.due_date`.
``penalty_schemes.csv``    per scheme and charge period: ``grace_days`` (30), ``step_day`` (90),
                           ``den_before`` (300), ``den_after`` (130). ``standard`` = ч.14
                           (0 → 1/300 from day 31 → 1/130 from day 91); ``capital_repair`` =
                           ч.14.1 (0 → 1/300 from day 31 on, no step: ``den_after`` = 300).
``key_rates.csv``          Bank of Russia key rate (= refinancing rate since 2016), steps.
``penalty_rate_caps.csv``  by the payment (or calculation) day: ``fixed`` 9.5 % for
                           28.02–31.07.2022 (ПП 474), then ``min``(9.5 %, key rate) to 31.12.2026
                           (ПП 1681 from 01.08.2022, 2479, 2382, 329) — law-penalties-checked §4.
``moratoriums.csv``        windows without penalty, by ``variant``. ``law`` (default): ПП 424
                           06.04–31.12.2020 for all debts; ПП 497 01.04–01.10.2022 only for
                           debts arisen before 01.04.2022 (``arisen_before``: charge periods up to
                           2022-03). ``penalty_calc``: the boundaries of the public calculator of
                           anchors.md V1 (06.04.2020–01.01.2021, 31.03–01.10.2022, all debts).
``penalty_policy.toml``    the switches: ``[rate] basis`` and ``[moratoriums] variant``.
=========================  ==================================================================

Semantics (day 1 = the day after the due date ``D``; ``until``/``calc_date`` inclusive)
=========================================================================================

* Share of day ``n``: 0 for ``n ≤ grace_days``, ``1/den_before`` for ``n ≤ step_day``,
  ``1/den_after`` after. The day count runs on through moratoriums (law-penalties-checked
  §2, default "calendar days continue"); a moratorium day only carries no penalty.
* A payment reduces the debt from the day after it is made (the payment day still
  bears penalty); payments beyond the charge are ignored (no negative debt).
* Rate basis (``[rate] basis``), capped by ``penalty_rate_caps.csv`` on the same day:
  ``payment_date`` (default, ч.14 «ставки … действующей на день фактической оплаты»): the
  debt is split into portions — each payment's part bears the rate of its payment
  day, the unpaid rest the rate of the calculation day (provisional: the monthly
  accrual restates itself as parts get paid); ``calc_date``: everything at the rate of
  the calculation day (court: decision day, ВС Обзор № 3 (2016) q.3); ``daily``: the rate
  in force on each day (some calculators' practice, not the statute). A fixed rate
  (calculator ``--rate``) replaces all of this and switches the caps off.
* Money is exact: daily amounts are summed as exact rationals (``Fraction`` in the
  scalar engine, integers over ``10 000 × lcm(denominators)`` in Polars) and rounded
  once per charge bucket, half away from zero (:func:`pipeline.money.div_half_up`).

Gold vector (anchors.md V1: May 2019, 1 000 ₽, 100 ₽ paid 01.01.2020, 9.5 %, until
18.04.2024): due 10.06.2019 (a Monday, so the working-day shift changes nothing),
first overdue day 11.06.2019 → 836.37 ₽ with the ``law`` moratoriums, 835.05 ₽ with
``penalty_calc`` (two more moratorium days: 01.01.2021 and 31.03.2022).

Modules
=======

* :mod:`.policy` — :class:`PenaltyPolicy`, :func:`load_policy`.
* :mod:`.scalar` — :func:`bucket_penalty`: exact intervals of one bucket (calculator, statement).
* :mod:`.accrual` — :func:`accrue`: vectorised Polars accrual for the monthly close, no
  per-day rows; :func:`accrue_intervals`: interval rows for a few buckets.
* :mod:`.calculator` — ``billing penalty`` (:func:`penalty_command`, :func:`register`).
* :mod:`.statement` — :func:`write_statement`: court statement, PDF and XLSX.
* :mod:`.bench` — ``bench(accounts)``: timing of :func:`accrue` on synthetic data.

Not modelled (switches left for later): the old ч.14.1 wording (1/300 from the day after
the due date, before the unverified switch date); a day count frozen during a
moratorium; per-account opt-out of the 2022 moratorium; regional capital-repair due days.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.penalties.accrual import BUCKET_SCHEMA, PAYMENT_SCHEMA, accrue, accrue_intervals
    from pipeline.penalties.policy import (
        RATE_BASES,
        Moratorium,
        PenaltyPolicy,
        RateCap,
        SchemeRule,
        load_policy,
    )
    from pipeline.penalties.scalar import BucketPenalty, IntervalRow, bucket_penalty

#: Where each name lives. Imported on first use (PEP 562): ``billing`` imports
#: ``pipeline.penalties.calculator`` at every start, and the package must not bring
#: polars with it then (``billing --help``).
_HOMES = {
    "BUCKET_SCHEMA": "accrual", "PAYMENT_SCHEMA": "accrual", "accrue": "accrual",
    "accrue_intervals": "accrual", "RATE_BASES": "policy", "Moratorium": "policy",
    "PenaltyPolicy": "policy", "RateCap": "policy", "SchemeRule": "policy", "load_policy": "policy",
    "BucketPenalty": "scalar", "IntervalRow": "scalar", "bucket_penalty": "scalar",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)

__all__ = [
    "BUCKET_SCHEMA",
    "PAYMENT_SCHEMA",
    "RATE_BASES",
    "BucketPenalty",
    "IntervalRow",
    "Moratorium",
    "PenaltyPolicy",
    "RateCap",
    "SchemeRule",
    "accrue",
    "accrue_intervals",
    "bucket_penalty",
    "load_policy",
]
