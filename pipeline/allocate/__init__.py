"""Payment allocation (распределение платежей) and balances per account and supplier.

The allocation rules live in :mod:`pipeline.allocate.ledger` (open items per
service, supplier and charge period); :func:`balances` sums a period's movements
per account and supplier.
"""

from __future__ import annotations

import polars as pl

from pipeline.allocate.ledger import PAID_KINDS
from pipeline.ids import CODE, ID_COLUMNS, id_type, typed

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


def balances(
    opening: pl.DataFrame, charges: pl.DataFrame, allocations: pl.DataFrame,
    keys: tuple[str, ...] = ("account_id", "supplier_id"),
    penalties: pl.DataFrame | None = None,
    recalculations: pl.DataFrame | None = None,
    ordered: bool = True,
) -> pl.DataFrame:
    """opening + charged + recalculated + penalty − paid = closing, per ``keys``.

    Per account and supplier by default (the contract's ``balances``); with
    ``("account_id", "service_id", "supplier_id")`` per service too. ``paid`` counts
    money received (and unallocated advances moved to a supplier), not the
    settling of a supplier's own advance against its own debt. The rows come in the order their
    keys first appear (opening, charges, payments, penalties, recalculations); ``ordered=False``:
    in no order, for a caller that sorts them (the group-by without its order takes a third of
    the time).
    """
    keys = list(keys)  # type: ignore[assignment]

    coded_ids = id_type() == CODE  # coded identifiers (pipeline.ids) are integers already

    def coded(frame_: pl.DataFrame, value: str, alias: str) -> pl.LazyFrame:
        # Categorical keys (one process-wide dictionary): the group-by hashes small integers
        # instead of strings; strings again at the end.
        return frame_.lazy().select(*[pl.col(k) if coded_ids and k in ID_COLUMNS
                                      else pl.col(k).cast(pl.Categorical) for k in keys],
                                    pl.col(value).alias(alias))

    parts = [
        coded(opening, "opening_kop", "opening_kop"),
        coded(charges, "amount_kop", "charged_kop"),
        coded(allocations.filter(pl.col("kind").is_in(PAID_KINDS)), "amount_kop", "paid_kop"),
    ]
    extra = {"penalty_kop": penalties, "recalculated_kop": recalculations}
    for name, frame_ in extra.items():
        if frame_ is not None:
            parts.append(coded(frame_, "amount_kop", name))
    # One lazy group-by of all movements (the default, streaming engine needs a fraction of
    # the eager engine's CPU). maintain_order instead of a final sort: deterministic for the
    # same inputs (first appearance: opening, charges, payments, penalties, recalculations).
    frame = pl.concat(parts, how="diagonal").group_by(keys, maintain_order=ordered).agg(
        pl.col("opening_kop").sum(), pl.col("charged_kop").sum(), pl.col("paid_kop").sum(),
        *[pl.col(name).sum() for name, f in extra.items() if f is not None],
    )
    frame = frame.with_columns(
        pl.lit(0, pl.Int64).alias(name) for name, f in extra.items() if f is None
    ).with_columns(
        (pl.col("opening_kop") + pl.col("charged_kop") + pl.col("recalculated_kop")
         + pl.col("penalty_kop") - pl.col("paid_kop")).alias("closing_kop")
    )
    money = ["opening_kop", "charged_kop", "recalculated_kop", "paid_kop", "penalty_kop"]
    frame = frame.filter(pl.any_horizontal(pl.col(c) != 0 for c in money))
    schema = typed({k: pl.String() for k in keys} | {
        k: v for k, v in BALANCE_SCHEMA.items() if k.endswith("_kop")})
    return frame.select(list(schema)).cast(schema).collect()
