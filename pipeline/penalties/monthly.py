"""Penalty accrual inside the monthly close: which buckets, which payments, what to post.

A bucket (account, supplier, charge period) is accrued while it is open: it had
debt at the start of the period or is the period's own charge. Its penalty is
restated cumulatively to the period's last day (the rate of the calculation
day applies to the unpaid rest, ``payment_date`` basis), and the close posts the
difference from the previous close as this period's penalty. A bucket paid off
earlier keeps its last, final figure. Penalties become open items of their own
(service ``penalty``) that only a payment naming them may pay (law.md §4).
"""

from __future__ import annotations

import polars as pl

from pipeline.dates import Period
from pipeline.penalties.accrual import accrue
from pipeline.penalties.policy import PenaltyPolicy

#: The service id of penalty items in the ledger and the balances.
PENALTY_SERVICE = "penalty"

#: Allocation kinds that reduce a bucket's debt on their day.
PAYING_KINDS = ["payment", "advance_offset", "advance_transfer"]


def bucket_schemes(services: pl.DataFrame) -> pl.DataFrame:
    """service_id → penalty scheme (``standard`` | ``capital_repair``)."""
    return services.select("service_id", pl.col("penalty_scheme").alias("scheme"))


def _baseline(previous: pl.DataFrame, buckets: pl.DataFrame, paying: pl.DataFrame,
              policy: PenaltyPolicy) -> pl.DataFrame:
    """``previous`` with the cumulative of each bucket that has a ``baseline_on`` day replaced
    by our own cumulative as of that day.

    A debt older than the first migrated month has no month of charges here: only what was
    left of it when the history starts and the payments since. Its penalty before the move is
    the old system's (in the migrated balances); ours is counted on from the end of the
    history, never recounted back to its due date on a debt path we do not know
    (docs/migration.md, "Debts older than the history").
    """
    key = ["account_id", "supplier_id", "charge_period"]
    marked = previous.filter(pl.col("baseline_on").is_not_null())
    parts = []
    for (day,), rows in marked.partition_by("baseline_on", as_dict=True).items():
        mine = buckets.join(rows.select(key), on=key, how="semi")
        parts.append(accrue(mine, paying, policy, day).select(*key, pl.col("penalty_kop").alias("_base")))
    base = pl.concat(parts) if parts else pl.DataFrame(schema={**{k: previous.schema[k] for k in key},
                                                               "_base": pl.Int64})
    return previous.join(base, on=key, how="left").with_columns(
        pl.when(pl.col("baseline_on").is_not_null()).then(pl.col("_base").fill_null(0))
        .otherwise(pl.col("cumulative_kop")).alias("cumulative_kop")).drop("_base")


def accrue_period(
    period: Period,
    charges_by_period: pl.DataFrame,
    allocations: pl.DataFrame,
    previous: pl.DataFrame,
    services: pl.DataFrame,
    policy: PenaltyPolicy,
) -> pl.DataFrame:
    """This period's penalty per bucket.

    ``charges_by_period``: account_id, service_id, supplier_id, charge_period, amount_kop —
    the charges of every open bucket (earlier periods and this one).
    ``allocations``: ledger allocations of those buckets (earlier and this period).
    ``previous``: account_id, supplier_id, charge_period, cumulative_kop of the last close
    (and optionally ``due_date``: where given, the bucket's due date instead of the rule's;
    ``baseline_on``: where given, the previous cumulative is ours as of that day — a debt
    older than the migrated history continues from there, see :func:`_baseline`).
    Returns account_id, supplier_id, charge_period, scheme, due_date, debt_kop,
    cumulative_kop and amount_kop (this period's posting, cumulative − previous).
    """
    key = ["account_id", "supplier_id", "charge_period"]
    # Lazy group-bys, join and sort: the default (streaming) engine needs a fraction of the
    # eager engine's CPU on these millions of string-keyed rows.
    charged = charges_by_period.lazy().join(bucket_schemes(services).lazy(), on="service_id", how="left")
    buckets = charged.group_by(key).agg(
        pl.col("amount_kop").sum(),
        # A supplier's bucket follows ч.14.1 only when all its services are capital repair.
        pl.when((pl.col("scheme") == "capital_repair").all()).then(pl.lit("capital_repair"))
        .otherwise(pl.lit("standard")).alias("scheme"),
    ).filter(pl.col("amount_kop") > 0).collect()
    periods = buckets["charge_period"].unique().to_list()
    due = pl.DataFrame(
        {"charge_period": periods,
         "due_date": [policy.due_date(Period.parse(p)) for p in periods]},
        schema={"charge_period": pl.String, "due_date": pl.Date},
    )
    buckets = buckets.join(due, on="charge_period")
    if "due_date" in previous.columns:
        # A bucket whose due date the previous close carried (a migrated debt: the old
        # system's due date, docs/migration.md) keeps it; the others fall due by the rule.
        kept = previous.lazy().filter(pl.col("due_date").is_not_null()).select(
            *key, pl.col("due_date").alias("_kept")).collect()
        if kept.height:
            buckets = buckets.join(kept, on=key, how="left").with_columns(
                pl.coalesce("_kept", "due_date").alias("due_date")).drop("_kept")
    paying = allocations.lazy().filter(pl.col("kind").is_in(PAYING_KINDS) & (pl.col("amount_kop") > 0)
                                       & pl.col("charge_period").is_not_null()).group_by(
        [*key, "paid_on"]).agg(pl.col("amount_kop").sum()).collect()
    result = accrue(buckets, paying, policy, period.last)
    if "baseline_on" in previous.columns and previous["baseline_on"].null_count() < previous.height:
        previous = _baseline(previous, buckets, paying, policy)
    out = result.lazy().join(previous.lazy().select(*key, pl.col("cumulative_kop").alias("_prev")), on=key,
                             how="left")
    return out.select(
        *key, "scheme", "due_date", "debt_kop", pl.col("penalty_kop").alias("cumulative_kop"),
        (pl.col("penalty_kop") - pl.col("_prev").fill_null(0)).alias("amount_kop"),
    ).sort(key).collect()
