"""Benchmark of the vectorised accrual: ``bench(accounts)`` → timings and memory.

Synthetic buckets: every account has one supplier and 12 monthly charges
(2025-01 … 2025-12, due on the next month's 10th moved to a working day);
about 70 % of buckets are paid in full on a random day, 15 % partly (one or two
payments), 15 % not at all. The calculation date is 2026-06-30, so every bucket
crosses the grace days, the 1/300 and 1/130 stretches and the ПП 329 cap.

    POLARS_MAX_THREADS=2 /work/venv/bin/python -m pipeline.penalties.bench 1000000 [daily|calc_date]

Measured on the 2-core build box (1 000 000 accounts × 12 months = 12 M buckets,
11.1 M payments, rate basis ``payment_date``): ``accrue`` 3.8–4.2 s with the box
otherwise quiet (5.8–8 s while other jobs loaded both cores); peak RSS 3.6 GB for the
whole process, of which 2.4 GB are the synthetic input frames.
"""

from __future__ import annotations

import resource
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.dates import Period
from pipeline.penalties.accrual import accrue
from pipeline.penalties.policy import PenaltyPolicy, load_policy

MONTHS = 12
FIRST = Period(2025, 1)
CALC_DATE = date(2026, 6, 30)


def synthetic(accounts: int, months: int = MONTHS, seed: int = 2026,
              policy: PenaltyPolicy | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Synthetic buckets and payments (the input contract of :func:`accrue`)."""
    policy = policy or default_policy()
    rng = np.random.default_rng(seed)
    n = accounts * months
    periods = [FIRST.shift(i) for i in range(months)]
    dues = [policy.due_date(p) for p in periods]
    acc_idx = np.repeat(np.arange(accounts), months)
    month_idx = np.tile(np.arange(months), accounts)
    amount = rng.integers(10_000, 1_000_000, n)  # 100 … 10 000 rubles
    due_day = np.array([(d - date(1970, 1, 1)).days for d in dues], dtype=np.int32)[month_idx]
    buckets = pl.DataFrame({
        "account_id": pl.Series(acc_idx).cast(pl.String).str.zfill(8),
        "charge_period": pl.Series([str(p) for p in periods], dtype=pl.String).gather(month_idx),
        "amount_kop": amount.astype(np.int64),
        "due_date": pl.Series(due_day).cast(pl.Date),
    }).select(
        "account_id", pl.lit("S1", pl.String).alias("supplier_id"), "charge_period",
        pl.lit("standard", pl.String).alias("scheme"), "amount_kop", "due_date",
    )
    kind = rng.random(n)
    full = kind < 0.70
    part = (kind >= 0.70) & (kind < 0.85)
    delay = rng.integers(-20, 400, n).astype(np.int32)
    pay_day = due_day + delay
    first_amt = np.where(full, amount, amount // 3)
    first = np.flatnonzero(full | part)
    second = np.flatnonzero(part & (rng.random(n) < 0.5))
    idx = np.concatenate([first, second])
    pay_amount = np.concatenate([first_amt[first], amount[second] // 4])
    pay_days = np.concatenate([pay_day[first], pay_day[second] + rng.integers(1, 200, second.size)])
    payments = pl.DataFrame({
        "account_id": buckets["account_id"].gather(idx),
        "supplier_id": buckets["supplier_id"].gather(idx),
        "charge_period": buckets["charge_period"].gather(idx),
        "paid_on": pl.Series(pay_days.astype(np.int32)).cast(pl.Date),
        "amount_kop": pay_amount.astype(np.int64),
    })
    return buckets, payments


def default_policy() -> PenaltyPolicy:
    return load_policy(Path(__file__).resolve().parents[2] / "rules" / "defaults")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(accounts: int, rate_basis: str | None = None) -> dict[str, float | int | str]:
    """Time :func:`accrue` over ``accounts`` × 12 synthetic buckets (one process, all cores).

    ``rate_basis`` overrides ``penalty_policy.toml`` (``payment_date`` by default).
    """
    policy = default_policy()
    if rate_basis:
        policy = policy.with_rate_basis(rate_basis)
    t0 = time.perf_counter()
    buckets, payments = synthetic(accounts, policy=policy)
    t1 = time.perf_counter()
    rss_before = _rss_mb()
    steps: dict[str, float] = {}
    out = accrue(buckets, payments, policy, CALC_DATE, timings=steps)
    t2 = time.perf_counter()
    return {
        "accounts": accounts,
        "buckets": buckets.height,
        "payments": payments.height,
        "threads": pl.thread_pool_size(),
        "rate_basis": policy.rate_basis,
        "generate_s": round(t1 - t0, 2),
        "accrue_s": round(t2 - t1, 2),
        "buckets_per_s": int(buckets.height / max(t2 - t1, 1e-9)),
        **{f"step_{k}_s": v for k, v in steps.items()},
        "penalty_total_kop": int(out["penalty_kop"].sum()),
        "max_rss_mb_before_accrue": round(rss_before),
        "max_rss_mb": round(_rss_mb()),
    }


if __name__ == "__main__":
    import json

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(json.dumps(bench(size, sys.argv[2] if len(sys.argv) > 2 else None), indent=1))
