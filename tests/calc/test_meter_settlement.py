"""A reading settles the months charged without one, both ways, and a corrected reading once (п.61)."""

from __future__ import annotations

import polars as pl

from pipeline.close import compute, load_inputs
from pipeline.close.inputs import _past_periods
from pipeline.dates import Period
from pipeline.explain import explain_account
from pipeline.workspace import Workspace
from tests.calc.test_recalc import close
from tests.conftest import METER_HISTORY, write_registers

REASON = "перерасчёт по показаниям прибора учёта (п.61 Правил 354)"

#: Five months of 4.255 m³ (April–September): October's average is 4.255 m³.
AVERAGE_4255 = """\
meter_id,read_on,value,source
M1,2026-04-20,200.000,lk
M1,2026-05-20,204.255,lk
M1,2026-06-20,208.510,lk
M1,2026-07-20,212.765,lk
M1,2026-08-20,217.020,lk
M1,2026-09-20,221.275,lk
"""


def water(ws: Workspace, period: str) -> dict[str, tuple[str, str, str]]:
    """A1's cold water and sewerage lines of a sealed period: service → (method, volume, amount)."""
    charges = pl.read_parquet(ws.period_dir(period) / "charges.parquet").filter(
        (pl.col("account_id") == "A1") & pl.col("service_id").is_in(["cold_water", "sewerage"]))
    return {r["service_id"]: (r["method"], str(r["volume"]), str(r["amount"]))
            for r in charges.iter_rows(named=True)}


def a1(recalc: pl.DataFrame) -> dict[tuple[str, str], tuple[str, str]]:
    """A1's recalculations: (service, origin) → (amount, reason)."""
    return {(r["service_id"], r["origin_period"]): (str(r["amount"]), r["reason"])
            for r in recalc.filter(pl.col("account_id") == "A1").iter_rows(named=True)}


def append_readings(ws: Workspace, text: str) -> None:
    with open(ws.registers / "readings.csv", "a", encoding="utf-8") as fh:
        fh.write(text)


def test_lower_real_use_is_credited_to_the_averaged_month(town: Workspace) -> None:
    """October by average 4.255 m³, then a reading: 3 m³ over October and November.

    The November reading is in the register from the start, so no register changes
    between the closes: the reading alone makes November settle October.
    """
    write_registers(town, {"readings": AVERAGE_4255 + "M1,2026-11-20,224.275,lk\n"})
    close(town, "2026-10")
    # 4.255 × 58.61 = 249.39; sewerage 4.255 × 46.15 = 196.37
    assert water(town, "2026-10") == {"cold_water": ("average", "4.255000", "249.39"),
                                      "sewerage": ("average", "4.255000", "196.37")}
    recalc = close(town, "2026-11")
    # 224.275 − 221.275 = 3 m³ real, 4.255 charged: November charges nothing ...
    assert water(town, "2026-11") == {"cold_water": ("meter", "0.000000", "0.00"),
                                      "sewerage": ("meter", "0.000000", "0.00")}
    # ... and October is recomputed with 3 m³: 3 × 58.61 = 175.83 − 249.39; 3 × 46.15 = 138.45 − 196.37.
    assert a1(recalc) == {("cold_water", "2026-10"): ("-73.56", REASON),
                          ("sewerage", "2026-10"): ("-57.92", REASON)}
    assert set(recalc["kind"]) == {"recalculation"}
    # Over the span the flat pays exactly the real 3 m³: 249.39 − 73.56 + 0 = 175.83 = 3 × 58.61.
    bal = pl.read_parquet(town.period_dir("2026-11") / "service_balances.parquet").filter(
        (pl.col("account_id") == "A1") & (pl.col("service_id") == "cold_water"))
    assert str(bal["charged"][0] + bal["recalculated"][0]) == "-73.56"
    text = explain_account(town, "A1", "2026-11")
    assert "224,275 (2026-11-20) − 221,275 (2026-09-20) = 3 − уже начислено по среднему 4,255 (п.61) = 0" in text
    assert ("без показаний начислено: 2026-10 по среднему 4,255; начислено больше, чем потреблено, "
            "на 1,255 м³ — возвращено перерасчётом за 2026-10 (п.61)") in text
    assert f"Перерасчёт за 2026-10, Холодное водоснабжение: -73,56 ₽ — {REASON}" in text

    # Credited once: a later close, and even a recomputation of every account of every
    # sealed month (as a rule change forces), finds nothing more to post.
    append_readings(town, "M1,2026-12-20,230.275,lk\n")
    assert a1(close(town, "2026-12")) == {}
    assert water(town, "2026-12")["cold_water"] == ("meter", "6.000000", "351.66")
    inputs = load_inputs(town, Period(2027, 1), coded=False)
    inputs.past_periods = _past_periods(town, Period(2027, 1), 36, inputs.store_version, "forced",
                                        inputs.regs, inputs.heating)
    assert compute(inputs).recalculations.filter(pl.col("kind") == "recalculation").height == 0


def test_credit_takes_the_most_recent_months_first_at_their_own_tariff(town: Workspace) -> None:
    """August–October by average (6 m³ each), then a reading 5 m³ above July's."""
    write_registers(town, {"readings": METER_HISTORY})
    for period in ("2026-08", "2026-09", "2026-10"):
        close(town, period)
    append_readings(town, "M1,2026-11-20,97.000,lk\n")
    recalc = close(town, "2026-11")
    assert water(town, "2026-11")["cold_water"] == ("meter", "0.000000", "0.00")
    # 18 m³ charged, 5 used: 13 back — October 6 → 0 (at 58.61), September 6 → 0 and
    # August 6 → 5 (at 52.28); sewerage likewise at 46.15 and 41.17.
    assert a1(recalc) == {
        ("cold_water", "2026-10"): ("-351.66", REASON), ("sewerage", "2026-10"): ("-276.90", REASON),
        ("cold_water", "2026-09"): ("-313.68", REASON), ("sewerage", "2026-09"): ("-247.02", REASON),
        ("cold_water", "2026-08"): ("-52.28", REASON), ("sewerage", "2026-08"): ("-41.17", REASON),
    }
    # What August–November cost after the credit: 5 m³ × 52.28 = 261.40, to the kopeck.
    charged = sum(pl.read_parquet(town.period_dir(q) / "charges.parquet").filter(
        (pl.col("account_id") == "A1") & (pl.col("service_id") == "cold_water"))["amount"].sum()
        for q in ("2026-08", "2026-09", "2026-10", "2026-11"))
    assert str(charged + recalc.filter((pl.col("account_id") == "A1")
                                       & (pl.col("service_id") == "cold_water"))["amount"].sum()) == "261.40"


def test_corrected_reading_of_a_sealed_month_is_settled_once(town: Workspace) -> None:
    """October's reading 222.327 corrected to 219.327 after October was sealed."""
    readings = ("meter_id,read_on,value,source\nM1,2026-07-20,210.000,lk\nM1,2026-08-20,213.000,lk\n"
                "M1,2026-09-20,216.327,lk\nM1,2026-10-20,222.327,lk\n")
    write_registers(town, {"readings": readings})
    close(town, "2026-10")
    assert water(town, "2026-10")["cold_water"] == ("meter", "6.000000", "351.66")
    write_registers(town, {"readings": readings.replace("222.327", "219.327")
                           + "M1,2026-11-20,225.327,lk\n"})
    recalc = close(town, "2026-11")
    # November measures from the corrected value: 225.327 − 219.327 = 6 m³ ...
    assert water(town, "2026-11")["cold_water"] == ("meter", "6.000000", "351.66")
    # ... and October is recomputed with 219.327 − 216.327 = 3 m³: 175.83 − 351.66; 138.45 − 276.90.
    assert a1(recalc) == {("cold_water", "2026-10"): ("-175.83", REASON),
                          ("sewerage", "2026-10"): ("-138.45", REASON)}
    # October + November = 225.327 − 216.327 = 9 m³ × 58.61 = 527.49: no cubic metre twice.
    charged = sum(pl.read_parquet(town.period_dir(q) / "charges.parquet").filter(
        (pl.col("account_id") == "A1") & (pl.col("service_id") == "cold_water"))["amount"].sum()
        for q in ("2026-10", "2026-11"))
    assert str(charged + recalc.filter((pl.col("account_id") == "A1")
                                       & (pl.col("service_id") == "cold_water"))["amount"].sum()) == "527.49"
    append_readings(town, "M1,2026-12-20,228.327,lk\n")
    assert a1(close(town, "2026-12")) == {}


def test_explain_names_the_norm_month_and_the_credit_reaches_it(town: Workspace) -> None:
    """3 months by average, the 4th by the norm, then a reading of only 8 m³ since July."""
    write_registers(town, {"readings": METER_HISTORY})
    for period in ("2026-08", "2026-09", "2026-10", "2026-11"):
        close(town, period)
    assert water(town, "2026-11")["cold_water"] == ("norm", "9.490000", "556.21")
    assert ("прибор M1: показаний нет больше трёх месяцев — начислено по нормативу (п.60); объём "
            "вычитается, когда придут показания (п.61)") in explain_account(town, "A1", "2026-11")
    append_readings(town, "M1,2026-12-20,100.000,lk\n")
    recalc = close(town, "2026-12")
    # 27.49 m³ charged (3 × 6 by average, 9.49 by norm), 8 used: 19.49 back, the norm month
    # first: November 9.49 → 0, October 6 → 0, September 6 → 2 (2 × 52.28 = 104.56 − 313.68).
    assert {k: v for k, v in a1(recalc).items() if k[0] == "cold_water"} == {
        ("cold_water", "2026-11"): ("-556.21", REASON), ("cold_water", "2026-10"): ("-351.66", REASON),
        ("cold_water", "2026-09"): ("-209.12", REASON)}
    text = explain_account(town, "A1", "2026-12")
    assert ("100 (2026-12-20) − 92 (2026-07-20) = 8 − уже начислено по среднему 18 и по нормативу 9,49 "
            "(п.61) = 0") in text
    assert ("без показаний начислено: 2026-08 по среднему 6, 2026-09 по среднему 6, 2026-10 по среднему 6, "
            "2026-11 по нормативу 9,49; начислено больше, чем потреблено, на 19,49 м³ — возвращено "
            "перерасчётом за 2026-09, 2026-10, 2026-11 (п.61)") in text


def test_reading_entered_after_its_averaged_month_was_sealed_is_settled_with_the_span(
        town: Workspace) -> None:
    """August by average (6 m³); its reading 97 is entered only in September, with September's 104.

    August stays as sealed (a month charged without a reading is never re-measured, nor is
    a reading of it checked against the spike rule); September measures from July's 92,
    less August's average: 12 − 6 = 6 m³, so the two months charge the 12 m³ used. Before,
    it measured from 97 and August's average was never settled: 6 + 7 = 13 m³.
    """
    write_registers(town, {"readings": METER_HISTORY})
    close(town, "2026-08")
    append_readings(town, "M1,2026-08-20,97.000,lk\nM1,2026-09-20,104.000,lk\n")
    recalc = close(town, "2026-09")
    assert water(town, "2026-09")["cold_water"] == ("meter", "6.000000", "313.68")
    assert a1(recalc) == {}
    assert ("104 (2026-09-20) − 92 (2026-07-20) = 12 − уже начислено по среднему 6 (п.61) = 6"
            in explain_account(town, "A1", "2026-09"))
