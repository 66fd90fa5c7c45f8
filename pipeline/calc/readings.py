"""Meter readings → consumption of a period (показания → объём потребления).

A reading taken up to the window's last day (п.31, п.34 Правил 354; default the
25th, ``settings.toml``) counts for its own month, a later one for the next
month. The consumption of period P is the last reading counting for P minus the
last reading counting for an earlier period (or the meter's initial value).

Readings that cannot be used are reported, never silently dropped: outside the
meter's life, or lower than the previous one without a plausible rollover of
the meter's digits. A period without a usable reading is charged by the average
(п.59 «б», at most 3 periods after the last reading, average over up to 6
periods of the meter's own history — the thresholds of ``legal_thresholds.csv``,
:class:`Averaging`) and then by the norm; when a reading
arrives after averaged periods, the volumes already charged by average are
subtracted so nothing is charged twice (п.61). Settled both ways
(:func:`settled_volumes`): when the real consumption is below what was charged,
the month of the reading charges zero and the rest is credited back to the months
charged without a reading, most recent first; a reading of a sealed month
corrected since gives that month (and the months it settled) what they should
have charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from pipeline.dates import Period
from pipeline.ids import typed
from rules import threshold

MICRO = 1_000_000
#: Reason of the recalculation a reading posts to the months it settles (п.61 Правил 354).
METER_SETTLEMENT_REASON = "перерасчёт по показаниям прибора учёта (п.61 Правил 354)"


@dataclass(frozen=True)
class Averaging:
    """The averaging thresholds of п.59 in force for a period (rows of ``legal_thresholds.csv``).

    Attributes:
        unread_max_periods: longest run of periods charged by average after the last
            reading (п.59 «б»); then the norm.
        failed_max_periods: periods charged by average after a meter failed (п.59 «а»);
            then the norm × K (п.60).
        history_periods: periods of the meter's own history the average is taken over.
        min_months: shortest own history an average may be taken over; less → the norm.
    """

    unread_max_periods: int
    failed_max_periods: int
    history_periods: int
    min_months: int

    @classmethod
    def on(cls, thresholds: pl.DataFrame, day: date) -> Averaging:
        """The values in force on ``day`` (a period's first day); a missing one stops in Russian."""
        return cls(
            unread_max_periods=threshold(thresholds, "average_unread_max_periods", day),
            failed_max_periods=threshold(thresholds, "average_failed_max_periods", day),
            history_periods=threshold(thresholds, "average_history_periods", day),
            min_months=threshold(thresholds, "average_min_months", day),
        )

CONSUMPTION_SCHEMA = pl.Schema({
    "meter_id": pl.String,
    "method": pl.String,
    "volume_micro": pl.Int64,
    "prev_value_micro": pl.Int64,
    "curr_value_micro": pl.Int64,
    "prev_read_on": pl.Date,
    "curr_read_on": pl.Date,
})


def period_index(year: pl.Expr, month: pl.Expr) -> pl.Expr:
    return year.cast(pl.Int32) * 12 + month.cast(pl.Int32) - 1


def reading_period_index(read_on: pl.Expr, window_end_day: int) -> pl.Expr:
    """Index (year × 12 + month − 1) of the period a reading counts for."""
    late = (read_on.dt.day() > window_end_day).cast(pl.Int32)
    return period_index(read_on.dt.year(), read_on.dt.month()) + late


def span_delta(prev: pl.Expr, curr: pl.Expr, digits: pl.Expr) -> pl.Expr:
    """``curr − prev`` in micro-units; a meter that passed its maximum starts again from zero."""
    raw = curr - prev
    capacity = pl.lit(10, pl.Int64).pow(digits) * MICRO
    rollover = (raw < 0) & (prev * 10 >= capacity * 9) & (curr * 10 < capacity)
    return pl.when(rollover).then(raw + capacity).otherwise(raw)


def working_meters(meters: pl.DataFrame, period: Period) -> pl.DataFrame:
    """Individual meters whose readings measure the period.

    A meter counts from the 1st day of the month after it was installed (п.81);
    a removed meter or one whose verification ends inside the period is not
    working (failed, п.81(12)), so the period is charged by average or norm.
    A meter replaced inside the period is the exception: the old meter up to its
    removal and the new one from its initial value together measure the month.
    """
    individual = meters.filter(pl.col("premise_id").is_not_null())
    verified = pl.col("verified_until").is_null() | (pl.col("verified_until") >= pl.lit(period.last))
    whole = individual.filter(
        (pl.col("installed_on") < pl.lit(period.first))
        & (pl.col("removed_on").is_null() | (pl.col("removed_on") >= pl.lit(period.last)))
        & verified
    )
    removed = individual.filter(
        (pl.col("installed_on") < pl.lit(period.first)) & pl.col("removed_on").is_between(
            pl.lit(period.first), pl.lit(period.last), closed="left"))
    added = individual.filter(pl.col("installed_on").is_between(pl.lit(period.first), pl.lit(period.last))
                              & pl.col("removed_on").is_null() & verified)
    pair = ["premise_id", "service_id"]
    replaced = pl.concat([
        removed.join(added.select(pair).unique(), on=pair, how="semi"),
        added.join(removed.select(pair).unique(), on=pair, how="semi"),
    ])
    return pl.concat([whole, replaced])


def failed_meters(meters: pl.DataFrame, period: Period) -> pl.DataFrame:
    """Installed, not removed meters whose verification ended before the period's end.

    Returns meter_id, premise_id, service_id, verified_until and ``failed_periods``:
    0 in the period the meter fails, 1 the next, …
    """
    p_idx = period.year * 12 + period.month - 1
    day_after = pl.col("verified_until") + pl.duration(days=1)
    return meters.filter(
        pl.col("premise_id").is_not_null() & (pl.col("installed_on") < pl.lit(period.first))
        & (pl.col("removed_on").is_null() | (pl.col("removed_on") >= pl.lit(period.last)))
        & pl.col("verified_until").is_not_null() & (pl.col("verified_until") < pl.lit(period.last))
    ).with_columns(
        (p_idx - period_index(day_after.dt.year(), day_after.dt.month())).alias("failed_periods")
    ).select("meter_id", "premise_id", "service_id", "verified_until", "failed_periods")


def failed_meter_average(meters: pl.DataFrame, readings: pl.DataFrame, period: Period,
                         averaging: Averaging) -> pl.DataFrame:
    """Average consumption for a failed meter's first periods (п.59 «а»: 3), from readings before failure."""
    failed = failed_meters(meters, period).filter(
        pl.col("failed_periods") < averaging.failed_max_periods)
    if not failed.height:
        return pl.DataFrame(schema=typed(CONSUMPTION_SCHEMA))
    r = readings.join(failed.select("meter_id", "verified_until"), on="meter_id").filter(
        pl.col("read_on") <= pl.col("verified_until")
    ).with_columns(
        period_index(pl.col("read_on").dt.year(), pl.col("read_on").dt.month()).alias("p_idx"),
        (pl.col("value") * MICRO).cast(pl.Int64).alias("value_micro"),
    ).sort("meter_id", "read_on")
    last = r.group_by("meter_id").agg(pl.col("p_idx").last().alias("last_idx"),
                                      pl.col("value_micro").last().alias("last_micro"))
    window = r.join(last, on="meter_id").filter(
        pl.col("p_idx") >= pl.col("last_idx") - averaging.history_periods)
    first = window.group_by("meter_id").agg(pl.col("p_idx").first().alias("first_idx"),
                                            pl.col("value_micro").first().alias("first_micro"))
    months = pl.col("last_idx") - pl.col("first_idx")
    return last.join(first, on="meter_id").filter(months >= averaging.min_months).select(
        "meter_id", pl.lit("average").alias("method"),
        ((pl.col("last_micro") - pl.col("first_micro")) // months).clip(lower_bound=0).alias("volume_micro"),
        pl.lit(None, pl.Int64).alias("prev_value_micro"), pl.lit(None, pl.Int64).alias("curr_value_micro"),
        pl.lit(None, pl.Date).alias("prev_read_on"), pl.lit(None, pl.Date).alias("curr_read_on"),
    )


def consumption(
    meters: pl.DataFrame,
    readings: pl.DataFrame,
    period: Period,
    window_end_day: int,
    averaged_before: pl.DataFrame | None = None,
    spike_multiple: int = 0,
    rejected_before: pl.DataFrame | None = None,
    *,
    averaging: Averaging,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Consumption per working individual meter for ``period``, and the reading issues.

    ``averaging``: the п.59 thresholds in force for the period — ``Averaging.on(
    rules.legal_thresholds, period.first)`` of the workspace's rules (required: there is
    no fallback to ``rules/defaults/``).

    ``rejected_before`` (meter_id, read_on) lists readings an earlier close refused
    (sealed ``reading_issues``): they stay out of the history — the next reading is
    measured from the last accepted one — unless confirmed since.

    ``averaged_before`` (meter_id, period_index, method, volume_micro) lists the volumes of
    sealed periods a reading settles (by average; by norm with ``settle_norm_months``;
    by meter, whose reading has since been removed from the register): those after
    the previous reading are subtracted, down to zero — a negative rest is credited
    to them by :func:`settled_volumes`. With ``spike_multiple`` > 0, a consumption above that
    multiple of the meter's own monthly average is flagged and not used until the
    reading is confirmed (``confirmed`` = true in the readings register). Returns
    (consumption, issues); meters absent from ``consumption`` have neither reading nor
    history and are charged by norm.
    """
    p_idx = period.year * 12 + period.month - 1
    meters_ok = working_meters(meters, period).select(
        "meter_id", "digits", "installed_on", "removed_on",
        (pl.col("initial_value") * MICRO).cast(pl.Int64).alias("initial_micro"),
    )
    r = (
        readings.join(meters_ok, on="meter_id", how="inner")
        .with_columns(
            reading_period_index(pl.col("read_on"), window_end_day).alias("p_idx"),
            (pl.col("value") * MICRO).cast(pl.Int64).alias("value_micro"),
        )
        .filter(pl.col("p_idx") <= p_idx)
    )
    outside = r.filter(
        (pl.col("read_on") < pl.col("installed_on"))
        | (pl.col("removed_on").is_not_null() & (pl.col("read_on") > pl.col("removed_on")))
    )
    r = r.join(outside.select("meter_id", "read_on"), on=["meter_id", "read_on"], how="anti")
    issues = [
        outside.filter(pl.col("p_idx") == p_idx).select(
            "meter_id", "read_on", pl.col("value_micro"),
            pl.lit("показания вне срока работы прибора учёта").alias("reason"),
        )
    ]

    r = r.sort("meter_id", "read_on")
    if "confirmed" not in r.columns:
        r = r.with_columns(pl.lit(False).alias("confirmed"))
    if rejected_before is not None and rejected_before.height:
        refused = rejected_before.select("meter_id", "read_on").unique().with_columns(
            pl.lit(True).alias("_refused"))
        r = r.join(refused, on=["meter_id", "read_on"], how="left").filter(
            pl.col("_refused").is_null() | pl.col("confirmed").fill_null(False)).drop("_refused")
    current = r.filter(pl.col("p_idx") == p_idx).group_by("meter_id").agg(
        pl.col("read_on").last().alias("curr_read_on"),
        pl.col("value_micro").last().alias("curr_value_micro"),
        pl.col("confirmed").last().fill_null(False).alias("confirmed"),
    )
    earlier = r.filter(pl.col("p_idx") < p_idx)
    if averaged_before is not None and averaged_before.height:
        # A month sealed without a reading (by average or norm) stays so: a reading of it entered,
        # confirmed or left unchecked after its close does not start the next span — the next
        # accepted reading settles the whole span (п.61; law-charges-checked.md §2.4).
        unread = averaged_before.filter(pl.col("method") != "meter") if "method" in averaged_before.columns \
            else averaged_before
        earlier = earlier.join(unread.select("meter_id", pl.col("period_index").alias("p_idx")).unique(),
                               on=["meter_id", "p_idx"], how="anti")
    previous = earlier.group_by("meter_id").agg(
        pl.col("read_on").last().alias("prev_read_on"),
        pl.col("value_micro").last().alias("prev_value_micro"),
        pl.col("p_idx").last().alias("prev_p_idx"),
    )
    history = earlier.filter(pl.col("p_idx") >= p_idx - averaging.history_periods).group_by(
        "meter_id"
    ).agg(
        pl.col("value_micro").first().alias("first_micro"),
        pl.col("p_idx").first().alias("first_p_idx"),
    )

    base = (
        meters_ok.join(current, on="meter_id", how="left")
        .join(previous, on="meter_id", how="left")
        .join(history, on="meter_id", how="left")
        .with_columns(
            pl.coalesce("prev_value_micro", "initial_micro").alias("prev_value_micro"),
        )
    )
    if averaged_before is not None and averaged_before.height:
        charged_avg = base.select("meter_id", "prev_p_idx").join(
            averaged_before, on="meter_id"
        ).filter(
            pl.col("prev_p_idx").is_null() | (pl.col("period_index") > pl.col("prev_p_idx"))
        ).group_by("meter_id").agg(pl.col("volume_micro").sum().alias("averaged_micro"))
        base = base.join(charged_avg, on="meter_id", how="left")
    else:
        base = base.with_columns(pl.lit(None, pl.Int64).alias("averaged_micro"))

    base = base.with_columns(
        span_delta(pl.col("prev_value_micro"), pl.col("curr_value_micro"), pl.col("digits")).alias("delta")
    )
    negative = base.filter(pl.col("curr_value_micro").is_not_null() & (pl.col("delta") < 0))
    issues.append(negative.select(
        "meter_id", pl.col("curr_read_on").alias("read_on"), pl.col("curr_value_micro")
        .alias("value_micro"),
        pl.lit("показания меньше предыдущих: не приняты до подтверждения").alias("reason"),
    ))
    usable = pl.col("curr_value_micro").is_not_null() & (pl.col("delta") >= 0) & pl.col(
        "prev_value_micro").is_not_null()
    if spike_multiple > 0:
        own_average = (pl.col("prev_value_micro") - pl.col("first_micro")) // (
            pl.col("prev_p_idx") - pl.col("first_p_idx"))
        months_since = (p_idx - pl.col("prev_p_idx")).clip(lower_bound=1)
        # A meter without history has no average: never a spike (nulls must not drop it).
        spike = (usable & ~pl.col("confirmed") & (pl.col("prev_p_idx") > pl.col("first_p_idx"))
                 & (own_average > 0) & (pl.col("delta") > own_average * months_since * spike_multiple)
                 ).fill_null(False)
        issues.append(base.filter(spike).select(
            "meter_id", pl.col("curr_read_on").alias("read_on"),
            pl.col("curr_value_micro").alias("value_micro"),
            pl.lit(f"расход больше среднего в {spike_multiple} раз и более: не принят до "
                   "подтверждения (confirmed)").alias("reason"),
        ))
        usable = usable & ~spike
    metered = base.filter(usable)
    metered = metered.with_columns(
        (pl.col("delta") - pl.col("averaged_micro").fill_null(0)).clip(lower_bound=0)
        .alias("volume_micro"),
        pl.lit("meter").alias("method"),
    )

    # Average (п.59 «б»): own history over whole months, at most 3 periods on.
    months = pl.col("prev_p_idx") - pl.col("first_p_idx")
    avg = base.join(metered.select("meter_id"), on="meter_id", how="anti").filter(
        pl.col("prev_p_idx").is_not_null()
        & (p_idx - pl.col("prev_p_idx") <= averaging.unread_max_periods)
        & (months >= averaging.min_months)
    ).with_columns(
        ((pl.col("prev_value_micro") - pl.col("first_micro")) // months).clip(lower_bound=0)
        .alias("volume_micro"),
        pl.lit("average").alias("method"),
    )
    out = pl.concat([
        metered.select(list(CONSUMPTION_SCHEMA)),
        avg.select(list(CONSUMPTION_SCHEMA)),
        failed_meter_average(meters, readings, period, averaging).select(list(CONSUMPTION_SCHEMA)),
    ])
    issues_frame = pl.concat(issues).with_columns(
        (pl.col("value_micro").cast(pl.Decimal(18, 6)) / MICRO).alias("value")
    ).drop("value_micro")
    return out, issues_frame


def settled_volumes(
    history: pl.DataFrame,
    meters: pl.DataFrame,
    readings: pl.DataFrame,
    period: Period,
    window_end_day: int,
    current: pl.DataFrame,
    rejected_before: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The volume each sealed month should have charged, where readings now say otherwise (п.61).

    ``history`` (meter_id, period_index, method, volume_micro) holds the sealed volumes a
    reading settles (``consumption``'s ``averaged_before``: by meter, by average and,
    with ``settle_norm_months``, by norm). Today's readings cut each meter's months
    into spans: a span ends in a month with an accepted reading (the register's
    last one counting for that month — in the meter's life, not refused by a close
    unless confirmed since, the meter's verification not expired; this period's from
    ``current``) that was not sealed by average or norm, and holds the months after
    the previous such reading. The real
    volume of a span is its end reading minus the previous one (rollover by digits,
    never below zero); with C the volume its other months charged:

    * the end month charges max(0, real − C) — what ``consumption`` charges now;
    * when C > real, the excess is taken back from the other months, the most
      recent first, each down to zero, so the span charges exactly the real volume.

    The result depends only on the sealed volumes and today's readings, so it is
    the same at every later close: a month's recomputation posts its difference once.
    A reading of a metered sealed month corrected in the register re-measures that
    month and the next span. A month sealed by average or norm is never re-measured:
    a reading of it entered or confirmed after its close is settled, with the span, by
    the next accepted reading (as :func:`consumption` measures from the reading before).
    Returns meter_id, period_index, volume_micro for the sealed months whose volume
    differs from ``history``.
    """
    out_schema = typed({"meter_id": pl.String(), "period_index": pl.Int32(), "volume_micro": pl.Int64()})
    if not history.height:
        return pl.DataFrame(schema=out_schema)
    p_idx = period.year * 12 + period.month - 1
    # Windows run over an integer code of the meter (and of its span), not the string id.
    ids = history.select("meter_id").unique().sort("meter_id").with_row_index("_m").lazy()
    m = meters.lazy().join(ids, on="meter_id").select(
        "meter_id", "_m", "installed_on", "removed_on", "verified_until", "digits",
        (pl.col("initial_value") * MICRO).cast(pl.Int64).alias("initial_micro"),
    )
    r = readings.lazy().join(m, on="meter_id").with_columns(
        reading_period_index(pl.col("read_on"), window_end_day).cast(pl.Int32).alias("period_index"),
        (pl.col("value") * MICRO).cast(pl.Int64).alias("end_micro"),
    ).filter(
        (pl.col("period_index") < p_idx) & (pl.col("read_on") >= pl.col("installed_on"))
        & (pl.col("removed_on").is_null() | (pl.col("read_on") <= pl.col("removed_on")))
    )
    if "confirmed" not in readings.columns:
        r = r.with_columns(pl.lit(False).alias("confirmed"))
    if rejected_before is not None and rejected_before.height:
        refused = rejected_before.lazy().select("meter_id", "read_on").unique().with_columns(
            pl.lit(True).alias("_refused"))
        r = r.join(refused, on=["meter_id", "read_on"], how="left").filter(
            pl.col("_refused").is_null() | pl.col("confirmed").fill_null(False))
    # A month in which the meter's verification had expired was charged by п.59 «а»/п.60,
    # whatever it showed: its readings end no span.
    month_end = pl.date(pl.col("period_index") // 12, pl.col("period_index") % 12 + 1, 1).dt.month_end()
    r = r.filter(pl.col("verified_until").is_null() | (pl.col("verified_until") >= month_end))
    rows = history.lazy().join(ids, on="meter_id").select(
        "_m", pl.col("period_index").cast(pl.Int32), "method", "volume_micro")
    unread = rows.filter(pl.col("method") != "meter").select("_m", "period_index").unique()
    r = r.join(unread, on=["_m", "period_index"], how="anti")
    ends = pl.concat([
        r.group_by("_m", "period_index").agg(pl.col("end_micro").sort_by("read_on").last()),
        current.lazy().filter(pl.col("method") == "meter").join(ids, on="meter_id").select(
            "_m", pl.lit(p_idx, pl.Int32).alias("period_index"),
            pl.col("curr_value_micro").alias("end_micro")),
    ])
    end = pl.col("end_micro").is_not_null()
    # Sorted by meter and month, the spans are runs of rows: plain cumulative sums over the
    # whole frame (a meter's first row carries its initial value, so nothing crosses from one
    # meter to the next) and one group-by per span, no window function per meter.
    t = rows.select("_m", "period_index", "volume_micro").join(
        ends, on=["_m", "period_index"], how="full", coalesce=True
    ).join(m.select("_m", "meter_id", "digits", "initial_micro"), on="_m").sort(
        "_m", "period_index"
    ).with_columns(
        pl.when(pl.col("_m") != pl.col("_m").shift(1).fill_null(-1)).then(pl.col("initial_micro"))
        .otherwise(pl.col("end_micro").shift(1)).forward_fill().alias("_prev"),
        # A span: the rows after one end up to the next end, keyed with the meter.
        (pl.col("_m").cast(pl.Int64) * (1 << 32) + end.cast(pl.Int64).cum_sum() - end.cast(pl.Int64))
        .alias("_key"),
        pl.when(end).then(0).otherwise(pl.col("volume_micro").fill_null(0)).alias("_inside"),
    ).with_columns(
        span_delta(pl.col("_prev"), pl.col("end_micro"), pl.col("digits")).clip(lower_bound=0)
        .alias("_real"),
        pl.col("_inside").cum_sum().alias("_through"),
    )
    spans = t.group_by("_key").agg(
        pl.col("_inside").sum().alias("_charged"),
        (pl.col("_through") - pl.col("_inside")).min().alias("_before"),  # the span's first row's
        # Null in the span still open (no reading has ended it): nothing to settle there.
        pl.col("_real").filter(end).max().alias("_span_real"),  # one end per span
    ).with_columns((pl.col("_charged") - pl.col("_span_real")).clip(lower_bound=0).alias("_excess"))
    t = t.join(spans, on="_key").with_columns(
        # Charged by the span's later months (the most recent are credited first).
        (pl.col("_charged") - (pl.col("_through") - pl.col("_before"))).alias("_later"))
    credit = (pl.col("_excess") - pl.col("_later")).clip(lower_bound=0)
    target = (
        pl.when(end).then((pl.col("_real") - pl.col("_charged")).clip(lower_bound=0))
        .when(pl.col("_excess").is_not_null())
        .then(pl.col("_inside") - pl.min_horizontal(credit, pl.col("_inside")))
        .otherwise(pl.col("volume_micro"))
    )
    return t.filter(pl.col("volume_micro").is_not_null() & (pl.col("period_index") < p_idx)).select(
        "meter_id", "period_index", target.alias("_target"), "volume_micro",
    ).filter(pl.col("_target") != pl.col("volume_micro")).select(
        "meter_id", "period_index", pl.col("_target").alias("volume_micro"),
    ).sort("meter_id", "period_index").collect().cast(out_schema)


def building_consumption(meters: pl.DataFrame, readings: pl.DataFrame, period: Period,
                         window_end_day: int) -> pl.DataFrame:
    """Consumption of building meters (ОДПУ) in the period: building_id, service_id, volume_micro.

    The last reading counting for the period minus the last one before it (or the
    meter's initial value); a meter without both, or whose readings go down, gives
    nothing and the building is charged by the norm.
    """
    return building_span_consumption(meters, readings, period, period, window_end_day)


def _building_meters(meters: pl.DataFrame, first: Period, last: Period) -> pl.DataFrame:
    """Building meters (ОДПУ) working from before ``first`` to the end of ``last``."""
    return meters.filter(
        pl.col("building_id").is_not_null() & (pl.col("installed_on") < pl.lit(first.first))
        & (pl.col("removed_on").is_null() | (pl.col("removed_on") >= pl.lit(last.last)))
        & (pl.col("verified_until").is_null() | (pl.col("verified_until") >= pl.lit(last.last)))
    ).select("meter_id", "building_id", "service_id",
             (pl.col("initial_value") * MICRO).cast(pl.Int64).alias("initial_micro"))


def building_span_consumption(meters: pl.DataFrame, readings: pl.DataFrame, first: Period,
                              last: Period, window_end_day: int) -> pl.DataFrame:
    """Building-meter volume over the periods ``first``..``last``: building_id, service_id, volume_micro.

    The reading counting for ``last`` minus the last reading counting for a period
    before ``first`` (or the initial value when the meter has none before). A meter
    without a reading counting for ``last`` exactly, or whose readings went down,
    gives nothing: the span cannot be measured.
    """
    first_idx = first.year * 12 + first.month - 1
    last_idx = last.year * 12 + last.month - 1
    bld = _building_meters(meters, first, last)
    r = readings.join(bld.select("meter_id"), on="meter_id").with_columns(
        reading_period_index(pl.col("read_on"), window_end_day).alias("p_idx"),
        (pl.col("value") * MICRO).cast(pl.Int64).alias("value_micro"),
    ).filter(pl.col("p_idx") <= last_idx).sort("meter_id", "read_on")
    end = r.filter(pl.col("p_idx") == last_idx).group_by("meter_id").agg(
        pl.col("value_micro").last().alias("end"))
    start = r.filter(pl.col("p_idx") < first_idx).group_by("meter_id").agg(
        pl.col("value_micro").last().alias("start"))
    out = bld.join(end, on="meter_id").join(start, on="meter_id", how="left").with_columns(
        (pl.col("end") - pl.coalesce("start", "initial_micro")).alias("volume_micro"))
    return out.filter(pl.col("volume_micro") >= 0).group_by("building_id", "service_id").agg(
        pl.col("volume_micro").sum())


def building_year_average(meters: pl.DataFrame, readings: pl.DataFrame, year: int,
                          window_end_day: int) -> pl.DataFrame:
    """Average monthly building-meter volume of a calendar year (heating paid evenly, formula 3(1)).

    The year's volume (December's reading minus the one before January) divided
    by 12 and rounded half-up to 10⁻⁶ — the volume printed on the bill. Buildings
    whose meter did not measure the whole year are absent (charged by the norm).
    """
    year_volume = building_span_consumption(meters, readings, Period(year, 1), Period(year, 12),
                                            window_end_day)
    return year_volume.with_columns((pl.col("volume_micro") * 2 + 12) // 24)


def norm_months(meters: pl.DataFrame, period: Period, volumes: pl.DataFrame, lines: pl.DataFrame,
                accounts: pl.DataFrame) -> pl.DataFrame:
    """Working meters left unread and charged by the norm this period (after 3 averaged ones).

    One row per such meter (the first by id where a premise has several for a
    service) with the premise's norm volume, method ``norm``. Sealed with the
    period's meter volumes, they let the reading that finally comes settle these
    months too (п.61; law-charges-checked.md §2.5), when ``settle_norm_months`` is on.
    """
    unread = working_meters(meters, period).join(volumes.select("meter_id"), on="meter_id", how="anti")
    charged = lines.filter(pl.col("method") == "norm").join(
        accounts.select("account_id", "premise_id"), on="account_id"
    ).group_by("premise_id", "service_id").agg(pl.col("volume_micro").sum())
    return unread.sort("meter_id").group_by("premise_id", "service_id").agg(
        pl.col("meter_id").first()
    ).join(charged, on=["premise_id", "service_id"]).select(
        "meter_id", pl.lit("norm").alias("method"), "volume_micro",
        pl.lit(None, pl.Int64).alias("prev_value_micro"), pl.lit(None, pl.Int64).alias("curr_value_micro"),
        pl.lit(None, pl.Date).alias("prev_read_on"), pl.lit(None, pl.Date).alias("curr_read_on"),
        "service_id", "premise_id",
    )
