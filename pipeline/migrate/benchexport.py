"""A large synthetic old-system export for benchmarking ``billing migrate load`` (vectorised).

:func:`write_bench_export` writes ``HOME/migration/<register>.csv`` for a city made by
:func:`pipeline.synth.generate_city` and already ingested (it reads the store, not the
register files): ``history_charges``, ``history_payments``, ``history_balances``,
``history_debts``, ``history_readings`` and ``history_meter_volumes`` in our column names
and codes (UTF-8, ``,``, decimal point; no ``mapping.toml``). Unlike
:mod:`pipeline.migrate.synth` (a Python loop, the old system's codes, deliberate errors)
there is no loop over rows: Polars expressions and NumPy arrays over chunks of premises,
appended to the files chunk by chunk (a chunk is written while the next is computed), so
memory follows the chunk, not the city.

The figures reconcile exactly (``billing migrate`` finds no difference):

* charges per account, service and supplier of its building (``building_services``) with a
  tariff in ``rules/tariffs.csv`` (before its first row: the first price less 8 %), in
  integer kopecks: area × tariff (maintenance, capital repair), area × norm × tariff
  (heating), persons × tariff (waste), share × tariff (intercom), the premise's meter
  volume × share or norm × persons (water, electricity; sewerage = cold + hot), the common
  property norm × common area × area / building area (СОИ); only the months the account is
  open;
* per account a behaviour drawn from a hash of the account and ``seed``: 60 % pay last
  month's bill during the month (one payment without a split: our ledger pays the oldest
  debt first and finds exactly the bill), 25 % pay the month's bill in the same month,
  5 % pay last month's bill split by service, supplier and month, 10 % are debtors who pay
  like the first group until a month and never after. The next-month payers, the split ones
  and the debtors open the history with a debt of the first month's bill (dated the month
  before), which the first month's payment clears; one payment per account and month;
* balances per account, service, supplier and month (opening and closing, every row);
* the last month's debts by the month they arose (due dates by ``rules/due_dates.csv``);
* meter readings before the city's own (monotonic, backwards from the meter's first reading
  in the register by its median monthly consumption) and the monthly volumes (the
  difference of two readings, else the meter's average).

No penalties and no recalculations. Money is integer kopecks throughout, written as
``123.45`` exactly (the integer as a Decimal with its point moved, never a float).
Pseudo-randomness is Polars hashing of the account or meter with ``seed``: the same seed,
city and Polars version give byte-identical files.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import IO

import numpy as np
import polars as pl

from pipeline.calc.due import due_date
from pipeline.dates import Period
from pipeline.workspace import BillingError, Workspace

__all__ = ["FILES", "write_bench_export"]

#: The files written, in order.
FILES = ("history_charges", "history_payments", "history_balances", "history_debts", "history_readings",
         "history_meter_volumes")

#: Premises per chunk (about as many accounts): ~3 M charge lines at 24 months, ~3 GB peak.
CHUNK_PREMISES = 10_000

_METERED = ("cold_water", "hot_water", "electricity")
_SEWERAGE_VI = len(_METERED)
# Methods of a charge line (and the kinds of service that give their own method), as codes.
_M_AREA, _M_HEATING, _M_PERSON, _M_FIXED, _M_SOI, _M_METER, _M_AVERAGE, _M_NORM = range(8)
_METHODS = {_M_AREA: "area", _M_HEATING: "heating", _M_PERSON: "per_person", _M_FIXED: "fixed",
            _M_SOI: "common_property", _M_METER: "meter", _M_AVERAGE: "average", _M_NORM: "norm"}
_K_AREA, _K_HEATING, _K_PERSON, _K_FIXED, _K_SOI, _K_METERED = (_M_AREA, _M_HEATING, _M_PERSON, _M_FIXED,
                                                                _M_SOI, 8)
_KINDS = {"maintenance": _K_AREA, "capital_repair": _K_AREA, "heating": _K_HEATING, "waste": _K_PERSON,
          "intercom": _K_FIXED, "cold_water": _K_METERED, "hot_water": _K_METERED, "electricity": _K_METERED,
          "sewerage": _K_METERED, "cold_water_soi": _K_SOI, "hot_water_soi": _K_SOI, "sewerage_soi": _K_SOI,
          "electricity_soi": _K_SOI}
#: Typical monthly volume of a meter without readings, micro-units: (least, spread) for the hash.
_STEP = {"cold_water": (2_000_000, 2_000), "hot_water": (1_500_000, 1_500), "electricity": (60_000_000, 90)}
_STEP_UNIT = {"cold_water": 1_000, "hot_water": 1_000, "electricity": 1_000_000}
_HEATING_NORM_MICRO = 19_800
_AGENTS = ("sber", "post", "lk")
_KEY = ["account_id", "service_id", "supplier_id"]
# Behaviours: next-month payer, same-month payer, split payer, debtor.
_NEXT, _SAME, _SPLIT, _DEBTOR = 0, 1, 2, 3


# --------------------------------------------------------------------------- helpers


def _rnd(num: pl.Expr, den: int | pl.Expr) -> pl.Expr:
    """``num / den`` rounded half up, for ``num >= 0`` (integers throughout)."""
    return (num * 2 + den) // (den * 2)


def _scaled_text(value: pl.Expr, scale: int) -> pl.Expr:
    """Integer units of ``10**-scale`` as text with ``scale`` decimals: ``-12345``, 2 -> ``-123.45``.

    Exact: the integer becomes a Decimal and its point moves (no float anywhere); Polars writes
    a Decimal with all its places. Three times faster than slicing the digits as strings.
    """
    point = pl.lit(Decimal(1).scaleb(-scale), pl.Decimal(38, scale))
    return (value.cast(pl.Decimal(38, 0)) * point).cast(pl.String)


def _rub(kop: pl.Expr) -> pl.Expr:
    """Kopecks as rubles with two decimals: ``-12345`` -> ``-123.45``, ``5`` -> ``0.05``."""
    return _scaled_text(kop, 2)


def _micro(value: pl.Expr) -> pl.Expr:
    """Micro-units as a decimal with six places: ``1500`` -> ``0.001500``."""
    return _scaled_text(value, 6)


def _int(col: str, scale: int) -> pl.Expr:
    """A Decimal column as an exact integer of ``10**-scale`` units."""
    return (pl.col(col).cast(pl.Decimal(38, scale)) * 10 ** scale).cast(pl.Int64)


def _index(day: pl.Expr, first: Period) -> pl.Expr:
    """The month index of a date relative to ``first`` (0 = first)."""
    return (day.dt.year().cast(pl.Int64) * 12 + day.dt.month().cast(pl.Int64)
            - (first.year * 12 + first.month))


def _hash(*cols: pl.Expr, seed: int) -> pl.Expr:
    return pl.concat_str(*[c.cast(pl.String) for c in cols], separator="|").hash(seed)


def city_start(regs: dict[str, pl.DataFrame]) -> Period:
    """The city's first demo month from the store (as :func:`pipeline.migrate.synth.city_start`)."""
    from pipeline.synth import DEMO_START, INDIVIDUAL_HISTORY_MONTHS

    meters = regs["meters"].filter(pl.col("premise_id").is_not_null()).select("meter_id")
    first = regs["readings"].join(meters, on="meter_id", how="semi")["read_on"].min()
    if first is None:
        return Period.parse(DEMO_START)
    assert isinstance(first, date)
    return Period.of(first).shift(INDIVIDUAL_HISTORY_MONTHS)


def _in_force(rows: list[tuple[date, int]], period: Period, lower_before: bool) -> int | None:
    """The value of a dated rule row in force on the month's first day; before the first row
    the first value (less 8 % when ``lower_before``: the old system's lower price)."""
    if not rows:
        return None
    in_force = [v for d, v in rows if d <= period.first]
    if in_force:
        return in_force[-1]
    return (rows[0][1] * 92 + 50) // 100 if lower_before else rows[0][1]


def _prices(tariffs: pl.DataFrame, pairs: pl.DataFrame, window: list[Period]) -> pl.DataFrame:
    """(service_id, supplier_id, mi, price_kop): the tariff of each service and supplier a month."""
    by: dict[tuple[str, str], list[tuple[date, int]]] = {}
    for service, supplier, start, kop in tariffs.select(
            "service_id", pl.col("supplier_id").fill_null(""), "from", _int("price", 2)
    ).sort("from").iter_rows():
        by.setdefault((service, supplier), []).append((start, kop))
    rows = []
    for service, supplier in pairs.iter_rows():  # a few dozen pairs × months: not per account
        dated = by.get((service, supplier)) or by.get((service, ""), [])
        for mi, period in enumerate(window):
            price = _in_force(dated, period, lower_before=True)
            if price is not None:
                rows.append((service, supplier, mi, price))
    return pl.DataFrame(rows, schema={"service_id": pl.String, "supplier_id": pl.String, "mi": pl.Int64,
                                      "price_kop": pl.Int64}, orient="row")


def _norms(norms: pl.DataFrame, window: list[Period]) -> pl.DataFrame:
    """(service_id, mi, norm_micro)."""
    by: dict[str, list[tuple[date, int]]] = {}
    for service, start, micro in norms.select("service_id", "from", _int("value", 6)).sort(
            "from").iter_rows():
        by.setdefault(service, []).append((start, micro))
    rows = [(s, mi, _in_force(dated, p, lower_before=False)) for s, dated in sorted(by.items())
            for mi, p in enumerate(window)]
    return pl.DataFrame(rows, schema={"service_id": pl.String, "mi": pl.Int64, "norm_micro": pl.Int64},
                        orient="row")


def _months(window: list[Period]) -> pl.DataFrame:
    """The months by index ``mi`` (0 = the first of ``window``; -1 = the month before it)."""
    every = [window[0].shift(-1), *window]
    return pl.DataFrame({
        "mi": list(range(-1, len(window))), "period": [str(p) for p in every],
        "year": [p.year for p in every], "month": [p.month for p in every],
        "m_first": [p.first for p in every], "m_last": [p.last for p in every]},
        schema={"mi": pl.Int64, "period": pl.String, "year": pl.Int32, "month": pl.Int8, "m_first": pl.Date,
                "m_last": pl.Date})


# --------------------------------------------------------------------------- one chunk


def _city_readings(meters: pl.DataFrame, readings: pl.DataFrame, window: list[Period]) -> pl.DataFrame:
    """Per meter ``mk`` and month -1 .. n-1 with a register reading: its last ``city_value``; and
    per meter (on every row) the month ``f`` and value ``v0`` of its first reading and ``typical``,
    the median month-to-month difference of its readings (null with fewer than two months)."""
    n, first = len(window), window[0]
    city = readings.join(meters.select("meter_id", "mk"), on="meter_id", how="inner").select(
        "mk", "read_on", _int("value", 6).alias("value"), _index(pl.col("read_on"), first).alias("mi")
    ).sort("mk", "read_on").unique(["mk", "mi"], keep="last", maintain_order=True)
    d = (pl.col("value") - pl.col("value").shift(1)).over("mk")
    gap = (pl.col("mi") - pl.col("mi").shift(1)).over("mk")
    per_meter = city.with_columns(d.alias("d"), gap.alias("gap")).group_by("mk").agg(
        pl.col("mi").first().alias("f"), pl.col("value").first().alias("v0"),
        pl.col("d").filter((pl.col("gap") == 1) & (pl.col("d") >= 0)).sort().alias("diffs"))
    per_meter = per_meter.with_columns(
        pl.col("diffs").list.get(pl.col("diffs").list.len() // 2, null_on_oob=True).alias("typical")
    ).drop("diffs")
    return city.filter(pl.col("mi").is_between(-1, n - 1)).select(
        "mk", "mi", pl.col("value").alias("city_value")).join(per_meter, on="mk", how="full", coalesce=True)


def _meters(meters: pl.DataFrame, city: pl.DataFrame, window: list[Period], months: pl.DataFrame,
            ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(history_readings rows, history_meter_volumes rows, volumes per premise ``pi``, ``si`` and ``mi``)."""
    n = len(window)
    city = city.join(meters.select("mk"), on="mk", how="semi")
    first_read = city.group_by("mk").agg(pl.col("f", "v0", "typical").first())
    in_city = city.filter(pl.col("mi").is_not_null()).select("mk", "mi", "city_value")
    m = meters.join(first_read, on="mk", how="left").with_columns(
        pl.col("f").fill_null(n), pl.col("typical").fill_null(pl.col("guess")))
    # Readings back to the month before the history stay above the initial value.
    room = (pl.col("v0") - pl.col("initial")) // (pl.col("f") + 2)
    m = m.with_columns(
        pl.when(pl.col("v0").is_null()).then(pl.col("typical"))
        .otherwise(pl.min_horizontal(pl.col("typical"), pl.max_horizontal(room, pl.lit(0)))).alias("step"))
    m = m.with_columns((pl.col("step") // pl.col("unit") * pl.col("unit")).alias("step")).with_columns(
        pl.col("v0").fill_null(pl.col("initial") + pl.col("step") * (n + 1)))
    # Readings at the months -1 .. n-1: the city's (the month's last), else invented before the first.
    grid = m.join(months.select("mi", "year", "month", "m_first", "m_last"), how="cross").join(
        in_city, on=["mk", "mi"], how="left").sort("mk", "mi")
    day = (15 + (pl.col("mhash") + pl.col("mi") * 7) % 11).cast(pl.Int8)
    grid = grid.with_columns(pl.date(pl.col("year"), pl.col("month"), day).alias("read_on"))
    invented = (pl.col("mi") < pl.col("f")) & (
        pl.col("installed_on").is_null() | (pl.col("installed_on") <= pl.col("read_on"))) & (
        pl.col("removed_on").is_null() | (pl.col("removed_on") > pl.col("read_on")))
    grid = grid.with_columns(
        pl.when(invented).then(pl.max_horizontal(
            pl.col("initial"), pl.col("v0") - pl.col("step") * (pl.col("f") - pl.col("mi"))))
        .alias("invented")).with_columns(
        pl.when(pl.col("mi") < pl.col("f")).then(pl.col("invented")).otherwise(pl.col("city_value"))
        .alias("reading"))
    emitted = grid.filter(pl.col("invented").is_not_null()).select(
        "meter_id", pl.col("read_on").dt.to_string("%Y-%m-%d").alias("read_on"),
        _micro(pl.col("invented")).alias("value"))
    # Rows are (mk, mi) in order, every meter from -1: the row before is the month before.
    grid = grid.with_columns(pl.col("reading").shift(1).alias("before"),
                             pl.col("m_first").shift(1).alias("prev_first")).filter(pl.col("mi") >= 0)
    active = (pl.col("installed_on").is_null() | (pl.col("installed_on") <= pl.col("prev_first"))) & (
        pl.col("removed_on").is_null() | (pl.col("removed_on") > pl.col("m_last")))
    diff = pl.col("reading") - pl.col("before")
    measured = pl.col("reading").is_not_null() & pl.col("before").is_not_null() & (diff >= 0)
    vols = grid.filter(active).select(
        "meter_id", "pi", "si", "mi", measured.alias("measured"),
        pl.when(measured).then(diff).otherwise(pl.col("step")).alias("volume"))
    volume_rows = vols.join(months.select("mi", "period"), on="mi", how="left").select(
        "meter_id", "period", pl.when(pl.col("measured")).then(pl.lit("meter")).otherwise(pl.lit("average"))
        .alias("method"), _micro(pl.col("volume")).alias("volume"))
    by_premise = vols.group_by("pi", "si", "mi").agg(
        pl.col("volume").sum().alias("meter_micro"), pl.col("measured").all().alias("meter_measured"))
    return emitted, volume_rows, by_premise


@dataclass(frozen=True)
class _City:
    """What every chunk needs, keyed by small integers (li a service and supplier, mi a month, …)."""

    window: list[Period]
    months: pl.DataFrame  # mi, period, year, month, m_first, m_last (mi -1 .. n-1)
    pairs: pl.DataFrame  # li, service_id, supplier_id, kind, vi
    offer: pl.DataFrame  # bi, mi, li, kind, vi, price_kop, norm_micro: a building's services a month
    water_norms: pl.DataFrame  # si, mi, norm_micro
    residents: pl.DataFrame  # ai, from, to
    city: pl.DataFrame  # _city_readings
    due: pl.Series  # due date text by mi


def _text(frame: pl.DataFrame, acc_ids: pl.Series, c: _City) -> pl.DataFrame:
    """``frame`` with its code columns as text: ``account_id`` from ``al``, ``period`` from ``mi``,
    ``service_id`` and ``supplier_id`` from ``li`` (an index into small series: a take, no join)."""
    periods = c.months.filter(pl.col("mi") >= 0)["period"]
    out = {}
    if "al" in frame.columns:
        out["account_id"] = acc_ids.gather(frame["al"])
    if "mi" in frame.columns:
        out["period"] = periods.gather(frame["mi"])
    if "li" in frame.columns:
        out["service_id"] = c.pairs["service_id"].gather(frame["li"])
        out["supplier_id"] = c.pairs["supplier_id"].gather(frame["li"])
    return frame.with_columns(**out)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def _cells(at: np.ndarray, n: int, big_l: int) -> pl.DataFrame:
    """Flat indices of (al, mi, li) arrays as the three columns."""
    return pl.DataFrame({"al": at // (n * big_l), "mi": at // big_l % n, "li": at % big_l})


def _chunk(acc: pl.DataFrame, meters: pl.DataFrame, c: _City) -> dict[str, pl.DataFrame]:
    n, big_l = len(c.window), c.pairs.height
    before_first = str(c.window[0].shift(-1))
    readings_rows, volume_rows, by_premise = _meters(meters, c.city, c.window, c.months)
    inside = c.months.filter(pl.col("mi") >= 0)
    acc = acc.sort("ai").with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("al"))
    acc_ids = acc["account_id"]
    # Accounts × months they are open.
    am = acc.select("al", "pi", "bi", "share_e4", "area_micro", "total_centi", "common_centi", "opened_on",
                    "closed_on").join(inside.select("mi", "m_first", "m_last"), how="cross").filter(
        (pl.col("opened_on").is_null() | (pl.col("opened_on") <= pl.col("m_last")))
        & (pl.col("closed_on").is_null() | (pl.col("closed_on") >= pl.col("m_first"))))
    persons = c.residents.join(acc.select("ai", "al"), on="ai", how="inner").join(
        inside.select("mi", "m_first", "m_last"), how="cross").filter(
        (pl.col("from").is_null() | (pl.col("from") <= pl.col("m_last")))
        & (pl.col("to").is_null() | (pl.col("to") >= pl.col("m_first")))).group_by("al", "mi").agg(
        pl.len().cast(pl.Int64).alias("persons"))
    am = am.join(persons, on=["al", "mi"], how="left").with_columns(pl.col("persons").fill_null(0))
    # Water and electricity volumes (vi = si): the premise's meters × share, else norm × persons.
    metered = pl.col("meter_micro").is_not_null()
    water = am.select("al", "pi", "mi", "persons", "share_e4").join(
        pl.DataFrame({"si": list(range(len(_METERED)))}, schema={"si": pl.Int64}), how="cross").join(
        by_premise, on=["pi", "si", "mi"], how="left").join(
        c.water_norms, on=["si", "mi"], how="left").select(
        "al", "mi", pl.col("si").alias("vi"),
        pl.when(metered).then(_rnd(pl.col("meter_micro") * pl.col("share_e4"), 10_000))
        .when(pl.col("persons") > 0).then(pl.col("norm_micro") * pl.col("persons")).alias("vol"),
        pl.when(metered).then(pl.when(pl.col("meter_measured")).then(_M_METER).otherwise(_M_AVERAGE))
        .otherwise(_M_NORM).alias("vol_method")).filter(pl.col("vol").is_not_null())
    sewerage = water.filter(pl.col("vi") < 2).group_by("al", "mi").agg(
        pl.col("vol").sum(),
        pl.when((pl.len() == 2) & (pl.col("vol_method") == _M_METER).all()).then(_M_METER).otherwise(_M_NORM)
        .alias("vol_method")).with_columns(pl.lit(_SEWERAGE_VI, pl.Int64).alias("vi"))
    vols = pl.concat([water, sewerage.select(water.columns)])
    lines = am.drop("opened_on", "closed_on", "m_first", "m_last").join(c.offer, on=["bi", "mi"], how="inner")
    # The volume of a water or electricity line: a take from a dense (al, mi, vi) array, not a join.
    slots = acc.height * n * (_SEWERAGE_VI + 1)
    at = ((vols["al"] * n + vols["mi"]) * (_SEWERAGE_VI + 1) + vols["vi"]).to_numpy()
    dense_vol = np.full(slots, -1, dtype=np.int64)
    dense_vol[at] = vols["vol"].to_numpy()
    dense_method = np.zeros(slots, dtype=np.int64)
    dense_method[at] = vols["vol_method"].to_numpy()
    where = ((lines["al"] * n + lines["mi"]) * (_SEWERAGE_VI + 1) + lines["vi"].fill_null(0)).to_numpy()
    got = np.where(lines["vi"].is_null().to_numpy(), -1, dense_vol[where])
    lines = lines.with_columns(pl.Series("vol", got).replace(-1, None),
                               pl.Series("vol_method", dense_method[where]))
    k = pl.col("kind")
    soi = _rnd(_rnd(pl.col("norm_micro").fill_null(0) * pl.col("common_centi") * 1000, pl.col("total_centi"))
               * pl.col("area_micro"), 1_000_000_000)
    heat = _rnd(pl.col("area_micro") * pl.col("norm_micro").fill_null(_HEATING_NORM_MICRO), 1_000_000)
    lines = lines.select(
        "al", "li", "mi", "price_kop",
        pl.when(k == _K_METERED).then(pl.col("vol_method")).otherwise(k).alias("method"),
        pl.when(k == _K_AREA).then(pl.col("area_micro")).when(k == _K_HEATING).then(heat)
        .when(k == _K_PERSON).then(pl.col("persons") * 1_000_000).when(k == _K_FIXED)
        .then(pl.col("share_e4") * 100).when(k == _K_SOI).then(soi).otherwise(pl.col("vol")).alias("volume"),
    ).with_columns(_rnd(pl.col("volume") * pl.col("price_kop"), 1_000_000).alias("c")).filter(
        pl.col("volume").is_not_null() & (pl.col("c") > 0))
    # Dense (al, mi, li) arrays: C order is the files' order (account, month, service, supplier).
    a_count = acc.height
    cells = a_count * n * big_l
    idx = ((lines["al"] * n + lines["mi"]) * big_l + lines["li"]).to_numpy()
    pointer = np.full(cells, -1, dtype=np.int64)
    pointer[idx] = np.arange(len(idx), dtype=np.int64)
    lines = lines[pointer[pointer >= 0]]
    charges = _text(lines, acc_ids, c).select(
        "account_id", "period", "service_id", "supplier_id",
        pl.col("method").replace_strict(_METHODS, return_dtype=pl.String).alias("method"),
        _micro(pl.col("volume")).alias("volume"), _rub(pl.col("price_kop")).alias("tariff"),
        _rub(pl.col("c")).alias("amount"))

    # Every line of an account, every month (0 where not charged): the money month by month.
    flat = np.zeros(cells, dtype=np.int64)
    flat[pointer >= 0] = lines["c"].to_numpy()
    charged = flat.reshape(a_count, n, big_l)
    beh = acc["beh"].to_numpy()[:, None, None]
    stop = acc["stop"].to_numpy()[:, None, None]
    month = np.arange(n, dtype=np.int64)[None, :, None]
    opening_debt = np.where(beh[:, 0] != _SAME, charged[:, 0, :], 0)[:, None, :]
    prev = np.concatenate([opening_debt, charged[:, :-1, :]], axis=1)
    paid = np.where(beh == _SAME, charged, np.where((beh != _DEBTOR) | (month < stop), prev, 0))
    closing = opening_debt + np.cumsum(charged - paid, axis=1)
    opening = closing - charged + paid
    at = np.flatnonzero((charged != 0) | (paid != 0) | (closing != 0) | (opening != 0))
    cells_at = _cells(at, n, big_l).with_columns(
        pl.Series("opening", opening.ravel()[at]), pl.Series("closing", closing.ravel()[at]))
    balances = _text(cells_at, acc_ids, c).select(
        "account_id", "period", "service_id", "supplier_id", _rub(pl.col("opening")).alias("opening"),
        _rub(pl.col("closing")).alias("closing"))

    # Payments: one a month per account; the split ones per service and supplier for last month.
    is_split = beh[:, :, 0] == _SPLIT
    per_month = paid.sum(axis=2)
    at_whole = np.flatnonzero((per_month > 0) & ~is_split)
    at_parts = np.flatnonzero((paid > 0) & is_split[:, :, None])
    whole = pl.DataFrame({"al": at_whole // n, "mi": at_whole % n, "p": per_month.ravel()[at_whole]}
                         ).with_columns(pl.lit(None, pl.Int64).alias("li"))
    parts = _cells(at_parts, n, big_l).with_columns(pl.Series("p", paid.ravel()[at_parts]))
    pays = pl.concat([whole, parts.select(whole.columns)]).sort(
        (pl.col("al") * n + pl.col("mi")) * (big_l + 1) + pl.col("li").fill_null(big_l))
    info = acc.select("beh", "agent", "h")
    pays = pays.with_columns(*[info[col].gather(pays["al"]) for col in info.columns])
    day = pl.when(pl.col("beh") == _SAME).then(20 + (pl.col("h") // 7 + pl.col("mi")) % 9).otherwise(
        1 + (pl.col("h") // 7 + pl.col("mi") * 5) % 25).cast(pl.Int8)
    split = pays["li"].is_not_null()
    text = _text(pays.with_columns(pl.col("li").fill_null(0)), acc_ids, c)
    months = c.months.select("mi", "year", "month")
    text = text.join(months, on="mi", how="left", maintain_order="left").join(
        c.months.select((pl.col("mi") + 1).alias("mi"), pl.col("period").alias("charge_period")), on="mi",
        how="left", maintain_order="left")
    payments = text.with_columns(split.alias("split")).select(
        pl.concat_str(pl.lit("B"), pl.col("account_id"), pl.lit("-"), pl.col("year").cast(pl.String),
                      pl.col("month").cast(pl.String).str.zfill(2)).alias("payment_id"),
        pl.col("agent").replace_strict(dict(enumerate(_AGENTS)), return_dtype=pl.String).alias("agent"),
        "account_id", pl.date(pl.col("year"), pl.col("month"), day).dt.to_string("%Y-%m-%d").alias("paid_on"),
        "period", _rub(pl.col("p")).alias("amount"),
        *[pl.when(pl.col("split")).then(pl.col(col)).alias(col) for col in ("service_id", "supplier_id")],
        pl.when(pl.col("split")).then(pl.col("charge_period").fill_null(pl.lit(before_first)))
        .alias("charge_period"))

    # The last month's debts: every month not paid (a debtor's since it stopped, the others' last), in
    # (account, service, supplier, month) order: the arrays as (al, li, mi).
    unpaid_from = np.where(beh == _DEBTOR, stop - 1, n - 1)
    owing = ((beh != _SAME) & (month >= unpaid_from) & (charged != 0)).transpose(0, 2, 1)
    at = np.flatnonzero(owing)
    al, li, mi = at // (big_l * n), at // n % big_l, at % n
    debts = pl.DataFrame({"al": al, "li": li, "mi": mi, "c": charged[al, mi, li]})
    debts = _text(debts, acc_ids, c).with_columns(c.due.gather(debts["mi"]).alias("due_date")).select(
        *_KEY, pl.col("period").alias("charge_period"), _rub(pl.col("c")).alias("amount"), "due_date")
    return {"history_charges": charges, "history_payments": payments, "history_balances": balances,
            "history_debts": debts, "history_readings": readings_rows, "history_meter_volumes": volume_rows}


# --------------------------------------------------------------------------- the export


def write_bench_export(home: Path, months: int = 24, last: Period | None = None, seed: int = 7,
                       chunk_premises: int = CHUNK_PREMISES) -> dict[str, int]:
    """Write the benchmark export of the ingested city in ``home`` into ``home/migration/``.

    ``months`` months ending at ``last`` (default: the month before the city's first demo
    month, as :func:`pipeline.migrate.synth.write_old_export`). Returns the rows written per
    file (by register name). The files are built ``chunk_premises`` premises at a time and
    appended (peak memory follows the chunk, not the city); an earlier ``mapping.toml`` and
    ``history_penalties``/``history_recalculations`` files are removed (they would not fit).
    """
    from pipeline.ingest.registers import load_store
    from rules import read_rule_table

    if months < 1:
        raise ValueError("нужен хотя бы один месяц истории")
    ws = Workspace(Path(home))
    regs = load_store(ws, names=["accounts", "premises", "buildings", "building_services", "residents",
                                 "meters", "readings", "organizations"])
    last = last if last is not None else city_start(regs).shift(-1)
    window = [last.shift(i - months + 1) for i in range(months)]
    months_frame = _months(window)
    due_rules = read_rule_table(ws.rules, "due_dates")
    due = pl.DataFrame({"mi": list(range(months)),
                        "due_date": [_iso(due_date(due_rules, p)) for p in window]},
                       schema={"mi": pl.Int64, "due_date": pl.String})
    suppliers = regs["organizations"]["org_id"].implode()
    bs = regs["building_services"].filter(pl.col("supplier_id").is_in(suppliers)
                                          & pl.col("service_id").is_in(list(_KINDS)))
    vi = {s: i for i, s in enumerate(_METERED)} | {"sewerage": _SEWERAGE_VI}
    pairs = bs.select("service_id", "supplier_id").unique().sort("service_id", "supplier_id").with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("li"),
        pl.col("service_id").replace_strict(_KINDS, return_dtype=pl.Int64).alias("kind"),
        pl.col("service_id").replace_strict(vi, default=None, return_dtype=pl.Int64).alias("vi"))
    norms = _norms(read_rule_table(ws.rules, "norms"), window)
    tariffs = read_rule_table(ws.rules, "tariffs")
    prices = _prices(tariffs, pairs.select("service_id", "supplier_id"), window).join(
        pairs.select("service_id", "supplier_id", "li"), on=["service_id", "supplier_id"]).join(
        norms, on=["service_id", "mi"], how="left").select("li", "mi", "price_kop", "norm_micro")
    water_norms = pl.DataFrame({"service_id": list(_METERED), "si": list(range(len(_METERED)))},
                               schema={"service_id": pl.String, "si": pl.Int64}).join(
        norms, on="service_id").select("si", "mi", "norm_micro")
    buildings = regs["buildings"].sort("building_id").with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("bi"))
    inside = months_frame.filter(pl.col("mi") >= 0)
    offer = bs.join(buildings.select("building_id", "bi"), on="building_id").join(
        pairs.select("service_id", "supplier_id", "li", "kind", "vi"), on=["service_id", "supplier_id"]).join(
        inside.select("mi", "m_first", "m_last"), how="cross").filter(
        (pl.col("from").is_null() | (pl.col("from") <= pl.col("m_last")))
        & (pl.col("to").is_null() | (pl.col("to") >= pl.col("m_first")))).join(
        prices, on=["li", "mi"], how="inner").select(
        "bi", "mi", "li", "kind", "vi", "price_kop", "norm_micro")

    h = _hash(pl.col("account_id"), seed=seed)
    pct = (h % 100).cast(pl.Int64)
    premise_index = regs["premises"].select("premise_id").unique().sort("premise_id").with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("pi"))
    accounts = regs["accounts"].sort("account_id").with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("ai")).join(regs["premises"].select(
            "premise_id", "building_id", _int("total_area", 2).alias("area_centi")), on="premise_id").join(
        premise_index, on="premise_id").join(buildings.select(
            "building_id", "bi", _int("total_area", 2).alias("total_centi"),
            _int("common_area", 2).alias("common_centi")), on="building_id", how="left").select(
        "ai", "account_id", "pi", "bi", "opened_on", "closed_on", "total_centi", "common_centi",
        _int("share", 4).fill_null(10_000).alias("share_e4"),
        # area × share in micro-m² (centi × 10⁻⁴): exact
        (pl.col("area_centi") * _int("share", 4).fill_null(10_000)).alias("area_micro"),
        (h // 100).cast(pl.Int64).alias("h"),
        pl.when(pct < 60).then(_NEXT).when(pct < 85).then(_SAME).when(pct < 90).then(_SPLIT)
        .otherwise(_DEBTOR).cast(pl.Int64).alias("beh"),
        (1 + (h // 100 % max(1, months - 1)).cast(pl.Int64)).alias("stop"),
        (h // 10_000 % len(_AGENTS)).cast(pl.Int64).alias("agent"),
    ).sort("pi", "ai")
    if not accounts.height:
        raise BillingError("В хранилище нет лицевых счетов: сначала создайте город и выполните "
                           "«billing ingest».")
    si = {s: i for i, s in enumerate(_METERED)}
    mk = pl.int_range(pl.len(), dtype=pl.Int64)
    unit = pl.col("service_id").replace_strict(_STEP_UNIT, return_dtype=pl.Int64)
    least = pl.col("service_id").replace_strict({s: v[0] for s, v in _STEP.items()}, return_dtype=pl.Int64)
    spread = pl.col("service_id").replace_strict({s: v[1] for s, v in _STEP.items()}, return_dtype=pl.UInt64)
    mhash = _hash(pl.col("meter_id"), seed=seed)
    meters = regs["meters"].filter(
        pl.col("premise_id").is_not_null() & pl.col("service_id").is_in(_METERED)).sort("meter_id").join(
        premise_index, on="premise_id").select(
        mk.alias("mk"), "meter_id", "pi",
        pl.col("service_id").replace_strict(si, return_dtype=pl.Int64).alias("si"),
        "installed_on", "removed_on", _int("initial_value", 6).alias("initial"),
        (least + (mhash % spread).cast(pl.Int64) * unit).alias("guess"), unit.alias("unit"),
        (mhash // 100 % 1000).cast(pl.Int64).alias("mhash")).sort("pi", "mk")
    residents = regs["residents"].join(accounts.select("account_id", "ai"), on="account_id").select(
        "ai", "from", "to")
    city = _City(window, months_frame, pairs, offer, water_norms, residents,
                 _city_readings(meters, regs["readings"], window), due["due_date"])
    premises = accounts["pi"].unique().sort()

    out = ws.home / "migration"
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("mapping.toml", "history_penalties.csv", "history_recalculations.csv"):
        (out / stale).unlink(missing_ok=True)
    tmp = {name: out / f"{name}.csv.tmp" for name in FILES}
    handles: dict[str, IO[bytes]] = {name: open(path, "wb") for name, path in tmp.items()}  # noqa: SIM115
    rows = dict.fromkeys(FILES, 0)

    def write(frames: dict[str, pl.DataFrame], header: bool) -> None:
        for name in FILES:
            frames[name].write_csv(handles[name], include_header=header)
            rows[name] += frames[name].height

    # One chunk is written (Polars leaves the GIL) while the next one is computed; in order.
    pending: Future[None] | None = None
    try:
        with ThreadPoolExecutor(max_workers=1) as writer:
            for start in range(0, len(premises), chunk_premises):
                low, high = premises[start], premises[min(start + chunk_premises, len(premises)) - 1]
                frames = _chunk(accounts.filter(pl.col("pi").is_between(low, high)),
                                meters.filter(pl.col("pi").is_between(low, high)), city)
                if pending is not None:
                    pending.result()
                pending = writer.submit(write, frames, start == 0)
                del frames
            if pending is not None:
                pending.result()
    except BaseException:
        for fh in handles.values():
            fh.close()
        for path in tmp.values():
            path.unlink(missing_ok=True)
        raise
    for fh in handles.values():
        fh.close()
    for name, path in tmp.items():
        os.replace(path, out / f"{name}.csv")
    return rows
