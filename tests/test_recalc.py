"""Recalculation of closed periods: changes to the past flow into the current bill."""

from __future__ import annotations

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.close import compute, load_inputs, seal
from pipeline.dates import Period
from pipeline.ingest.registers import ingest
from pipeline.workspace import Workspace
from tests.conftest import write_registers


def close(ws: Workspace, period: str) -> pl.DataFrame:
    ingest(ws)
    inputs = load_inputs(ws, Period.parse(period))
    result = compute(inputs)
    seal(ws, result, inputs)
    return pl.read_parquet(ws.period_dir(period) / "recalculations.parquet")


def test_resident_registered_retroactively_into_a_closed_period(town: Workspace) -> None:
    close(town, "2026-08")
    with open(town.registers / "residents.csv", "a", encoding="utf-8") as fh:
        fh.write("R9,A3,Сидорова Ольга Петровна,1975-01-01,permanent,2026-08-17,\n")
    recalc = close(town, "2026-09")
    a3 = recalc.filter((pl.col("account_id") == "A3") & (pl.col("origin_period") == "2026-08"))
    # August recomputed: 46 person-days → 7.040968 m³: cold water 368.10 − 248.07 posted
    # = 120.03; sewerage 7.040968 × 41.17 = 289.88 − 195.35 posted = 94.53 (each line is
    # rounded once, so the difference is of rounded lines, not a rounded difference).
    assert {r["service_id"]: (str(r["amount"]), r["reason"]) for r in a3.iter_rows(named=True)} == {
        "cold_water": ("120.03", "изменение числа зарегистрированных (проживающих)"),
        "sewerage": ("94.53", "изменение числа зарегистрированных (проживающих)"),
    }
    # The closed period itself is untouched, and September's bill carries the difference.
    aug = pl.read_parquet(town.period_dir("2026-08") / "charges.parquet")
    assert str(aug.filter((pl.col("account_id") == "A3") & (pl.col("service_id") == "cold_water"))
               ["amount"].sum()) == "248.07"
    bal = pl.read_parquet(town.period_dir("2026-09") / "balances.parquet")
    assert str(bal.filter((pl.col("account_id") == "A3") & (pl.col("supplier_id") == "VK"))
               ["recalculated"].sum()) == "214.56"
    # Posted once: the next close finds nothing new.
    assert close(town, "2026-10").filter(pl.col("origin_period") == "2026-08").height == 0


def test_tariff_correction_for_a_closed_month(town: Workspace) -> None:
    close(town, "2026-08")
    path = town.rules / "tariffs.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "maintenance,,2025-07-01,31.50", "maintenance,,2025-07-01,30.00"), encoding="utf-8")
    recalc = close(town, "2026-09")
    rows = recalc.filter((pl.col("service_id") == "maintenance") & (pl.col("origin_period") == "2026-08"))
    # 50 m² × −1.50 = −75.00; 60 m² → −90.00; 40 m² → −60.00
    assert dict(rows.select("account_id", pl.col("amount").cast(pl.String)).iter_rows()) == {
        "A1": "-75.00", "A2": "-90.00", "A3": "-60.00"}
    assert set(rows["reason"]) == {"изменение тарифа"}


def test_outage_registered_late_is_recalculated(town: Workspace) -> None:
    close(town, "2026-08")
    write_registers(town, {"outages": "building_id,service_id,started_at,ended_at\n"
                                      "B1,cold_water,2026-08-10T08:00,2026-08-10T18:00\n"})
    recalc = close(town, "2026-09")
    a1 = recalc.filter((pl.col("account_id") == "A1") & (pl.col("origin_period") == "2026-08"))
    assert [(str(r["amount"]), r["reason"]) for r in a1.iter_rows(named=True)] == [
        ("-1.18", "перерыв в предоставлении услуги сверх допустимого (Правила 354, Прил. 1)")]


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(["2026-08", "2026-09"]))
def test_recomputing_an_unchanged_past_gives_zero(town: Workspace, period: str) -> None:
    """Force a recomputation of every sealed period with unchanged inputs: nothing to post."""
    from pipeline.calc.recalc import recalculate
    from pipeline.close import _past_periods, rules_sha256

    if not town.sealed_periods():
        close(town, "2026-08")
        close(town, "2026-09")
    inputs = load_inputs(town, Period(2026, 10))
    past = _past_periods(town, Period(2026, 10), 36, "forced", rules_sha256(town))
    assert [str(p.period) for p in past] == ["2026-08", "2026-09"]
    chosen = next(p for p in past if str(p.period) == period)
    assert recalculate(chosen, inputs.regs, inputs.rules).height == 0
