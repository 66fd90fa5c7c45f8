"""Electricity by the norm matrix: rooms × persons × stove (law.md §1.3), exact kopecks.

The house of ``conftest.TOWN`` with electricity by the norm (no meter can be fitted:
no coefficient) at the demo tariff of August 2026, 6.43 ₽/кВт·ч, and the demo matrix
of ``rules/defaults/electricity_norms.csv`` (gas: 2 rooms × 3 persons = 56 кВт·ч per
person; electric: 82; 4+ rooms × 5+ persons: gas 48, electric 68).
"""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.close import compute, load_inputs
from pipeline.dates import Period
from pipeline.ingest.registers import ingest
from pipeline.workspace import BillingError, Workspace
from rules import load_rules
from tests.conftest import BUILDING_SERVICES, write_registers

PREMISES = """\
premise_id,building_id,number,kind,total_area,rooms,meter_possible,stove
P1,B1,1,residential,50.00,2,false,
P2,B1,2,residential,60.00,5,false,electric
P3,B1,3,residential,40.00,,false,gas
"""

RESIDENTS = """\
person_id,account_id,full_name,birth_date,kind,from,to
R1,A1,Иванов Иван Иванович,1980-01-01,permanent,2020-01-01,
R2,A1,Иванова Мария Петровна,1982-01-01,permanent,2020-01-01,
R3,A1,Иванов Пётр Иванович,2010-01-01,permanent,2020-01-01,
R4,A3,Сидоров Пётр Ильич,1970-01-01,permanent,2020-01-01,
R5,A3,Сидорова Ольга Петровна,1972-01-01,permanent,2020-01-01,
R6,A3,Сидоров Илья Петрович,2000-01-01,permanent,2020-01-01,
""" + "".join(f"R{n},A2,Петров {n},1990-01-01,permanent,2020-01-01,\n" for n in range(10, 16))

#: Six persons in A2, registered like everyone from 2020.
ELECTRICITY = BUILDING_SERVICES + "B1,electricity,TS,2015-01-01,\n"


@pytest.fixture
def house(town: Workspace) -> Workspace:
    write_registers(town, {"premises": PREMISES, "residents": RESIDENTS,
                           "building_services": ELECTRICITY})
    return town


def electricity(ws: Workspace, period: str = "2026-08") -> dict[str, list[dict]]:
    """account → its electricity lines of a dry close."""
    result = ingest(ws)
    assert result.total_rejected == 0
    lines = compute(load_inputs(ws, Period.parse(period))).lines.filter(
        pl.col("service_id") == "electricity")
    out: dict[str, list[dict]] = {}
    for r in lines.iter_rows(named=True):
        out.setdefault(r["account_id"], []).append(r)
    return out


def cells(lines: list[dict]) -> list[tuple]:
    return [(r["method"], r["volume_micro"], r["amount_kop"], r["norm_table"], r["norm_row"],
             r["norm_rooms"], r["norm_persons"], r["norm_stove"]) for r in lines]


def test_two_room_flat_with_three_persons_uses_its_cell(house: Workspace) -> None:
    got = electricity(house)
    # 2 rooms, 3 persons, gas stove (empty = gas): 56 кВт·ч × 3 = 168 кВт·ч × 6.43 = 1080.24
    # (row 9 of electricity_norms.csv: header, then gas 1 room × 1–5, 2 rooms × 1–3)
    assert cells(got["A1"]) == [("norm", 168_000_000, 108024, "electricity_norms", 9, 2, 3, "gas")]


def test_six_persons_in_five_rooms_use_the_4_and_5_cell(house: Workspace) -> None:
    got = electricity(house)
    # rooms 5 → «4 и более», 6 persons → «5 и более», electric stove: 68 × 6 = 408 кВт·ч
    # × 6.43 = 2623.44 (every person is charged, the cell only gives the value per person)
    assert cells(got["A2"]) == [("norm", 408_000_000, 262344, "electricity_norms", 41, 4, 5, "electric")]


def test_rooms_unknown_falls_back_to_the_per_person_norm(house: Workspace) -> None:
    got = electricity(house)
    # rooms empty: norms.csv (row 4) 75 кВт·ч × 3 = 225 × 6.43 = 1446.75
    assert cells(got["A3"]) == [("norm", 225_000_000, 144675, "norms", 4, None, 3, "gas")]


@pytest.mark.parametrize(("stove", "norm", "amount"), [
    ("", 56, 108024), ("gas", 56, 108024),
    ("electric", 82, 158178),  # 82 × 3 = 246 кВт·ч × 6.43 = 1581.78
])
def test_stove_picks_the_table(house: Workspace, stove: str, norm: int, amount: int) -> None:
    write_registers(house, {"premises": PREMISES.replace("50.00,2,false,", f"50.00,2,false,{stove}")})
    (line,) = electricity(house)["A1"]
    assert (line["norm_micro"], line["amount_kop"], line["norm_stove"]) == (
        norm * 1_000_000, amount, stove or "gas")


def test_a_cell_changed_mid_month_is_split_by_days(house: Workspace) -> None:
    with open(house.rules / "electricity_norms.csv", "a", encoding="utf-8") as fh:
        fh.write("electricity,2026-08-16,2,3,any,61.5,test: новый норматив с 16.08\n")
    got = electricity(house)
    # 1–15 August: 45 person-days / 31 × 56 = 81.290323 кВт·ч, 45 × 56 × 6.43 / 31 = 522.6967 → 522.70
    # 16–31 August: 48 / 31 × 61.5 = 95.225806 кВт·ч, 48 × 61.5 × 6.43 / 31 = 612.3019 → 612.30
    assert [(r["volume_micro"], r["amount_kop"], r["norm_row"]) for r in got["A1"]] == [
        (81_290_323, 52270, 9), (95_225_806, 61230, 42)]
    # A flat of another cell keeps its row; the new date splits its month too (as a norms.csv
    # row would): 6 × 68 × 15/31 × 6.43 = 1269.41, × 16/31 = 1354.03 (sum 2623.44 whole)
    assert [(r["norm_row"], r["amount_kop"]) for r in got["A2"]] == [(41, 126941), (41, 135403)]


def test_persons_are_the_average_registered_over_the_days(house: Workspace) -> None:
    write_registers(house, {"residents": RESIDENTS.replace(
        "R3,A1,Иванов Пётр Иванович,2010-01-01,permanent,2020-01-01,",
        "R3,A1,Иванов Пётр Иванович,2010-01-01,permanent,2026-08-17,")})
    (line,) = electricity(house)["A1"]
    # 62 + 15 = 77 person-days / 31 = 2.48 → the 2-person cell (72): 77 / 31 × 72 = 178.838710 кВт·ч
    # × 6.43 = 1149.93
    assert (line["norm_persons"], line["volume_micro"], line["amount_kop"]) == (2, 178_838_710, 114993)


def test_household_counts_every_account_of_the_flat(house: Workspace) -> None:
    accounts = (house.registers / "accounts.csv").read_text(encoding="utf-8").replace(
        "A1,P1,person,Иванов Иван Иванович,1,1,", "A1,P1,person,Иванов Иван Иванович,0.5,1,")
    write_registers(house, {
        "accounts": accounts + "A4,P1,person,Иванова Мария Петровна,0.5,1,2020-01-01,,\n",
        "residents": RESIDENTS.replace("R2,A1,", "R2,A4,")})
    got = electricity(house)
    # 3 persons live in P1 over two accounts: the 3-person cell (56) for both
    assert [(r["amount_kop"], r["norm_persons"]) for r in got["A1"]] == [(72016, 3)]  # 2 × 56 × 6.43
    assert [(r["amount_kop"], r["norm_persons"]) for r in got["A4"]] == [(36008, 3)]  # 1 × 56 × 6.43


def test_absence_lowers_the_charge_not_the_household(house: Workspace) -> None:
    write_registers(house, {"absences": "person_id,from,to\nR3,2026-08-05,2026-08-20\n"})
    (line,) = electricity(house)["A1"]
    # 14 full days away (п.86–87, no meter can be fitted): 93 − 14 = 79 person-days × 56 / 31
    # × 6.43 = 917.62; the cell stays 3 persons
    assert (line["person_days"], line["norm_persons"], line["amount_kop"]) == (79, 3, 91762)


def test_explain_names_the_cell_and_its_row(house: Workspace) -> None:
    from pipeline.explain import explain_account

    ingest(house)
    text = explain_account(house, "A1", "2026-08")
    assert "норматив 2 комн., 3 чел., газовая плита: 56 кВт·ч на человека в месяц" in text
    assert ("норматив: electricity_norms.csv, строка 9, действует с 2024-01-01: "
            "Демонстрационные значения, замените нормативом региона") in text
    assert "норматив 4 и более комн., 5 и более чел., электроплита: 68 кВт·ч" in explain_account(
        house, "A2", "2026-08")
    fallback = explain_account(house, "A3", "2026-08")
    assert "не указано число комнат — норматив на человека из norms.csv" in fallback
    assert "норматив: norms.csv, строка 4" in fallback


def test_a_matrix_with_a_hole_is_refused(house: Workspace) -> None:
    path = house.rules / "electricity_norms.csv"
    kept = [ln for ln in path.read_text(encoding="utf-8").splitlines()
            if ",3,5,electric," not in ln]
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    with pytest.raises(BillingError, match=r"услуга electricity с 2024-01-01: 3 комн\., 5 чел\., плита electric"):
        load_rules(house.rules)


def test_any_stove_rows_stand_for_both(house: Workspace) -> None:
    rows = ["service_id,from,rooms,persons,stove,value,source"] + [
        f"electricity,2024-01-01,{r},{p},any,{100 - 10 * p},test" for r in range(1, 5) for p in range(1, 6)
    ] + ["electricity,2024-01-01,2,3,electric,99,test"]
    (house.rules / "electricity_norms.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    got = electricity(house)
    assert [r["norm_micro"] for r in got["A1"]] == [70_000_000]  # gas ← any
    write_registers(house, {"premises": PREMISES.replace("50.00,2,false,", "50.00,2,false,electric")})
    assert [r["norm_micro"] for r in electricity(house)["A1"]] == [99_000_000]  # its own row wins


def test_unknown_stove_is_rejected(house: Workspace) -> None:
    write_registers(house, {"premises": PREMISES.replace("50.00,2,false,", "50.00,2,false,дровяная")})
    result = ingest(house)
    assert result.rejected["premises.csv"] == 1 and result.rejects_path is not None
    rejects = pl.read_csv(result.rejects_path, separator=";")
    (reason,) = rejects.filter((pl.col("file") == "premises.csv") & (pl.col("column") == "stove"))[
        "reason"].to_list()
    assert "gas" in reason and "electric" in reason


def test_without_the_table_one_value_per_person(house: Workspace) -> None:
    (house.rules / "electricity_norms.csv").unlink()
    got = electricity(house)
    # norms.csv 75 кВт·ч × 3 = 225 × 6.43 = 1446.75, whatever the rooms
    assert cells(got["A1"]) == [("norm", 225_000_000, 144675, "norms", 4, None, None, None)]
