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
    from pipeline.close.inputs import _past_periods

    if not town.sealed_periods():
        close(town, "2026-08")
        close(town, "2026-09")
    inputs = load_inputs(town, Period(2026, 10), coded=False)
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


def correct_partial_years(ws: Workspace) -> None:
    """``[migration] partial_years = "covered"``: these tests seal a part of the year only."""
    path = ws.settings_path
    path.write_text(path.read_text(encoding="utf-8").replace('partial_years = "skip"', 'partial_years = "covered"'),
                    encoding="utf-8")


def heating_of(ws: Workspace, period: str, account: str = "A1") -> list[tuple[str, str, str]]:
    charges = pl.read_parquet(ws.period_dir(period) / "charges.parquet")
    return [(r["method"], str(r["meter_volume"]), str(r["amount"])) for r in charges.filter(
        (pl.col("account_id") == account) & (pl.col("service_id") == "heating")).iter_rows(named=True)]


def test_heating_paid_evenly_by_last_years_average_then_settled_in_january(town: Workspace) -> None:
    """Formula 3(1) every month, then the yearly correction posted in January (п.42(1))."""
    correct_partial_years(town)  # August–December only (a whole year: tests/calc/test_yearly_coverage.py)
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
    from pipeline.close.inputs import _past_periods

    close(town, "2026-08")
    with open(town.registers / "residents.csv", "a", encoding="utf-8") as fh:
        fh.write("R9,A3,Сидорова Ольга Петровна,1975-01-01,permanent,2026-08-17,\n")
    ingest(town)
    inputs = load_inputs(town, Period(2026, 9), coded=False)
    [august] = inputs.past_periods
    assert august.accounts is not None and august.accounts["account_id"].to_list() == ["A3"]
    # A reading of a building meter touches every account of the building.
    with open(town.registers / "meters.csv", "a", encoding="utf-8") as fh:
        fh.write(HEAT_METER)
    ingest(town)
    inputs = load_inputs(town, Period(2026, 9), coded=False)
    assert inputs.past_periods[0].accounts["account_id"].to_list() == ["A1", "A2", "A3"]
    # Nothing changed since the last close: nothing is recomputed.
    close(town, "2026-09")
    assert _past_periods(town, Period(2026, 10), 36, inputs.store_version, inputs.charge_rules_sha256 or "",
                         inputs.regs, inputs.heating) == []


def soi_town(ws: Workspace, december_reading: str, rule: str) -> None:
    """B1 with a building cold-water meter and КР на СОИ for cold water, settled in January.

    The tests seal November and December only: the covered months are settled.
    """
    from tests.conftest import BUILDING_SERVICES, METERS, READINGS

    correct_partial_years(ws)
    write_registers(ws, {
        "building_services": BUILDING_SERVICES + "B1,cold_water_soi,VK,2015-01-01,\n",
        "meters": METERS + "C1,cold_water,,B1,901,2020-01-01,,2030-01-01,9,0\n",
        "readings": READINGS + "M1,2026-10-20,110.000,lk\nM1,2026-11-20,115.000,lk\nM1,2026-12-20,121.000,lk\n"
        "C1,2026-10-20,1000.000,controller\nC1,2026-11-20,1016.000,controller\n"
        f"C1,2026-12-20,{december_reading},controller\n",
    })
    (ws.rules / "soi_settlement.csv").write_text(
        "from,settle_month,parts,carry_over,source\n" + rule, encoding="utf-8")


def soi_parts(ws: Workspace, period: str) -> dict[str, tuple[str, str]]:
    recalc = pl.read_parquet(ws.period_dir(period) / "recalculations.parquet").filter(
        pl.col("kind") == "settlement")
    return {r["account_id"]: (str(r["amount"]), r["reason"]) for r in recalc.iter_rows(named=True)}


def test_common_property_settled_against_the_building_meter_in_equal_parts(town: Workspace) -> None:
    soi_town(town, "1061.000", "2022-09-01,1,3,true,test\n")
    close(town, "2026-11")
    close(town, "2026-12")
    close(town, "2027-01")
    settled = pl.read_parquet(town.period_dir("2027-01") / "settlements.parquet")
    # House meter 1061 − 1000 = 61 m³; flats: A1 by meter 5 + 6, A2 and A3 by norm 4 × 4.745
    # = 29.98; СОИ by norm 2 × (0.13 + 0.156 + 0.104) = 0.78 → 30.24 m³ more than charged.
    assert {str(v) for v in settled["difference"]} == {"30.240000"}
    assert [str(v) for v in settled["premises_volume"].unique()] == ["29.980000"]
    # Shared by area at the December tariff 58.61: A1 30.24 × 50/1000 × 58.61 = 88.62,
    # A2 × 60/1000 = 106.34, A3 × 40/1000 = 70.89.
    assert dict(settled.select("account_id", pl.col("amount").cast(pl.String)).iter_rows()) == {
        "A1": "88.62", "A2": "106.34", "A3": "70.89"}
    reason = ("корректировка платы за КР на СОИ по показаниям ОДПУ за 2026 год "
              "(ЖК 156 ч.9.2, Правила 491 п.29(3))")
    assert soi_parts(town, "2027-01") == {
        "A1": ("29.54", f"{reason}: часть 1 из 3"), "A2": ("35.45", f"{reason}: часть 1 из 3"),
        "A3": ("23.63", f"{reason}: часть 1 из 3")}
    close(town, "2027-02")
    close(town, "2027-03")
    parts = [soi_parts(town, p) for p in ("2027-01", "2027-02", "2027-03")]
    # Each cumulative share is rounded once, so three parts add up to the amount exactly.
    assert [p["A2"][0] for p in parts] == ["35.45", "35.44", "35.45"]
    close(town, "2027-04")
    assert soi_parts(town, "2027-04") == {}
    # A key-rate row changes no charge: nothing is recomputed.
    with open(town.rules / "key_rates.csv", "a", encoding="utf-8") as fh:
        fh.write("2027-04-27,15.00,unverified\n")
    ingest(town)
    assert load_inputs(town, Period(2027, 5)).past_periods == []
    # The settlement is a charge of the month it is posted in: recomputing that month
    # later (here: every account, as a rule table changed) does not undo it.
    (town.rules / "tariffs.csv").write_text((town.rules / "tariffs.csv").read_text(encoding="utf-8")
                                            + "intercom,,2020-01-01,1.00,test\n", encoding="utf-8")
    assert close(town, "2027-05").filter(pl.col("service_id") == "cold_water_soi").height == 0


def test_negative_common_property_month_charges_zero_and_carries_forward(town: Workspace) -> None:
    soi_town(town, "1025.000", "2022-09-01,1,1,true,test\n")
    for period in ("2026-11", "2026-12", "2027-01", "2027-02", "2027-03"):
        close(town, period)
    # 25 − 29.98 − 0.78 = −5.76 m³ → A1: −5.76 × 50/1000 × 58.61 = −16.88; the month's
    # КР на СОИ of A1 is 0.13 m³ × 58.61 = 7.62, so −7.62, −7.62 and the last −1.64.
    got = [soi_parts(town, p)["A1"] for p in ("2027-01", "2027-02", "2027-03")]
    assert [amount for amount, _ in got] == ["-7.62", "-7.62", "-1.64"]
    assert got[0][1].endswith("(остаток уменьшения перенесён на следующий месяц)")
    bal = pl.read_parquet(town.period_dir("2027-01") / "service_balances.parquet").filter(
        (pl.col("account_id") == "A1") & (pl.col("service_id") == "cold_water_soi"))
    assert str(bal["charged"][0] + bal["recalculated"][0]) == "0.00"


def test_explain_shows_how_a_settlement_part_was_found(town: Workspace) -> None:
    from pipeline.explain import explain_account

    soi_town(town, "1061.000", "2022-09-01,1,3,true,test\n")
    for period in ("2026-11", "2026-12", "2027-01", "2027-02"):
        close(town, period)
    text = explain_account(town, "A1", "2027-02")
    assert "за месяцы 2026-11,2026-12: ОДПУ дома 61 − помещения 29,98 − начислено на СОИ по нормативу " \
           "0,78 = 30,24 м³" in text
    assert "× помещение 50 м² × доля 1 / площадь дома 1000 м² × тариф на 31.12.2026 58,61 ₽ = " in text
    assert "часть 2 из 3" in text


def test_absence_reported_after_the_close_is_recalculated_with_its_reason(town: Workspace) -> None:
    close(town, "2026-08")
    write_registers(town, {"absences": "person_id,from,to\nR4,2026-08-10,2026-08-20\n"})
    recalc = close(town, "2026-09")
    a3 = recalc.filter((pl.col("account_id") == "A3") & (pl.col("origin_period") == "2026-08"))
    # 9 full days away of 31: cold water 9/31 × 4.745 m³ × 52.28 = −72.02 (248.07 → 176.05);
    # sewerage follows the water, with the water's reason.
    assert {r["service_id"]: r["reason"] for r in a3.iter_rows(named=True)} == {
        "cold_water": "временное отсутствие (п.86–97 Правил 354)",
        "sewerage": "временное отсутствие (п.86–97 Правил 354)"}
    assert str(a3.filter(pl.col("service_id") == "cold_water")["amount"][0]) == "-72.02"
