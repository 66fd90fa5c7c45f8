"""Ingest: every bad row reported with file, row, column and reason; good rows kept."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.ingest.registers import ingest, load_store
from pipeline.workspace import BillingError, Workspace
from tests.conftest import write_registers

BAD_BUILDINGS = """\
building_id;address;manager_id;total_area;common_area
B1;г. Энск, ул. Ленина, д. 1;UK1;1000,00;100
B2;г. Энск, ул. Мира, д. 2;UK1;-5;
B1;Дубль;UK1;10;
B4;г. Энск, ул. Садовая, д. 4;UK1;abc;
B5;г. Энск, ул. Чужая, д. 5;NOPE;100;
B6;г. Энск, ул. Новая, д. 6;UK1;800;
"""

BAD_PREMISES = """\
premise_id,building_id,number,kind,total_area,rooms,meter_possible
P1,B6,1,residential,50.00,2,да
P2,B6,2,residential,60.00,два,true
P3,B9,3,residential,40.00,1,false
P4,B6,4,garage,40.00,1,false
P5,B1,5,residential,40.00,1,false
"""


def test_bad_rows_reported_good_rows_kept(town: Workspace) -> None:
    # buildings.csv in cp1251 with ';' and decimal commas, as exported by old desktop tools.
    (town.registers / "buildings.csv").write_bytes(BAD_BUILDINGS.encode("cp1251"))
    write_registers(town, {"premises": BAD_PREMISES})
    result = ingest(town)
    rejects = pl.read_csv(result.rejects_path, separator=";")
    by_row = {(r["file"], r["row"], r["column"]): r["reason"] for r in rejects.iter_rows(named=True)}

    assert by_row[("buildings.csv", 3, "total_area")] == "должно быть больше 0"
    assert "повторяющийся ключ (building_id=B1): строки 2, 4" in by_row[("buildings.csv", 2, "building_id")]
    assert ("buildings.csv", 4, "building_id") in by_row
    assert "не удалось прочитать как число" in by_row[("buildings.csv", 5, "total_area")]
    assert "Организации" in by_row[("buildings.csv", 6, "manager_id")]
    assert "целое число" in by_row[("premises.csv", 3, "rooms")]
    assert "Дома" in by_row[("premises.csv", 4, "building_id")]
    assert "допустимые значения" in by_row[("premises.csv", 5, "kind")]
    # P5 points at B1, which was refused as a duplicate: refused in cascade, with the reason.
    assert "отклонена" in by_row[("premises.csv", 6, "building_id")]

    store = load_store(town)
    assert store["buildings"]["building_id"].to_list() == ["B6"]
    assert store["premises"]["premise_id"].to_list() == ["P1"]
    assert store["premises"]["meter_possible"].to_list() == [True]
    assert store["buildings"]["total_area"].dtype == pl.Decimal(18, 2)
    assert result.rejected["buildings.csv"] == 5


def test_missing_column_stops_and_writes_nothing(town: Workspace) -> None:
    write_registers(town, {"buildings": "building_id,address\nB1,x\n"})
    with pytest.raises(BillingError, match=r"buildings\.csv: нет обязательных столбцов: manager_id"):
        ingest(town)
    assert not (town.store / "registers").exists()
    assert list(town.rejects.iterdir()) == []


def test_unreadable_file_stops(town: Workspace) -> None:
    (town.registers / "accounts.parquet").write_bytes(b"not parquet")
    (town.registers / "accounts.csv").unlink()
    with pytest.raises(BillingError, match=r"accounts\.parquet: файл не читается"):
        ingest(town)


def write_xlsx(path: Path, frame: pl.DataFrame) -> None:
    """A register as a spreadsheet a person saved: the header, then one row per record."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(frame.columns)
    for row in frame.iter_rows():
        sheet.append(list(row))
    book.save(path)


def test_xlsx_and_parquet_registers(town: Workspace) -> None:
    accounts = pl.read_csv(town.registers / "accounts.csv", infer_schema=False)
    (town.registers / "accounts.csv").unlink()
    write_xlsx(town.registers / "accounts.xlsx", accounts)
    premises = pl.read_csv(town.registers / "premises.csv", infer_schema=False)
    (town.registers / "premises.csv").unlink()
    premises.with_columns(pl.col("total_area").cast(pl.Float64)).write_parquet(
        town.registers / "premises.parquet")
    result = ingest(town)
    assert result.total_rejected == 0
    assert result.loaded["accounts"] == 3 and result.loaded["premises"] == 3


def test_second_ingest_of_same_files_changes_nothing(town: Workspace) -> None:
    first = ingest(town)
    second = ingest(town)
    assert second.unchanged and second.version == first.version
    assert len([p for p in (town.store / "registers").iterdir() if p.is_dir()]) == 1


def test_store_written_by_an_older_version_still_loads(town: Workspace) -> None:
    """A snapshot without a newer register or column loads with empty/default values."""
    from pipeline.ingest.registers import current_version, load_store

    ingest(town)
    base = town.store / "registers" / str(current_version(town))
    (base / "access_refusals.parquet").unlink()
    readings = pl.read_parquet(base / "readings.parquet").drop("confirmed")
    readings.write_parquet(base / "readings.parquet")
    store = load_store(town)
    assert store["access_refusals"].height == 0
    assert store["readings"]["confirmed"].to_list() == [False, False]


def test_identifiers_stay_text_in_xlsx_and_parquet(town: Workspace) -> None:
    """A text cell keeps its leading zeros (a numeric XLSX cell cannot: the guard of
    tests/ingest/test_ingest_guard.py catches the accounts that vanish then)."""
    accounts = pl.read_csv(town.registers / "accounts.csv", infer_schema=False).with_columns(
        pl.col("account_id").str.replace("A", "000100001"))
    (town.registers / "accounts.csv").unlink()
    write_xlsx(town.registers / "accounts.xlsx", accounts)
    residents = pl.read_csv(town.registers / "residents.csv", infer_schema=False).with_columns(
        pl.col("person_id").str.replace("R", "00"), pl.col("account_id").str.replace("A", "000100001"))
    (town.registers / "residents.csv").unlink()
    residents.write_parquet(town.registers / "residents.parquet")
    ingest(town)
    store = load_store(town)
    assert store["accounts"]["account_id"].to_list() == ["0001000011", "0001000012", "0001000013"]
    assert store["residents"].select("person_id", "account_id").rows() == [
        ("001", "0001000011"), ("002", "0001000011"), ("003", "0001000012"), ("004", "0001000013")]
