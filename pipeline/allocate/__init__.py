"""Payment allocation (распределение платежей) and balances per account and supplier.

Version 1 (simple, documented in docs/architecture.md): a payment is split over
the account's charge lines of the period being closed in proportion to their
amounts (п.118 Правил 354: proportional split between services), kopecks by
the largest remainder; an account with no charges this period splits by its
positive opening debts per supplier; with neither, the payment is kept as an
unallocated advance (supplier_id null). Oldest-debt-first, named periods and
penalties are the later allocation stage.
"""

from __future__ import annotations

import polars as pl

from pipeline.money import split_column

ALLOCATION_SCHEMA = pl.Schema({
    "payment_id": pl.String,
    "agent": pl.String,
    "account_id": pl.String,
    "service_id": pl.String,
    "supplier_id": pl.String,
    "charge_period": pl.String,
    "amount_kop": pl.Int64,
})

BALANCE_SCHEMA = pl.Schema({
    "account_id": pl.String,
    "supplier_id": pl.String,
    "opening_kop": pl.Int64,
    "charged_kop": pl.Int64,
    "recalculated_kop": pl.Int64,
    "paid_kop": pl.Int64,
    "penalty_kop": pl.Int64,
    "closing_kop": pl.Int64,
})


def allocate_payments(
    payments: pl.DataFrame, charges: pl.DataFrame, opening: pl.DataFrame, period: str
) -> pl.DataFrame:
    """Split each payment over the account's charge lines (see module docstring).

    ``payments``: payment_id, agent, account_id, amount_kop, period.
    ``charges``: account_id, service_id, supplier_id, amount_kop (lines of ``period``).
    ``opening``: account_id, supplier_id, opening_kop.
    """
    weights = charges.group_by("account_id", "service_id", "supplier_id").agg(
        pl.col("amount_kop").sum().clip(lower_bound=0).alias("weight")
    ).filter(pl.col("weight") > 0)
    debt = opening.filter(pl.col("opening_kop") > 0).select(
        "account_id", pl.lit(None, pl.String).alias("service_id"), "supplier_id",
        pl.col("opening_kop").alias("weight"),
    ).join(weights.select("account_id").unique(), on="account_id", how="anti")
    targets = pl.concat([weights, debt]).sort("account_id", "service_id", "supplier_id",
                                              nulls_last=True)
    targets = targets.with_columns(pl.int_range(pl.len()).over("account_id").alias("order"))

    pay = payments.select("payment_id", "agent", "account_id", "amount_kop",
                          pl.coalesce(pl.col("period"), pl.lit(period)).alias("charge_period"))
    split = split_column(pay.join(targets, on="account_id", how="inner"), "amount_kop", "weight",
                         ["agent", "payment_id"], "order", "share")
    allocated = split.select(
        "payment_id", "agent", "account_id", "service_id", "supplier_id", "charge_period",
        pl.col("share").alias("amount_kop"),
    ).filter(pl.col("amount_kop") != 0)
    advance = pay.join(targets.select("account_id").unique(), on="account_id", how="anti").select(
        "payment_id", "agent", "account_id", pl.lit(None, pl.String).alias("service_id"),
        pl.lit(None, pl.String).alias("supplier_id"), "charge_period", "amount_kop",
    )
    return pl.concat([allocated, advance]).cast(ALLOCATION_SCHEMA).sort(
        "account_id", "payment_id", "service_id", "supplier_id", nulls_last=True
    )


def balances(
    opening: pl.DataFrame, charges: pl.DataFrame, allocations: pl.DataFrame
) -> pl.DataFrame:
    """opening + charged + recalculated + penalty − paid = closing, per account and supplier."""
    keys = ["account_id", "supplier_id"]
    parts = [
        opening.select(*keys, "opening_kop"),
        charges.group_by(keys).agg(pl.col("amount_kop").sum().alias("charged_kop")),
        allocations.group_by(keys).agg(pl.col("amount_kop").sum().alias("paid_kop")),
    ]
    frame = pl.concat(parts, how="diagonal").group_by(keys).agg(
        pl.col("opening_kop").sum(), pl.col("charged_kop").sum(), pl.col("paid_kop").sum()
    )
    frame = frame.with_columns(
        pl.lit(0, pl.Int64).alias("recalculated_kop"), pl.lit(0, pl.Int64).alias("penalty_kop")
    ).with_columns(
        (pl.col("opening_kop") + pl.col("charged_kop") + pl.col("recalculated_kop")
         + pl.col("penalty_kop") - pl.col("paid_kop")).alias("closing_kop")
    )
    money = ["opening_kop", "charged_kop", "recalculated_kop", "paid_kop", "penalty_kop"]
    frame = frame.filter(pl.any_horizontal(pl.col(c) != 0 for c in money))
    return frame.select(list(BALANCE_SCHEMA)).cast(BALANCE_SCHEMA).sort(
        keys, nulls_last=True
    )
