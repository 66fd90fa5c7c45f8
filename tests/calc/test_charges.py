"""Charges with exact kopecks: each case a few register rows and the expected amounts."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.calc.charges import charge_lines
from pipeline.close import compute, load_inputs
from pipeline.dates import Period
from pipeline.ingest.registers import ingest, load_store
from pipeline.workspace import Workspace
from rules import load_rules
from tests.conftest import METER_HISTORY, write_registers


def close_lines(ws: Workspace, period: str) -> dict[tuple[str, str], list[tuple[str, int, int]]]:
    """(account, service) → [(method, volume_micro, amount_kop), ...] for a dry close."""
    ingest(ws)
    lines = compute(load_inputs(ws, Period.parse(period))).lines
    out: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    for r in lines.iter_rows(named=True):
        out.setdefault((r["account_id"], r["service_id"]), []).append(
            (r["method"], r["volume_micro"], r["amount_kop"]))
    return out


def test_town_august_2026(town: Workspace) -> None:
    got = close_lines(town, "2026-08")
    # A1: meter 107.5 − 100 = 7.5 m³ × 52.28 = 392.10; sewerage 7.5 × 41.17 = 308.775 → 308.78
    assert got[("A1", "cold_water")] == [("meter", 7_500_000, 39210)]
    assert got[("A1", "sewerage")] == [("meter", 7_500_000, 30878)]
    # A2: 1 person × 4.745 × 3 (ПП 1871) × 52.28 = 744.2094 → 744.21; sewerage without coefficient
    assert got[("A2", "cold_water")] == [("norm_increased", 4_745_000, 74421)]
    assert got[("A2", "sewerage")] == [("norm", 4_745_000, 19535)]
    # A3: meter impossible → plain norm 4.745 × 52.28 = 248.0686 → 248.07
    assert got[("A3", "cold_water")] == [("norm", 4_745_000, 24807)]
    # heating: 50 m² × 0.0198 Gcal × 2874.12 = 2845.3788 → 2845.38
    assert got[("A1", "heating")] == [("heating", 990_000, 284538)]
    assert got[("A1", "maintenance")] == [("area", 50_000_000, 157500)]


def test_tariff_change_on_the_15th_is_prorated_by_days(town: Workspace) -> None:
    with open(town.rules / "tariffs.csv", "a", encoding="utf-8") as fh:
        fh.write("maintenance,,2026-08-15,40.00,test\n")
    got = close_lines(town, "2026-08")
    # 50 m² × 31.50 × 14/31 = 711.29; 50 m² × 40.00 × 17/31 = 1096.77
    assert got[("A1", "maintenance")] == [("area", 22_580_645, 71129), ("area", 27_419_355, 109677)]
    # A meter volume is split by days the same way: 7.5 × 14/31 and 7.5 × 17/31.
    assert [v for _, v, _ in got[("A1", "cold_water")]] == [7_500_000]


def test_cold_water_coefficient_changes_on_6_december_2025(town: Workspace) -> None:
    write_registers(town, {"readings": "meter_id,read_on,value,source\n"})
    got = close_lines(town, "2025-12")
    # 1.5 for 5 days, 3 for 26 days: 4.745 × 5/31 × 1.5 × 52.28 + 4.745 × 26/31 × 3 × 52.28
    assert got[("A2", "cold_water")] == [
        ("norm_increased", 765_323, 6002), ("norm_increased", 3_979_677, 62417)
    ]


def test_nobody_registered_counts_owners(town: Workspace) -> None:
    residents = (town.registers / "residents.csv").read_text().replace(
        "R3,A2,Петрова Анна Сергеевна,1990-01-01,permanent,2020-01-01,\n", "")
    write_registers(town, {"residents": residents})
    got = close_lines(town, "2026-08")
    # A2 has 2 owners: 2 × 4.745 × 3 × 52.28 = 1488.4116 → 1488.41
    assert got[("A2", "cold_water")] == [("norm_increased", 9_490_000, 148841)]


def test_resident_registered_mid_month_counts_by_days(town: Workspace) -> None:
    with open(town.registers / "residents.csv", "a", encoding="utf-8") as fh:
        fh.write("R9,A3,Сидорова Ольга Петровна,1975-01-01,temporary,2026-08-17,2026-12-31\n")
    got = close_lines(town, "2026-08")
    # (31 + 15) person-days / 31 × 4.745 = 7.040968 m³ × 52.28 = 368.10
    assert got[("A3", "cold_water")] == [("norm", 7_040_968, 36810)]


def test_account_opened_mid_month_and_share(town: Workspace) -> None:
    accounts = (town.registers / "accounts.csv").read_text().replace(
        "A3,P3,person,Сидоров Пётр Ильич,1,1,2020-01-01,,",
        "A3,P3,person,Сидоров Пётр Ильич,0.5,1,2026-08-11,,")
    write_registers(town, {"accounts": accounts})
    got = close_lines(town, "2026-08")
    # 40 m² × 0.5 × 21/31 × 31.50 = 426.77
    assert got[("A3", "maintenance")] == [("area", 13_548_387, 42677)]


def test_meter_installed_this_month_is_used_from_next_month(town: Workspace) -> None:
    meters = (town.registers / "meters.csv").read_text().replace("2020-01-01", "2026-08-05")
    write_registers(town, {"meters": meters})
    got = close_lines(town, "2026-08")
    # п.81: used from the 1st of the following month → norm this month (2 persons, no ×K: installed).
    assert got[("A1", "cold_water")] == [("norm", 9_490_000, 49614)]


def test_missing_reading_is_charged_by_average(town: Workspace) -> None:
    write_registers(town, {"readings": METER_HISTORY})
    got = close_lines(town, "2026-08")
    # (92 − 68) / 4 months = 6 m³ × 52.28 = 313.68
    assert got[("A1", "cold_water")] == [("average", 6_000_000, 31368)]


def test_average_needs_three_months_of_history(town: Workspace) -> None:
    """A meter with less than 3 months of its own readings has no average: the norm (п.59(1))."""
    write_registers(town, {"readings": """meter_id,read_on,value,source
M1,2026-05-20,80.000,lk
M1,2026-06-20,86.000,lk
M1,2026-07-20,92.000,lk
"""})
    # 2 months of history → 2 persons × 4.745 m³ × 52.28 = 496.14 (a meter is installed: no K)
    assert close_lines(town, "2026-08")[("A1", "cold_water")] == [("norm", 9_490_000, 49614)]


# The fixture is only read, never changed, so sharing it between examples is safe.
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.randoms(use_true_random=False))
def test_charges_do_not_depend_on_row_order(town_frames: tuple, rnd: object) -> None:
    regs, rules, period, volumes, expected = town_frames
    shuffled = {k: v.sample(fraction=1.0, shuffle=True, seed=rnd.randint(0, 10**6))  # type: ignore[attr-defined]
                for k, v in regs.items()}
    got = charge_lines(shuffled, rules, period, volumes)
    assert got.equals(expected)


@pytest.fixture
def town_frames(town: Workspace) -> tuple:
    ingest(town)
    regs = load_store(town)
    rules = load_rules(town.rules)
    period = Period(2026, 8)
    volumes = pl.DataFrame({"premise_id": ["P1"], "service_id": ["cold_water"],
                            "method": ["meter"], "volume_micro": [7_500_000]})
    return regs, rules, period, volumes, charge_lines(regs, rules, period, volumes)


@pytest.mark.parametrize(
    ("departure", "arrival", "full_days", "counted"),
    [("2026-08-10", "2026-08-16", 5, 0),     # exactly 5 full days: no recalculation (п.86)
     ("2026-08-10", "2026-08-17", 6, 6),     # 6 full days: all six count
     ("2026-07-25", "2026-08-05", 11, 4),    # across the month boundary: 1–4 August
     ("2026-08-30", "2026-09-20", 20, 1)],   # leaves on the 30th: only the 31st is in August
)
def test_temporary_absence_reduces_the_norm_charge(town: Workspace, departure: str, arrival: str,
                                                   full_days: int, counted: int) -> None:
    # A3's flat cannot have a meter (meter_possible=false): cold water by norm is reduced.
    write_registers(town, {"absences": f"person_id,from,to\nR4,{departure},{arrival}\n"})
    got = close_lines(town, "2026-08")
    volume = 4_745_000 * (31 - counted) // 31 if counted else 4_745_000
    method, vol, _ = got[("A3", "cold_water")][0]
    assert (method, abs(vol - volume) <= 1) == ("norm", True)
    # (31 − 6) / 31 × 4.745 × 52.28 = 200.06
    if counted == 6:
        assert got[("A3", "cold_water")] == [("norm", 3_826_613, 20006)]
    # A2 could have a meter: its absence would not count (only technical impossibility does).


def test_absence_does_not_count_where_a_meter_is_possible(town: Workspace) -> None:
    write_registers(town, {"absences": "person_id,from,to\nR3,2026-08-01,2026-08-31\n"})
    got = close_lines(town, "2026-08")
    assert got[("A2", "cold_water")] == [("norm_increased", 4_745_000, 74421)]


def test_spike_is_not_used_until_confirmed(town: Workspace) -> None:
    history = """\
meter_id,read_on,value,source,confirmed
M1,2026-03-20,68.000,lk,
M1,2026-04-20,74.000,lk,
M1,2026-05-20,80.000,lk,
M1,2026-06-20,86.000,lk,
M1,2026-07-20,92.000,lk,
M1,2026-08-20,{value},lk,{confirmed}
"""
    write_registers(town, {"readings": history.format(value="152.000", confirmed="")})
    got = close_lines(town, "2026-08")
    # 60 m³ against an own average of 6 m³ (≥ 5 times): by average until confirmed.
    assert got[("A1", "cold_water")] == [("average", 6_000_000, 31368)]
    write_registers(town, {"readings": history.format(value="152.000", confirmed="да")})
    got = close_lines(town, "2026-08")
    assert got[("A1", "cold_water")] == [("meter", 60_000_000, 313680)]


@pytest.mark.parametrize(
    ("outages", "rule", "expected"),
    [
        # 10 hours at once: 2 hours over the 8 allowed a month → 0.30 % of 392.10 = 1.1763 → 1.18
        ([("2026-08-10T08:00", "2026-08-10T18:00")], "month_total", -118),
        # the same under the "greater of" reading: 6 hours over the 4-hour single limit → 0.90 %
        ([("2026-08-10T08:00", "2026-08-10T18:00")], "greater_of", -353),
        # three 3-hour breaks: 9 hours, 1 over the month limit, none over the single limit
        ([("2026-08-01T00:00", "2026-08-01T03:00"), ("2026-08-02T00:00", "2026-08-02T03:00"),
          ("2026-08-03T00:00", "2026-08-03T03:00")], "month_total", -59),
        # an outage from July counts only its August hours: 20 hours in August → 12 over
        ([("2026-07-31T00:00", "2026-08-01T20:00")], "month_total", -706),
        # within the limits: nothing
        ([("2026-08-10T08:00", "2026-08-10T11:30")], "month_total", 0),
    ],
)
def test_interruptions_reduce_the_charge(town: Workspace, outages: list, rule: str,
                                         expected: int) -> None:
    rows = "".join(f"B1,cold_water,{a},{b}\n" for a, b in outages)
    write_registers(town, {"outages": "building_id,service_id,started_at,ended_at\n" + rows})
    if rule != "month_total":
        path = town.rules / "quality_rules.csv"
        path.write_text(path.read_text(encoding="utf-8").replace(
            "cold_water,2011-09-01,8,4,0.15,month_total", f"cold_water,2011-09-01,8,4,0.15,{rule}"),
            encoding="utf-8")
    ingest(town)
    result = compute(load_inputs(town, Period(2026, 8)))
    recalc = result.recalculations
    assert recalc is not None
    a1 = recalc.filter((pl.col("account_id") == "A1") & (pl.col("service_id") == "cold_water"))
    assert (int(a1["amount_kop"].sum()) if a1.height else 0) == expected
    assert int(result.balances["recalculated_kop"].sum()) == int(recalc["amount_kop"].sum())


def test_explain_names_formula_inputs_and_their_sources(town: Workspace) -> None:
    from pipeline.explain import explain_account

    write_registers(town, {"outages": "building_id,service_id,started_at,ended_at\n"
                                      "B1,cold_water,2026-08-10T08:00,2026-08-10T18:00\n"})
    ingest(town)
    text = explain_account(town, "A2", "2026-08")
    assert "предварительный расчёт" in text
    assert "норматив 4,745 м³" in text and "× 3 (повышающий коэффициент) = 744,21 ₽" in text
    assert "increasing_coefficients.csv, строка 3, действует с 2025-12-06: ПП РФ от 25.11.2025 № 1871" in text
    assert "Перерасчёт за 2026-08, Холодное водоснабжение" in text and "превышение 2 ч" in text


def test_common_property_resources_by_norm_shared_by_area(town: Workspace) -> None:
    with open(town.registers / "building_services.csv", "a", encoding="utf-8") as fh:
        fh.write("B1,cold_water_soi,UK1,2015-01-01,\n")
    got = close_lines(town, "2026-08")
    # 0.026 m³/m² × 100 m² common × 50/1000 of the house = 0.13 m³ × 52.28 = 6.7964 → 6.80
    assert got[("A1", "cold_water_soi")] == [("common_property", 130_000, 680)]
    # 40 m² flat: 0.104 m³ × 52.28 = 5.43712 → 5.44
    assert got[("A3", "cold_water_soi")] == [("common_property", 104_000, 544)]


@pytest.mark.parametrize(("period", "expected"), [
    # verification ended 31.05: June, July, August by the average of readings before it
    ("2026-08", [("average", 6_000_000, 31368)]),
    # from the 4th period: norm × K (п.60): 2 persons × 4.745 × 3 × 52.28 = 1488.41
    ("2026-09", [("norm_increased", 9_490_000, 148841)]),
])
def test_failed_meter_average_then_norm_with_coefficient(town: Workspace, period: str,
                                                         expected: list) -> None:
    meters = (town.registers / "meters.csv").read_text().replace("2030-01-01", "2026-05-31")
    write_registers(town, {"meters": meters, "readings": """\
meter_id,read_on,value,source
M1,2026-02-20,54.000,lk
M1,2026-03-20,60.000,lk
M1,2026-04-20,66.000,lk
M1,2026-05-20,72.000,lk
"""})
    assert close_lines(town, period)[("A1", "cold_water")] == expected


def test_meter_replaced_mid_month(town: Workspace) -> None:
    """Old meter up to its removal reading + new meter from its initial value (п.81 exception)."""
    write_registers(town, {
        "meters": """\
meter_id,service_id,premise_id,building_id,serial,installed_on,removed_on,verified_until,digits,initial_value
M1,cold_water,P1,,111,2020-01-01,2026-08-15,2030-01-01,5,0
M2,cold_water,P1,,222,2026-08-15,,2032-01-01,5,0.5
""",
        "readings": """\
meter_id,read_on,value,source
M1,2026-07-20,100.000,lk
M1,2026-08-15,104.000,controller
M1,2026-08-20,105.000,lk
M2,2026-08-20,3.000,lk
""",
    })
    got = close_lines(town, "2026-08")
    # (104 − 100) + (3 − 0.5) = 6.5 m³ × 52.28 = 339.82; M1's reading after its removal
    # is reported and not used.
    issues = compute(load_inputs(town, Period(2026, 8))).reading_issues
    assert issues.select("meter_id", "reason").rows() == [
        ("M1", "показания вне срока работы прибора учёта")]
    assert got[("A1", "cold_water")] == [("meter", 6_500_000, 33982)]
    # September: the new meter alone, from its August reading
    with open(town.registers / "readings.csv", "a", encoding="utf-8") as fh:
        fh.write("M2,2026-09-20,7.000,lk\n")
    assert close_lines(town, "2026-09")[("A1", "cold_water")] == [("meter", 4_000_000, 20912)]


def test_heating_in_season_by_the_building_meter(town: Workspace) -> None:
    """Formula 3: the building meter's heat shared by area; nothing outside the season."""
    settings = (town.home / "settings.toml").read_text(encoding="utf-8")
    (town.home / "settings.toml").write_text(settings.replace('payment = "even"',
                                                              'payment = "in_season"'), encoding="utf-8")
    with open(town.registers / "meters.csv", "a", encoding="utf-8") as fh:
        fh.write("H1,heating,,B1,900,2020-01-01,,2030-01-01,8,0\n")
    with open(town.registers / "readings.csv", "a", encoding="utf-8") as fh:
        fh.write("H1,2026-09-20,1000.000,controller\nH1,2026-10-20,1100.000,controller\n")
    assert ("A1", "heating") not in close_lines(town, "2026-08")  # August: out of season
    got = close_lines(town, "2026-10")
    # 100 Gcal × 50/1000 m² = 5 Gcal × 3222.09 = 16110.45
    assert got[("A1", "heating")] == [("heating_meter", 5_000_000, 1611045)]
    assert got[("A3", "heating")] == [("heating_meter", 4_000_000, 1288836)]


def test_access_refused_twice_means_norm_with_coefficient(town: Workspace) -> None:
    write_registers(town, {"access_refusals": "premise_id,service_id,refused_on,resolved_on\n"
                                              "P1,cold_water,2026-06-10,\nP1,cold_water,2026-07-10,\n"})
    # The meter reads 7.5 m³, but after two refusals: 2 persons × 4.745 × 3 × 52.28 = 1488.41
    assert close_lines(town, "2026-08")[("A1", "cold_water")] == [("norm_increased", 9_490_000, 148841)]
    from pipeline.explain import explain_account

    assert "повышающий коэффициент: не менее 2 актов о недопуске к прибору учёта" in \
        explain_account(town, "A1", "2026-08")
    assert "повышающий коэффициент: прибор учёта не установлен, хотя установка возможна" in \
        explain_account(town, "A2", "2026-08")
    write_registers(town, {"access_refusals": "premise_id,service_id,refused_on,resolved_on\n"
                                              "P1,cold_water,2026-06-10,\nP1,cold_water,2026-07-10,2026-07-30\n"})
    assert close_lines(town, "2026-08")[("A1", "cold_water")] == [("meter", 7_500_000, 39210)]
