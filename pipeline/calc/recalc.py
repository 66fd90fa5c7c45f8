"""Recalculation of closed periods (перерасчёт): what is known now, minus what was posted.

A sealed period is never rewritten. Each close recomputes the earlier periods
within the horizon (``settings.toml`` ``[recalculation] horizon_months``, default
36) whose inputs changed since they were sealed — the register snapshot or the
rule tables — with today's registers and rules, and posts the difference from
what was charged and already recalculated as recalculation rows of the current
period, each with its origin period and a reason.

Meter volumes are the ones the sealed period used: a late or corrected reading
is settled in the current period by the п.61 rule of
:mod:`pipeline.calc.readings`, not here, so nothing is settled twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.calc.charges import HeatingPolicy, charge_lines
from pipeline.calc.quality import REASON as QUALITY_REASON
from pipeline.calc.quality import quality_reductions
from pipeline.calc.readings import building_consumption
from pipeline.dates import Period
from rules import Rules

KEY = ["account_id", "service_id", "supplier_id"]

RECALC_SCHEMA = pl.Schema({
    "account_id": pl.String(),
    "service_id": pl.String(),
    "supplier_id": pl.String(),
    "origin_period": pl.String(),
    "amount_kop": pl.Int64(),
    "reason": pl.String(),
    "excess_minutes": pl.Int64(),
})


@dataclass(frozen=True)
class PastPeriod:
    """What a sealed period posted, and the meter volumes it used.

    Attributes:
        period: the origin period.
        lines: its charge lines (internal columns, kopecks).
        recalculated: recalculations with this origin posted so far (account_id,
            service_id, supplier_id, amount_kop), the period's own included.
        meter_volumes: premise_id, service_id, method, volume_micro as sealed.
    """

    period: Period
    lines: pl.DataFrame
    recalculated: pl.DataFrame
    meter_volumes: pl.DataFrame


def _signature(lines: pl.DataFrame) -> pl.DataFrame:
    return lines.group_by(KEY).agg(
        pl.col("price_kop").unique().sort().cast(pl.String).str.join(",").alias("tariffs"),
        pl.col("person_days").sum().alias("persons"),
        pl.col("absent_days").sum().alias("absent"),
        pl.col("area_centi").sum().alias("area"),
        pl.col("share_e4").max().alias("share"),
        pl.col("method").unique().sort().str.join(",").alias("methods"),
        pl.col("coef_milli").unique().sort().cast(pl.String).str.join(",").alias("coefs"),
        pl.col("norm_micro").unique().sort().cast(pl.String).str.join(",").alias("norms"),
        pl.col("amount_kop").sum().alias("charged"),
    )


REASONS = [
    ("tariffs", "изменение тарифа"),
    ("norms", "изменение норматива"),
    ("coefs", "изменение повышающего коэффициента"),
    ("persons", "изменение числа зарегистрированных (проживающих)"),
    ("absent", "временное отсутствие (п.86–97 Правил 354)"),
    ("area", "изменение площади помещения"),
    ("share", "изменение доли в праве"),
    ("methods", "изменение способа расчёта"),
]


def recalculate(past: PastPeriod, regs: dict[str, pl.DataFrame], rules: Rules,
                heating: HeatingPolicy | None = None, window_end_day: int = 25) -> pl.DataFrame:
    """Recalculation rows for one past period (empty when nothing changed)."""
    period = past.period
    building = building_consumption(regs["meters"], regs["readings"], period, window_end_day)
    lines = charge_lines(regs, rules, period, past.meter_volumes, heating, building)
    buildings_of = regs["accounts"].select("account_id", "premise_id").join(
        regs["premises"].select("premise_id", "building_id"), on="premise_id").drop("premise_id")
    quality = quality_reductions(lines, buildings_of, regs["outages"], rules.quality_rules, period)
    expected = pl.concat([
        lines.select(*KEY, "amount_kop"), quality.select(*KEY, "amount_kop"),
    ]).group_by(KEY).agg(pl.col("amount_kop").sum().alias("expected"))
    posted = pl.concat([
        past.lines.select(*KEY, "amount_kop"), past.recalculated.select(*KEY, "amount_kop"),
    ]).group_by(KEY).agg(pl.col("amount_kop").sum().alias("posted"))
    diff = expected.join(posted, on=KEY, how="full", coalesce=True).with_columns(
        (pl.col("expected").fill_null(0) - pl.col("posted").fill_null(0)).alias("amount_kop"),
        pl.col("expected").is_null().alias("_gone"), pl.col("posted").is_null().alias("_new"),
    ).filter(pl.col("amount_kop") != 0)
    if not diff.height:
        return pl.DataFrame(schema=RECALC_SCHEMA)

    old, new = _signature(past.lines), _signature(lines)
    both = diff.join(old, on=KEY, how="left").join(new, on=KEY, how="left", suffix="_new")
    reason: Any = pl.when(pl.col("_new")).then(pl.lit("начисление за прошлый период (новые данные)")) \
        .when(pl.col("_gone")).then(pl.lit("отмена начисления (изменились данные)"))
    for column, text in REASONS:
        reason = reason.when(pl.col(column).ne_missing(pl.col(f"{column}_new"))).then(pl.lit(text))
    same_charges = pl.col("charged").eq_missing(pl.col("charged_new"))
    reason = reason.when(same_charges).then(pl.lit(QUALITY_REASON)).otherwise(
        pl.lit("уточнение исходных данных"))
    return both.select(
        *KEY, pl.lit(str(period)).alias("origin_period"), "amount_kop", reason.alias("reason"),
        pl.lit(None, pl.Int64).alias("excess_minutes"),
    ).cast(RECALC_SCHEMA).sort(KEY)
