"""Yearly settlement of common-property resources (КР на СОИ) against the building meter.

Monthly, КР на СОИ is charged by the СОИ norm (``common_property`` lines of
:mod:`pipeline.calc.charges`). Once a year (ЖК 156 ч.9.2; Правила 491 п.29(2),
29(3) as amended by ПП 92/2022 and ПП 480/2023) a house with a building meter
of the resource is settled:

    ΔV = V_building − Σ V_premises − Σ V_charged_СОИ

over the sealed months of the year (every month the workspace closed in it),
where ``V_premises`` are the volumes charged to the premises for the resource
(by meter, average or norm) and ``V_charged_СОИ`` the common-property volumes
charged by the norm. ``ΔV`` is shared by area like the monthly charge and priced
at the tariff in force on the year's last day:

    amount_i = ΔV × S_i × share / S_house × T

(the formula's wording in п.29(3) is UNVERIFIED, law-charges-checked.md §5.2;
this is the monthly formula 15 shape applied to the year's difference). The
amount is posted in ``parts`` equal parts from the settlement month
(``rules/soi_settlement.csv``), as recalculation rows of kind ``settlement``
whose origin is the month they are charged in. A part that would make the
month's КР на СОИ negative is cut so that the month charges zero, and the rest
is carried forward to the next months (law-charges-checked.md §5.2); with
``carry_over`` false whatever is left after the year of payment is dropped.
"""

from __future__ import annotations

import polars as pl

from pipeline.calc.charges import rule_pieces
from pipeline.calc.recalc import RECALC_SCHEMA
from pipeline.dates import Period
from pipeline.ids import typed
from pipeline.money import div_half_up
from rules import Rules

MICRO = 1_000_000

SETTLEMENT_SCHEMA = pl.Schema({
    "account_id": pl.String(),
    "service_id": pl.String(),
    "supplier_id": pl.String(),
    "building_id": pl.String(),
    "year": pl.Int32(),
    "months": pl.String(),
    "building_volume_micro": pl.Int64(),
    "premises_volume_micro": pl.Int64(),
    "charged_volume_micro": pl.Int64(),
    "difference_micro": pl.Int64(),
    "area_centi": pl.Int64(),
    "share_e4": pl.Int64(),
    "building_area_centi": pl.Int64(),
    "price_kop": pl.Int64(),
    "amount_kop": pl.Int64(),
    "parts": pl.Int32(),
    "first_period": pl.String(),
    "carry_over": pl.Boolean(),
})


def settlement_rule(rules: Rules, year: int) -> dict[str, object] | None:
    """The settlement rule for ``year`` (the row in force on 1 January of the next year)."""
    table = rules.soi_settlement
    if not table.height:
        return None
    rows = table.filter(pl.col("from") <= pl.lit(Period(year + 1, 1).first)).sort("from")
    return rows.row(-1, named=True) if rows.height else None


def settles_now(rules: Rules, period: Period) -> int | None:
    """The year whose settlement is made at the close of ``period``, if any."""
    rule = settlement_rule(rules, period.year - 1)
    return period.year - 1 if rule is not None and rule["settle_month"] == period.month else None


def settle_year(
    year: int,
    period: Period,
    year_lines: pl.DataFrame,
    building_volumes: pl.DataFrame,
    current_lines: pl.DataFrame,
    buildings_of: pl.DataFrame,
    rules: Rules,
    months: list[str],
) -> pl.DataFrame:
    """Settlement rows per account for ``year``, made at the close of ``period``.

    ``year_lines``: the sealed charge lines of the year's months (account_id,
    service_id, volume_micro). ``building_volumes``: building_id, service_id
    (the resource), volume_micro over the same months. ``current_lines``: this
    period's charge lines — the accounts sharing the difference now and their
    areas (the premise's current account carries the settlement).
    ``buildings_of``: account_id → building_id.
    """
    rule = settlement_rule(rules, year)
    services = rules.services.filter(
        (pl.col("kind") == "common_property") & pl.col("settled_by").is_not_null()
    ).select("service_id", pl.col("settled_by").alias("resource_id"))
    if rule is None or not services.height or not building_volumes.height:
        return pl.DataFrame(schema=typed(SETTLEMENT_SCHEMA))
    by_building = year_lines.join(buildings_of, on="account_id")
    premises = by_building.join(services, left_on="service_id", right_on="resource_id").group_by(
        "building_id", pl.col("service_id_right").alias("service_id")
    ).agg(pl.col("volume_micro").sum().alias("premises_volume_micro"))
    charged = by_building.join(services, on="service_id").group_by("building_id", "service_id").agg(
        pl.col("volume_micro").sum().alias("charged_volume_micro"))
    houses = building_volumes.join(services, left_on="service_id", right_on="resource_id").select(
        "building_id", pl.col("service_id_right").alias("service_id"),
        pl.col("volume_micro").alias("building_volume_micro"),
    ).join(premises, on=["building_id", "service_id"], how="left").join(
        charged, on=["building_id", "service_id"], how="inner"  # houses charged КР на СОИ
    ).with_columns(pl.col("premises_volume_micro").fill_null(0)).with_columns(
        (pl.col("building_volume_micro") - pl.col("premises_volume_micro")
         - pl.col("charged_volume_micro")).alias("difference_micro"))
    sharers = current_lines.filter(pl.col("method") == "common_property").group_by(
        "account_id", "service_id", "supplier_id"
    ).agg(pl.col("area_centi").first(), pl.col("share_e4").first(),
          pl.col("building_area_centi").first()).join(buildings_of, on="account_id")
    # The tariff in force on 31 December: the last rule piece of December (the charge
    # stage's own lookup, supplier-specific rows winning over generic ones).
    pieces = rule_pieces(rules, sharers.select("service_id", "supplier_id").unique(), Period(year, 12))
    december = pieces.sort("piece_from").group_by("service_id", "supplier_id").agg(
        pl.col("price_kop").last())
    rows = sharers.join(houses, on=["building_id", "service_id"]).join(
        december, on=["service_id", "supplier_id"], how="inner")
    num = (pl.col("difference_micro").cast(pl.Int128) * pl.col("area_centi") * pl.col("share_e4")
           * pl.col("price_kop"))
    den = pl.col("building_area_centi").cast(pl.Int128) * 10_000 * MICRO
    return rows.filter(pl.col("price_kop").is_not_null()).with_columns(
        div_half_up(num, den).alias("amount_kop"),
        pl.lit(year).alias("year"),
        pl.lit(",".join(months)).alias("months"),
        pl.lit(rule["parts"]).alias("parts"),
        pl.lit(str(period)).alias("first_period"),
        pl.lit(rule["carry_over"]).alias("carry_over"),
    ).filter(pl.col("amount_kop") != 0).select(list(SETTLEMENT_SCHEMA)).cast(typed(SETTLEMENT_SCHEMA)).sort(
        "account_id", "service_id", "supplier_id")


#: Reason of a settlement part; ``{}`` is the year settled.
REASON = "корректировка платы за КР на СОИ по показаниям ОДПУ за {} год (ЖК 156 ч.9.2, Правила 491 п.29(3))"


def settlement_postings(settlements: pl.DataFrame, posted: pl.DataFrame | None,
                        current_lines: pl.DataFrame, period: Period) -> pl.DataFrame:
    """This month's parts of every open settlement, as recalculation rows of kind ``settlement``.

    ``settlements``: every settlement made so far (:data:`SETTLEMENT_SCHEMA`).
    ``posted``: account_id, service_id, supplier_id, year, amount_kop — the parts
    posted by earlier closes. Due by now: ``amount × min(k, parts) / parts`` (k =
    months since the first part, inclusive; each cumulative figure rounded half-up,
    so the parts add up to the amount exactly) less what was posted. A negative part
    never takes the month's КР на СОИ below zero; what it could not take waits.
    """
    key = ["account_id", "service_id", "supplier_id"]
    if not settlements.height:
        return pl.DataFrame(schema=typed(RECALC_SCHEMA))
    if posted is None:
        posted = pl.DataFrame(schema=typed({**dict.fromkeys(key, pl.String), "year": pl.Int32,
                                            "amount_kop": pl.Int64}))
    p_idx = period.year * 12 + period.month - 1
    first_idx = (pl.col("first_period").str.slice(0, 4).cast(pl.Int32) * 12
                 + pl.col("first_period").str.slice(5, 2).cast(pl.Int32) - 1)
    k = (p_idx - first_idx + 1).clip(upper_bound=pl.col("parts")).cast(pl.Int64)
    month_charge = current_lines.group_by(key).agg(pl.col("amount_kop").sum().alias("_charge"))
    due = settlements.join(posted, on=[*key, "year"], how="left", suffix="_posted").with_columns(
        (div_half_up(pl.col("amount_kop").cast(pl.Int128) * k, pl.col("parts").cast(pl.Int128))
         - pl.col("amount_kop_posted").fill_null(0)).alias("_due"),
        (pl.col("carry_over") | (pl.lit(period.year) <= pl.col("year") + 1)).alias("_open"),
    ).filter((p_idx >= first_idx) & pl.col("_open") & (pl.col("_due") != 0)).join(
        month_charge, on=key, how="left")
    floor = -pl.col("_charge").fill_null(0)
    return due.with_columns(
        pl.when(pl.col("_due") < floor).then(floor).otherwise(pl.col("_due")).alias("_part"),
    ).filter(pl.col("_part") != 0).select(
        *key, pl.lit(str(period)).alias("origin_period"), pl.col("_part").alias("amount_kop"),
        pl.format(f"{REASON}: часть {{}} из {{}}{{}}", pl.col("year"),
                  k.cast(pl.String), pl.col("parts").cast(pl.String),
                  pl.when(pl.col("_part") != pl.col("_due"))
                  .then(pl.lit(" (остаток уменьшения перенесён на следующий месяц)"))
                  .otherwise(pl.lit(""))).alias("reason"),
        pl.lit(None, pl.Int64).alias("excess_minutes"), pl.lit("settlement").alias("kind"),
        pl.col("year").cast(pl.Int32).alias("settles_year"),
    ).cast(typed(RECALC_SCHEMA)).sort(key)
