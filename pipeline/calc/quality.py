"""Interruptions of a service (перерывы) reduce its charge: Правила 354 раздел IX, Прил. 1.

For each building and service, the hours of interruption inside the period are
compared with the allowed duration from ``quality_rules.csv``:

* ``month_total`` (default, the text of Прил. 1: «за каждый час превышения
  допустимой продолжительности перерыва, исчисленной суммарно за расчётный
  период»): excess = total hours − hours allowed a month;
* ``greater_of``: the larger of that and the sum of each interruption's hours
  beyond the single-interruption limit (the reading of some inspectorates).

Every account's charge for that service in that building is reduced by
``percent_per_hour × excess hours`` (at most the whole charge), computed on exact
minutes and rounded once per line. The reduction is posted as a recalculation of
the period (reason «перерыв в предоставлении услуги»).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

import polars as pl

from pipeline.dates import Period
from pipeline.ids import typed
from pipeline.money import div_half_up

REASON = "перерыв в предоставлении услуги сверх допустимого (Правила 354, Прил. 1)"


def excess_minutes(outages: pl.DataFrame, rules: pl.DataFrame, period: Period) -> pl.DataFrame:
    """building_id, service_id, excess minutes and the rule applied, for the period."""
    start = datetime.combine(period.first, time())
    end = datetime.combine(period.last + timedelta(days=1), time())
    inside = outages.with_columns(
        pl.max_horizontal(pl.col("started_at"), pl.lit(start)).alias("_s"),
        pl.min_horizontal(pl.col("ended_at"), pl.lit(end)).alias("_e"),
    ).with_columns(((pl.col("_e") - pl.col("_s")).dt.total_minutes()).clip(lower_bound=0).alias("minutes"))
    rule = rules.filter(pl.col("from") <= pl.lit(period.first)).sort("from").group_by(
        "service_id").last().select(
        "service_id", (pl.col("month_hours") * 60).cast(pl.Int64).alias("month_min"),
        (pl.col("once_hours") * 60).cast(pl.Int64).alias("once_min"),
        (pl.col("percent_per_hour") * 10_000).cast(pl.Int64).alias("pph_e4"), "excess_rule",
    )
    per = inside.join(rule, on="service_id", how="inner").group_by("building_id", "service_id").agg(
        pl.col("minutes").sum().alias("total_min"),
        (pl.col("minutes") - pl.col("once_min")).clip(lower_bound=0).sum().alias("over_once_min"),
        pl.col("month_min").first(), pl.col("pph_e4").first(), pl.col("excess_rule").first(),
    )
    over_month = (pl.col("total_min") - pl.col("month_min")).clip(lower_bound=0)
    return per.with_columns(
        pl.when(pl.col("excess_rule") == "greater_of")
        .then(pl.max_horizontal(over_month, pl.col("over_once_min"))).otherwise(over_month)
        .alias("excess_min")
    ).filter(pl.col("excess_min") > 0)


def quality_reductions(lines: pl.DataFrame, buildings_of: pl.DataFrame, outages: pl.DataFrame,
                       rules: pl.DataFrame, period: Period) -> pl.DataFrame:
    """Recalculation rows (negative) for the period's charge lines of interrupted services.

    ``lines``: charge lines (account_id, service_id, supplier_id, amount_kop).
    ``buildings_of``: account_id → building_id.
    """
    excess = excess_minutes(outages, rules, period)
    schema = typed({"account_id": pl.String, "service_id": pl.String, "supplier_id": pl.String,
                    "origin_period": pl.String, "amount_kop": pl.Int64, "reason": pl.String,
                    "excess_minutes": pl.Int64, "kind": pl.String, "settles_year": pl.Int32})
    if not excess.height:
        return pl.DataFrame(schema=schema)
    # Only the lines of the interrupted services of the buildings hit (a few of millions).
    hit_lines = lines.lazy().select("account_id", "service_id", "supplier_id", "amount_kop").join(
        buildings_of.lazy(), on="account_id").join(
        excess.lazy().select("building_id", "service_id").unique(), on=["building_id", "service_id"],
        how="semi")
    charged = hit_lines.group_by("account_id", "service_id", "supplier_id", "building_id").agg(
        pl.col("amount_kop").sum()).collect()
    hit = charged.join(excess, on=["building_id", "service_id"])
    # percent/hour × minutes/60 of the charge: amount × pph_e4 × minutes / (10⁴ × 100 × 60).
    reduction = pl.min_horizontal(
        div_half_up(pl.col("amount_kop").cast(pl.Int128) * pl.col("pph_e4") * pl.col("excess_min"),
                    100 * 10_000 * 60),
        pl.col("amount_kop"),
    )
    return hit.select(
        "account_id", "service_id", "supplier_id", pl.lit(str(period)).alias("origin_period"),
        (reduction * -1).alias("amount_kop"), pl.lit(REASON).alias("reason"),
        pl.col("excess_min").alias("excess_minutes"), pl.lit("quality").alias("kind"),
        pl.lit(None, pl.Int32).alias("settles_year"),
    ).filter(pl.col("amount_kop") != 0).cast(schema)
