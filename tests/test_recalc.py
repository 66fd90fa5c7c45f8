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
    from pipeline.close import _past_periods

    if not town.sealed_periods():
        close(town, "2026-08")
        close(town, "2026-09")
    inputs = load_inputs(town, Period(2026, 10))
    # A different rules hash forces every account of every period to be recomputed.
    past = _past_periods(town, Period(2026, 10), 36, inputs.store_version, "forced", inputs.regs,
                         inputs.heating)
    assert [str(p.period) for p in past] == ["2026-08", "2026-09"]
    chosen = next(p for p in past if str(p.period) == period)
    assert recalculate(chosen, inputs.regs, inputs.rules).height == 0


HEAT_METER = "H1,heating,,B1,900,2020-01-01,,2030-01-01,8,0\n"
#: Building heat meter: 2025 measured 900 Gcal (75 a month); 2026 from August on.
HEAT_READINGS = """\
H1,2024-12-20,1300.000,controller
H1,2025-12-20,2500.000,controller
H1,2026-07-20,2600.000,controller
H1,2026-08-20,2610.000,controller
H1,2026-09-20,2640.000,controller
H1,2026-10-20,2740.000,controller
H1,2026-11-20,2900.000,controller
H1,2026-12-20,3100.000,controller
"""


def heating_of(ws: Workspace, period: str, account: str = "A1") -> list[tuple[str, str, str]]:
    charges = pl.read_parquet(ws.period_dir(period) / "charges.parquet")
    return [(r["method"], str(r["meter_volume"]), str(r["amount"])) for r in charges.filter(
        (pl.col("account_id") == account) & (pl.col("service_id") == "heating")).iter_rows(named=True)]


def test_heating_paid_evenly_by_last_years_average_then_settled_in_january(town: Workspace) -> None:
    """Formula 3(1) every month, then the yearly correction posted in January (п.42(1))."""
    with open(town.registers / "meters.csv", "a", encoding="utf-8") as fh:
        fh.write(HEAT_METER)
    with open(town.registers / "readings.csv", "a", encoding="utf-8") as fh:
        fh.write(HEAT_READINGS)
    for month in ("2026-08", "2026-09", "2026-10", "2026-11", "2026-12"):
        assert close(town, month).filter(pl.col("service_id") == "heating").height == 0
    # 2025: 2500 − 1300 = 1200 Gcal → 100 a month; A1 has 50 of the house's 1000 m²:
    # 5 Gcal × 2874.12 = 14370.60 (August), × 3222.09 from October = 16110.45.
    assert heating_of(town, "2026-08") == [("heating_average", "100.000000", "14370.60")]
    assert heating_of(town, "2026-10") == [("heating_average", "100.000000", "16110.45")]
    january = close(town, "2027-01")
    rows = january.filter((pl.col("account_id") == "A1") & (pl.col("service_id") == "heating"))
    # Actual: Aug 10, Sep 30, Oct 100, Nov 160, Dec 200 Gcal → A1's 5 %:
    # Aug 0.5 × 2874.12 = 1437.06 − 14370.60; Sep 1.5 × 2874.12 = 4311.18 − 14370.60;
    # Oct 5 × 3222.09 = posted; Nov 8 × 3222.09 = 25776.72 − 16110.45; Dec 10 × 3222.09 = 32220.90 − 16110.45.
    assert dict(rows.select("origin_period", pl.col("amount").cast(pl.String)).iter_rows()) == {
        "2026-08": "-12933.54", "2026-09": "-10059.42", "2026-11": "9666.27", "2026-12": "16110.45"}
    assert set(rows["reason"]) == {
        "корректировка платы за отопление по показаниям ОДПУ за 2026 год (п.42(1) Правил 354)"}
    assert set(january["service_id"]) == {"heating"}  # nothing else was touched
    # January 2027 itself: 2026 measured 3100 − 2500 = 600 Gcal → 50 a month → 2.5 × 3222.09.
    assert heating_of(town, "2027-01") == [("heating_average", "50.000000", "8055.23")]
    # Settled once: February finds nothing more to correct.
    assert close(town, "2027-02").height == 0


def test_heating_without_a_whole_year_of_building_meter_is_by_norm(town: Workspace) -> None:
    with open(town.registers / "meters.csv", "a", encoding="utf-8") as fh:
        fh.write(HEAT_METER)
    with open(town.registers / "readings.csv", "a", encoding="utf-8") as fh:
        fh.write("H1,2026-07-20,2600.000,controller\n")  # no reading for December 2025
    close(town, "2026-08")
    # 50 m² × 0.0198 Gcal/m² × 2874.12 = 2845.38
    assert heating_of(town, "2026-08") == [("heating", "None", "2845.38")]


def test_only_accounts_whose_inputs_changed_are_recomputed(town: Workspace) -> None:
    from pipeline.close import _past_periods

    close(town, "2026-08")
    with open(town.registers / "residents.csv", "a", encoding="utf-8") as fh:
        fh.write("R9,A3,Сидорова Ольга Петровна,1975-01-01,permanent,2026-08-17,\n")
    ingest(town)
    inputs = load_inputs(town, Period(2026, 9))
    [august] = inputs.past_periods
    assert august.accounts is not None and august.accounts["account_id"].to_list() == ["A3"]
    # A reading of a building meter touches every account of the building.
    with open(town.registers / "meters.csv", "a", encoding="utf-8") as fh:
        fh.write(HEAT_METER)
    ingest(town)
    inputs = load_inputs(town, Period(2026, 9))
    assert inputs.past_periods[0].accounts["account_id"].to_list() == ["A1", "A2", "A3"]
    # Nothing changed since the last close: nothing is recomputed.
    close(town, "2026-09")
    assert _past_periods(town, Period(2026, 10), 36, inputs.store_version, inputs.rules_sha256 or "",
                         inputs.regs, inputs.heating) == []
