"""Charges of a period (начисления): one line per account, service, supplier and rule piece.

Formulas (Правила 354, Прил. 2), all in integers and rounded once per line:

* ``meter`` / ``average`` — formula 1: ``V × T`` (volume from the meter or the
  average, split by the account's share of the premise);
* ``norm`` — formula 4: ``n × N × T`` with ``n`` counted in person-days of
  registration (permanent and temporary, п.56(2): owners when nobody is
  registered), less the full days of a temporary absence of more than 5 days
  (``absence_min_full_days`` of ``legal_thresholds.csv``) where ``absence_rules.csv``
  allows it (п.86–87; ТКО п.148(44));
* ``norm_increased`` — formula 4(1): ``n × N × K × T`` where a meter can be
  fitted but is not (coefficient by its dated rule per service); for a service
  with rows in ``electricity_norms.csv`` ``N`` is the cell of the premise's rooms ×
  persons × stove (:func:`matrix_norms`), else the per-person norm of ``norms.csv``;
* ``sewerage`` — cold + hot water volumes × T (the coefficient does not raise
  the volume, law-charges-checked.md §1.1);
* ``area`` — ``S × share × T`` (maintenance, capital repair);
* ``heating`` — formula 2: ``S × share × N × T`` (norm per m², no usable building meter);
* ``heating_meter`` — formula 3: ``V_house × S × share / S_house × T`` (the month's
  building-meter volume); ``heating_average`` — formula 3(1), the same with the
  previous year's average monthly volume when heating is paid evenly
  (:class:`HeatingPolicy`);
* ``per_person`` — ``n × T``; ``fixed`` — ``T`` per account;
* ``common_property`` — resources for common property (КР на СОИ, ЖК 156 ч.9.2,
  Правила 354 formula 15 without a building meter): ``N_СОИ × S_common × S_i × share /
  S_building × T`` (the yearly settlement against the building meter is not modelled yet).

A month is split into pieces wherever a tariff, norm or coefficient changes, or
the account, the building's service or its supplier starts or ends; each piece
is charged for its days (``days / days_in_month``) and is its own line, so
``volume × tariff × coefficient = amount`` holds per line up to the kopeck.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl

from pipeline.calc.readings import (
    building_consumption,
    building_year_average,
    failed_meters,
)
from pipeline.dates import OPEN_END, Period
from pipeline.ids import key_code, typed
from pipeline.money import div_half_up
from pipeline.settings import Heating
from rules import Rules, threshold

MICRO = 1_000_000
I128 = pl.Int128


@dataclass(frozen=True)
class HeatingPolicy:
    """How heating is paid (ПП 603/2016; the region's choice, ``settings.toml`` [heating]).

    ``even``: every month of the year. Without a building meter by the norm per m²
    (formula 2, method ``heating``); with one that measured the whole previous
    year, by that year's average monthly volume shared by area (formula 3(1),
    method ``heating_average``), and in ``true_up_month`` of the next year the
    year is settled against the meter's actual monthly volumes (the yearly
    correction, posted as recalculations — see :meth:`for_past`).
    ``in_season``: only in ``season_months``, by the building meter's actual
    volume shared by area where there is one (formula 3, ``heating_meter``), else
    by the norm. ``actual`` is internal: an evenly paid month after its year has
    been settled, i.e. by the actual volume whatever the month.
    """

    payment: str = Heating.payment  # the defaults of settings.toml [heating]
    season_months: tuple[int, ...] = Heating.season_months
    true_up_month: int = Heating.true_up_month
    #: Years not corrected, as only part of them is sealed here (settings.toml [migration]
    #: partial_years, pipeline.close.inputs._whole_year): recomputed, their months keep the average.
    uncorrected_years: tuple[int, ...] = ()

    def settled(self, origin: Period, now: Period) -> bool:
        """Whether the evenly paid ``origin`` month has had its yearly correction by ``now``."""
        return (self.payment == "even" and now >= Period(origin.year + 1, self.true_up_month)
                and origin.year not in self.uncorrected_years)

    def for_past(self, origin: Period, now: Period) -> HeatingPolicy:
        """The policy to recompute ``origin`` with at the close of ``now``.

        Once a year is settled, its months are worth their actual building-meter
        volume: recomputing them then yields exactly the yearly correction, and a
        later change to the year is settled the same way (never twice).
        """
        return replace(self, payment="actual") if self.settled(origin, now) else self


def heating_volumes(meters: pl.DataFrame, readings: pl.DataFrame, period: Period,
                    heating: HeatingPolicy, window_end_day: int) -> pl.DataFrame:
    """Building-meter heat volumes ``period`` is charged by: building_id, service_id, volume_micro."""
    if heating.payment == "even":
        return building_year_average(meters, readings, period.year - 1, window_end_day)
    return building_consumption(meters, readings, period, window_end_day)


LINE_SCHEMA = pl.Schema({
    "account_id": pl.String,
    "service_id": pl.String,
    "supplier_id": pl.String,
    "method": pl.String,
    "line_from": pl.Date,
    "line_to": pl.Date,
    "days": pl.Int64,
    "days_in_month": pl.Int64,
    "volume_micro": pl.Int64,
    "price_kop": pl.Int64,
    "coef_milli": pl.Int64,
    "amount_kop": pl.Int64,
    "person_days": pl.Int64,
    "absent_days": pl.Int64,
    "persons_basis": pl.String,
    "area_centi": pl.Int64,
    "common_area_centi": pl.Int64,
    "building_area_centi": pl.Int64,
    "share_e4": pl.Int64,
    "norm_micro": pl.Int64,
    "meter_volume_micro": pl.Int64,
    "tariff_row": pl.Int64,
    "norm_row": pl.Int64,
    "coef_row": pl.Int64,
    # Which table norm_row points into (norms | electricity_norms) and, for a service
    # charged by the rooms × persons matrix, the cell used (rooms null: not known).
    "norm_table": pl.String,
    "norm_rooms": pl.Int64,
    "norm_persons": pl.Int64,
    "norm_stove": pl.String,
})


def _i(name: str) -> pl.Expr:
    return pl.col(name).cast(I128)


def _clip_range(start: str, end: str, period: Period) -> list[pl.Expr]:
    return [
        pl.max_horizontal(pl.col(start), pl.lit(period.first)).alias(start),
        pl.min_horizontal(pl.col(end).fill_null(pl.lit(OPEN_END)), pl.lit(period.last)).alias(end),
    ]


def active_accounts(regs: dict[str, pl.DataFrame], period: Period) -> pl.DataFrame:
    """Accounts open on at least one day of the period, with their premise and days."""
    acc = regs["accounts"].select(
        "account_id", "premise_id", "owners",
        (pl.col("share") * 10_000).cast(pl.Int64).alias("share_e4"),
        pl.col("opened_on").alias("acc_from"), pl.col("closed_on").alias("acc_to"),
    ).with_columns(_clip_range("acc_from", "acc_to", period)).filter(
        pl.col("acc_from") <= pl.col("acc_to")
    )
    premises = regs["premises"].select(
        "premise_id", "building_id", "meter_possible", "rooms", "stove",
        (pl.col("total_area") * 100).cast(pl.Int64).alias("area_centi"),
    )
    buildings = regs["buildings"].select(
        "building_id", (pl.col("total_area") * 100).cast(pl.Int64).alias("building_area_centi"),
        (pl.col("common_area").fill_null(0) * 100).cast(pl.Int64).alias("common_area_centi"),
    )
    return acc.join(premises, on="premise_id", how="inner").join(buildings, on="building_id", how="left")


def rule_pieces(rules: Rules, combos: pl.DataFrame, period: Period) -> pl.DataFrame:
    """Split the month per (service, supplier) where a tariff, norm or coefficient changes.

    Returns service_id, supplier_id, piece_from, piece_to, price_kop, norm_micro,
    coef_milli, the rule rows used (for ``billing explain``) and matrix_from: the
    date of the electricity norm matrix rows in force (null: the service has none).
    """
    def starts(table: pl.DataFrame) -> pl.DataFrame:
        return table.filter(
            (pl.col("from") > pl.lit(period.first)) & (pl.col("from") <= pl.lit(period.last))
        ).select("service_id", pl.col("from").alias("piece_from"))

    breaks = pl.concat([
        combos.select("service_id").unique().with_columns(pl.lit(period.first).alias("piece_from")),
        starts(rules.tariffs), starts(rules.norms), starts(rules.coefficients),
        starts(rules.electricity_norms),
    ]).unique()
    pieces = combos.join(breaks, on="service_id").sort("service_id", "supplier_id", "piece_from")
    pieces = pieces.with_columns(
        (pl.col("piece_from").shift(-1).over("service_id", "supplier_id")
         - pl.duration(days=1)).fill_null(pl.lit(period.last)).alias("piece_to")
    )

    def asof(left: pl.DataFrame, table: pl.DataFrame, by: list[str], cols: list[str]) -> pl.DataFrame:
        right = table.select([*by, pl.col("from").alias("piece_from"), *cols]).sort("piece_from")
        return left.sort("piece_from").join_asof(
            right, on="piece_from", by=by, strategy="backward", check_sortedness=False
        )

    tariff_cols = ["price_kop", "source_row"]
    specific = rules.tariffs.filter(pl.col("supplier_id").is_not_null())
    generic = rules.tariffs.filter(pl.col("supplier_id").is_null()).drop("supplier_id")
    pieces = asof(pieces, specific, ["service_id", "supplier_id"], tariff_cols).rename(
        {"price_kop": "price_specific", "source_row": "row_specific"})
    pieces = asof(pieces, generic, ["service_id"], tariff_cols).with_columns(
        pl.coalesce("price_specific", "price_kop").alias("price_kop"),
        pl.coalesce("row_specific", "source_row").alias("tariff_row"),
    ).drop("price_specific", "row_specific", "source_row")
    pieces = asof(pieces, rules.norms, ["service_id"], ["norm_micro", "source_row"]).rename(
        {"source_row": "norm_row"})
    pieces = asof(pieces, rules.coefficients, ["service_id"], ["coef_milli", "source_row"]).rename(
        {"source_row": "coef_row"})
    matrix = rules.electricity_norms.select(
        "service_id", "from", pl.col("from").alias("matrix_from")).unique()
    pieces = asof(pieces, matrix, ["service_id"], ["matrix_from"])
    # Merge neighbouring pieces that ended up with the same values.
    values = ["price_kop", "norm_micro", "coef_milli", "tariff_row", "norm_row", "coef_row",
              "matrix_from"]
    pieces = pieces.sort("service_id", "supplier_id", "piece_from").with_columns(
        pl.struct(values).rle_id().over("service_id", "supplier_id").alias("_run")
    )
    return pieces.group_by("service_id", "supplier_id", "_run", maintain_order=True).agg(
        pl.col("piece_from").min(), pl.col("piece_to").max(), *[pl.col(v).first() for v in values]
    ).drop("_run")


#: The water services whose volumes make the sewerage volume (Правила 354 п.42, formula 1/4).
SEWERAGE_WATER = ("cold_water", "hot_water")


def person_days(lines: pl.DataFrame, residents: pl.DataFrame,
                absences: pl.DataFrame | None = None, *, min_full_days: int) -> pl.DataFrame:
    """Registered person-days inside each line's dates, less eligible absence days.

    An absence row's ``from``/``to`` are the days of departure and return; only the
    full days between them count (п.87), and only when there are at least
    ``min_full_days`` of them (п.86: more than 5 — ``absence_min_full_days`` of
    ``legal_thresholds.csv``). Absence days are subtracted on lines with ``absence_ok``
    true. Returns line_id, person_days, absent_days.
    """
    res = residents.select("person_id", "account_id", pl.col("from").alias("r_from"),
                           pl.col("to").alias("r_to"))
    # Lazy joins and group-bys: the default (streaming) engine needs a fraction of the eager
    # engine's CPU for these millions of rows (the result is keyed by line_id, order-free).
    base = lines.lazy().select("line_id", "account_id", "line_from", "line_to", "absence_ok").join(
        res.lazy(), on="account_id", how="inner"
    ).with_columns(
        pl.max_horizontal(pl.col("r_from"), pl.col("line_from")).alias("_lo"),
        pl.min_horizontal(pl.col("r_to").fill_null(pl.lit(OPEN_END)), pl.col("line_to")).alias("_hi"),
    ).with_columns(((pl.col("_hi") - pl.col("_lo")).dt.total_days() + 1).clip(lower_bound=0).alias("pd")
                   ).collect()
    present = base.lazy().group_by("line_id").agg(pl.col("pd").sum().cast(pl.Int64).alias("person_days")
                                                  ).collect()
    if absences is None or not absences.height:
        return present.with_columns(pl.lit(0, pl.Int64).alias("absent_days"))
    away = absences.select(
        "person_id", (pl.col("from") + pl.duration(days=1)).alias("a_from"),
        (pl.col("to") - pl.duration(days=1)).alias("a_to"),
    ).filter(((pl.col("a_to") - pl.col("a_from")).dt.total_days() + 1) >= min_full_days)
    absent = base.lazy().filter(pl.col("absence_ok") & (pl.col("pd") > 0)).join(
        away.lazy(), on="person_id").with_columns(
        ((pl.min_horizontal("a_to", "_hi") - pl.max_horizontal("a_from", "_lo")).dt.total_days() + 1)
        .clip(lower_bound=0).alias("ad")
    ).group_by("line_id").agg(pl.col("ad").sum().cast(pl.Int64).alias("absent_days"))
    return present.lazy().join(absent, on="line_id", how="left").with_columns(
        pl.col("absent_days").fill_null(0),
        (pl.col("person_days") - pl.col("absent_days").fill_null(0)).alias("person_days"),
    ).collect()


#: The matrix's last row and column: «4 комнаты и более», «5 человек и более».
MATRIX_MAX_ROOMS, MATRIX_MAX_PERSONS = 4, 5


def matrix_cells(rules: Rules, pieces: pl.DataFrame) -> pl.DataFrame:
    """Every cell of the electricity norm matrix in force on each piece that has one.

    Returns service_id, supplier_id, piece_from, norm_rooms (1–4), norm_persons (1–5),
    norm_stove (gas|electric), cell_micro and cell_row (the row of
    ``electricity_norms.csv``; ``rules.load_electricity_norms`` made sure every cell has one).
    """
    grid = pieces.filter(pl.col("matrix_from").is_not_null()).select(
        "service_id", "supplier_id", "piece_from").join(
        rules.electricity_norms.select("rooms", "persons", "stove").unique(), how="cross")
    table = rules.electricity_norms.select(
        "service_id", "rooms", "persons", "stove", pl.col("from").alias("piece_from"),
        pl.col("norm_micro").alias("cell_micro"), pl.col("source_row").alias("cell_row"),
    ).sort("piece_from")
    return grid.sort("piece_from").join_asof(
        table, on="piece_from", by=["service_id", "rooms", "persons", "stove"], strategy="backward",
        check_sortedness=False,
    ).rename({"rooms": "norm_rooms", "persons": "norm_persons", "stove": "norm_stove"})


def matrix_norms(lines: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """The norm by rooms × persons × stove for lines of a service with a matrix (law.md §1.3).

    Persons are those living in the premise: the registered person-days of all its
    accounts over the line's days (owners where nobody is registered, п.56(2); an
    absence does not make the household smaller), averaged over the line's days,
    rounded half up, 5 and more → 5. Rooms 4 and more → 4 (0 → 1). A premise whose
    rooms are not known keeps the per-person norm of ``norms.csv``. Adds norm_table,
    norm_rooms, norm_persons, norm_stove; the cell replaces norm_micro and norm_row.
    """
    if not rules.electricity_norms.height:
        return lines.with_columns(
            pl.when(pl.col("norm_row").is_not_null()).then(pl.lit("norms")).alias("norm_table"),
            pl.lit(None, pl.Int64).alias("norm_rooms"), pl.lit(None, pl.Int64).alias("norm_persons"),
            pl.lit(None, pl.String).alias("norm_stove"))
    cells = matrix_cells(rules, lines.select("service_id", "supplier_id", "piece_from", "matrix_from")
                         .unique())
    household = ["premise_id", "service_id", "supplier_id", "line_from", "line_to"]
    chosen = lines.lazy().filter(pl.col("matrix_from").is_not_null()).select(
        "line_id", *household, "piece_from", "days", "rooms", "stove",
        (pl.col("person_days") + pl.col("absent_days")).sum().over(household).alias("_household"),
    ).select(
        "line_id", "service_id", "supplier_id", "piece_from",
        pl.col("rooms").clip(1, MATRIX_MAX_ROOMS).alias("norm_rooms"),
        div_half_up(pl.col("_household"), pl.col("days")).clip(1, MATRIX_MAX_PERSONS)
        .alias("norm_persons"),
        pl.col("stove").alias("norm_stove"),
    ).join(cells.lazy(), on=["service_id", "supplier_id", "piece_from", "norm_rooms", "norm_persons",
                             "norm_stove"], how="left").select(
        "line_id", "norm_rooms", "norm_persons", "norm_stove", "cell_micro", "cell_row").collect()
    return lines.join(chosen, on="line_id", how="left").with_columns(
        pl.coalesce("cell_micro", "norm_micro").alias("norm_micro"),
        pl.coalesce("cell_row", "norm_row").alias("norm_row"),
        pl.when(pl.col("cell_row").is_not_null()).then(pl.lit("electricity_norms"))
        .when(pl.col("norm_row").is_not_null()).then(pl.lit("norms")).alias("norm_table"),
    ).drop("cell_micro", "cell_row")


def _absence_allowed() -> pl.Expr:
    """Lines whose norm charge the absence rules reduce (by service, date and the premise)."""
    return pl.col("_absence_rule").is_not_null() & (
        ~pl.col("_absence_rule") | ~pl.col("meter_possible"))


def charge_lines(
    regs: dict[str, pl.DataFrame],
    rules: Rules,
    period: Period,
    meter_volumes: pl.DataFrame,
    heating: HeatingPolicy | None = None,
    building_volumes: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """All charge lines of the period.

    ``meter_volumes`` is :func:`pipeline.calc.readings.consumption`'s output joined
    to meters: premise_id, service_id, method (meter|average), volume_micro. The legal
    thresholds (``rules.legal_thresholds``) are those in force on the period's first day.
    """
    days_in_month = period.days
    thresholds = rules.legal_thresholds
    # Integer codes (categorical) of the account and, below, the service ride through the
    # joins: the windows per account and service then hash one integer instead of two strings.
    acc = active_accounts(regs, period).with_columns(
        key_code("account_id").alias("_acc_code"))
    bs = regs["building_services"].select(
        "building_id", "service_id", "supplier_id",
        pl.col("from").alias("bs_from"), pl.col("to").alias("bs_to"),
    ).with_columns(_clip_range("bs_from", "bs_to", period)).filter(
        pl.col("bs_from") <= pl.col("bs_to")
    )
    services = rules.services.select(
        "service_id", "kind",
        pl.col("service_id").cast(pl.Categorical).to_physical().cast(pl.UInt64).alias("_svc_code"))
    heating = heating or HeatingPolicy()
    if heating.payment == "in_season" and period.month not in heating.season_months:
        # Paid only in the heating season (ПП 603/2016): no heating line outside it.
        services = services.filter(pl.col("kind") != "heating")
    seg = acc.join(bs, on="building_id", how="inner").with_columns(
        pl.max_horizontal("acc_from", "bs_from").alias("seg_from"),
        pl.min_horizontal("acc_to", "bs_to").alias("seg_to"),
    ).filter(pl.col("seg_from") <= pl.col("seg_to")).join(services, on="service_id")
    pieces = rule_pieces(rules, seg.select("service_id", "supplier_id").unique(), period)
    # The absence and failed-meter rules depend only on the service and the piece's first
    # day: looked up once per piece (a few dozen rows) instead of sorting millions of lines.
    absence = rules.absence_rules.rename({"from": "piece_from", "meter_impossible_only": "_absence_rule"})
    failed_rule = rules.failed_meter_rules.rename({"from": "piece_from", "coefficient_applies": "_fk"})
    pieces = pieces.sort("piece_from").join_asof(
        absence.sort("piece_from"), on="piece_from", by="service_id", strategy="backward",
        check_sortedness=False,
    ).join_asof(
        failed_rule.sort("piece_from"), on="piece_from", by="service_id", strategy="backward",
        check_sortedness=False,
    )
    lines = seg.join(pieces, on=["service_id", "supplier_id"], how="inner").with_columns(
        pl.max_horizontal("seg_from", "piece_from").alias("line_from"),
        pl.min_horizontal("seg_to", "piece_to").alias("line_to"),
    ).filter(pl.col("line_from") <= pl.col("line_to")).with_columns(
        ((pl.col("line_to") - pl.col("line_from")).dt.total_days() + 1).cast(pl.Int64)
        .alias("days"),
        pl.lit(days_in_month, pl.Int64).alias("days_in_month"),
    ).with_row_index("line_id")

    # Persons: registered person-days less eligible absences; nobody registered all
    # month → owners (п.56(2)).
    lines = lines.with_columns(_absence_allowed().alias("absence_ok"))
    pdays = person_days(lines, regs["residents"], regs.get("absences"),
                        min_full_days=threshold(thresholds, "absence_min_full_days", period.first))
    lines = lines.join(pdays, on="line_id", how="left").with_columns(
        pl.col("person_days").fill_null(0), pl.col("absent_days").fill_null(0))
    # Absence does not make a flat empty: "nobody registered" looks at registration only.
    # The sums per account and service run lazily (the default, streaming engine needs a
    # fraction of the eager engine's CPU) on a narrow frame, over one integer key.
    sums = lines.lazy().select(
        (pl.col("_acc_code") * (1 << 32) + pl.col("_svc_code")).alias("_acc_service"),
        (pl.col("person_days") + pl.col("absent_days")).alias("_registered"), "days",
    ).select(
        (pl.col("_registered").sum().over("_acc_service") == 0).alias("_nobody"),
        # Days of this account and service in the month (a metered volume is spread over them).
        pl.col("days").sum().over("_acc_service").alias("service_days"),
    ).collect()
    nobody = pl.col("_nobody")
    lines = lines.hstack(sums).with_columns(
        pl.when(nobody).then(pl.lit("owners")).otherwise(pl.lit("registered"))
        .alias("persons_basis"),
        pl.when(nobody).then(pl.col("owners") * pl.col("days")).otherwise("person_days")
        .alias("person_days"),
    ).drop("_nobody")
    lines = matrix_norms(lines, rules)

    # Metered volume of the premise, per service.
    mv = meter_volumes.group_by("premise_id", "service_id").agg(
        pl.col("volume_micro").sum().alias("meter_volume_micro"),
        pl.when((pl.col("method") == "average").any()).then(pl.lit("average"))
        .otherwise(pl.lit("meter")).alias("meter_method"),
    )
    lines = lines.join(mv, on=["premise_id", "service_id"], how="left")
    has_meter = _premises_with_meter(regs["meters"], period)
    lines = lines.join(has_meter, on=["premise_id", "service_id"], how="left").with_columns(
        pl.col("meter_installed").fill_null(False)
    )
    # A meter failed more than 3 periods ago: norm × K where the rule says so (п.60).
    failed = failed_meters(regs["meters"], period).filter(
        pl.col("failed_periods") >= threshold(thresholds, "average_failed_max_periods", period.first)
    ).select("premise_id", "service_id").unique()
    lines = lines.join(failed.with_columns(pl.lit(True).alias("_failed")), on=["premise_id", "service_id"],
                       how="left").with_columns(
        (pl.col("_failed").fill_null(False) & pl.col("_fk").fill_null(False)).alias("failed_coef"))
    # Access to the meter refused twice or more (acts before the period, not yet
    # resolved): norm × K whatever the meter shows (п.85(3) / п.60, number UNVERIFIED).
    refused = access_refused(regs.get("access_refusals"), period, thresholds)
    lines = lines.join(refused, on=["premise_id", "service_id"], how="left").with_columns(
        pl.col("_refused").fill_null(False))

    norm_coef = (
        (pl.col("kind") == "metered")
        & ((pl.col("meter_possible") & ~pl.col("meter_installed")) | pl.col("failed_coef")
           | pl.col("_refused"))
        & (pl.col("coef_milli").fill_null(1000) > 1000)
    )
    metered = ((pl.col("kind") == "metered") & pl.col("meter_volume_micro").is_not_null()
               & ~pl.col("_refused"))
    # Heating by the building meter shared by area: the month's actual volume
    # (formula 3) or, paid evenly, the previous year's monthly average (formula 3(1)).
    if building_volumes is not None and building_volumes.height:
        lines = lines.join(building_volumes.rename({"volume_micro": "_bld_micro"}),
                           on=["building_id", "service_id"], how="left")
    else:
        lines = lines.with_columns(pl.lit(None, pl.Int64).alias("_bld_micro"))
    by_building_meter = (pl.col("kind") == "heating") & pl.col("_bld_micro").is_not_null()
    building_method = "heating_average" if heating.payment == "even" else "heating_meter"
    lines = lines.with_columns(
        pl.col("coef_milli").fill_null(1000).alias("rule_coef_milli"),
        pl.when(norm_coef).then(pl.col("coef_milli")).otherwise(1000).alias("coef_milli"),
        pl.when(pl.col("kind") == "metered").then(
            pl.when(metered).then(pl.col("meter_method"))
            .when(norm_coef).then(pl.lit("norm_increased"))
            .otherwise(pl.lit("norm"))
        ).when(by_building_meter).then(pl.lit(building_method))
        .otherwise(pl.col("kind")).alias("method"),
        pl.when(by_building_meter).then(pl.col("_bld_micro")).otherwise(pl.col("meter_volume_micro"))
        .alias("meter_volume_micro"),
    )
    water = _amounts(lines.filter(pl.col("kind") != "sewerage"))
    sewer = _sewerage(lines.filter(pl.col("kind") == "sewerage"), water)
    # Keep only the inputs each method used, so a line explains itself.
    uses_norm = pl.col("method").is_in(["norm", "norm_increased", "heating", "common_property"])
    uses_persons = pl.col("method").is_in(["norm", "norm_increased", "per_person"])
    by_building = pl.col("method").is_in(["heating_meter", "heating_average"])
    uses_area = pl.col("method").is_in(["area", "heating", "common_property"]) | by_building
    uses_meter = pl.col("method").is_in(["meter", "average"]) | by_building | (
        pl.col("kind") == "sewerage")
    water, sewer = (
        f.with_columns(
            pl.when(uses_norm).then(pl.col("norm_micro")).alias("norm_micro"),
            pl.when(uses_norm).then(pl.col("norm_row")).alias("norm_row"),
            pl.when(uses_norm).then(pl.col("norm_table")).alias("norm_table"),
            *[pl.when(uses_norm & uses_persons).then(pl.col(c)).alias(c)
              for c in ("norm_rooms", "norm_persons", "norm_stove")],
            pl.when(pl.col("coef_milli") > 1000).then(pl.col("coef_row")).alias("coef_row"),
            pl.when(uses_persons).then(pl.col("person_days")).alias("person_days"),
            pl.when(uses_persons).then(pl.col("absent_days")).alias("absent_days"),
            pl.when(uses_persons).then(pl.col("persons_basis")).alias("persons_basis"),
            pl.when(uses_area).then(pl.col("area_centi")).alias("area_centi"),
            pl.when(pl.col("method") == "common_property").then(pl.col("common_area_centi"))
            .alias("common_area_centi"),
            pl.when((pl.col("method") == "common_property") | by_building)
            .then(pl.col("building_area_centi")).alias("building_area_centi"),
            pl.when(uses_meter).then(pl.col("meter_volume_micro")).alias("meter_volume_micro"),
        )
        for f in (water, sewer)
    )
    cols = list(LINE_SCHEMA)
    out = pl.concat([water.select(cols).cast(typed(LINE_SCHEMA)),
                     sewer.select(cols).cast(typed(LINE_SCHEMA))])
    # Lazy: the default (streaming) engine sorts with half the CPU of an eager sort.
    return out.lazy().sort(
        "account_id", "service_id", "supplier_id", "line_from"
    ).collect()


def access_refused(refusals: pl.DataFrame | None, period: Period,
                   thresholds: pl.DataFrame) -> pl.DataFrame:
    """Premises and services with enough unresolved refusal acts before the period.

    Enough: ``access_refusals_min`` (two) of ``thresholds`` (``rules.legal_thresholds``)
    in force on the period's first day.
    """
    schema = typed({"premise_id": pl.String, "service_id": pl.String, "_refused": pl.Boolean})
    if refusals is None or not refusals.height:
        return pl.DataFrame(schema=schema)
    least = threshold(thresholds, "access_refusals_min", period.first)
    open_acts = refusals.filter(
        (pl.col("refused_on") < pl.lit(period.first))
        & (pl.col("resolved_on").is_null() | (pl.col("resolved_on") > pl.lit(period.first))))
    return open_acts.group_by("premise_id", "service_id").agg(pl.len().alias("_n")).filter(
        pl.col("_n") >= least).select("premise_id", "service_id", pl.lit(True).alias("_refused"))


def _premises_with_meter(meters: pl.DataFrame, period: Period) -> pl.DataFrame:
    """Premises and services with an individual meter installed by the period's end."""
    return meters.filter(
        pl.col("premise_id").is_not_null() & (pl.col("installed_on") <= pl.lit(period.last))
        & (pl.col("removed_on").is_null() | (pl.col("removed_on") >= pl.lit(period.first)))
    ).select("premise_id", "service_id").unique().with_columns(
        pl.lit(True).alias("meter_installed")
    )


def amount_without_coefficient() -> pl.Expr:
    """A charge line's amount as it would be without its increasing coefficient (Правила 354 п.42):
    the line's volume × tariff, rounded once; the line's own amount when no coefficient raised it.

    What the coefficient added — 43/пр's «размер превышения платы», the receipt's column and ГИС
    ЖКХ's ``AmountOfExcessFees`` — is the amount less this; the welfare register's charge
    "without the coefficient" is this. Reads ``coef_milli``, ``volume_micro``, ``price_kop``,
    ``amount_kop``.

    >>> pl.DataFrame({"coef_milli": [3000, 1000, None], "volume_micro": [4_745_000, 1_000_000, None],
    ...               "price_kop": [5228, 100, 4500], "amount_kop": [74421, 100, 4500]}).select(
    ...     amount_without_coefficient().alias("base"))["base"].to_list()
    [24807, 100, 4500]
    """
    increased = (pl.col("coef_milli").fill_null(1000) > 1000) & pl.col("volume_micro").is_not_null()
    base = div_half_up(pl.col("volume_micro") * pl.col("price_kop"), MICRO)
    return pl.when(increased).then(base).otherwise(pl.col("amount_kop"))


def _amounts(lines: pl.DataFrame) -> pl.DataFrame:
    d = pl.col("days_in_month")
    method = pl.col("method")
    kind = pl.col("kind")
    area_share = _i("area_centi") * _i("share_e4")  # = S × share × 10⁶
    # Exact volume = num / den (units × 10⁻⁶); amount = num × T × K / (den × 10⁶ × 1000).
    vol_num = (
        pl.when(method.is_in(["meter", "average"]))
        .then(_i("meter_volume_micro") * _i("share_e4") * _i("days"))
        .when(method.is_in(["norm", "norm_increased"]))
        .then(_i("person_days") * _i("norm_micro"))
        .when(kind == "area").then(area_share * _i("days"))
        .when(method.is_in(["heating_meter", "heating_average"]))
        .then(area_share * _i("meter_volume_micro") * _i("days"))
        .when(kind == "heating").then(area_share * _i("norm_micro") * _i("days"))
        .when(kind == "common_property")
        .then(area_share * _i("norm_micro") * _i("common_area_centi") * _i("days"))
        .when(kind == "per_person").then(_i("person_days") * MICRO)
        .when(kind == "fixed").then(_i("days") * MICRO)
    )
    vol_den = (
        pl.when(method.is_in(["meter", "average"])).then(_i("service_days") * 10_000)
        .when(method.is_in(["heating_meter", "heating_average"]))
        .then(d.cast(I128) * MICRO * _i("building_area_centi") // 100)
        .when(kind == "heating").then(d.cast(I128) * MICRO)
        .when(kind == "common_property").then(d.cast(I128) * MICRO * _i("building_area_centi"))
        .otherwise(d.cast(I128))
    )
    # Lazy: the streaming engine evaluates these Int128 branches on both cores, morsel by
    # morsel (measured at 300 000 accounts: 1.2 → 0.5 s).
    return lines.lazy().with_columns(
        pl.when(kind == "fixed").then(pl.lit(None, pl.Int64))
        .otherwise(pl.col("area_centi")).alias("area_centi"),
        div_half_up(vol_num, vol_den).alias("volume_micro"),
        div_half_up(vol_num * _i("price_kop") * _i("coef_milli"), vol_den * MICRO * 1000)
        .alias("amount_kop"),
    ).collect()


def _sewerage(lines: pl.DataFrame, water: pl.DataFrame) -> pl.DataFrame:
    """Sewerage from the account's cold and hot water volumes (by meter, average or norm)."""
    w = water.filter(pl.col("service_id").is_in(SEWERAGE_WATER)).group_by(
        "account_id"
    ).agg(
        pl.col("volume_micro").sum().alias("water_micro"),
        (pl.col("method") == "norm_increased").any().alias("increased"),
        pl.when(pl.col("method").is_in(["norm", "norm_increased"]).any()).then(pl.lit("norm"))
        .when((pl.col("method") == "average").any()).then(pl.lit("average"))
        .otherwise(pl.lit("meter")).alias("sewer_method"),
    )
    lines = lines.join(w, on="account_id", how="left").with_columns(
        pl.col("water_micro").fill_null(0),
        pl.col("sewer_method").fill_null("norm").alias("method"),
        # Off by default: add a sewerage row to increasing_coefficients.csv to switch it on.
        pl.when(pl.col("increased").fill_null(False)).then(pl.col("rule_coef_milli"))
        .otherwise(1000).alias("coef_milli"),
        pl.col("water_micro").fill_null(0).alias("meter_volume_micro"),
        pl.lit(None, pl.Int64).alias("norm_micro"),
        pl.lit(None, pl.Int64).alias("area_centi"),
        pl.lit(None, pl.Int64).alias("common_area_centi"),
        pl.lit(None, pl.Int64).alias("building_area_centi"),
    )
    num = _i("water_micro") * _i("days")
    den = _i("service_days")
    return lines.with_columns(
        div_half_up(num, den).alias("volume_micro"),
        div_half_up(num * _i("price_kop") * _i("coef_milli"), den * MICRO * 1000).alias("amount_kop"),
        pl.when(pl.col("coef_milli") > 1000).then(pl.lit("norm_increased"))
        .otherwise(pl.col("method")).alias("method"),
    )
