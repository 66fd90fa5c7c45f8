"""«К оплате» of the exports (``pipeline.export.amounts``) against the receipt's own rule.

Each scenario is a few inline rows of one account's sealed tables and welfare amounts; the
expected discounts are what ``pipeline.render.build`` gives the receipt's payees (its private
``_charge_lines`` and ``_apply_benefits``, called directly: a change of either rule fails here).
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from pipeline.export.amounts import (
    Discounts,
    account_to_pay,
    benefit_discounts,
    payee_discounts,
    print_lines,
    spread_discount,
)
from pipeline.render import build

SERVICES = pl.DataFrame({
    "service_id": ["cold_water", "hot_water", "heating", "maintenance"],
    "name": ["ХВС", "ГВС", "Отопление", "Содержание"], "unit": ["м³", "м³", "Гкал", "м²"],
    "kind": ["metered", "metered", "heating", "area"], "order": [10, 20, 30, 40]})
AUG = date(2026, 8, 1)


def _charges(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    """(service, supplier, kopecks) lines of account X, in the given order of days."""
    return pl.DataFrame({
        "account_id": ["X"] * len(rows), "service_id": [r[0] for r in rows],
        "supplier_id": [r[1] for r in rows], "line_from": [date(2026, 8, 1 + i) for i in range(len(rows))],
        "amount_kop": [r[2] for r in rows], "method": ["fixed"] * len(rows),
        "volume_micro": [None] * len(rows), "price_kop": [r[2] for r in rows], "coef_milli": [1000] * len(rows),
    }, schema={"account_id": pl.String, "service_id": pl.String, "supplier_id": pl.String, "line_from": pl.Date,
               "amount_kop": pl.Int64, "method": pl.String, "volume_micro": pl.Int64, "price_kop": pl.Int64,
               "coef_milli": pl.Int64})


def _recalcs(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame({"account_id": ["X"] * len(rows), "service_id": [r[0] for r in rows],
                         "supplier_id": [r[1] for r in rows], "amount_kop": [r[2] for r in rows],
                         "origin_period": ["2026-07"] * len(rows), "reason": ["перерасчёт"] * len(rows)},
                        schema={"account_id": pl.String, "service_id": pl.String, "supplier_id": pl.String,
                                "amount_kop": pl.Int64, "origin_period": pl.String, "reason": pl.String})


def _balances(rows: list[tuple[str, int]]) -> pl.DataFrame:
    zero = [0] * len(rows)
    return pl.DataFrame({"account_id": ["X"] * len(rows), "supplier_id": [r[0] for r in rows],
                         "opening_kop": zero, "charged_kop": zero, "recalculated_kop": zero,
                         "paid_kop": zero, "penalty_kop": zero, "closing_kop": [r[1] for r in rows]})


def _welfare(rows: list[tuple[str | None, int]]) -> pl.DataFrame:
    return pl.DataFrame({"account_id": ["X"] * len(rows), "service_id": [r[0] for r in rows],
                         "amount_kop": [r[1] for r in rows]},
                        schema={"account_id": pl.String, "service_id": pl.String, "amount_kop": pl.Int64})


def _receipt_discounts(charges: pl.DataFrame, recalcs: pl.DataFrame, balances: pl.DataFrame,
                       welfare: pl.DataFrame) -> dict[str, int]:
    """The payees' discounts as build_receipts gives them (the receipt's rule, verbatim)."""
    svc = {r["service_id"]: r for r in SERVICES.iter_rows(named=True)}
    rows = build._print_lines(charges, svc).to_dicts()
    by_service: dict[str, int] = {}
    for g in welfare.iter_rows(named=True):
        if g["service_id"] is not None:
            by_service[g["service_id"]] = by_service.get(g["service_id"], 0) + g["amount_kop"]
    lines = build._charge_lines(rows, build._recalc_sums(recalcs).get("X", {}), svc, by_service)
    payees = tuple(build._payee(b, {}) for b in balances.iter_rows(named=True))
    applied = build._apply_benefits(lines, payees, int(welfare["amount_kop"].sum()))
    return {p.org_id: p.discount for p in applied if p.discount}


Rows = list[tuple[str, str, int]]
SCENARIOS: dict[str, tuple[Rows, Rows, list[tuple[str, int]], list[tuple[str | None, int]]]] = {
    # The water's ЕДК on the water supplier; the subsidy from the payees in print order.
    "edk_and_subsidy": ([("cold_water", "VK", 30000), ("maintenance", "UK", 50000)], [],
                        [("UK", 50000), ("VK", 30000)], [("cold_water", 15025), (None, 10000)]),
    # A heating benefit larger than the heating supplier's debt: capped; the rest is not shared.
    "capped_at_the_suppliers_debt": ([("heating", "TS", 20000), ("maintenance", "UK", 50000)], [],
                                     [("TS", 12000), ("UK", 50000)], [("heating", 30000)]),
    # A service without a line this month: its amount is shared in print order.
    "service_without_a_line": ([("cold_water", "VK", 30000)], [], [("VK", 30000), ("UK", 9000)],
                               [("hot_water", 35000)]),
    # Only recalculated: the recalculation's line carries the benefit (its supplier pays it).
    "recalculation_only_line": ([("cold_water", "VK", 30000)], [("heating", "TS", -500), ("heating", "TS", 4500)],
                                [("TS", 40000), ("VK", 30000)], [("heating", 2500), (None, 100000)]),
    # An advance with the first payee: it is given nothing; two suppliers of one service: the
    # first by supplier id carries its benefit.
    "advance_and_two_suppliers": ([("cold_water", "VK2", 1000), ("cold_water", "VK1", 2000),
                                   ("maintenance", "UK", 50000)], [],
                                  [("UK", -7000), ("VK1", 1500), ("VK2", 1000)],
                                  [("cold_water", 1800), (None, 900)]),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_exports_payee_discounts_are_the_receipts(name: str) -> None:
    charges, recalcs, balances, welfare = SCENARIOS[name]
    ch, rc, bal, wf = _charges(charges), _recalcs(recalcs), _balances(balances), _welfare(welfare)
    found = benefit_discounts(print_lines(ch, rc, SERVICES.select("service_id", "order")),
                              bal.select("account_id", "supplier_id", "closing_kop"), wf)
    assert dict(found.payees.select("supplier_id", "discount_kop").iter_rows()) == \
        _receipt_discounts(ch, rc, bal, wf)
    # the lines' parts add up to the discount of each payee with a line (one without keeps it
    # at the payee level only)
    per_payee = found.lines.group_by("supplier_id").agg(pl.col("discount_kop").sum())
    with_lines = set(ch["supplier_id"]) | set(rc["supplier_id"])
    assert dict(per_payee.iter_rows()) == {k: v for k, v in found.payees.select(
        "supplier_id", "discount_kop").iter_rows() if k in with_lines}


def test_print_lines_follow_the_receipt_charges_then_recalculation_only_lines() -> None:
    ch = _charges([("maintenance", "UK", 100), ("cold_water", "VK", 200), ("cold_water", "VK", 50)])
    rc = _recalcs([("heating", "TS", 70), ("cold_water", "VK", -20), ("hot_water", "VK", 30), ("hot_water", "VK", -30)])
    lines = print_lines(ch, rc, SERVICES.select("service_id", "order"))
    assert lines.select("service_id", "supplier_id", "asked_kop", "rank").rows() == [
        ("cold_water", "VK", 230, 0), ("maintenance", "UK", 100, 1), ("heating", "TS", 70, 2)]


def test_spread_and_to_pay_in_kopecks() -> None:
    assert spread_discount(0, [(0, 10)]) == [0]
    assert spread_discount(500, []) == []
    assert spread_discount(700, [(300, 200), (0, 100), (0, 100)]) == [300, 100, 300]
    assert payee_discounts([], {}, 1000) == ()
    bal = pl.DataFrame({"account_id": ["A", "A", "B"], "closing_kop": [1000, -300, 500]})
    off = pl.DataFrame({"account_id": ["A"], "supplier_id": ["S"], "discount_kop": [600]})
    got = account_to_pay(bal, off).sort("account_id")
    assert got.select("account_id", "to_pay_kop").rows() == [("A", 100), ("B", 500)]
    assert account_to_pay(bal).sort("account_id")["to_pay_kop"].to_list() == [700, 500]
    assert benefit_discounts(print_lines(_charges([]), _recalcs([]), SERVICES), _balances([]),
                             _welfare([])).payees.height == Discounts.none().payees.height == 0
