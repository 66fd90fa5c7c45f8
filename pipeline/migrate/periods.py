"""Migrated months sealed as history: the same tables a close writes, built from the old system's.

:func:`migrated_results` (pure) turns a :class:`~pipeline.migrate.model.History` into one
:class:`~pipeline.close.compute.CloseResult` per migrated month, the internal frames exactly
as :func:`pipeline.close.compute.compute` produces them; :func:`seal_history` seals them
through :mod:`pipeline.close.seal` with ``"migrated": true`` in the manifest.

Per month M (docs/migration.md, "What a migrated period holds"):

* ``lines``: ``history_charges`` of M without the ``penalty`` rows, one line a month;
* ``recalculations``: ``history_recalculations`` of M, ``kind = recalculation``;
* ``allocations``: the payments booked in M — a part naming its service and supplier is
  taken as the old system split it; a payment without a split goes through our ledger
  (:func:`pipeline.allocate.ledger.apply_period`) against the open items;
* ``penalties``: the month's ``penalty`` lines per account and supplier (the month of the
  debt is not known: ``charge_period`` null); in the last month also one row per
  ``history_penalties`` bucket with ``cumulative = accrued`` and ``amount = 0`` — the
  previous cumulative the first close subtracts (``_penalty_inputs`` reads it);
* ``service_balances``: :func:`pipeline.allocate.balances` as in a close, opening with the
  open items of the month before — the first month with ``history_balances.opening`` (a debt
  dated to the month before the history, an advance with no month); ``balances``: their sums
  per account and supplier;
* ``debts``: the open items at M's end; in the last month ``history_debts`` for every
  account, service and supplier whose total equals ours (the old system's months of the
  debt kept), ours where it does not (the reconciliation lists those);
* ``meter_volumes``: ``history_meter_volumes`` of M with the meter's premise and service.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline.allocate import BALANCE_SCHEMA, balances
from pipeline.allocate.ledger import (
    ALLOCATION_SCHEMA,
    ITEM_KEY,
    ITEM_SCHEMA,
    PAYABLE,
    PAYMENT_SCHEMA,
    PENALTY_PURPOSE,
    RECEIVED_KINDS,
    apply_period,
)
from pipeline.calc.charges import LINE_SCHEMA
from pipeline.calc.recalc import RECALC_SCHEMA
from pipeline.close.compute import CloseResult
from pipeline.dates import Period
from pipeline.ids import Codes, coded, dictionary, map_frames, typed
from pipeline.migrate.model import MONTHLY, History
from pipeline.workspace import BillingError, Workspace
from rules import Rules
from schemas.history import PENALTY_SERVICE

if TYPE_CHECKING:
    from pipeline.close.cut import Plan
    from pipeline.close.inputs import CloseInputs

__all__ = ["PENALTY_COLUMNS", "SealedHistory", "iter_migrated_results", "migrated_results", "seal_history",
           "seal_months"]

_SVC = ["account_id", "service_id", "supplier_id"]
_BUCKET = ["account_id", "supplier_id", "charge_period"]

#: The internal columns of a period's ``penalties`` (schemas.outputs ``penalties``).
PENALTY_COLUMNS = pl.Schema({
    "account_id": pl.String(), "supplier_id": pl.String(), "charge_period": pl.String(),
    "scheme": pl.String(), "due_date": pl.Date(), "debt_kop": pl.Int64(), "cumulative_kop": pl.Int64(),
    "amount_kop": pl.Int64(),
})

_METER_VOLUMES = pl.Schema({
    "meter_id": pl.String(), "service_id": pl.String(), "premise_id": pl.String(), "method": pl.String(),
    "volume_micro": pl.Int64(), "prev_read_on": pl.Date(), "prev_value_micro": pl.Int64(),
    "curr_read_on": pl.Date(), "curr_value_micro": pl.Int64(),
})

_READING_ISSUES = pl.Schema({"meter_id": pl.String(), "read_on": pl.Date(), "reason": pl.String(),
                             "value": pl.Decimal(38, 6)})


def migrated_results(history: History, regs: dict[str, pl.DataFrame], rules: Rules,
                     due_rules: pl.DataFrame | None = None) -> list[CloseResult]:
    """One :class:`CloseResult` per month of ``history.months``, in order (no I/O but the
    history's months): :func:`iter_migrated_results` as a list."""
    return list(iter_migrated_results(history, regs, rules, due_rules))


def iter_migrated_results(history: History, regs: dict[str, pl.DataFrame], rules: Rules,
                          due_rules: pl.DataFrame | None = None, part: int | None = None
                          ) -> Iterator[CloseResult]:
    """The :class:`CloseResult` of each month of ``history.months``, in order, one at a time
    (a month's history is read when its turn comes: memory holds one month and the open items).

    ``regs``: the registers (``meters`` gives a meter's premise and service, ``accounts`` the
    accounts); ``rules``: the services' penalty schemes; ``due_rules``: ``rules/due_dates.csv``
    for the period's due date (None: no due date). Raises :class:`BillingError` (Russian) for
    a history row that falls outside the migrated months or that the money check refuses.

    As in a close (:mod:`pipeline.ids`), the months are computed with the accounts as integer
    codes (their rank among ``regs["accounts"]``: every order stays the one of the strings)
    and decoded before they are yielded; a history naming an account the registers do not
    have (only a hand-made one: the load refuses such rows) goes on in strings from that month.

    ``part``: the months of one partition only (:func:`_seal_part`): the staged monthly
    registers' files of that partition; ``history.frames`` and ``regs`` are the partition's.
    """
    months = list(history.months)
    if not months:
        raise BillingError("История пуста: нет ни одного месяца начислений для переноса.")
    _check_months(history, months)
    meters = regs["meters"].select("meter_id", "service_id", "premise_id")
    schemes = rules.services.select("service_id", pl.col("penalty_scheme").alias("scheme"))
    codes = _account_codes(regs)
    state: _State | None = None
    for index, month in enumerate(months):
        period = Period.parse(month)
        last = index == len(months) - 1
        given = _month_inputs(history, month, first=index == 0, last=last, part=part)
        if codes is not None:
            try:
                given = {name: codes.encode(frame) for name, frame in given.items()}
            except ValueError:  # an account without a code: the rest of the months in strings
                state = state and _State(codes.decode(state.items))
                codes = None
        if codes is not None:
            with coded():
                result, state = _month(period, given, state, schemes if last else None, codes)
            result = map_frames(result, codes.decode)
        else:
            result, state = _month(period, given, state, schemes if last else None, None)
        volumes = history.month("history_meter_volumes", month, part)
        yield replace(result, meter_volumes=_meter_volumes(volumes, meters), due_date=_due(due_rules, period))


@dataclass(frozen=True)
class _State:
    """What a migrated month passes to the next: its open items (whose sums are its closing balances)."""

    items: pl.DataFrame


def _account_codes(regs: dict[str, pl.DataFrame]) -> Codes | None:
    """Codes of the registers' accounts (:func:`pipeline.ids.dictionary`); None without them."""
    accounts = regs.get("accounts")
    if accounts is None or "account_id" not in accounts.columns:
        return None
    codes = dictionary([accounts.select("account_id")])
    return codes if "account_id" in codes.names else None


def _month_inputs(history: History, month: str, first: bool, last: bool, part: int | None = None
                  ) -> dict[str, pl.DataFrame]:
    """The history one month is made of (also the opening balances in the first month, the
    debts and penalties in the last)."""
    given = {name: history.month(name, month, part)
             for name in ("history_charges", "history_recalculations", "history_payments")}
    if first:
        given["opening"] = history.month("history_balances", month, part).select(*_SVC, "opening_kop")
    if last:
        given["history_debts"] = history.frame("history_debts")
        given["history_penalties"] = history.frame("history_penalties")
    return given


def _opening_state(rows: pl.DataFrame, first: Period) -> _State:
    """The first month's opening: the old system's opening balances as open items."""
    opening_rows = rows.group_by(_SVC).agg(pl.col("opening_kop").fill_null(0).sum())
    # The opening debt arose before the history: dated to the month before it; an advance has no month.
    items = _merge(opening_rows.select(
        *_SVC,
        pl.when(pl.col("opening_kop") > 0).then(pl.lit(str(first.shift(-1)))).otherwise(
            pl.lit(None, pl.String)).alias("charge_period"),
        pl.col("opening_kop").alias("outstanding_kop")))
    return _State(items)


def _month(period: Period, given: dict[str, pl.DataFrame], state: _State | None,
           schemes: pl.DataFrame | None, codes: Codes | None) -> tuple[CloseResult, _State]:
    """One migrated month from its history ``given`` and the previous month's ``state``
    (None: the first month, opened from ``given["opening"]``); ``schemes`` in the last month."""
    month = str(period)
    if state is None:
        state = _opening_state(given["opening"], period)
    items = state.items
    mine = given["history_charges"]
    lines = _lines(mine.filter(pl.col("service_id") != PENALTY_SERVICE), period)
    recalcs = _recalculations(given["history_recalculations"])
    booked = _payments(given["history_payments"])
    allocations, month_items = _ledger(items, lines, recalcs, booked, month, codes)
    penalty_lines = mine.filter(pl.col("service_id") == PENALTY_SERVICE).group_by(
        "account_id", "supplier_id").agg(pl.col("amount_kop").sum()).filter(pl.col("amount_kop") != 0)
    del mine
    posted = penalty_lines.select(
        "account_id", pl.lit(PENALTY_SERVICE).alias("service_id"), "supplier_id",
        pl.lit(month).alias("charge_period"), "amount_kop")
    # This month's penalty items have this month's key: nothing to merge with (as in a close).
    month_items = pl.concat([month_items, posted.rename({"amount_kop": "outstanding_kop"})])
    last = schemes is not None
    penalties = _penalties(penalty_lines, given, schemes)
    service_opening = items.group_by(_SVC).agg(pl.col("outstanding_kop").sum().alias("opening_kop"))
    # In no order: the sealed service balances are sorted (close.seal.to_outputs).
    service_bal = balances(service_opening, lines, allocations, tuple(_SVC), penalties=posted,
                           recalculations=recalcs, ordered=False)
    bal = _account_balances(service_bal)
    debts = _last_debts(month_items, given["history_debts"]) if last else month_items
    totals = _check(period, bal, service_bal, debts, allocations, lines, booked)
    items_schema = typed(ITEM_SCHEMA)
    result = CloseResult(
        period=period, lines=lines, meter_volumes=pl.DataFrame(schema=_METER_VOLUMES),
        reading_issues=pl.DataFrame(schema=_READING_ISSUES), allocations=allocations, balances=bal,
        service_balances=service_bal, debts=debts.select(list(items_schema)).cast(items_schema),
        due_date=None, totals=totals, penalties=penalties, recalculations=recalcs, settlements=None,
    )
    return result, _State(debts)


def _account_balances(service_bal: pl.DataFrame) -> pl.DataFrame:
    """The balances per account and supplier: the sums of its services' (their opening the open
    items of the month before, so the month before's closing; a month's penalty lines are its
    penalty service's), sorted by account and supplier. What :func:`~pipeline.allocate.balances`
    makes of the same movements, in half the time (``tests/migrate/test_periods.py``)."""
    money = [c for c in BALANCE_SCHEMA if c.endswith("_kop")]
    moved = [c for c in money if c != "closing_kop"]
    schema = typed(BALANCE_SCHEMA)
    return service_bal.lazy().group_by("account_id", "supplier_id").agg(pl.col(money).sum()).filter(
        pl.any_horizontal(pl.col(c) != 0 for c in moved)).sort("account_id", "supplier_id", nulls_last=True
                                                               ).select(list(schema)).cast(schema).collect()


def _check_months(history: History, months: list[str]) -> None:
    """The months follow each other; every dated history row lies in one (nothing silently left out)."""
    first = Period.parse(months[0])
    gap = next((m for i, m in enumerate(months) if m != str(first.shift(i))), None)
    if gap is not None:
        raise BillingError(f"Переносимые месяцы должны идти подряд: после {months[0]} пропущен месяц "
                           f"перед {gap}.")
    for register in ("history_charges", "history_recalculations", "history_payments",
                     "history_meter_volumes"):
        outside = sorted(str(p) for p in history.periods(register) - set(months))
        if outside:
            raise BillingError(
                f"{register}: строки за месяцы вне переносимых ({months[0]} — {months[-1]}): "
                f"{', '.join(outside[:5])}. Перенесите начисления и за эти месяцы или уберите эти строки.")


def _due(due_rules: pl.DataFrame | None, period: Period) -> date | None:
    from pipeline.calc.due import due_date

    return due_date(due_rules, period) if due_rules is not None else None


def _merge(items: pl.DataFrame) -> pl.DataFrame:
    """Open items summed by key, settled ones dropped; an overpaid month becomes an advance."""
    overpaid = (pl.col("charge_period").is_not_null() & (pl.col("outstanding_kop") < 0)
                & (pl.col("service_id").fill_null("") != PENALTY_SERVICE))
    schema = typed(ITEM_SCHEMA)
    return (items.lazy().select(list(schema)).cast(schema)
            .group_by(ITEM_KEY).agg(pl.col("outstanding_kop").sum())
            .with_columns(pl.when(overpaid).then(pl.lit(None, pl.String)).otherwise(pl.col("charge_period"))
                          .alias("charge_period"))
            .group_by(ITEM_KEY).agg(pl.col("outstanding_kop").sum())
            .filter(pl.col("outstanding_kop") != 0).select(list(schema)).collect())


def _merge_accounts(items: pl.DataFrame, more: pl.DataFrame, accounts: pl.DataFrame) -> pl.DataFrame:
    """:func:`_merge` of ``items`` and ``more`` where only the ``accounts`` (one column
    ``account_id``) can change: the other accounts' items, merged already, pass as they are."""
    keep = items.join(accounts, on="account_id", how="anti")
    change = items.join(accounts, on="account_id", how="semi")
    return pl.concat([keep, _merge(pl.concat([change, more.select(list(change.columns))]))])


def _lines(rows: pl.DataFrame, period: Period) -> pl.DataFrame:
    """History charges as charge lines (one a month; what the old system does not say is null)."""
    given = {
        "method": pl.col("method").fill_null("imported"),
        "line_from": pl.lit(period.first), "line_to": pl.lit(period.last),
        "days": pl.lit(period.days, pl.Int64), "days_in_month": pl.lit(period.days, pl.Int64),
    }
    have = set(rows.columns)
    return rows.lazy().select([
        (given[name] if name in given else pl.col(name) if name in have else pl.lit(None)).cast(dtype)
        .alias(name)
        for name, dtype in typed(LINE_SCHEMA).items()
    ]).sort("account_id", "service_id", "supplier_id").collect()


def _recalculations(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select(
        "account_id", "service_id", "supplier_id", "origin_period", "amount_kop", "reason",
        pl.lit(None, pl.Int64).alias("excess_minutes"), pl.lit("recalculation").alias("kind"),
        pl.lit(None, pl.Int32).alias("settles_year"),
    ).cast(typed(RECALC_SCHEMA)).sort(*_SVC, "origin_period", "amount_kop")


def _payments(rows: pl.DataFrame) -> pl.DataFrame:
    """History payments with a ``split`` flag: a part naming its service and supplier."""
    half = rows.filter(pl.col("service_id").is_null() != pl.col("supplier_id").is_null())
    if half.height:
        first = half.row(0, named=True)
        raise BillingError(
            f"Оплата {first['payment_id']} ({first['agent']}): разбивка указывает услугу без поставщика "
            "или поставщика без услуги. Укажите оба или ни одного (тогда оплату распределит наш учёт).")
    return rows.with_columns(pl.col("service_id").is_not_null().alias("split"))


def _ledger(items: pl.DataFrame, lines: pl.DataFrame, recalcs: pl.DataFrame, booked: pl.DataFrame,
            month: str, codes: Codes | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One month of the ledger: (allocations, open items at the month's end).

    The old system's parts are taken first, as they are (a part for an earlier month
    before, a part for this month with this month's charges); then our ledger applies
    the payments it did not split, oldest debt first, and offsets advances. A payment that
    pays whole months exactly (:func:`_exact_payments`, most of them) is booked here as the
    ledger would book it; :func:`apply_period` gets the other accounts only.
    """
    parts = booked.filter(pl.col("split"))
    split = parts.select(
        "payment_id", "agent", "account_id", "service_id", "supplier_id", "charge_period", "paid_on",
        pl.when(pl.col("amount_kop") < 0).then(pl.lit("refund"))
        .when(pl.col("charge_period").is_null()).then(pl.lit("advance"))
        .otherwise(pl.lit("payment")).alias("kind"),
        "amount_kop",
    ).cast(typed(ALLOCATION_SCHEMA))
    earlier = split.filter(pl.col("charge_period").is_null() | (pl.col("charge_period") != month))
    if earlier.height:
        paid_earlier = earlier.select(*ITEM_KEY, (-pl.col("amount_kop")).alias("outstanding_kop"))
        items = _merge_accounts(items, paid_earlier, earlier.select("account_id").unique())
    now = split.filter(pl.col("charge_period") == month)
    movements = pl.concat([
        lines.select(*_SVC, "amount_kop", pl.lit(month).alias("charge_period")),
        recalcs.select(*_SVC, "amount_kop", pl.col("origin_period").alias("charge_period")),
        now.select(*_SVC, (-pl.col("amount_kop")).alias("amount_kop"), "charge_period"),
    ])
    ours = booked.filter(~pl.col("split")).group_by("agent", "payment_id", "account_id", "paid_on").agg(
        pl.col("amount_kop").sum(),
        # One month named by every row of the payment: a payment for that month (ГК 319.1 п.1).
        pl.when(pl.col("charge_period").n_unique() == 1).then(pl.col("charge_period").first())
        .alias("period"),
    )
    refused = ours.filter(pl.col("amount_kop") < 0)
    if refused.height:
        first = (codes.decode(refused) if codes is not None else refused).row(0, named=True)
        raise BillingError(
            f"Возврат {first['payment_id']} ({first['agent']}, счёт {first['account_id']}) без разбивки "
            "по услугам: укажите услугу, поставщика и месяц, к которым он относится.")
    exact = _exact_payments(items, movements, ours.select(list(PAYMENT_SCHEMA)), month)
    rest = exact.accounts.lazy()
    ledger_allocations, after = apply_period(
        items.lazy().join(rest, on="account_id", how="semi").collect(),
        movements.lazy().join(rest, on="account_id", how="semi").collect(),
        ours.lazy().join(rest, on="account_id", how="semi").select(list(PAYMENT_SCHEMA)).collect(), month)
    schema = typed(ALLOCATION_SCHEMA)
    allocations = pl.concat([split, exact.allocations.select(list(schema)).cast(schema),
                             ledger_allocations.select(list(schema)).cast(schema)])
    allocations = allocations.filter(pl.col("amount_kop") != 0).sort(
        "account_id", "paid_on", "agent", "payment_id", "charge_period", "service_id", "supplier_id",
        nulls_last=True)
    items_schema = typed(ITEM_SCHEMA)
    after = pl.concat([exact.items.select(list(items_schema)).cast(items_schema),
                       after.select(list(items_schema)).cast(items_schema)])
    overpaid = after.filter(pl.col("charge_period").is_not_null() & (pl.col("outstanding_kop") < 0)
                            & (pl.col("service_id") != PENALTY_SERVICE))
    if not overpaid.height:
        return allocations, after
    return allocations, _merge_accounts(after, after.clear(), overpaid.select("account_id").unique())


@dataclass(frozen=True)
class _Exact:
    """:func:`_exact_payments`: what the ledger would do for the simple accounts, and the others."""

    allocations: pl.DataFrame  # the simple accounts' allocations (ALLOCATION_SCHEMA)
    items: pl.DataFrame  # the simple accounts' open items at the month's end (ITEM_SCHEMA)
    accounts: pl.DataFrame  # the other accounts (one column account_id): for apply_period


def _exact_payments(items: pl.DataFrame, movements: pl.DataFrame, payments: pl.DataFrame,
                    month: str) -> _Exact:
    """The month of the accounts whose ledger is plain, booked exactly as
    :func:`~pipeline.allocate.ledger.apply_period` books it, without its machinery.

    An account is plain when nothing in it asks for more than adding this month's charges
    to its open items and, with at most one payment, paying whole months: no recalculation
    of an earlier month, no advance or overpaid item (nothing negative), no item without a
    month or of this month or later among the open ones, and its one payment either names
    a month (not the penalties) and equals exactly what that month owes, or names none and
    equals exactly the oldest months' debts up to one of them. Such a payment pays each of
    those items its outstanding amount, oldest first and in full (so no proportional split,
    no advance): the items go, the allocations are one ``payment`` row per item. Every
    other account goes to ``apply_period`` (its accounts are independent of each other).
    """
    new = movements.lazy().filter(pl.col("charge_period") == month).group_by(ITEM_KEY).agg(
        pl.col("amount_kop").sum().alias("outstanding_kop"))
    combined = pl.concat([items.lazy().select([*ITEM_KEY, "outstanding_kop"]),
                          new.cast({"outstanding_kop": pl.Int64})]).filter(
        pl.col("outstanding_kop") != 0).collect()
    positive = payments.filter(pl.col("amount_kop") > 0)
    odd = pl.concat([
        movements.filter(pl.col("charge_period").is_null() | (pl.col("charge_period") != month))
        .select("account_id"),
        combined.filter(pl.col("outstanding_kop") < 0).select("account_id"),
        items.filter(pl.col("charge_period").is_null() | (pl.col("charge_period") >= month))
        .select("account_id"),
        payments.filter((pl.col("amount_kop") <= 0) | (pl.col("period") == PENALTY_PURPOSE)
                        | (pl.len().over("account_id") > 1)).select("account_id"),
    ]).unique()
    plain = positive.join(odd, on="account_id", how="anti")
    months = combined.lazy().filter(PAYABLE).join(plain.lazy().select("account_id", "period", "amount_kop"),
                                                  on="account_id", how="inner").group_by(
        "account_id", "charge_period").agg(pl.col("outstanding_kop").sum().alias("_month"),
                                           pl.col("period").first(), pl.col("amount_kop").first())
    # The month the payment pays up to: the named one when it owes the payment exactly, else
    # (unnamed) the month whose debts up to it sum to the payment exactly.
    upto = months.sort("account_id", "charge_period").with_columns(
        pl.col("_month").cum_sum().over("account_id").alias("_upto")).filter(
        pl.when(pl.col("period").is_not_null())
        .then((pl.col("charge_period") == pl.col("period")) & (pl.col("_month") == pl.col("amount_kop")))
        .otherwise(pl.col("_upto") == pl.col("amount_kop"))).select(
        "account_id", pl.col("charge_period").alias("_upto_month"))
    exact = plain.lazy().join(upto, on="account_id", how="inner").select(
        "account_id", "payment_id", "agent", "paid_on", "period", "_upto_month").collect()
    simple = pl.concat([exact.select("account_id"), combined.select("account_id").unique()
                        .join(positive, on="account_id", how="anti")
                        .join(odd, on="account_id", how="anti")])
    mine = combined.lazy().join(simple.lazy(), on="account_id", how="semi").join(
        exact.lazy(), on="account_id", how="left").with_columns(
        (PAYABLE & pl.col("_upto_month").is_not_null()
         & pl.when(pl.col("period").is_not_null()).then(pl.col("charge_period") == pl.col("period"))
         .otherwise(pl.col("charge_period") <= pl.col("_upto_month"))).alias("_paid")).collect()
    allocations = mine.filter("_paid").select(
        "payment_id", "agent", "account_id", "service_id", "supplier_id", "charge_period", "paid_on",
        pl.lit("payment").alias("kind"), pl.col("outstanding_kop").alias("amount_kop"))
    left = mine.filter(~pl.col("_paid")).select([*ITEM_KEY, "outstanding_kop"])
    others = pl.concat([combined.select("account_id"), payments.select("account_id"),
                        movements.select("account_id")]).unique().join(simple, on="account_id", how="anti")
    return _Exact(allocations, left, others)


def _penalties(lines: pl.DataFrame, given: dict[str, pl.DataFrame], schemes: pl.DataFrame | None
               ) -> pl.DataFrame:
    """The month's penalties: its penalty lines (no debt month) and, in the last month
    (``schemes`` given), the accrued penalty of every debt the first close continues."""
    unknown = [pl.lit(None, PENALTY_COLUMNS[c]).alias(c)
               for c in ("charge_period", "scheme", "due_date", "debt_kop", "cumulative_kop")]
    schema = typed(PENALTY_COLUMNS)
    rows = [lines.select("account_id", "supplier_id", *unknown, "amount_kop").cast(schema)]
    if schemes is not None:
        accrued = given["history_penalties"]
        debts = given["history_debts"].filter(
            (pl.col("service_id") != PENALTY_SERVICE) & pl.col("charge_period").is_not_null())
        facts = debts.join(schemes, on="service_id", how="left").group_by(_BUCKET).agg(
            pl.col("amount_kop").sum().alias("debt_kop"), pl.col("due_date").min(),
            # A supplier's bucket follows ч.14.1 only when all its services are capital repair.
            pl.when((pl.col("scheme") == "capital_repair").all()).then(pl.lit("capital_repair"))
            .otherwise(pl.lit("standard")).alias("scheme"))
        rows.append(accrued.join(facts, on=_BUCKET, how="left").select(
            *_BUCKET, pl.col("scheme").fill_null("standard"), "due_date", "debt_kop",
            pl.col("accrued_kop").alias("cumulative_kop"), pl.lit(0, pl.Int64).alias("amount_kop"),
        ).cast(schema))
    return pl.concat(rows).sort(_BUCKET, nulls_last=True)


def _last_debts(ours: pl.DataFrame, theirs: pl.DataFrame) -> pl.DataFrame:
    """The last month's open items: the old system's where their total per account, service
    and supplier equals ours, ours elsewhere (the reconciliation lists those)."""
    if not theirs.height:
        return ours
    theirs = _merge(theirs.select(*ITEM_KEY, pl.col("amount_kop").alias("outstanding_kop")))
    # Ours minus theirs per account, service and supplier (a null supplier is its own group).
    totals = pl.concat([
        ours.select(*_SVC, "outstanding_kop"),
        theirs.select(*_SVC, -pl.col("outstanding_kop")),
    ]).group_by(_SVC).agg(pl.col("outstanding_kop").sum())
    agree = totals.filter(pl.col("outstanding_kop") == 0).select(_SVC)
    join = {"on": _SVC, "nulls_equal": True}
    return _merge(pl.concat([theirs.join(agree, how="semi", **join),  # type: ignore[arg-type]
                             ours.join(agree, how="anti", **join)]))  # type: ignore[arg-type]


def _meter_volumes(rows: pl.DataFrame, meters: pl.DataFrame) -> pl.DataFrame:
    joined = rows.join(meters, on="meter_id", how="left")
    have = set(joined.columns)
    return joined.select([(pl.col(n) if n in have else pl.lit(None)).cast(t).alias(n)
                          for n, t in _METER_VOLUMES.items()]).sort("meter_id")


def _check(period: Period, bal: pl.DataFrame, service_bal: pl.DataFrame, debts: pl.DataFrame,
           allocations: pl.DataFrame, lines: pl.DataFrame, booked: pl.DataFrame) -> dict[str, int]:
    """The close's totals and its money check: opening + charged + recalculated + penalty − paid
    = closing, per account and supplier and in total; per service the open items hold the closing."""
    received = allocations.filter(pl.col("kind").is_in(RECEIVED_KINDS))
    totals = {
        "charged": int(lines["amount_kop"].sum()),
        "paid": int(booked["amount_kop"].sum()),
        "allocated": int(received["amount_kop"].sum()),
        "opening": int(bal["opening_kop"].sum()),
        "penalty": int(bal["penalty_kop"].sum()),
        "recalculated": int(bal["recalculated_kop"].sum()),
        "closing": int(bal["closing_kop"].sum()),
    }
    wrong = bal.filter(pl.col("closing_kop") != pl.col("opening_kop") + pl.col("charged_kop")
                       + pl.col("recalculated_kop") + pl.col("penalty_kop") - pl.col("paid_kop"))
    # Per account, service and supplier: closing − open items ≠ 0 (one lazy sum: the streaming engine).
    off = pl.concat([
        service_bal.lazy().select(*_SVC, pl.col("closing_kop").alias("_off")),
        debts.lazy().select(*_SVC, (-pl.col("outstanding_kop")).alias("_off")),
    ]).group_by(_SVC).agg(pl.col("_off").sum()).filter(pl.col("_off") != 0).collect()
    expected = (totals["opening"] + totals["charged"] + totals["recalculated"] + totals["penalty"]
                - totals["allocated"])
    if wrong.height or off.height or totals["closing"] != expected or totals["allocated"] != totals["paid"]:
        raise BillingError(
            f"Перенесённый период {period}: сальдо не сходится (ожидалось {expected}, получено "
            f"{totals['closing']} коп.; оплаты {totals['paid']}, распределено {totals['allocated']}; "
            f"строк с расхождением: по счетам {wrong.height}, по услугам {off.height}).")
    return totals


def _manifest(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return data


@dataclass(frozen=True)
class SealedHistory:
    """What :func:`seal_months` did: the sealed periods, and every month's closing balances
    compared with the old system's (:func:`pipeline.migrate.reconcile.closing_month`), made
    while the month was in memory so that the reconciliation does not read them back."""

    periods: list[Path]
    closing: pl.DataFrame
    #: CPU seconds of the partitions' processes (:func:`_seal_in_parts`; 0 when made here)
    worker_cpu_seconds: float = 0.0


def seal_history(ws: Workspace, history: History, *, replace: bool = False) -> list[Path]:
    """Seal every migrated month as ``periods/YYYY-MM/`` marked ``"migrated": true``; their paths.

    Refused once an ordinary (non-migrated) period is sealed, and when migrated periods
    are there already unless ``replace`` (then they are removed first). The manifests
    carry the current store version and rule hashes, so the first close recomputes a
    migrated month only when a register or rule changes after the move.
    """
    return seal_months(ws, history, replace=replace).periods


def seal_months(ws: Workspace, history: History, *, replace: bool = False) -> SealedHistory:
    """:func:`seal_history`, and the months' closing comparison for the reconciliation.

    The months are computed and sealed one after another, in order (each manifest is chained
    to the one before); each month's closing comparison is made while it is in memory. A
    history staged in partitions (``history.plan``) is rebuilt partition by partition
    (:func:`_seal_in_parts`), each through all the months, and each month sealed once all its
    parts are written.
    """
    from pipeline.close.inputs import CHARGE_RULES, CloseInputs, rules_sha256
    from pipeline.close.seal import seal
    from pipeline.ingest.registers import current_version, load_store
    from pipeline.migrate.reconcile import closing_month
    from rules import load_rules, read_rule_table

    ws.require()
    sealed = ws.sealed_periods()
    ordinary = [p for p in sealed if not _manifest(ws.period_dir(p)).get("migrated")]
    if ordinary:
        raise BillingError(
            f"Перенос истории невозможен: период {ordinary[0]} уже закрыт в этой системе. "
            "История переносится только до первого закрытия.")
    if sealed and not replace:
        raise BillingError(
            f"Перенесённые периоды уже записаны ({sealed[0]} — {sealed[-1]}). Чтобы загрузить "
            "исправленную выгрузку, повторите с --replace.")
    version = current_version(ws)
    regs = load_store(ws, version)
    rules = load_rules(ws.rules)
    tolerance = ws.typed_settings().migration.tolerance_kop
    empty = pl.DataFrame()
    stamp = CloseInputs(
        period=Period.parse(history.first), regs=regs, rules=rules, window_end_day=0, payments=empty,
        earlier_allocations=None, opening=empty, open_items=empty, averaged_before=empty, due_date=None,
        store_version=version, payments_sha256=None, spike_multiple=0,
        rules_sha256=rules_sha256(ws.rules), charge_rules_sha256=rules_sha256(ws.rules, CHARGE_RULES),
    )
    extra = {"migrated": True, "source": history.source,
             "migration_files_sha256": dict(sorted(history.files_sha256.items()))}
    due_rules = read_rule_table(ws.rules, "due_dates")
    closing: list[pl.DataFrame] = []

    def write(result: CloseResult) -> Path:
        path = seal(ws, result, stamp, extra=extra, reports=False)
        month = str(result.period)
        closing.append(closing_month(history.month("history_balances", month),
                                     result.service_balances.with_columns(pl.lit(month).alias("period")),
                                     tolerance))
        return path

    # The months are sealed one by one as they are rebuilt; the replaced ones wait aside until
    # every new month is sealed, and come back if one fails (the workspace is as it was).
    aside = ws.period_dir(".replaced-migration")
    if aside.exists():
        shutil.rmtree(aside)
    for p in sealed:
        aside.mkdir(parents=True, exist_ok=True)
        ws.period_dir(p).rename(aside / p)
    written: list[Path] = []
    worker_cpu: list[float] = []
    # One month after another: writing month m in a thread while m + 1 is computed was measured
    # and gave nothing on 2 busy cores (stop 22), only contention.
    try:
        if history.plan is None:
            for result in iter_migrated_results(history, regs, rules, due_rules):
                written.append(write(result))
        else:
            closing += _seal_in_parts(ws, history, history.plan, regs, rules, due_rules, stamp, extra,
                                      written, worker_cpu)
    except BaseException:
        for path in written:
            shutil.rmtree(path, ignore_errors=True)
        for p in sealed:
            (aside / p).rename(ws.period_dir(p))
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    # months is never empty (iter_migrated_results): closing neither
    return SealedHistory(written, pl.concat(closing), sum(worker_cpu))


# --- partitions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PartJob:
    """One partition's months: its history and registers, where each month's parts go."""

    index: int
    history: History  # the staged registers; frames, only the partition's rows
    regs: dict[str, pl.DataFrame]  # the partition's accounts and meters
    rules: Rules
    due_rules: pl.DataFrame | None
    folders: dict[str, str]  # month -> the staging folder of its period
    tolerance_kop: int


@dataclass(frozen=True)
class _PartMonth:
    """What a partition hands back of one month: small facts, its tables are on disk."""

    totals: dict[str, int]
    row_counts: dict[str, int]
    closing: pl.DataFrame  # the keys whose closing differs (reconcile.closing_month)
    due_date: date | None


@dataclass(frozen=True)
class _PartDone:
    """A partition's months, and the CPU seconds its process spent on them."""

    months: list[_PartMonth]
    cpu_seconds: float


def _seal_part(job: _PartJob) -> _PartDone:
    """The months of one partition, in order, each written as part ``job.index`` of its period
    (a plain picklable function of a picklable job: a pool's worker runs what this process would)."""
    from pipeline.close.seal import to_outputs, write_tables
    from pipeline.migrate.reconcile import closing_month

    started = time.process_time()
    done = []
    for result in iter_migrated_results(job.history, job.regs, job.rules, job.due_rules, part=job.index):
        month = str(result.period)
        counts = write_tables(to_outputs(result), Path(job.folders[month]), job.index)
        theirs = job.history.month("history_balances", month, job.index)
        closing = closing_month(theirs, result.service_balances.with_columns(pl.lit(month).alias("period")),
                                job.tolerance_kop)
        done.append(_PartMonth(dict(result.totals), counts, closing, result.due_date))
        del result, theirs
    return _PartDone(done, time.process_time() - started)


def _part_jobs(history: History, plan: Plan, regs: dict[str, pl.DataFrame], rules: Rules,
               due_rules: pl.DataFrame | None, folders: dict[str, str], tolerance_kop: int
               ) -> Iterator[_PartJob]:
    """The jobs of :func:`_seal_part`, made one at a time (a job holds its partition's rows)."""
    from pipeline.close.partition import cutter

    cut = cutter(plan)  # each frame's partitions found once (a row of no partition's goes to 0)

    def of_part(frame: pl.DataFrame, index: int) -> pl.DataFrame:
        key = next((k for k in ("account_id", "meter_id") if k in frame.columns), None)
        return frame if key is None else cut.take(frame, key, index)

    # The registers kept whole in memory that the months read: the last month's debts and
    # penalties, and the empty frames of the monthly registers the export did not have.
    needed = {name: frame for name, frame in history.frames.items()
              if name in ("history_debts", "history_penalties") or name in MONTHLY}
    for index in range(plan.count):
        yield _PartJob(
            index, replace(history, frames={n: of_part(f, index) for n, f in needed.items()}, plan=None),
            {"accounts": of_part(regs["accounts"], index), "meters": of_part(regs["meters"], index)},
            rules, due_rules, folders, tolerance_kop)


def _seal_in_parts(ws: Workspace, history: History, plan: Plan, regs: dict[str, pl.DataFrame], rules: Rules,
                   due_rules: pl.DataFrame | None, stamp: CloseInputs, extra: dict[str, Any],
                   written: list[Path], cpu_seconds: list[float]) -> list[pl.DataFrame]:
    """Every month of ``history``, rebuilt partition by partition in ``[migration] workers``
    processes, sealed in order once all its parts are written (each sealed period appended to
    ``written`` as it lands); the months' closing comparisons. The partitions' CPU seconds (their
    processes') are appended to ``cpu_seconds``.

    Each month has a staging folder beside its final place; the partitions write their parts
    of every month into them (``<table>/part-000k.parquet``, as a partitioned close does). Then
    month by month: the totals and row counts summed, the manifest (``partitions``) chained to
    the month before, one atomic rename. A failure leaves no staging folder behind.
    """
    from pipeline.close.seal import finish
    from pipeline.pool import default_workers, worker_pool

    months = list(history.months)
    folders = {m: ws.period_dir(m).with_name(f".{m}.{uuid.uuid4().hex}.tmp") for m in months}
    settings = ws.typed_settings().migration
    workers = min(settings.workers or default_workers(), plan.count)
    done: list[_PartDone] = []
    try:
        for folder in folders.values():
            folder.mkdir(parents=True)
        jobs = _part_jobs(history, plan, regs, rules, due_rules, {m: str(f) for m, f in folders.items()},
                          settings.tolerance_kop)
        with worker_pool(workers) as pool:
            if pool is None:
                done = [_seal_part(job) for job in jobs]
            else:  # at most one job waiting per worker: the jobs' rows are not all pickled at once
                pending: deque[Future[_PartDone]] = deque()
                for job in jobs:
                    if len(pending) >= workers:
                        done.append(pending.popleft().result())
                    pending.append(pool.submit(_seal_part, job))
                    del job
                done += [future.result() for future in pending]
        for i, month in enumerate(months):
            parts = [part.months[i] for part in done]
            totals: dict[str, int] = {}
            counts: dict[str, int] = {}
            for part in parts:
                for key, value in part.totals.items():
                    totals[key] = totals.get(key, 0) + int(value)
                for key, value in part.row_counts.items():
                    counts[key] = counts.get(key, 0) + int(value)
            period = Period.parse(month)
            finish(ws, folders[month], stamp, period, parts[0].due_date, totals, counts, None,
                   partitions=plan.count, extra=extra, reports=False)
            final = ws.period_dir(month)
            if final.exists():
                raise BillingError(f"{final} уже существует и не будет перезаписан.")
            os.rename(folders[month], final)
            written.append(final)
    finally:
        for folder in folders.values():
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
    cpu_seconds.append(sum(part.cpu_seconds for part in done))
    return [month.closing for part in done for month in part.months]
