"""Migrated months sealed as history, and the first ordinary close continuing from them.

A tiny house (tests/conftest.py ``town``), three migrated months 2026-05…07 of two accounts:
charges, a recalculation, a payment the old system split and two it did not, a penalty
line, opening balances (a debt and an advance) and the old system's debts and penalties
at the end. The first close (2026-08) must open with the migrated closing balances and
debts and post on the May debt exactly its penalty through 31.08 minus what the old
system accrued (computed here independently by the scalar calculator).
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pipeline.close import compute, load_inputs, seal
from pipeline.dates import Period
from pipeline.ingest.registers import ingest
from pipeline.migrate.model import History, empty, internal_schema
from pipeline.migrate.periods import seal_history
from pipeline.penalties.policy import load_policy
from pipeline.penalties.scalar import bucket_penalty
from pipeline.verify import verify_all
from pipeline.workspace import BillingError, Workspace
from schemas.history import HISTORY

MONTHS = ("2026-05", "2026-06", "2026-07")
R = 100  # kopecks in a ruble


def frame(register: str, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=internal_schema(register), orient="row")


def history(debts: list[tuple] | None = None) -> History:
    charges = []
    for m in MONTHS:
        charges += [
            ("A1", m, "maintenance", "UK1", "norm", None, None, 1000 * R),
            ("A1", m, "cold_water", "VK", "meter", 6_000_000, 50 * R, 300 * R),
            ("A2", m, "maintenance", "UK1", None, None, None, 1200 * R),  # method not given: imported
            ("A2", m, "cold_water", "VK", "norm", 4_000_000, 100 * R, 400 * R),
        ]
    charges.append(("A1", "2026-07", "penalty", "UK1", None, None, None, 3 * R))
    frames = {name: empty(name) for name in HISTORY}
    frames["history_charges"] = frame("history_charges", charges)
    frames["history_recalculations"] = frame("history_recalculations", [
        ("A1", "2026-06", "2026-05", "maintenance", "UK1", -100 * R, "перерасчёт за май")])
    frames["history_payments"] = frame("history_payments", [
        # The old system's split: A2's May bill to the kopeck.
        ("p1", "sber", "A2", date(2026, 6, 5), "2026-06", 1200 * R, "maintenance", "UK1", "2026-05"),
        ("p1", "sber", "A2", date(2026, 6, 5), "2026-06", 350 * R, "cold_water", "VK", "2026-05"),
        # Not split: our ledger, oldest debt first.
        ("p2", "post", "A1", date(2026, 7, 10), "2026-07", 250 * R, None, None, None),
        ("p3", "post", "A2", date(2026, 7, 15), "2026-07", 2000 * R, None, None, None),
    ])
    frames["history_balances"] = frame("history_balances", [
        ("A1", "2026-05", "maintenance", "UK1", 0, 1000 * R),
        ("A1", "2026-05", "cold_water", "VK", 0, 300 * R),
        ("A2", "2026-05", "maintenance", "UK1", 100 * R, 1300 * R),
        ("A2", "2026-05", "cold_water", "VK", -50 * R, 350 * R),
    ])
    frames["history_debts"] = frame("history_debts", debts if debts is not None else [
        ("A1", "maintenance", "UK1", "2026-05", 71250, date(2026, 6, 15)),
        ("A1", "maintenance", "UK1", "2026-06", 1000 * R, date(2026, 7, 15)),
        ("A1", "maintenance", "UK1", "2026-07", 1000 * R, date(2026, 8, 15)),
        ("A1", "cold_water", "VK", "2026-05", 23750, date(2026, 6, 15)),
        ("A1", "cold_water", "VK", "2026-06", 300 * R, date(2026, 7, 15)),
        ("A1", "cold_water", "VK", "2026-07", 300 * R, date(2026, 8, 15)),
        ("A1", "penalty", "UK1", "2026-07", 3 * R, None),
        # The old system put A2's maintenance debt partly in June (same total as ours: taken).
        ("A2", "maintenance", "UK1", "2026-06", 200 * R, date(2026, 7, 15)),
        ("A2", "maintenance", "UK1", "2026-07", 775 * R, date(2026, 8, 15)),
        # 320 ₽ against our 325 ₽: not taken (the reconciliation lists it), ours stays.
        ("A2", "cold_water", "VK", "2026-07", 320 * R, date(2026, 8, 15)),
    ])
    frames["history_penalties"] = frame("history_penalties", [
        ("A1", "UK1", "2026-05", 500), ("A1", "VK", "2026-05", 150)])
    frames["history_meter_volumes"] = frame("history_meter_volumes", [
        ("M1", m, "meter", 6_000_000) for m in MONTHS])
    return History("Квартплата 24", MONTHS, frames, {"history_charges.csv": "ab" * 32})


def rub(kop: int) -> Decimal:
    return Decimal(kop).scaleb(-2)


def table(ws: Workspace, period: str, name: str) -> pl.DataFrame:
    return pl.read_parquet(ws.period_dir(period) / f"{name}.parquet")


def by(frame_: pl.DataFrame, keys: list[str], value: str) -> dict[tuple, object]:
    return {tuple(r[:-1]): r[-1] for r in frame_.select(*keys, value).iter_rows()}


def migrate(ws: Workspace, h: History, replace: bool = False) -> list[Path]:
    """Seal ``h`` as ``billing migrate load`` does: saved, reconciled, its differences accepted."""
    from pipeline.migrate.model import save_history
    from pipeline.migrate.reconcile import accept, reconcile

    paths = seal_history(ws, h, replace=replace)
    save_history(ws, h)
    if reconcile(ws).differences.height:
        accept(ws, "тест: расхождения заложены намеренно")
    return paths


@pytest.fixture
def migrated(town: Workspace) -> Workspace:
    ingest(town)
    paths = migrate(town, history())
    assert [p.name for p in paths] == list(MONTHS)
    return town


def test_migrated_periods_hold_the_history(migrated: Workspace) -> None:
    ws = migrated
    assert ws.sealed_periods() == list(MONTHS)
    assert verify_all(ws).periods == 3  # chained and hashed like every manifest
    may = json.loads((ws.period_dir("2026-05") / "manifest.json").read_text())
    assert may["migrated"] is True and may["source"] == "Квартплата 24"
    assert may["migration_files_sha256"] == {"history_charges.csv": "ab" * 32}
    assert may["store_version"] == (ws.store / "registers" / "CURRENT").read_text().strip()
    assert may["totals_kop"] == {"charged": 290000, "paid": 0, "allocated": 0, "opening": 5000,
                                 "penalty": 0, "recalculated": 0, "closing": 295000}

    charges = table(ws, "2026-05", "charges")
    assert charges.height == 4 and "penalty" not in charges["service_id"].to_list()
    assert by(charges, ["account_id", "service_id"], "method") == {
        ("A1", "cold_water"): "meter", ("A1", "maintenance"): "norm",
        ("A2", "cold_water"): "norm", ("A2", "maintenance"): "imported"}
    a1_cold = charges.filter((pl.col("account_id") == "A1") & (pl.col("service_id") == "cold_water")).row(
        0, named=True)
    assert (a1_cold["volume"], a1_cold["tariff"], a1_cold["amount"]) == (
        Decimal("6.000000"), Decimal("50.00"), Decimal("300.00"))
    assert (a1_cold["line_from"], a1_cold["line_to"], a1_cold["days"], a1_cold["days_in_month"]) == (
        date(2026, 5, 1), date(2026, 5, 31), 31, 31)
    # May: A2's opening advance of 50 ₽ settles its own May cold water (no money received).
    may_alloc = table(ws, "2026-05", "allocations")
    assert may_alloc.select("account_id", "service_id", "charge_period", "kind", "amount").rows() == [
        ("A2", "cold_water", "2026-05", "advance_offset", rub(5000))]

    june_recalc = table(ws, "2026-06", "recalculations")
    assert june_recalc.select("account_id", "origin_period", "amount", "kind", "reason").rows() == [
        ("A1", "2026-05", rub(-10000), "recalculation", "перерасчёт за май")]
    june_alloc = table(ws, "2026-06", "allocations")
    assert june_alloc.select("payment_id", "service_id", "charge_period", "kind", "amount").rows() == [
        ("p1", "cold_water", "2026-05", "payment", rub(35000)),
        ("p1", "maintenance", "2026-05", "payment", rub(120000))]

    july_alloc = table(ws, "2026-07", "allocations")
    # p2 (250 ₽, not split) pays A1's oldest month, May (900 ₽ + 300 ₽), in proportion;
    # p3 (2 000 ₽) pays A2's opening debt (dated April), June, then July in proportion.
    assert july_alloc.select("payment_id", "service_id", "charge_period", "amount").rows() == [
        ("p2", "cold_water", "2026-05", rub(6250)), ("p2", "maintenance", "2026-05", rub(18750)),
        ("p3", "maintenance", "2026-04", rub(10000)),
        ("p3", "cold_water", "2026-06", rub(40000)), ("p3", "maintenance", "2026-06", rub(120000)),
        ("p3", "cold_water", "2026-07", rub(7500)), ("p3", "maintenance", "2026-07", rub(22500))]

    july = table(ws, "2026-07", "balances")
    assert by(july, ["account_id", "supplier_id"], "closing") == {
        ("A1", "UK1"): rub(271550), ("A1", "VK"): rub(83750), ("A2", "UK1"): rub(97500),
        ("A2", "VK"): rub(32500)}
    assert by(july, ["account_id", "supplier_id"], "penalty")[("A1", "UK1")] == rub(300)
    june = table(ws, "2026-06", "balances")
    assert by(july, ["account_id", "supplier_id"], "opening") == by(
        june, ["account_id", "supplier_id"], "closing")
    service = table(ws, "2026-07", "service_balances")
    assert by(service, ["account_id", "service_id"], "closing") == {
        ("A1", "cold_water"): rub(83750), ("A1", "maintenance"): rub(271250), ("A1", "penalty"): rub(300),
        ("A2", "cold_water"): rub(32500), ("A2", "maintenance"): rub(97500)}

    # The last month's debts: the old system's months where its totals agree with ours.
    debts = table(ws, "2026-07", "debts")
    assert by(debts, ["account_id", "service_id", "charge_period"], "outstanding") == {
        ("A1", "cold_water", "2026-05"): rub(23750), ("A1", "cold_water", "2026-06"): rub(30000),
        ("A1", "cold_water", "2026-07"): rub(30000), ("A1", "maintenance", "2026-05"): rub(71250),
        ("A1", "maintenance", "2026-06"): rub(100000), ("A1", "maintenance", "2026-07"): rub(100000),
        ("A1", "penalty", "2026-07"): rub(300),
        ("A2", "cold_water", "2026-07"): rub(32500),  # ours (theirs: 320 ₽)
        ("A2", "maintenance", "2026-06"): rub(20000), ("A2", "maintenance", "2026-07"): rub(77500)}

    penalties = table(ws, "2026-07", "penalties")
    assert penalties.select("account_id", "supplier_id", "charge_period", "amount", "cumulative",
                            "debt", "due_date").rows() == [
        ("A1", "UK1", "2026-05", rub(0), rub(500), rub(71250), date(2026, 6, 15)),
        ("A1", "UK1", None, rub(300), None, None, None),
        ("A1", "VK", "2026-05", rub(0), rub(150), rub(23750), date(2026, 6, 15))]
    assert table(ws, "2026-06", "penalties").height == 0

    volumes = table(ws, "2026-06", "meter_volumes")
    assert volumes.select("meter_id", "premise_id", "service_id", "method", "volume").rows() == [
        ("M1", "P1", "cold_water", "meter", Decimal("6.000000"))]
    for name in ("reading_issues", "settlements"):
        assert table(ws, "2026-07", name).height == 0


def test_first_close_continues_from_the_migrated_months(migrated: Workspace) -> None:
    ws = migrated
    inputs = load_inputs(ws, Period(2026, 8), coded=False)
    assert inputs.past_periods == []  # same store version and rules: no migrated month recomputed
    assert inputs.averaged_before.sort("period_index")["volume_micro"].to_list() == [6_000_000] * 3
    result = compute(inputs)

    closing = table(ws, "2026-07", "balances").select(
        "account_id", "supplier_id", (pl.col("closing") * 100).cast(pl.Int64).alias("kop"))
    opened = result.balances.filter(pl.col("opening_kop") != 0).select("account_id", "supplier_id",
                                                                       "opening_kop")
    assert by(opened, ["account_id", "supplier_id"], "opening_kop") == by(
        closing, ["account_id", "supplier_id"], "kop")
    assert by(inputs.open_items, ["account_id", "service_id", "supplier_id", "charge_period"],
              "outstanding_kop")[("A2", "maintenance", "UK1", "2026-06")] == 20000

    # The May debts continue: this close posts penalty through 31.08 minus what was accrued.
    policy = load_policy(ws.rules)
    may = Period(2026, 5)

    def expected(amount: int, paid: list[tuple[date, int]], accrued: int) -> int:
        total = bucket_penalty(amount, may, policy.due_date(may), date(2026, 8, 31), paid, policy, "standard")
        return total.penalty_kop - accrued

    assert result.penalties is not None
    posted = by(result.penalties, ["account_id", "supplier_id", "charge_period"], "amount_kop")
    cumulative = by(result.penalties, ["account_id", "supplier_id", "charge_period"], "cumulative_kop")
    uk1 = expected(90000, [(date(2026, 7, 10), 18750)], 500)  # 1 000 ₽ − 100 ₽ recalculated
    vk = expected(30000, [(date(2026, 7, 10), 6250)], 150)
    assert uk1 > 0 and vk > 0
    assert posted[("A1", "UK1", "2026-05")] == uk1
    assert posted[("A1", "VK", "2026-05")] == vk
    assert cumulative[("A1", "UK1", "2026-05")] == uk1 + 500

    # Sealed after them, the close is an ordinary period; verify still passes.
    seal(ws, result, inputs)
    assert verify_all(ws).periods == 4
    aug = json.loads((ws.period_dir("2026-08") / "manifest.json").read_text())
    assert "migrated" not in aug


def test_migration_refused_after_an_ordinary_close_and_replaced_before(town: Workspace) -> None:
    ingest(town)
    seal_history(town, history())
    with pytest.raises(BillingError, match="--replace"):
        seal_history(town, history())
    # A corrected export replaces the migrated months (here: no debts of the old system).
    migrate(town, history(debts=[]), replace=True)
    assert town.sealed_periods() == list(MONTHS)
    debts = table(town, "2026-07", "debts")
    assert ("A2", "maintenance", "2026-06") not in by(
        debts, ["account_id", "service_id", "charge_period"], "outstanding")
    assert verify_all(town).periods == 3
    inputs = load_inputs(town, Period(2026, 8))
    seal(town, compute(inputs), inputs)
    with pytest.raises(BillingError, match="2026-08 уже закрыт"):
        seal_history(town, history(), replace=True)
    assert town.sealed_periods() == [*MONTHS, "2026-08"]


def test_history_outside_the_months_is_refused(town: Workspace) -> None:
    ingest(town)
    h = history()
    late = pl.concat([h.frame("history_payments"), frame("history_payments", [
        ("p9", "sber", "A1", date(2026, 8, 2), "2026-08", 100 * R, None, None, None)])])
    with pytest.raises(BillingError, match=r"history_payments: строки за месяцы вне переносимых .*2026-08"):
        seal_history(town, History(h.source, h.months, {**h.frames, "history_payments": late},
                                   h.files_sha256))
    assert town.sealed_periods() == []


def test_pure_results_refuse_a_gap_and_a_half_split() -> None:
    from pathlib import Path

    from pipeline.migrate.periods import migrated_results
    from rules import load_rules

    rules = load_rules(Path(__file__).resolve().parents[2] / "rules" / "defaults")
    regs = {"meters": pl.DataFrame(schema={"meter_id": pl.String, "service_id": pl.String,
                                           "premise_id": pl.String})}
    h = history(debts=[])
    frames = {**h.frames, "history_meter_volumes": empty("history_meter_volumes")}
    results = migrated_results(History(h.source, h.months, frames, {}), regs, rules)
    assert [str(r.period) for r in results] == list(MONTHS)
    assert [r.totals["closing"] for r in results] == [295000, 420000, 485300]
    # Without the old system's debts the last month keeps our open items: A2's maintenance in July.
    july = by(results[-1].debts, ["account_id", "service_id", "charge_period"], "outstanding_kop")
    assert july[("A2", "maintenance", "2026-07")] == 97500
    with pytest.raises(BillingError, match="подряд"):
        migrated_results(History("", ("2026-05", "2026-07"), frames, {}), regs, rules)
    half = frames["history_payments"].with_columns(
        pl.when(pl.col("payment_id") == "p2").then(pl.lit("UK1")).otherwise(pl.col("supplier_id"))
        .alias("supplier_id"))
    with pytest.raises(BillingError, match="Оплата p2"):
        migrated_results(History("", MONTHS, {**frames, "history_payments": half}, {}), regs, rules)


def test_a_debt_older_than_the_history_accrues_on_from_the_move(town: Workspace) -> None:
    """A3 comes with 500 ₽ of maintenance owed before the history (the first month's opening,
    dated the month before) and pays nothing: the first close posts the penalty of its own
    month on that debt — ours as of 31.08 minus ours as of 31.07, from the old system's due
    date — and nothing of the months before the move (the old system's, in its balances);
    the second close continues it."""
    ingest(town)
    h = history()
    old = 500 * R
    frames = dict(h.frames)
    frames["history_charges"] = pl.concat([frames["history_charges"], frame("history_charges", [
        ("A3", m, "maintenance", "UK1", None, None, None, 0) for m in MONTHS])])
    frames["history_balances"] = pl.concat([frames["history_balances"], frame("history_balances", [
        ("A3", m, "maintenance", "UK1", old if m == MONTHS[0] else None, old) for m in MONTHS])])
    # The old system's due date (1 June) is not our rule's, and the debt has no accrued
    # penalty listed: the due date still goes with the debt.
    theirs = date(2026, 6, 1)
    frames["history_debts"] = pl.concat([frames["history_debts"], frame("history_debts", [
        ("A3", "maintenance", "UK1", "2026-04", old, theirs)])])
    migrate(town, History(h.source, h.months, frames, h.files_sha256))

    policy = load_policy(town.rules)
    april = Period(2026, 4)
    assert policy.due_date(april) != theirs

    def ours(until: date) -> int:
        return bucket_penalty(old, april, theirs, until, [], policy, "standard").penalty_kop

    inputs = load_inputs(town, Period(2026, 8), coded=False)
    result = compute(inputs)
    assert result.penalties is not None
    bucket = ("A3", "UK1", "2026-04")
    posted = by(result.penalties, ["account_id", "supplier_id", "charge_period"], "amount_kop")
    cumulative = by(result.penalties, ["account_id", "supplier_id", "charge_period"], "cumulative_kop")
    august = ours(date(2026, 8, 31)) - ours(date(2026, 7, 31))
    assert august > 0 and posted[bucket] == august and cumulative[bucket] == ours(date(2026, 8, 31))
    seal(town, result, inputs)

    second = compute(load_inputs(town, Period(2026, 9), coded=False))
    assert second.penalties is not None
    posted = by(second.penalties, ["account_id", "supplier_id", "charge_period"], "amount_kop")
    assert posted[bucket] == ours(date(2026, 9, 30)) - ours(date(2026, 8, 31))


def test_account_balances_are_the_sums_of_the_service_balances() -> None:
    """A migrated month's balances per account and supplier are summed from its service
    balances (periods._account_balances); :func:`balances` of the same movements per account
    gives the same rows: an advance moved, a refund, a penalty line, a recalculation, a supplier
    whose movements cancel out (kept: its opening and charges are not zero) and one with nothing
    left at all (dropped)."""
    from pipeline.allocate import balances
    from pipeline.migrate.periods import _account_balances

    svc = ["account_id", "service_id", "supplier_id"]
    opening = pl.DataFrame([("A", "water", "S1", 500), ("A", "heat", "S2", -300), ("B", "water", "S1", 0),
                            ("C", "heat", "S2", 700), ("D", "heat", "S2", 0)], schema=[*svc, "opening_kop"],
                           orient="row")
    lines = pl.DataFrame([("A", "water", "S1", 1200), ("A", "heat", "S2", 900), ("B", "water", "S1", 450),
                          ("C", "heat", "S2", -700)], schema=[*svc, "amount_kop"], orient="row")
    allocations = pl.DataFrame([
        ("A", "water", "S1", "payment", 1700), ("A", "heat", "S2", "advance_transfer", 300),
        ("B", "water", "S1", "refund", -100), ("B", "water", "S1", "advance", 50),
        ("A", "heat", "S2", "settlement", 999),  # not money paid: in neither sum
    ], schema=[*svc, "kind", "amount_kop"], orient="row")
    penalty = pl.DataFrame([("A", "penalty", "S1", 37)], schema=[*svc, "amount_kop"], orient="row")
    recalcs = pl.DataFrame([("B", "water", "S1", -20)], schema=[*svc, "amount_kop"], orient="row")
    per_service = balances(opening, lines, allocations, tuple(svc), penalties=penalty, recalculations=recalcs,
                           ordered=False)
    mine = _account_balances(per_service)
    account_opening = opening.group_by("account_id", "supplier_id").agg(pl.col("opening_kop").sum())
    theirs = balances(account_opening, lines, allocations, penalties=penalty.drop("service_id"),
                      recalculations=recalcs.drop("service_id"))
    assert mine.equals(theirs.sort("account_id", "supplier_id"))
    assert mine.select("account_id", "supplier_id", "closing_kop").rows() == [
        ("A", "S1", 500 + 1200 + 37 - 1700), ("A", "S2", -300 + 900 - 300), ("B", "S1", 450 - 20 + 100 - 50),
        ("C", "S2", 0)]
    assert mine.columns == list(theirs.columns)
