"""Yearly corrections (heating п.42(1), КР на СОИ) only over a year the workspace sealed whole.

``[migration] partial_years = "skip"`` (the default): a year of which only some months
are sealed (closed here or migrated) is not corrected; ``"covered"`` corrects the sealed
months alone. The months a year needs start with the service (docs/rules.md).
"""

from __future__ import annotations

import csv
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import polars as pl
import pytest

from pipeline.workspace import Workspace
from tests.calc.test_recalc import close
from tests.conftest import BUILDING_SERVICES, METERS, READINGS, write_registers

HEAT_METER = "H1,heating,,B1,900,2020-01-01,,2030-01-01,8,0\n"
#: 2025 measured by the building heat meter: 2500 − 1300 = 1200 Gcal, 100 a month.
YEAR_2025 = "H1,2024-12-20,1300.000,controller\nH1,2025-12-20,2500.000,controller\n"
#: December 2026 measured 200 Gcal — twice the monthly average of 2025.
DECEMBER_2026 = "H1,2026-11-20,2900.000,controller\nH1,2026-12-20,3100.000,controller\n"
AREAS = {"A1": Decimal(50), "A2": Decimal(60), "A3": Decimal(40)}  # of the house's 1000 m²
HOUSE = Decimal(1000)
TRUE_UP = "корректировка платы за отопление по показаниям ОДПУ за 2026 год (п.42(1) Правил 354)"


def heated(ws: Workspace, readings: str, heating_from: str = "2015-01-01") -> None:
    """B1 with a building heat meter; its heating service from ``heating_from``."""
    write_registers(ws, {
        "meters": METERS + HEAT_METER,
        "readings": READINGS + readings,
        "building_services": BUILDING_SERVICES.replace("B1,heating,TS,2015-01-01",
                                                       f"B1,heating,TS,{heating_from}"),
    })


def partial_years(ws: Workspace, value: str) -> None:
    path = ws.settings_path
    text = path.read_text(encoding="utf-8")
    assert 'partial_years = "skip"' in text
    path.write_text(text.replace('partial_years = "skip"', f'partial_years = "{value}"'), encoding="utf-8")


def tariff(ws: Workspace, service: str, day: date) -> Decimal:
    """The generic tariff of ``service`` in force on ``day``, read from the workspace's table."""
    with open(ws.rules / "tariffs.csv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["service_id"] == service and not r["supplier_id"]]
    return Decimal(max((r for r in rows if date.fromisoformat(r["from"]) <= day),
                       key=lambda r: r["from"])["price"])


def kopecks(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def heating_rows(recalcs: pl.DataFrame) -> dict[tuple[str, str], str]:
    rows = recalcs.filter(pl.col("service_id") == "heating")
    return {(r["account_id"], r["origin_period"]): str(r["amount"]) for r in rows.iter_rows(named=True)}


def test_a_year_sealed_only_in_december_is_not_corrected(town: Workspace) -> None:
    """The issue's demo case: December by the 2025 average, December's actual is twice that."""
    heated(town, YEAR_2025 + DECEMBER_2026)
    close(town, "2026-12")
    january = close(town, "2027-01")
    assert heating_rows(january) == {}
    assert TRUE_UP not in set(january["reason"])
    # January itself is charged as always: 2026's average (3100 − 2500) / 12 = 50 Gcal.
    charges = pl.read_parquet(town.period_dir("2027-01") / "charges.parquet").filter(
        (pl.col("account_id") == "A1") & (pl.col("service_id") == "heating"))
    assert [(r["method"], str(r["meter_volume"])) for r in charges.iter_rows(named=True)] == [
        ("heating_average", "50.000000")]


def test_covered_corrects_the_sealed_months_alone(town: Workspace) -> None:
    partial_years(town, "covered")
    heated(town, YEAR_2025 + DECEMBER_2026)
    close(town, "2026-12")
    january = close(town, "2027-01")
    price = tariff(town, "heating", date(2026, 12, 1))
    # December: actual 200 Gcal against the 100 charged, each account's area share.
    expected = {(a, "2026-12"): str(kopecks(200 * area / HOUSE * price) - kopecks(100 * area / HOUSE * price))
                for a, area in AREAS.items()}
    assert heating_rows(january) == expected
    assert expected[("A1", "2026-12")] == "16110.45"  # the figure test_recalc asserts
    assert set(january.filter(pl.col("service_id") == "heating")["reason"]) == {TRUE_UP}


def test_a_service_that_began_inside_the_year_is_corrected_from_its_start(town: Workspace) -> None:
    """Heating of the house from 1 December 2026: its year is December alone, and it is sealed."""
    heated(town, YEAR_2025 + DECEMBER_2026, heating_from="2026-12-01")
    close(town, "2026-12")
    january = close(town, "2027-01")
    price = tariff(town, "heating", date(2026, 12, 1))
    assert heating_rows(january) == {
        (a, "2026-12"): str(kopecks(200 * area / HOUSE * price) - kopecks(100 * area / HOUSE * price))
        for a, area in AREAS.items()}


def test_a_recomputed_month_of_an_uncorrected_year_keeps_its_average(town: Workspace) -> None:
    """A late change to December recomputes A3's December; its heating stays at the average."""
    heated(town, YEAR_2025 + DECEMBER_2026)
    close(town, "2026-12")
    with open(town.registers / "residents.csv", "a", encoding="utf-8") as fh:
        fh.write("R9,A3,Сидорова Ольга Петровна,1975-01-01,permanent,2026-12-17,\n")
    january = close(town, "2027-01")
    assert {r["service_id"] for r in january.filter(pl.col("origin_period") == "2026-12").iter_rows(
        named=True)} >= {"cold_water"}  # A3 was recomputed ...
    assert heating_rows(january) == {}  # ... and its heating not corrected on December alone


#: 2026 month by month (Gcal): January … December, read on the 20th.
MONTHS_2026 = [180, 160, 130, 90, 40, 10, 5, 5, 30, 100, 160, 200]


def year_2026_readings() -> str:
    """The building heat meter read on the 20th of every month of 2026 (MONTHS_2026 Gcal)."""
    value, rows = 2500, []
    for month, volume in enumerate(MONTHS_2026, start=1):
        value += volume
        rows.append(f"H1,2026-{month:02d}-20,{value}.000,controller\n")
    return YEAR_2025 + "".join(rows)


def expected_true_up(ws: Workspace) -> dict[tuple[str, str], str]:
    """Each month of 2026 was charged 2025's average, 100 Gcal × the account's share, and is
    worth its actual volume × the share, each at the month's tariff, each line rounded once."""
    expected: dict[tuple[str, str], str] = {}
    for account, area in AREAS.items():
        for month, volume in enumerate(MONTHS_2026, start=1):
            price = tariff(ws, "heating", date(2026, month, 1))
            diff = kopecks(volume * area / HOUSE * price) - kopecks(100 * area / HOUSE * price)
            if diff:
                expected[(account, f"2026-{month:02d}")] = str(diff)
    return expected


def year_actual_minus_charged(ws: Workspace, account: str) -> Decimal:
    """The account's 2026: its actual volume's worth minus its twelve charges, each line rounded."""
    charged = sum((kopecks(100 * AREAS[account] / HOUSE * tariff(ws, "heating", date(2026, m, 1)))
                   for m in range(1, 13)), Decimal(0))
    actual = sum((kopecks(v * AREAS[account] / HOUSE * tariff(ws, "heating", date(2026, m, 1)))
                  for m, v in enumerate(MONTHS_2026, start=1)), Decimal(0))
    return actual - charged


def test_a_whole_year_is_corrected_to_its_actual_volume(town: Workspace) -> None:
    """Closed January–December 2026, then January 2027: every month settled to its actual."""
    heated(town, year_2026_readings())
    for month in range(1, 13):
        assert heating_rows(close(town, f"2026-{month:02d}")) == {}
    january = close(town, "2027-01")
    got = heating_rows(january)
    assert got == expected_true_up(town)
    # The year for A1: actual 1110 Gcal × 5 % at the year's tariffs minus the twelve charges.
    a1 = sum((Decimal(v) for (a, _), v in got.items() if a == "A1"), Decimal(0))
    assert a1 == year_actual_minus_charged(town, "A1") and a1 < 0
    assert set(january.filter(pl.col("service_id") == "heating")["reason"]) == {TRUE_UP}


def soi(ws: Workspace, soi_from: str = "2015-01-01") -> None:
    """B1 with a building cold-water meter and КР на СОИ for cold water, settled in January."""
    write_registers(ws, {
        "building_services": BUILDING_SERVICES + f"B1,cold_water_soi,VK,{soi_from},\n",
        "meters": METERS + "C1,cold_water,,B1,901,2020-01-01,,2030-01-01,9,0\n",
        "readings": READINGS + "M1,2026-10-20,110.000,lk\nM1,2026-11-20,115.000,lk\nM1,2026-12-20,121.000,lk\n"
        "C1,2026-10-20,1000.000,controller\nC1,2026-11-20,1016.000,controller\n"
        "C1,2026-12-20,1061.000,controller\n",
    })
    (ws.rules / "soi_settlement.csv").write_text(
        "from,settle_month,parts,carry_over,source\n2022-09-01,1,3,true,test\n", encoding="utf-8")


def settled_accounts(ws: Workspace, period: str) -> list[str]:
    path = ws.period_dir(period) / "settlements.parquet"
    return sorted(pl.read_parquet(path)["account_id"]) if path.is_file() else []


@pytest.mark.parametrize(("setting", "soi_from", "settled"), [
    ("skip", "2015-01-01", []),  # November and December of 2026 alone: not settled
    ("covered", "2015-01-01", ["A1", "A2", "A3"]),
    ("skip", "2026-11-01", ["A1", "A2", "A3"]),  # the service began in November: its year is sealed
])
def test_common_property_settles_only_a_covered_year(town: Workspace, setting: str, soi_from: str,
                                                     settled: list[str]) -> None:
    if setting != "skip":
        partial_years(town, setting)
    soi(town, soi_from)
    close(town, "2026-11")
    close(town, "2026-12")
    january = close(town, "2027-01")
    assert settled_accounts(town, "2027-01") == settled
    assert (january.filter(pl.col("kind") == "settlement").height > 0) == bool(settled)


def test_whole_year_needs_every_month_from_the_start() -> None:
    from pipeline.close.inputs import _whole_year

    year = [f"2026-{m:02d}" for m in range(1, 13)]
    assert _whole_year(year, 2026, date(2015, 1, 1), "skip")
    assert not _whole_year(year[1:], 2026, date(2015, 1, 1), "skip")
    assert not _whole_year(["2026-12"], 2026, None, "skip")
    assert _whole_year(["2026-12"], 2026, None, "covered")
    assert _whole_year(year[6:], 2026, date(2026, 7, 15), "skip")  # the month of the start counts
    assert not _whole_year(year[7:], 2026, date(2026, 7, 15), "skip")
    assert _whole_year([], 2026, date(2027, 3, 1), "skip")  # no month of the year to miss
