"""The pure part of a close: the stages in order, over one partition's (or the whole) inputs.

readings → consumption → charges → recalculations (quality, changed registers or rules,
п.61 settlements, КР на СОИ postings) → payment allocation → penalties → balances, then
the money check: opening + charged + recalculated + penalty − paid = closing, per account
and per service, on every close. No I/O: :class:`CloseInputs` in, :class:`CloseResult` out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from pipeline.allocate import balances
from pipeline.allocate.ledger import ITEM_SCHEMA, RECEIVED_KINDS, apply_period
from pipeline.calc.charges import charge_lines, heating_volumes
from pipeline.calc.quality import quality_reductions
from pipeline.calc.readings import Averaging, consumption, norm_months
from pipeline.close.inputs import CloseInputs
from pipeline.dates import Period
from pipeline.ids import coded, map_frames, typed
from pipeline.penalties.monthly import PENALTY_SERVICE
from pipeline.workspace import BillingError

OUTPUT_TABLES = ("charges", "recalculations", "allocations", "penalties", "balances",
                 "service_balances", "debts", "meter_volumes", "reading_issues", "settlements")


#: What later closes need of a settlement to post its parts.
SETTLED_COLUMNS = ["account_id", "service_id", "supplier_id", "year", "amount_kop", "parts", "first_period",
                   "carry_over"]


@dataclass
class CloseResult:
    """Internal frames of a close (kopecks, micro-units) and their totals."""

    period: Period
    lines: pl.DataFrame
    meter_volumes: pl.DataFrame
    reading_issues: pl.DataFrame
    allocations: pl.DataFrame
    balances: pl.DataFrame
    service_balances: pl.DataFrame
    debts: pl.DataFrame
    due_date: date | None
    totals: dict[str, int] = field(default_factory=dict)
    penalties: pl.DataFrame | None = None
    recalculations: pl.DataFrame | None = None
    settlements: pl.DataFrame | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds per stage (the bench's profile)


class _Laps:
    """Wall seconds between named points of :func:`compute` (no effect on the results)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now



def compute(inputs: CloseInputs) -> CloseResult:
    """The pure part of a close: readings → charges → allocation → balances.

    With coded inputs (:func:`pipeline.close.inputs.coded_inputs`) the stages run on integer
    identifiers and the result is decoded at the end: its frames name everything by string.
    """
    if inputs.codes is None:
        return _compute(inputs)
    with coded():
        result = _compute(inputs)
    started = time.perf_counter()
    decoded = map_frames(result, inputs.codes.decode)
    decoded.seconds["decode"] = round(time.perf_counter() - started, 3)
    return decoded


def _compute(inputs: CloseInputs) -> CloseResult:
    period = inputs.period
    laps = _Laps()
    volumes, issues = consumption(
        inputs.regs["meters"], inputs.regs["readings"], period, inputs.window_end_day,
        inputs.averaged_before, inputs.spike_multiple, inputs.rejected_readings,
        averaging=Averaging.on(inputs.rules.legal_thresholds, period.first),
    )
    meter_info = inputs.regs["meters"].select("meter_id", "service_id", "premise_id")
    meter_volumes = volumes.join(meter_info, on="meter_id", how="left")
    laps.lap("readings")
    building_volumes = heating_volumes(inputs.regs["meters"], inputs.regs["readings"], period,
                                       inputs.heating, inputs.window_end_day)
    lines = charge_lines(inputs.regs, inputs.rules, period, meter_volumes, inputs.heating,
                         building_volumes)
    unread = norm_months(inputs.regs["meters"], period, volumes, lines, inputs.regs["accounts"])
    meter_volumes = pl.concat([meter_volumes, unread.select(meter_volumes.columns)])
    laps.lap("charges")
    buildings_of = inputs.regs["accounts"].select("account_id", "premise_id").join(
        inputs.regs["premises"].select("premise_id", "building_id"), on="premise_id").drop("premise_id")
    from pipeline.calc.common_property import settlement_postings
    from pipeline.calc.recalc import RECALC_SCHEMA, ledger_period, recalculate

    settled = _settled_volumes(inputs, volumes)
    settlements = _settle(inputs, lines, buildings_of)
    made = settlements.select(SETTLED_COLUMNS)
    if inputs.settlements is not None:
        made = pl.concat([inputs.settlements.select(SETTLED_COLUMNS), made])
    recalcs = pl.concat([
        quality_reductions(lines, buildings_of, inputs.regs["outages"], inputs.rules.quality_rules,
                           period).cast(typed(RECALC_SCHEMA)),
        *[recalculate(past, inputs.regs, inputs.rules, inputs.heating, inputs.window_end_day, period,
                      settled)
          for past in inputs.past_periods],
        settlement_postings(made, inputs.settlement_posted, lines, period).cast(typed(RECALC_SCHEMA)),
    ])
    laps.lap("recalculations")
    # Recalculations change the open items of their origin period (recalc.ledger_period), charges
    # those of this one.
    movements = pl.concat([
        lines.select("account_id", "service_id", "supplier_id", "amount_kop",
                     pl.lit(str(period)).alias("charge_period")),
        recalcs.select("account_id", "service_id", "supplier_id", "amount_kop",
                       ledger_period(pl.lit(str(period))).alias("charge_period")),
    ])
    allocations, debts = apply_period(inputs.open_items, movements, inputs.payments, str(period),
                                      inputs.earlier_allocations)
    laps.lap("allocation")
    penalties = _accrue_penalties(inputs, movements, allocations)
    laps.lap("penalties")
    posted = penalties.filter(pl.col("amount_kop") != 0).select(
        "account_id", pl.lit(PENALTY_SERVICE).alias("service_id"), "supplier_id",
        pl.lit(str(period)).alias("charge_period"), "amount_kop")
    # This period's penalty items have this period's key: nothing to merge with.
    debts = pl.concat([debts, posted.rename({"amount_kop": "outstanding_kop"}).select(
        list(ITEM_SCHEMA)).cast(typed(ITEM_SCHEMA))])
    bal = balances(inputs.opening, lines, allocations, penalties=penalties, recalculations=recalcs)
    service_opening = inputs.open_items.lazy().group_by("account_id", "service_id", "supplier_id").agg(
        pl.col("outstanding_kop").sum().alias("opening_kop")).collect()
    service_bal = balances(service_opening, lines, allocations,
                           ("account_id", "service_id", "supplier_id"), penalties=posted,
                           recalculations=recalcs)
    laps.lap("balances")
    received = allocations.filter(pl.col("kind").is_in(RECEIVED_KINDS))
    totals = {
        "charged": int(lines["amount_kop"].sum()),
        "paid": int(inputs.payments["amount_kop"].sum()),
        "allocated": int(received["amount_kop"].sum()),
        "opening": int(bal["opening_kop"].sum()),
        "penalty": int(bal["penalty_kop"].sum()),
        "recalculated": int(bal["recalculated_kop"].sum()),
        "closing": int(bal["closing_kop"].sum()),
    }
    # Money in = money out, checked on every close, not only in tests.
    expected = (totals["opening"] + totals["charged"] + totals["recalculated"] + totals["penalty"]
                - totals["allocated"])
    outstanding = int(debts["outstanding_kop"].sum())
    # Per service, the closing balance is what the open items still hold: one lazy group-by of
    # both (a null key is its own group, as in a join with nulls_equal) instead of a full join.
    svc_keys = ["account_id", "service_id", "supplier_id"]
    off = pl.concat([
        service_bal.lazy().select(*svc_keys, "closing_kop", pl.lit(0, pl.Int64).alias("outstanding_kop")),
        debts.lazy().select(*svc_keys, pl.lit(0, pl.Int64).alias("closing_kop"), "outstanding_kop"),
    ]).group_by(svc_keys).agg(pl.col("closing_kop").sum(), pl.col("outstanding_kop").sum()).filter(
        pl.col("closing_kop") != pl.col("outstanding_kop")).collect()
    if off.height:
        raise BillingError(f"Сальдо по услугам не сходится с задолженностью по периодам: {off.head(3)}")
    if (totals["closing"] != expected or totals["allocated"] != totals["paid"]
            or outstanding != totals["closing"]):
        raise BillingError(
            f"Сальдо не сходится: ожидалось {expected}, получено {totals['closing']} коп. "
            f"(разница {totals['closing'] - expected}); платежи {totals['paid']}, "
            f"распределено {totals['allocated']}; задолженность по периодам {outstanding}"
        )
    laps.lap("checks")
    return CloseResult(period, lines, meter_volumes, issues, allocations, bal, service_bal, debts,
                       inputs.due_date, totals, penalties, recalcs, settlements, laps.seconds)


def _settled_volumes(inputs: CloseInputs, volumes: pl.DataFrame) -> pl.DataFrame | None:
    """Meter volumes of the sealed months recomputed now that readings settle them (п.61).

    Only the meters of the accounts being recomputed; None when no month is.
    """
    from pipeline.calc.readings import settled_volumes

    if not inputs.past_periods:
        return None
    history = inputs.averaged_before
    if all(p.accounts is not None for p in inputs.past_periods):
        accounts = pl.concat([p.accounts for p in inputs.past_periods]).unique()
        premises = inputs.regs["accounts"].join(accounts, on="account_id", how="semi").select("premise_id")
        meters = inputs.regs["meters"].join(premises, on="premise_id", how="semi").select("meter_id")
        history = history.join(meters, on="meter_id", how="semi")
    return settled_volumes(history, inputs.regs["meters"], inputs.regs["readings"], inputs.period,
                           inputs.window_end_day, volumes, inputs.rejected_readings)


def _settle(inputs: CloseInputs, lines: pl.DataFrame, buildings_of: pl.DataFrame) -> pl.DataFrame:
    """The yearly КР на СОИ settlement made at this close (empty in other months)."""
    from pipeline.calc.common_property import SETTLEMENT_SCHEMA, settle_year
    from pipeline.calc.readings import building_span_consumption

    settle = inputs.settle
    if settle is None:
        return pl.DataFrame(schema=typed(SETTLEMENT_SCHEMA))
    first, last = Period.parse(settle.months[0]), Period.parse(settle.months[-1])
    volumes = building_span_consumption(inputs.regs["meters"], inputs.regs["readings"], first, last,
                                        inputs.window_end_day)
    return settle_year(settle.year, inputs.period, settle.lines, volumes, lines, buildings_of,
                       inputs.rules, settle.months)


def _accrue_penalties(inputs: CloseInputs, movements: pl.DataFrame, allocations: pl.DataFrame
                      ) -> pl.DataFrame:
    from pipeline.penalties.monthly import accrue_period

    current = movements.select("account_id", "service_id", "supplier_id", "amount_kop", "charge_period")
    charges = pl.concat([current, inputs.penalty_charges.select(current.columns)]) \
        if inputs.penalty_charges is not None else current
    history = allocations.select("account_id", "supplier_id", "charge_period", "paid_on", "kind",
                                 "amount_kop")
    if inputs.penalty_allocations is not None:
        history = pl.concat([inputs.penalty_allocations.select(history.columns), history])
    previous = inputs.penalty_previous if inputs.penalty_previous is not None else pl.DataFrame(
        schema=typed({"account_id": pl.String, "supplier_id": pl.String, "charge_period": pl.String,
                      "cumulative_kop": pl.Int64}))
    return accrue_period(inputs.period, charges, history, previous, inputs.rules.services,
                         inputs.penalty_policy)



def summary(result: CloseResult) -> dict[str, Any]:
    """Small, printable facts of a close (kopecks)."""
    lines = result.lines
    return {
        "period": str(result.period),
        "accounts": lines["account_id"].n_unique(),
        "charge_lines": lines.height,
        "methods": dict(sorted(lines.group_by("method").len().iter_rows())),
        "reading_issues": result.reading_issues.height,
        # the payments received (an advance offset is booked as a pseudo-payment "advance")
        "payments": result.allocations.filter(pl.col("kind").is_in(RECEIVED_KINDS)).select(
            "agent", "payment_id").n_unique(),
        "due_date": str(result.due_date) if result.due_date else None,
        **{f"{k}_kop": v for k, v in result.totals.items()},
    }



def combine_summaries(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of a close run in partitions: counts and kopecks add up, the rest is shared."""
    if len(parts) == 1:
        return parts[0]
    out = dict(parts[0])
    methods: dict[str, int] = {}
    for part in parts:
        for method, n in part["methods"].items():
            methods[method] = methods.get(method, 0) + n
    out["methods"] = dict(sorted(methods.items()))
    for key, value in parts[0].items():
        if key != "methods" and isinstance(value, int) and not isinstance(value, bool):
            out[key] = sum(int(p[key]) for p in parts)
    return out
