"""Vectorised penalty accrual for many buckets (Polars, interval arithmetic, exact integers).

Each bucket's debt is split into *portions*: every payment's part (alive from the
first overdue day to its payment day, inclusive) and the unpaid rest (alive to
``calc_date``). A portion's penalty is ``amount × Σ_days rate × share``; the days
are never expanded: for each share segment of the scheme (grace → ``1/den_before``
→ ``1/den_after``) the overlap with the portion's life is a clipped difference of
day numbers, and each applicable moratorium window is subtracted the same way.
With the ``daily`` rate basis the day count becomes a difference of a prefix sum
of the (capped) daily rate, gathered by day number.

All shares are scaled by ``L`` = lcm of the share denominators (3900 for 1/300 and
1/130), so the numerator ``amount × rate_bp × Σ(L/den × days)`` is an integer
(``Int128``) over ``10 000 × L``; the sum per bucket is rounded once by
:func:`pipeline.money.div_half_up`. :func:`accrue` equals the exact scalar engine
(:func:`pipeline.penalties.scalar.bucket_penalty`) to the kopeck; the test suite
checks both against a day-by-day reference.
"""

from __future__ import annotations

import time
from datetime import date, timedelta

import polars as pl

from pipeline.dates import Period
from pipeline.ids import typed
from pipeline.money import div_half_up
from pipeline.penalties.policy import PenaltyPolicy
from pipeline.workspace import BillingError

KEY = ["account_id", "supplier_id", "charge_period"]

#: Input contract of :func:`accrue` (extra columns are kept and passed through).
BUCKET_SCHEMA = pl.Schema({
    "account_id": pl.String,
    "supplier_id": pl.String,
    "charge_period": pl.String,
    "scheme": pl.String,
    "amount_kop": pl.Int64,
    "due_date": pl.Date,
})
PAYMENT_SCHEMA = pl.Schema({
    "account_id": pl.String,
    "supplier_id": pl.String,
    "charge_period": pl.String,
    "paid_on": pl.Date,
    "amount_kop": pl.Int64,
})

_EPOCH = date(1970, 1, 1)


def _day(d: date) -> int:
    return (d - _EPOCH).days


def _check_columns(frame: pl.DataFrame, schema: pl.Schema, what: str, no_nulls: bool = False) -> None:
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise BillingError(f"{what}: нет столбцов {', '.join(missing)}")
    empty = [c for c in schema if no_nulls and frame[c].null_count()]
    if empty:
        raise BillingError(f"{what}: пустые значения в столбцах {', '.join(empty)}")


class _RateCalendar:
    """Capped daily rates and their prefix sums over ``first..last`` (day numbers)."""

    def __init__(self, policy: PenaltyPolicy, last: date) -> None:
        first = policy.key_rates[0][0] if policy.key_rates else last
        self.base = _day(first)
        n = max(_day(last) - self.base + 2, 1)
        rates = [0] * n
        prefix = [0] * (n + 1)
        day = first
        for i in range(n):
            rates[i] = policy.rate_on(day)
            prefix[i + 1] = prefix[i] + rates[i]
            day += timedelta(days=1)
        self.size = n
        self.rates = pl.Series("rate", rates, dtype=pl.Int64)
        self.prefix = pl.Series("prefix", prefix, dtype=pl.Int64)

    def rate(self, day: pl.Expr) -> pl.Expr:
        idx = (day - self.base).clip(0, self.size - 1)
        return pl.lit(self.rates).gather(idx)

    def sum(self, lo: pl.Expr, hi: pl.Expr) -> pl.Expr:
        """Σ rate(d) for d in lo..hi (0 when empty)."""
        a = (lo - self.base).clip(0, self.size)
        b = (hi + 1 - self.base).clip(0, self.size)
        prefix = pl.lit(self.prefix)
        return pl.when(hi >= lo).then(prefix.gather(b) - prefix.gather(a)).otherwise(0)


def _count(lo: pl.Expr, hi: pl.Expr) -> pl.Expr:
    return (hi - lo + 1).clip(lower_bound=0)


def _first_period_on_or_after(day: date) -> str:
    """The first charge period whose 1st day is on or after ``day`` (as ``YYYY-MM``)."""
    period = Period.of(day)
    return str(period if day.day == 1 else period.shift(1))


def _period_params(buckets: pl.DataFrame, policy: PenaltyPolicy) -> list[pl.Expr]:
    """Expressions for the scheme parameters and moratorium flags of every bucket.

    ``YYYY-MM`` strings order like the periods, so the dated rules become string
    comparisons (no join): ``valid_from ≤ period.first`` ⟺ ``period ≥`` the first
    period starting on or after ``valid_from``; ``period.last < arisen_before`` ⟺
    ``period <`` the month of ``arisen_before``.
    """
    for text in buckets["charge_period"].unique().to_list():
        try:
            Period.parse(text or "")
        except ValueError as err:
            raise BillingError(f"пени: {err}") from None
    unknown = set(buckets["scheme"].unique().to_list()) - {r.scheme for r in policy.schemes}
    if unknown:
        raise BillingError(
            f"penalty_schemes.csv: нет правил схемы {', '.join(sorted(str(u) for u in unknown))}"
        )
    scale = policy.denominator
    period, scheme = pl.col("charge_period"), pl.col("scheme")
    values: dict[str, list[tuple[pl.Expr, int]]] = {"_g": [], "_s": [], "_m1": [], "_m2": []}
    for rule in sorted(policy.schemes, key=lambda r: r.valid_from, reverse=True):
        cond = (scheme == rule.scheme) & (period >= _first_period_on_or_after(rule.valid_from))
        values["_g"].append((cond, rule.grace_days))
        values["_s"].append((cond, rule.step_day))
        values["_m1"].append((cond, scale // rule.den_before))
        values["_m2"].append((cond, scale // rule.den_after))
    exprs = []
    for name, pairs in values.items():
        dtype = pl.Int32 if name in ("_g", "_s") else pl.Int64
        expr: pl.Expr = pl.lit(None, dtype)
        for cond, value in reversed(pairs):  # the latest rule is tested first
            expr = pl.when(cond).then(pl.lit(value, dtype)).otherwise(expr)
        exprs.append(expr.alias(name))
    for i, m in enumerate(policy.moratoriums):
        flag = pl.lit(True) if m.arisen_before is None else period < str(Period.of(m.arisen_before))
        exprs.append(flag.alias(f"_mor{i}"))
    return exprs


def _bucket_of(buckets: pl.DataFrame, payments: pl.DataFrame, keep: pl.Expr) -> pl.DataFrame:
    """Pairs (``_i`` payment row, ``_b`` bucket row) for the payments where ``keep`` holds.

    A join on a 64-bit hash of the key (faster than on three strings), then every
    match is checked on the key itself, so a hash collision cannot misplace money.
    A payment whose bucket is not in ``buckets`` gets no pair.
    """
    hb = buckets.select(pl.struct(KEY).hash().alias("_h"), pl.int_range(buckets.height, dtype=pl.UInt32)
                        .alias("_b"))
    hp = payments.select(pl.struct(KEY).hash().alias("_h"), pl.int_range(payments.height, dtype=pl.UInt32)
                         .alias("_i"), keep.alias("_keep")).filter("_keep")
    pairs = hp.join(hb, on="_h", how="inner").select("_i", "_b")
    same: pl.Series | None = None
    for c in KEY:
        eq = payments[c].gather(pairs["_i"]) == buckets[c].gather(pairs["_b"])
        same = eq if same is None else same & eq
    assert same is not None
    pairs = pairs.filter(same.fill_null(False))
    if pairs.height and pairs["_i"].n_unique() != pairs.height:
        raise BillingError("пени: ключ начисления (счёт, поставщик, период) повторяется")
    return pairs


def _max(frame: pl.DataFrame, column: str) -> int:
    value = frame[column].max() if frame.height else 0
    return abs(int(value)) if value is not None else 0  # type: ignore[arg-type]


def _wide(bound: int) -> pl.DataType:
    """Int64 while every product provably fits (checked on the column maxima), else Int128."""
    return pl.Int64() if bound < 2**62 else pl.Int128()


def _segment_sums(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Per-bucket sums of ``columns`` of a frame sorted by ``_b``, without a hash group-by."""
    last = pl.col("_b") != pl.col("_b").shift(-1, fill_value=-1)
    ends = frame.select("_b", last.alias("_last"), *[pl.col(c).cum_sum() for c in columns]).filter("_last")
    return ends.select("_b", *[(pl.col(c) - pl.col(c).shift(1, fill_value=0)) for c in columns])


def _weighted_days(policy: PenaltyPolicy, cal: _RateCalendar | None, end: pl.Expr) -> pl.Expr:
    """Σ over the portion's overdue days up to ``end`` of (L/den) × [rate(d) when ``cal``].

    Expects per-row columns ``_due`` (day number), ``_g``, ``_s``, ``_m1``, ``_m2``, ``_mor{i}``.
    """
    due = pl.col("_due")
    seg = [
        (due + pl.col("_g") + 1, pl.min_horizontal(due + pl.col("_s"), end), pl.col("_m1")),
        (due + pl.col("_s") + 1, end, pl.col("_m2")),
    ]
    span = cal.sum if cal is not None else _count
    total: pl.Expr = pl.lit(0, dtype=pl.Int64)
    for lo, hi, weight in seg:
        days = span(lo, hi)
        for i, m in enumerate(policy.moratoriums):
            ms, me = pl.lit(_day(m.start), pl.Int32), pl.lit(_day(m.end), pl.Int32)
            overlap = span(pl.max_horizontal(lo, ms), pl.min_horizontal(hi, me))
            days = days - pl.when(pl.col(f"_mor{i}")).then(overlap).otherwise(0)
        total = total + weight * days
    return total


def _check_calendar(frame: pl.DataFrame, cal: _RateCalendar, weight: pl.Expr, rate_day: str | None) -> None:
    """Refuse penalty days (or payment days) before the first key rate of the table."""
    if not frame.height:
        return
    day = pl.col(rate_day).cast(pl.Int32) if rate_day else pl.col("_due") + pl.col("_g") + 1
    first = frame.filter(weight > 0).select(day.min()).item()
    if first is not None and first < cal.base:
        raise BillingError(
            f"key_rates.csv: нет ключевой ставки на {_EPOCH + timedelta(days=int(first)):%d.%m.%Y} "
            f"(таблица начинается с {_EPOCH + timedelta(days=cal.base):%d.%m.%Y})"
        )


def accrue(buckets: pl.DataFrame, payments: pl.DataFrame, policy: PenaltyPolicy,
           calc_date: date, timings: dict[str, float] | None = None) -> pl.DataFrame:
    """Penalty per bucket as of ``calc_date`` (the last day counted, inclusive).

    Args:
        buckets: one row per (account_id, supplier_id, charge_period) with
            ``scheme`` (``standard`` | ``capital_repair``), ``amount_kop`` (the charge)
            and ``due_date`` (already moved to a working day, see
            :func:`pipeline.calc.due.due_date`). Extra columns are passed through.
        payments: (account_id, supplier_id, charge_period, paid_on, amount_kop), already
            allocated to buckets. Payments after ``calc_date`` are not counted yet;
            a payment for a bucket not in ``buckets``, a non-positive payment and the part
            of a payment above the charge are ignored.
        policy: :func:`pipeline.penalties.load_policy`.
        calc_date: last day of accrual; the unpaid rest bears the rate of this day.
        timings: when given, filled with seconds per step (for the benchmark).

    Returns:
        ``buckets`` with ``paid_kop`` (applied by ``calc_date``), ``debt_kop`` (unpaid),
        ``penalty_kop`` (cumulative penalty to ``calc_date``, rounded once) and
        ``rate_bp`` (rate borne by the unpaid rest: the calculation day's rate, or null
        for the ``daily`` basis). The monthly charge is the difference from the
        previous close's ``penalty_kop``.
    """
    _check_columns(buckets, BUCKET_SCHEMA, "пени: начисления", no_nulls=True)
    _check_columns(payments, PAYMENT_SCHEMA, "пени: платежи")
    clock = [time.perf_counter()]

    def step(name: str) -> None:
        clock.append(time.perf_counter())
        if timings is not None:
            timings[name] = round(clock[-1] - clock[-2], 3)

    scale = policy.denominator
    den = 10_000 * scale
    calc_day = _day(calc_date)
    fixed = policy.fixed_rate_bp
    daily = policy.rate_basis == "daily" and fixed is None
    by_payment_day = fixed is None and policy.rate_basis == "payment_date"
    cal = _RateCalendar(policy, calc_date) if (daily or by_payment_day) else None
    rest_rate = fixed if fixed is not None else (None if daily else policy.rate_on(calc_date))

    b = buckets.with_columns(
        *_period_params(buckets, policy), pl.col("due_date").cast(pl.Int32).alias("_due")
    )
    if b["_g"].null_count():
        bad = b.filter(pl.col("_g").is_null()).select("scheme", "charge_period")
        scheme, period = bad.sort("charge_period").row(0)
        raise BillingError(f"penalty_schemes.csv: нет правила схемы «{scheme}» для начислений за {period}")
    n = b.height
    step("rules")
    # Payments → bucket index (row number), ordered by bucket and day; paid part of each.
    live = (pl.col("paid_on") <= calc_date) & (pl.col("amount_kop") > 0)
    pairs = _bucket_of(b, payments, live)
    pay = pl.DataFrame({
        "_b": pairs["_b"],
        "paid_on": payments["paid_on"].gather(pairs["_i"]),
        "_pay": payments["amount_kop"].gather(pairs["_i"]),
    }).sort("_b", "paid_on")
    pay = (
        pay.with_columns(b["amount_kop"].gather(pay["_b"]).alias("_amount"))
        .lazy()
        # Running total within the bucket without a window: global running total minus
        # its value before the bucket's first row (rows are sorted by bucket).
        .with_columns(pl.col("_pay").cum_sum().alias("_cum"))
        .with_columns(
            (pl.col("_cum") - pl.when(pl.col("_b") != pl.col("_b").shift(1, fill_value=-1))
             .then(pl.col("_cum") - pl.col("_pay")).otherwise(None).forward_fill()).alias("_cum")
        )
        .with_columns(
            pl.min_horizontal(pl.col("_pay"), (pl.col("_amount") - pl.col("_cum") + pl.col("_pay")).clip(0))
            .alias("_part")
        )
        .filter(pl.col("_part") > 0)
        .select("_b", "paid_on", "_part")
        .collect()
    )
    step("payments_to_buckets")
    gather_cols = ["_due", "_g", "_s", "_m1", "_m2", *[f"_mor{i}" for i in range(len(policy.moratoriums))]]
    pay = pay.with_columns(b.get_column(c).gather(pay["_b"]) for c in gather_cols)
    end = pl.col("paid_on").cast(pl.Int32)
    pay = pay.with_columns(_weighted_days(policy, cal if daily else None, end).alias("_w"))
    if fixed is not None:
        pay_rate: pl.Expr = pl.lit(fixed, pl.Int64)
    elif daily:
        pay_rate = pl.lit(1, pl.Int64)
    elif policy.rate_basis == "calc_date":
        pay_rate = pl.lit(rest_rate, pl.Int64)
    else:
        assert cal is not None
        pay_rate = cal.rate(end)
    pay = pay.with_columns(pay_rate.alias("_rate"))
    if cal is not None:
        _check_calendar(pay, cal, pl.col("_w"), None if daily else "paid_on")
    # Exact numerator per payment, split as q × den + r so that per-bucket sums stay Int64.
    wide = _wide(_max(pay, "_part") * _max(pay, "_rate") * _max(pay, "_w"))
    num = pl.col("_part").cast(wide) * pl.col("_rate").cast(wide) * pl.col("_w").cast(wide)
    pay = pay.select(
        "_b", "_part", (num // den).cast(pl.Int64).alias("_q"), (num % den).cast(pl.Int64).alias("_r")
    )
    step("payment_portions")
    sums = _segment_sums(pay, ["_part", "_q", "_r"])
    paid, q, r = (pl.zeros(n, pl.Int64, eager=True).scatter(sums["_b"], sums[c]) if sums.height
                  else pl.zeros(n, pl.Int64, eager=True) for c in ("_part", "_q", "_r"))
    out = b.with_columns(
        paid.alias("_paid"), q.alias("_q"), r.alias("_r")
    ).with_columns(
        (pl.col("amount_kop").clip(lower_bound=0) - pl.col("_paid")).alias("_rest"),
        _weighted_days(policy, cal if daily else None, pl.lit(calc_day, pl.Int32)).alias("_w"),
    )
    if daily and cal is not None:
        _check_calendar(out.filter(pl.col("_rest") > 0), cal, pl.col("_w"), None)
    rest_mult = 1 if daily else int(rest_rate or 0)
    wide = _wide(_max(out, "_rest") * rest_mult * _max(out, "_w") + _max(out, "_q") * den + _max(out, "_r"))
    total = (pl.col("_rest").cast(wide) * rest_mult * pl.col("_w").cast(wide)
             + pl.col("_q").cast(wide) * den + pl.col("_r").cast(wide))
    out = out.with_columns(
        pl.col("_paid").alias("paid_kop"),
        pl.col("_rest").alias("debt_kop"),
        div_half_up(total, den).alias("penalty_kop"),
        pl.lit(rest_rate, pl.Int64).alias("rate_bp"),
    )
    out = out.drop([c for c in out.columns if c.startswith("_")])
    step("buckets")
    return out


def accrue_intervals(buckets: pl.DataFrame, payments: pl.DataFrame, policy: PenaltyPolicy,
                     calc_date: date) -> pl.DataFrame:
    """Interval rows (one per span of equal debt, share and rate) for a few buckets.

    Uses the exact scalar engine, so it is meant for statements and explanations,
    not for the whole city. Columns: the bucket key, from, to, days, debt_kop,
    fraction ("1/300"), rate_bp, moratorium, share_num/share_den (exact kopecks),
    penalty_kop (the row's share rounded for display).
    """
    from pipeline.penalties.scalar import bucket_penalty

    _check_columns(buckets, BUCKET_SCHEMA, "пени: начисления")
    _check_columns(payments, PAYMENT_SCHEMA, "пени: платежи")
    by_bucket: dict[tuple[str, str, str], list[tuple[date, int]]] = {}
    for acc, sup, per, paid_on, kop in payments.select(*KEY, "paid_on", "amount_kop").iter_rows():
        by_bucket.setdefault((acc, sup, per), []).append((paid_on, kop))
    rows = []
    for r in buckets.iter_rows(named=True):
        key = (r["account_id"], r["supplier_id"], r["charge_period"])
        res = bucket_penalty(r["amount_kop"], Period.parse(r["charge_period"]), r["due_date"], calc_date,
                             by_bucket.get(key, []), policy, r["scheme"])
        for row in res.rows:
            rows.append((*key, row.start, row.end, row.days, row.debt_kop, row.fraction_text, row.rate_bp,
                         row.moratorium, row.share_kop.numerator, row.share_kop.denominator,
                         row.penalty_kop))
    schema = {
        "account_id": pl.String, "supplier_id": pl.String, "charge_period": pl.String,
        "from": pl.Date, "to": pl.Date, "days": pl.Int64, "debt_kop": pl.Int64, "fraction": pl.String,
        "rate_bp": pl.Int64, "moratorium": pl.Boolean, "share_num": pl.Int128, "share_den": pl.Int128,
        "penalty_kop": pl.Int64,
    }
    return pl.DataFrame(rows, schema=typed(schema), orient="row")
