"""The migration's shortcut for payers who pay whole months (`periods._exact_payments`) books
exactly what the ledger (`allocate.ledger.apply_period`) books for the same accounts."""

from __future__ import annotations

from datetime import date

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.allocate.ledger import ITEM_SCHEMA, PAYMENT_SCHEMA, apply_period
from pipeline.migrate.periods import _exact_payments

MONTH = "2026-03"
EARLIER = ["2026-01", "2026-02"]
SERVICES = [("heating", "TS"), ("cold_water", "VK"), ("maintenance", "UK")]

account = st.fixed_dictionaries({
    "debts": st.lists(st.tuples(st.sampled_from(SERVICES), st.sampled_from(EARLIER),
                                st.integers(1, 50_000)), max_size=4),
    "charges": st.lists(st.tuples(st.sampled_from(SERVICES), st.integers(-2_000, 50_000)), max_size=3),
    # none, the whole oldest month, everything, a named month, or an arbitrary amount
    "pays": st.sampled_from(["none", "oldest", "all", "named", "odd"]),
    "odd": st.integers(1, 100_000),
})


def _frames(accounts: list[dict]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    items, moves, pays = [], [], []
    for n, a in enumerate(accounts):
        acc = f"A{n}"
        owed: dict[str, int] = {}
        for (svc, sup), month, kop in a["debts"]:
            items.append((acc, svc, sup, month, kop))
            owed[month] = owed.get(month, 0) + kop
        for (svc, sup), kop in a["charges"]:
            moves.append((acc, svc, sup, kop, MONTH))
        months = sorted(owed)
        amount, period = {
            "none": (None, None),
            "oldest": (owed[months[0]], None) if months else (None, None),
            "all": (sum(owed.values()), None) if months else (None, None),
            "named": (owed[months[-1]], months[-1]) if months else (None, None),
            "odd": (a["odd"], None),
        }[a["pays"]]
        if amount:
            pays.append((f"p{n}", "sber", acc, date(2026, 3, 10), period, amount))
    item_frame = pl.DataFrame(items, schema=ITEM_SCHEMA, orient="row")
    # the open items are merged by key, as the ledger keeps them
    item_frame = item_frame.group_by(["account_id", "service_id", "supplier_id", "charge_period"]).agg(
        pl.col("outstanding_kop").sum()).select(list(ITEM_SCHEMA))
    move_frame = pl.DataFrame(moves, schema={"account_id": pl.String, "service_id": pl.String,
                                             "supplier_id": pl.String, "amount_kop": pl.Int64,
                                             "charge_period": pl.String}, orient="row")
    return item_frame, move_frame, pl.DataFrame(pays, schema=PAYMENT_SCHEMA, orient="row")


def _norm(frame: pl.DataFrame, cols: list[str]) -> list[tuple]:
    return sorted(frame.filter(pl.col("amount_kop" if "amount_kop" in cols else "outstanding_kop") != 0)
                  .select(cols).rows(), key=repr)


@settings(max_examples=150, deadline=None)
@given(st.lists(account, min_size=1, max_size=6))
def test_exact_booking_equals_the_ledger(accounts: list[dict]) -> None:
    items, moves, pays = _frames(accounts)
    exact = _exact_payments(items, moves, pays, MONTH)
    rest = set(exact.accounts["account_id"].to_list())
    simple = pl.col("account_id").is_in([a for a in {f"A{n}" for n in range(len(accounts))} - rest])
    alloc, after = apply_period(items.filter(simple), moves.filter(simple), pays.filter(simple), MONTH)
    cols = ["payment_id", "account_id", "service_id", "supplier_id", "charge_period", "kind", "amount_kop"]
    assert _norm(exact.allocations, cols) == _norm(alloc, cols)
    keys = ["account_id", "service_id", "supplier_id", "charge_period", "outstanding_kop"]
    assert _norm(exact.items, keys) == _norm(after, keys)


def test_a_payer_of_whole_months_takes_the_shortcut() -> None:
    accounts = [{"debts": [(SERVICES[0], "2026-01", 1_000), (SERVICES[1], "2026-02", 500)],
                 "charges": [(SERVICES[0], 700)], "pays": "all", "odd": 1},
                {"debts": [(SERVICES[0], "2026-01", 1_000)], "charges": [], "pays": "odd", "odd": 3}]
    items, moves, pays = _frames(accounts)
    exact = _exact_payments(items, moves, pays, MONTH)
    assert exact.accounts["account_id"].to_list() == ["A1"]  # a part payment goes to the ledger
    assert sorted(exact.allocations.select("charge_period", "amount_kop").rows()) == [
        ("2026-01", 1_000), ("2026-02", 500)]
    assert exact.items.select("charge_period", "outstanding_kop").rows() == [(MONTH, 700)]
