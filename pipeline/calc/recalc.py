"""Recalculation of closed periods (перерасчёт): what is known now, minus what was posted.

A sealed period is never rewritten. When the registers or the rule tables
changed since the last close, each close recomputes the earlier periods within
the horizon (``settings.toml`` ``[recalculation] horizon_months``, default 36)
with today's registers and rules — only for the accounts whose inputs changed
(:func:`changed_accounts`; every account when a rule table changed) — and posts
the difference from what was charged and already recalculated as recalculation
rows of the current period, each with its origin period and a reason.

Comparing with the last close's snapshot (not the one each period was sealed
with) is enough: the last close already settled every earlier change, so an
account untouched since then recomputes to exactly what was posted.

Meter volumes are the ones the sealed period used, except where readings settle
it since (:func:`pipeline.calc.readings.settled_volumes`): a reading below what
the months charged without one credits them, a corrected reading of a sealed
month re-measures it. Those months are recomputed with the settled volumes and
the difference is posted with the п.61 reason; as the settled volumes follow only
from the sealed volumes and today's readings, a later recomputation finds the
difference posted and posts nothing again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.calc.charges import SEWERAGE_WATER, HeatingPolicy, charge_lines, heating_volumes
from pipeline.calc.quality import REASON as QUALITY_REASON
from pipeline.calc.quality import quality_reductions
from pipeline.calc.readings import METER_SETTLEMENT_REASON
from pipeline.dates import Period
from pipeline.ids import typed
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
    # recalculation (a past period recomputed), true_up (the yearly heating correction of a
    # past month, see ledger_period), quality (interruptions) or settlement (a part of a
    # yearly КР на СОИ settlement, charged in its origin month).
    "kind": pl.String(),
    "settles_year": pl.Int32(),
})


#: The columns through which a changed row of each register reaches accounts.
#: Organisations are missing on purpose: their details never change an amount.
_LINKS: dict[str, tuple[str, ...]] = {
    "accounts": ("account_id",),
    "residents": ("account_id",),
    "premises": ("premise_id",),
    "access_refusals": ("premise_id",),
    "buildings": ("building_id",),
    "building_services": ("building_id",),
    "outages": ("building_id",),
    "absences": ("person_id",),
    "benefits": ("person_id",),
    "meters": ("premise_id", "building_id"),
    "readings": ("meter_id",),
}


def _changed_rows(old: pl.DataFrame | None, new: pl.DataFrame | None) -> pl.DataFrame | None:
    """Rows present in one snapshot and not the other (``source_row`` ignored: rows move)."""
    if old is None or new is None:
        return old if new is None else new
    cols = [c for c in new.columns if c in old.columns and c != "source_row"]
    if set(new.columns) - {"source_row"} != set(cols) or set(old.columns) - {"source_row"} != set(cols):
        return pl.concat([old.select(cols), new.select(cols).cast(old.select(cols).schema)],
                         how="vertical_relaxed")
    a, b = old.select(cols), new.select(cols).cast(old.select(cols).schema)
    return pl.concat([a.join(b, on=cols, how="anti", nulls_equal=True),
                      b.join(a, on=cols, how="anti", nulls_equal=True)])


def changed_accounts(old: dict[str, pl.DataFrame], new: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Accounts whose charge inputs differ between two register snapshots.

    A changed row of any register is traced to accounts through both snapshots
    (an account that moved premise is touched at both ends): a meter's readings
    to its premise, or to its whole building for a building meter; a building's
    row, services or outages to every account in it. Returns one column
    ``account_id``.
    """
    def both(name: str) -> pl.DataFrame:
        frames = [f[name] for f in (old, new) if name in f]
        return pl.concat(frames, how="vertical_relaxed").unique() if frames else pl.DataFrame()

    keys: dict[str, list[pl.Series]] = {"account_id": [], "premise_id": [], "building_id": [],
                                        "person_id": [], "meter_id": []}
    for name, columns in _LINKS.items():
        rows = _changed_rows(old.get(name), new.get(name))
        if rows is None or not rows.height:
            continue
        for column in columns:
            if column in rows.columns:
                keys[column].append(rows[column].drop_nulls())

    def ids(column: str) -> pl.Series:
        return pl.concat(keys[column]).unique() if keys[column] else pl.Series(column, [], pl.String)

    meters = both("meters")
    touched = meters.filter(pl.col("meter_id").is_in(ids("meter_id").implode()))
    keys["premise_id"].append(touched["premise_id"].drop_nulls())
    keys["building_id"].append(touched["building_id"].drop_nulls())
    residents = both("residents")
    keys["account_id"].append(residents.filter(pl.col("person_id").is_in(ids("person_id").implode()))
                              ["account_id"])
    premises = both("premises")
    keys["premise_id"].append(premises.filter(pl.col("building_id").is_in(ids("building_id").implode()))
                              ["premise_id"])
    accounts = both("accounts")
    hit = accounts.filter(pl.col("premise_id").is_in(ids("premise_id").implode()))["account_id"]
    return pl.concat([ids("account_id"), hit]).unique().sort().to_frame("account_id")


@dataclass(frozen=True)
class PastPeriod:
    """What a sealed period posted, and the meter volumes it used.

    Attributes:
        period: the origin period.
        lines: its charge lines (internal columns, kopecks).
        recalculated: recalculations with this origin posted so far (account_id,
            service_id, supplier_id, amount_kop), the period's own included.
        meter_volumes: meter_id, premise_id, service_id, method, volume_micro as
            sealed (``norm`` rows are a record: the period charged those by the norm).
        accounts: the accounts to recompute (``account_id``); None means all.
        services: the services to recompute; None means all.
    """

    period: Period
    lines: pl.DataFrame
    recalculated: pl.DataFrame
    meter_volumes: pl.DataFrame
    accounts: pl.DataFrame | None = None
    services: list[str] | None = None


def _signature(lines: pl.DataFrame) -> pl.DataFrame:
    return lines.group_by(KEY).agg(
        pl.col("price_kop").unique().sort().cast(pl.String).str.join(",").alias("tariffs"),
        # Registered person-days: an absence lowers person_days but is its own reason.
        (pl.col("person_days") + pl.col("absent_days").fill_null(0)).sum().alias("persons"),
        pl.col("absent_days").sum().alias("absent"),
        pl.col("area_centi").sum().alias("area"),
        pl.col("share_e4").max().alias("share"),
        pl.col("method").unique().sort().str.join(",").alias("methods"),
        pl.col("coef_milli").unique().sort().cast(pl.String).str.join(",").alias("coefs"),
        pl.col("norm_micro").unique().sort().cast(pl.String).str.join(",").alias("norms"),
        pl.col("volume_micro").sum().alias("volume"),
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
    # Sewerage follows the water volumes of the account.
    ("volume", "изменение объёма потребления"),
]


def ledger_period(posted: pl.Expr, amount: str = "amount_kop") -> pl.Expr:
    """The charge period a recalculation's money belongs to in the ledger and for penalties.

    Its origin period — except an increase by the yearly heating correction (``kind`` =
    ``true_up``), which is billed for the first time in ``posted`` and falls due with that
    bill: п.42(1) Правил 354 corrects the year's payment in the month of the correction, and
    a penalty runs only on what was billed and not paid by its due date (ЖК РФ ст.155 ч.14).
    Dating it back to each month of the year would charge a year of penalty on money nobody
    had been asked for. A decrease stays with its month (the consumer overpaid then).
    docs/rules.md, «Yearly corrections».
    """
    return (pl.when((pl.col("kind") == "true_up") & (pl.col(amount) > 0)).then(posted)
            .otherwise(pl.col("origin_period")))


def heating_true_up_reason(year: int) -> str:
    """Reason of the yearly correction of evenly paid heating (п.42(1) Правил 354)."""
    return f"корректировка платы за отопление по показаниям ОДПУ за {year} год (п.42(1) Правил 354)"


def _period_volumes(past: PastPeriod, settled: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The meter volumes to recompute ``past`` with, and the (premise_id, service_id) readings settled.

    ``settled`` (meter_id, period_index, volume_micro) replaces a sealed volume; a
    settled norm month is recomputed from its settled volume like a metered one.
    """
    volumes = past.meter_volumes
    keys = pl.DataFrame(schema=typed({"premise_id": pl.String, "service_id": pl.String}))
    unsettled = volumes.filter(pl.col("method") != "norm") if "method" in volumes.columns else volumes
    if settled is None or not settled.height or "meter_id" not in volumes.columns:
        return unsettled, keys
    index = past.period.year * 12 + past.period.month - 1
    mine = settled.filter(pl.col("period_index") == index).select(
        "meter_id", pl.col("volume_micro").alias("_settled"))
    if not mine.height:
        return unsettled, keys
    joined = volumes.join(mine, on="meter_id", how="left")
    keys = joined.filter(pl.col("_settled").is_not_null()).select("premise_id", "service_id").unique()
    out = joined.filter((pl.col("method") != "norm") | pl.col("_settled").is_not_null()).with_columns(
        pl.coalesce("_settled", "volume_micro").alias("volume_micro")).drop("_settled")
    return out, keys


def recalculate(past: PastPeriod, regs: dict[str, pl.DataFrame], rules: Rules,
                heating: HeatingPolicy | None = None, window_end_day: int = 25,
                now: Period | None = None, settled: pl.DataFrame | None = None) -> pl.DataFrame:
    """Recalculation rows for one past period at the close of ``now`` (empty when nothing changed).

    Only ``past.accounts`` are recomputed (all when None). Heating of an evenly
    paid month whose year has been settled by ``now`` is recomputed by the actual
    building-meter volume (:meth:`HeatingPolicy.for_past`). ``settled`` holds the
    meter volumes readings settle (:func:`pipeline.calc.readings.settled_volumes`):
    the accounts of those premises are recomputed with them, with the п.61 reason.
    """
    period = past.period
    heating = heating or HeatingPolicy()
    if now is not None:
        heating = heating.for_past(period, now)
    if past.accounts is not None:
        regs = {**regs, "accounts": regs["accounts"].join(past.accounts, on="account_id", how="semi")}
        past = PastPeriod(period, past.lines.join(past.accounts, on="account_id", how="semi"),
                          past.recalculated.join(past.accounts, on="account_id", how="semi"),
                          past.meter_volumes, past.accounts, past.services)
    if past.services is not None:
        wanted = pl.col("service_id").is_in(past.services)
        regs = {**regs, "building_services": regs["building_services"].filter(wanted)}
        past = PastPeriod(period, past.lines.filter(wanted), past.recalculated.filter(wanted),
                          past.meter_volumes, past.accounts, past.services)
    building = heating_volumes(regs["meters"], regs["readings"], period, heating, window_end_day)
    volumes, settled_keys = _period_volumes(past, settled)
    lines = charge_lines(regs, rules, period, volumes, heating, building)
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
        return pl.DataFrame(schema=typed(RECALC_SCHEMA))

    old, new = _signature(past.lines), _signature(lines)
    both = diff.join(old, on=KEY, how="left").join(new, on=KEY, how="left", suffix="_new")
    by_reading = regs["accounts"].select("account_id", "premise_id").join(
        settled_keys, on="premise_id").select("account_id", "service_id", pl.lit(True).alias("_settled"))
    both = both.join(by_reading.unique(), on=["account_id", "service_id"], how="left")
    # The yearly heating correction: a month charged by the year's average (or by the norm, as a
    # migrated month may be) now charged by the building meter's actual volume.
    reason: Any = pl.when(pl.col("_new")).then(pl.lit("начисление за прошлый период (новые данные)")) \
        .when(pl.col("_gone")).then(pl.lit("отмена начисления (изменились данные)")) \
        .when(pl.col("methods").str.contains(r"(^|,)heating(_average)?(,|$)")
              & pl.col("methods_new").str.contains("heating_meter")) \
        .then(pl.lit(heating_true_up_reason(period.year))) \
        .when(pl.col("_settled").fill_null(False)).then(pl.lit(METER_SETTLEMENT_REASON))
    for column, text in REASONS:
        reason = reason.when(pl.col(column).ne_missing(pl.col(f"{column}_new"))).then(pl.lit(text))
    same_charges = pl.col("charged").eq_missing(pl.col("charged_new"))
    reason = reason.when(same_charges).then(pl.lit(QUALITY_REASON)).otherwise(
        pl.lit("уточнение исходных данных"))
    out = both.with_columns(reason.alias("reason"))
    # Sewerage is the water's volume: it changes for the water's reason.
    sewerage = rules.services.filter(pl.col("kind") == "sewerage")["service_id"].implode()
    water = out.filter(pl.col("service_id").is_in(SEWERAGE_WATER)).sort("service_id").group_by(
        "account_id").agg(pl.col("reason").first().alias("_water_reason"))
    out = out.join(water, on="account_id", how="left").with_columns(
        pl.when(pl.col("service_id").is_in(sewerage) & pl.col("_water_reason").is_not_null())
        .then(pl.col("_water_reason")).otherwise(pl.col("reason")).alias("reason"))
    return out.select(
        *KEY, pl.lit(str(period)).alias("origin_period"), "amount_kop", "reason",
        pl.lit(None, pl.Int64).alias("excess_minutes"),
        pl.when(pl.col("reason") == heating_true_up_reason(period.year)).then(pl.lit("true_up"))
        .otherwise(pl.lit("recalculation")).alias("kind"),
        pl.lit(None, pl.Int32).alias("settles_year"),
    ).cast(typed(RECALC_SCHEMA)).sort(KEY)
