"""Measuring ``billing bench``: per-stage clocks and the bare-join baseline.

:class:`StageClock` measures one stage of a benchmark: wall time, the process's
CPU time (user + system of the process and of its finished children, all threads
included), the peak RSS of the process so far and rows a second of the stage's
main output. :func:`bare_charge_join` is the yardstick the close is compared to:
the month's charge lines as one plain Polars join of the same registers
(accounts → premises → building services active in the month → tariffs as of the
month), Int64 kopecks, none of the close's rules (meters, norms, recalculations,
benefits, payments, penalties, balances, writing). The close's time over the bare
join's says what the rules and the bookkeeping cost over moving the same rows.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

#: Service kinds charged by the premise's area in the bare join; every other kind by persons.
AREA_KINDS = ("area", "heating")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
    """The process's peak resident set so far, MB (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@dataclass
class StageClock:
    """Wall and CPU time of one stage, started on creation; :meth:`stop` gives its row."""

    step: str
    wall0: float = field(default_factory=time.perf_counter)
    cpu0: float = field(default_factory=cpu_seconds)

    seconds: float = 0.0  # wall seconds, unrounded, once stopped

    def stop(self, rows: int) -> dict[str, Any]:
        seconds = self.seconds = time.perf_counter() - self.wall0
        return {
            "step": self.step,
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds() - self.cpu0, 2),
            "peak_rss_mb": peak_rss_mb(),
            "rows": rows,
            "rows_per_second": round(rows / seconds) if seconds > 0 else 0,
        }


def _active(frame: pl.LazyFrame, start: str, end: str, first: date, last: date) -> pl.LazyFrame:
    """Rows whose inclusive [start, end] (end null = open) overlaps [first, last]."""
    return frame.filter((pl.col(start).is_null() | (pl.col(start) <= last))
                        & (pl.col(end).is_null() | (pl.col(end) >= first)))


def bare_charge_join(
    accounts: pl.DataFrame,
    premises: pl.DataFrame,
    building_services: pl.DataFrame,
    residents: pl.DataFrame,
    services: pl.DataFrame,
    tariffs: pl.DataFrame,
    first: date,
    last: date,
) -> pl.DataFrame:
    """The month's charge lines as one plain join: account × building service × tariff.

    Columns used: accounts (account_id, premise_id, opened_on, closed_on), premises
    (premise_id, building_id, total_area in m² with 2 decimals), building_services
    (building_id, service_id, supplier_id, from, to), residents (account_id, from,
    to), services (service_id, kind), tariffs (service_id, supplier_id — null for any
    supplier —, from, price_kop). The tariff is the latest ``from`` on or before the
    month's first day, a supplier's own row before the any-supplier one. Amount:
    area × price (kinds :data:`AREA_KINDS`, area in hundredths of m², rounded half
    up to kopecks) or persons living there in the month × price. Returns
    account_id, service_id, supplier_id, amount_kop (Int64).
    """
    acc = _active(accounts.lazy(), "opened_on", "closed_on", first, last).select("account_id", "premise_id")
    prem = premises.lazy().select(
        "premise_id", "building_id",
        (pl.col("total_area").cast(pl.Decimal(18, 2)) * 100).cast(pl.Int64).alias("area_centi"))
    bs = _active(building_services.lazy(), "from", "to", first, last).select(
        "building_id", "service_id", "supplier_id")
    persons = _active(residents.lazy(), "from", "to", first, last).group_by("account_id").agg(
        pl.len().cast(pl.Int64).alias("persons"))
    priced = (tariffs.lazy().filter(pl.col("from") <= first).sort("from")
              .group_by("service_id", "supplier_id").agg(pl.col("price_kop").last()))
    own = priced.filter(pl.col("supplier_id").is_not_null())
    anyone = priced.filter(pl.col("supplier_id").is_null()).select(
        "service_id", pl.col("price_kop").alias("any_price_kop"))
    kinds = services.lazy().select("service_id", "kind")
    lines = (
        acc.join(prem, on="premise_id")
        .join(bs, on="building_id")
        .join(kinds, on="service_id")
        .join(own, on=["service_id", "supplier_id"], how="left")
        .join(anyone, on="service_id", how="left")
        .join(persons, on="account_id", how="left")
        .with_columns(pl.coalesce("price_kop", "any_price_kop").alias("price"))
        .filter(pl.col("price").is_not_null())
        .select(
            "account_id", "service_id", "supplier_id",
            pl.when(pl.col("kind").is_in(AREA_KINDS))
            .then((pl.col("area_centi") * pl.col("price") + 50) // 100)
            .otherwise(pl.col("persons").fill_null(0) * pl.col("price"))
            .cast(pl.Int64).alias("amount_kop"),
        )
    )
    return lines.collect()
