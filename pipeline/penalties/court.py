"""``billing statement``: the court statement (расчёт задолженности и пени) of one account.

Gathers the account's charges per supplier and period and the payments allocated
to them from the sealed periods, and hands them to
:func:`pipeline.penalties.statement.write_statement`. For court the rate basis is
the calculation (decision) day (Обзор ВС РФ № 3 (2016), вопрос 3).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from pipeline.penalties import load_policy
from pipeline.penalties.monthly import PAYING_KINDS, bucket_schemes
from pipeline.penalties.statement import write_statement
from pipeline.sealed import scan_internal
from pipeline.workspace import BillingError, Workspace


def account_statement(ws: Workspace, account_id: str, until: date, out_dir: Path | None = None,
                      rate_basis: str = "calc_date") -> tuple[Path, Path]:
    sealed = ws.sealed_periods()
    if not sealed:
        raise BillingError("Нет закрытых периодов: расчёт пени строится по закрытым периодам.")
    from pipeline.verify import check_sealed

    check_sealed(ws, sealed)
    mine = pl.col("account_id") == account_id
    columns = ["period", "account_id", "service_id", "supplier_id", "amount"]
    charges = pl.concat([scan_internal(ws.period_dir(p), "charges", columns).filter(mine).collect()
                         for p in sealed])
    if not charges.height:
        raise BillingError(f"У лицевого счёта {account_id} нет начислений в закрытых периодах.")
    from rules import read_rule_table

    schemes = bucket_schemes(read_rule_table(ws.rules, "services"))
    buckets = charges.join(schemes, on="service_id", how="left").group_by(
        "supplier_id", pl.col("period").alias("charge_period")).agg(
        pl.col("amount_kop").sum(),
        pl.when((pl.col("scheme") == "capital_repair").all()).then(pl.lit("capital_repair"))
        .otherwise(pl.lit("standard")).alias("scheme"),
    ).filter(pl.col("amount_kop") > 0).sort("charge_period", "supplier_id")
    allocations = pl.concat([scan_internal(ws.period_dir(p), "allocations").filter(mine).collect()
                             for p in sealed], how="diagonal_relaxed")
    payments = allocations.filter(
        pl.col("kind").is_in(PAYING_KINDS) & pl.col("charge_period").is_not_null()
        & (pl.col("amount_kop") > 0)
    ).group_by("supplier_id", "charge_period", "paid_on").agg(pl.col("amount_kop").sum()).sort(
        "paid_on", "supplier_id", "charge_period")
    policy = load_policy(ws.rules, rate_basis=rate_basis)
    target = out_dir or (ws.home / "statements")
    return write_statement(account_id, buckets.with_columns(pl.lit(None, pl.Date).alias("due_date")),
                           payments, policy, until, target)
