"""Reading the old system's export: the mapping, exact kopecks, every refused cell reported."""

from __future__ import annotations

import textwrap
from pathlib import Path

import polars as pl
import pytest

from pipeline.ingest.parse import REJECT_SCHEMA
from pipeline.ingest.registers import ingest
from pipeline.migrate.history import (
    read_charges_file,
    read_history,
    read_mapping,
    write_history_rejects,
)
from pipeline.migrate.model import internal_schema, staging_folder
from pipeline.workspace import BillingError, Workspace, init_workspace
from schemas.history import HISTORY
from tests.conftest import TOWN, write_registers

MAPPING = """\
[source]
system = "Квартплата 24"

[columns.history_charges]
account_id = "ЛС"
period = "Месяц"
service_id = "Услуга"
supplier_id = "Поставщик"
method = "Способ"
volume = "Объём"
tariff = "Тариф"
amount = "Начислено"

[columns.history_balances]
account_id = "ЛС"
period = "Месяц"
service_id = "Услуга"
supplier_id = "Поставщик"
opening = "Входящее"
closing = "Исходящее"

[codes.service_id]
cold_water = ["ХВС", "Холодная вода"]
maintenance = ["Содержание"]
penalty = ["Пени"]

[codes.supplier_id]
VK = ["Водоканал"]

[codes.method]
meter = ["ИПУ"]
norm = ["Норматив"]
"""

CHARGES = """\
ЛС,Месяц,Услуга,Поставщик,Способ,Объём,Тариф,Начислено
A1,2026-01,ХВС,Водоканал,ИПУ,6.5,52.28,339.82
A1,2026-01,Пени,VK,,,,1.05
A2,2026-01,Содержание,UK1,,,,1234.56
A1,2026-02,Холодная вода,VK,Норматив,,,-10.00
"""

BALANCES = """\
ЛС,Месяц,Услуга,Поставщик,Входящее,Исходящее
A1,2026-01,ХВС,VK,100.00,439.82
A1,2026-02,ХВС,VK,,429.82
"""

PAYMENTS = """\
payment_id,agent,account_id,paid_on,period,amount,service_id,supplier_id,charge_period
P1,SB,A1,2026-02-10,,300.00,cold_water,VK,2026-01
P1,SB,A1,2026-02-10,,39.82,maintenance,UK1,2026-01
P2,SB,A2,15.01.2026,,100,,,
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The three-flat town of conftest, ingested, with the workspace's mapping."""
    ws = init_workspace(tmp_path_factory.mktemp("migrate") / "home")
    write_registers(ws, TOWN)
    ingest(ws)
    (ws.home / "migration").mkdir()
    (ws.home / "migration" / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    return ws


def export(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        if isinstance(body, bytes):
            (folder / name).write_bytes(body)
        else:
            (folder / name).write_text(textwrap.dedent(body), encoding="utf-8")
    return folder


def by_cell(rejects: pl.DataFrame) -> dict[tuple[str, int, str], tuple[str | None, str]]:
    return {(r["file"], r["row"], r["column"]): (r["value"], r["reason"]) for r in rejects.iter_rows(named=True)}


def test_mapped_export_reads_into_exact_kopecks(ws: Workspace, tmp_path: Path) -> None:
    folder = export(tmp_path / "export", {"history_charges.csv": CHARGES, "history_balances.csv": BALANCES,
                                         "history_payments.csv": PAYMENTS,
                                         "history_readings.csv": "meter_id,read_on,value\nM1,2026-01-20,74.5\n"})
    history, rejects = read_history(ws, folder)

    assert rejects.height == 0 and rejects.schema == REJECT_SCHEMA
    assert history.source == "Квартплата 24"
    assert history.months == ("2026-01", "2026-02")
    for name in HISTORY:
        assert history.frame(name).schema == internal_schema(name), name
    charges = history.frame("history_charges")
    assert charges.rows() == [
        ("A1", "2026-01", "cold_water", "VK", "meter", 6_500_000, 5228, 33982),
        ("A1", "2026-01", "penalty", "VK", "imported", None, None, 105),
        ("A2", "2026-01", "maintenance", "UK1", "imported", None, None, 123456),
        ("A1", "2026-02", "cold_water", "VK", "norm", None, None, -1000),
    ]
    assert history.frame("history_balances").rows() == [
        ("A1", "2026-01", "cold_water", "VK", 10000, 43982), ("A1", "2026-02", "cold_water", "VK", None, 42982)]
    payments = history.frame("history_payments")
    # A payment split by the old system keeps its parts; an empty booked month is the month paid.
    # (The monthly registers come month by month, in the file's order within a month.)
    assert payments.select("payment_id", "period", "amount_kop", "service_id").rows() == [
        ("P2", "2026-01", 10000, None), ("P1", "2026-02", 30000, "cold_water"),
        ("P1", "2026-02", 3982, "maintenance")]
    assert history.frame("history_readings")["value_micro"].to_list() == [74_500_000]
    assert history.frame("history_debts").height == 0
    assert set(history.files_sha256) == {"history_charges.csv", "history_balances.csv", "history_payments.csv",
                                         "history_readings.csv", "mapping.toml"}
    assert write_history_rejects(ws, rejects) is None


def test_cp1251_semicolons_and_decimal_commas(ws: Workspace, tmp_path: Path) -> None:
    mapping = MAPPING.replace('system = "Квартплата 24"', 'system = "Стек"\ndecimal = ","\nencoding = "cp1251"')
    charges = ("ЛС;Месяц;Услуга;Поставщик;Объём;Тариф;Начислено\n"
               "A1;01.2026;ХВС;Водоканал;6,5;52,28;339,82\n"
               "A2;01.2026;Содержание;UK1;;;1 234,56\n"
               "A3;01.2026;Содержание;UK1;;;12.50\n")
    balances = "ЛС;Месяц;Услуга;Поставщик;Исходящее\nA1;2026-01;ХВС;VK;-0,05\n"
    folder = export(tmp_path / "export", {"mapping.toml": mapping,
                                         "history_charges.csv": charges.encode("cp1251"),
                                         "history_balances.csv": balances.encode("cp1251")})
    history, rejects = read_history(ws, folder)

    assert history.source == "Стек"
    assert history.frame("history_charges").select("account_id", "period", "volume_micro", "price_kop",
                                                    "amount_kop").rows() == [
        ("A1", "2026-01", 6_500_000, 5228, 33982), ("A2", "2026-01", None, None, 123456)]
    assert history.frame("history_balances")["closing_kop"].to_list() == [-5]
    # With [source] decimal = "," a point is not guessed at.
    cells = by_cell(rejects)
    assert list(cells) == [("history_charges.csv", 4, "Начислено")]
    value, reason = cells[("history_charges.csv", 4, "Начислено")]
    assert value == "12.50" and "разделитель дробной части" in reason


def test_bad_cells_are_refused_with_file_row_column_and_reason(ws: Workspace, tmp_path: Path) -> None:
    charges = CHARGES + ("A9,2026-02,ХВС,VK,,,,10.00\n"       # row 6: unknown account
                         "A2,2026-13,ХВС,VK,,,,10.00\n"       # row 7: no such month
                         "A3,2026-02,ХВС,VK,,,,10.005\n"      # row 8: three decimals
                         "A3,2026-02,ГВС,VK,,,,10.00\n"       # row 9: unknown service code
                         "A2,2026-02,Пени,NOPE,,,,1.00\n")    # row 10: unknown supplier
    balances = BALANCES + "A1,2026-03,ХВС,VK,,1.00\n"         # row 4: a month not migrated
    payments = PAYMENTS + ("P3,SB,A3,2026-02-01,,5.00,,,\n"    # rows 5, 6: the same payment twice
                           "P3,SB,A3,2026-02-01,,5.00,,,\n")
    folder = export(tmp_path / "export", {"history_charges.csv": charges, "history_balances.csv": balances,
                                         "history_payments.csv": payments})
    history, rejects = read_history(ws, folder)
    cells = by_cell(rejects)

    value, reason = cells[("history_charges.csv", 6, "ЛС")]
    assert value == "A9" and "нет такого лицевого счёта" in reason
    value, reason = cells[("history_charges.csv", 7, "Месяц")]
    assert value == "2026-13" and "ГГГГ-ММ" in reason
    value, reason = cells[("history_charges.csv", 8, "Начислено")]
    assert value == "10.005" and "не больше 2 знаков после запятой" in reason
    value, reason = cells[("history_charges.csv", 9, "Услуга")]
    assert value == "ГВС" and "нет такой услуги" in reason
    value, reason = cells[("history_charges.csv", 10, "Поставщик")]
    assert value == "NOPE" and "Организации" in reason
    value, reason = cells[("history_balances.csv", 4, "Месяц")]
    assert value == "2026-03" and "2026-01–2026-02" in reason
    assert {row for file, row, _ in cells if file == "history_payments.csv"} == {5, 6}
    assert {row for file, row, _ in cells if file == "history_charges.csv"} == {6, 7, 8, 9, 10}

    # The good rows are kept.
    assert history.frame("history_charges").height == 4
    assert history.frame("history_balances").height == 2
    assert sorted(history.frame("history_payments")["payment_id"].to_list()) == ["P1", "P1", "P2"]

    report = write_history_rejects(ws, rejects)
    assert report is not None and report.parent == ws.rejects and report.name.startswith("migration-")
    assert pl.read_csv(report, separator=";").height == rejects.height


def test_a_gap_in_months_is_refused(ws: Workspace, tmp_path: Path) -> None:
    charges = CHARGES.replace("2026-02", "2026-04") + "A2,2026-03,Содержание,UK1,,,,5.00\n".replace(
        "A2", "A9")  # March only in a refused row
    folder = export(tmp_path / "export", {"history_charges.csv": charges, "history_balances.csv": BALANCES})
    with pytest.raises(BillingError, match=r"нет начислений за 2026-02, 2026-03") as err:
        read_history(ws, folder)
    assert "migration-" in str(err.value)  # the refused March row is in a report
    assert not staging_folder(ws).exists()  # the months read so far are gone with the refusal
    # The charges read and kept by month, then the balances refused: nothing stays either.
    folder = export(tmp_path / "no-closing", {"history_charges.csv": CHARGES,
                                             "history_balances.csv": BALANCES.replace("Исходящее", "Сальдо")})
    with pytest.raises(BillingError, match=r"history_balances\.csv: нет обязательных столбцов"):
        read_history(ws, folder)
    assert not staging_folder(ws).exists()


def test_required_files_and_columns(ws: Workspace, tmp_path: Path) -> None:
    folder = export(tmp_path / "only-charges", {"history_charges.csv": CHARGES})
    with pytest.raises(BillingError, match="history_balances"):
        read_history(ws, folder)
    folder = export(tmp_path / "no-amount", {"history_charges.csv": CHARGES.replace("Начислено", "Сумма"),
                                            "history_balances.csv": BALANCES})
    with pytest.raises(BillingError, match=r"history_charges.csv: нет обязательных столбцов: «Начислено» \(amount\)"):
        read_history(ws, folder)


@pytest.mark.parametrize(("text", "key"), [
    ("[columns.history_charge]\naccount_id = 'ЛС'\n", "columns.history_charge"),
    ("[columns.history_charges]\naccount = 'ЛС'\n", "columns.history_charges.account"),
    ("[columns.history_charges]\naccount_id = 'ЛС'\nperiod = 'ЛС'\n", "columns.history_charges.period"),
    ("[codes.service_id]\ncold_water = ['ХВС']\nhot_water = ['ГВС', 'ХВС']\n", "codes.service_id.hot_water"),
    ("[codes.amount]\nx = ['y']\n", "codes.amount"),
    ("[codes.service_id]\ncold_water = 'ХВС'\nhot_water = []\n", "codes.service_id.hot_water"),
    ("[source]\ndecimal = ';'\n", "source.decimal"),
    ("[source]\nsystem = 'x'\nsytem = 'y'\n", "source.sytem"),
    ("[colums.history_charges]\n", "colums"),
])
def test_mapping_errors_name_the_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BillingError) as err:
        read_mapping(path)
    assert str(err.value).startswith(f"mapping.toml: ключ {key}:")


def test_mapping_reads(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(MAPPING, encoding="utf-8")
    mapping = read_mapping(path)
    assert mapping.codes["service_id"] == {"ХВС": "cold_water", "Холодная вода": "cold_water",
                                           "Содержание": "maintenance", "Пени": "penalty"}
    assert mapping.renames("history_charges")["ЛС"] == "account_id"
    path.write_text("[source\n", encoding="utf-8")
    with pytest.raises(BillingError, match=r"mapping\.toml: файл сопоставления не читается"):
        read_mapping(path)


def test_charges_file_of_the_parallel_run(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "старая-2026-02.csv"
    path.write_text(CHARGES + "A9,2026-02,ХВС,VK,,,,1.00\n", encoding="utf-8")
    charges, rejects = read_charges_file(ws, path)
    assert charges.schema == internal_schema("history_charges")
    assert charges["amount_kop"].to_list() == [33982, 105, 123456, -1000]
    assert by_cell(rejects).keys() == {(path.name, 6, "ЛС")}


def test_xlsx_numbers_with_a_decimal_comma_mapping(ws: Workspace, tmp_path: Path) -> None:
    from openpyxl import Workbook

    folder = export(tmp_path / "export", {
        "mapping.toml": MAPPING.replace('system = "Квартплата 24"', 'decimal = ","'),
        "history_charges.csv": "ЛС;Месяц;Услуга;Поставщик;Начислено\nA1;2026-01;ХВС;VK;52,28\n"})
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["ЛС", "Месяц", "Услуга", "Поставщик", "Исходящее"])
    sheet.append(["A1", "2026-01", "ХВС", "VK", 52.28])  # a spreadsheet number: its own decimal point
    sheet.append(["A2", "2026-01", "ХВС", "VK", "=B2*2"])  # a formula saved without its value
    book.save(folder / "history_balances.xlsx")
    history, rejects = read_history(ws, folder)
    # The formula cell is named once, by the file's column.
    assert rejects.select("file", "row", "column", "value").rows() == [
        ("history_balances.xlsx", 3, "Исходящее", "=B2*2")]
    assert "формула" in rejects["reason"][0]
    assert history.frame("history_charges")["amount_kop"].to_list() == [5228]
    assert history.frame("history_balances")["closing_kop"].to_list() == [5228]


def test_a_file_read_in_pieces_gives_what_the_whole_file_gives(ws: Workspace, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Large files are read piece by piece (readers.iter_table) and kept month by month: the
    history, the rejects and their row numbers are those of one read, and a key repeated
    in two pieces is refused as in one file."""
    from pipeline.ingest import readers

    charges = CHARGES + "A1,2026-01,ХВС,Водоканал,ИПУ,6.5,52.28,339.82\n"  # the first row's key again, far below
    charges += 'A2,2026-02,Пени,"UK1",,,,"0,5.1"\n'  # a bad cell near the end
    files = {"history_charges.csv": charges.encode("cp1251"), "history_balances.csv": BALANCES,
             "history_payments.csv": PAYMENTS}
    whole, whole_rejects = read_history(ws, export(tmp_path / "one", files))
    # (each load reads into the same staging folder: keep the first one's frames)
    whole_frames = {name: whole.frame(name) for name in HISTORY}
    monkeypatch.setattr(readers, "CHUNK_BYTES", 60)
    assert len(list(readers.iter_table(tmp_path / "one" / "history_charges.csv"))) >= 4
    parts, parts_rejects = read_history(ws, export(tmp_path / "pieces", files))

    assert parts.months == whole.months == ("2026-01", "2026-02")
    for name in HISTORY:
        assert parts.frame(name).equals(whole_frames[name]), name
    assert parts_rejects.equals(whole_rejects)
    cells = by_cell(parts_rejects)
    # Both rows of the repeated key are refused, the first naming the other.
    assert cells[("history_charges.csv", 2, "ЛС")][1].endswith("строки 2, 6")
    assert ("history_charges.csv", 6, "ЛС") in cells
    assert cells[("history_charges.csv", 7, "Начислено")][0] == "0,5.1"
    assert parts.frame("history_charges")["amount_kop"].to_list() == [105, 123456, -1000]


def test_payments_in_pieces_are_checked_by_whole_payments(ws: Workspace, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A payments file larger than a piece is checked in buckets of whole payments: the parts of
    a split payment far apart in the file, a key repeated in two pieces and a split payment
    whose parts name two accounts give the rejects and the payments one read gives; nothing of
    the scratch files (the buckets, the charges' key hashes) stays in the staging folder."""
    from pipeline.ingest import readers

    payments = PAYMENTS + "".join(f"Q{i},SB,A2,2026-02-{10 + i % 9},,1.{i:02d},,,\n" for i in range(30))
    payments += ("P1,SB,A1,2026-02-10,,5.00,cold_water,VK,2026-02\n"   # a third part of P1, far below
                 "Q3,SB,A2,2026-02-12,,1.03,,,\n"                       # Q3's key again
                 "R1,SB,A1,2026-02-11,,2.00,cold_water,VK,2026-01\n"
                 "R1,SB,A2,2026-02-11,,3.00,maintenance,UK1,2026-01\n")  # R1's parts: two accounts
    files = {"history_charges.csv": CHARGES, "history_balances.csv": BALANCES, "history_payments.csv": payments}
    whole, whole_rejects = read_history(ws, export(tmp_path / "one", files))
    whole_payments = whole.frame("history_payments")
    monkeypatch.setattr(readers, "CHUNK_BYTES", 200)
    assert len(list(readers.iter_table(tmp_path / "one" / "history_payments.csv"))) >= 5
    parts, parts_rejects = read_history(ws, export(tmp_path / "pieces", files))

    assert parts_rejects.equals(whole_rejects)
    cells = by_cell(parts_rejects)
    rows = {row for file, row, _ in cells if file == "history_payments.csv"}
    assert rows == {2 + 3 + 3, 2 + 3 + 31, 2 + 3 + 32, 2 + 3 + 33}  # Q3 twice, both parts of R1
    key = ["agent", "payment_id", "service_id", "supplier_id", "charge_period"]
    # The staged rows are those of one read (in the order of their buckets).
    assert parts.frame("history_payments").sort(key, nulls_last=True).equals(
        whole_payments.sort(key, nulls_last=True))
    assert whole_payments.filter(pl.col("payment_id") == "P1")["amount_kop"].sort().to_list() == [500, 3982, 30000]
    assert sorted(p.name for p in staging_folder(ws).iterdir()) == sorted(
        name for name in HISTORY if (staging_folder(ws) / name).is_dir())


def test_charges_and_balances_read_at_once_give_what_one_read_gives(ws: Workspace, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A large export's charges and balances are read at the same time, in two processes; the
    balances' months are checked after: the same history and the same rejects (a balance of a
    month the charges do not have, a repeated key, a bad cell) as one file after the other."""
    from pipeline.migrate import history as module

    balances = BALANCES + ("A1,2026-03,ХВС,VK,,1.00\n"      # row 4: a month not migrated
                           "A1,2026-02,ХВС,VK,,429.82\n"    # row 5: row 3's key again
                           "A2,2026-01,ХВС,VK,,12.345\n"    # row 6: three decimals
                           "A2,2025-12,ХВС,VK,,1.00\n")     # row 7: before the months
    files = {"history_charges.csv": CHARGES, "history_balances.csv": balances, "history_payments.csv": PAYMENTS}
    one, one_rejects = read_history(ws, export(tmp_path / "one", files))
    one_frames = {name: one.frame(name) for name in HISTORY}
    monkeypatch.setattr(module, "PARALLEL_READ_BYTES", 0)
    monkeypatch.setattr(module, "read_workers", lambda _ws: 2)
    staged: list[str] = []
    real = module._stage_beside
    monkeypatch.setattr(module, "_stage_beside", lambda *args: staged.extend(args[1]) or real(*args))
    both, both_rejects = read_history(ws, export(tmp_path / "both", files))
    assert staged == ["history_balances"]  # read beside the charges
    assert both.months == one.months == ("2026-01", "2026-02")
    for name in HISTORY:
        assert both.frame(name).equals(one_frames[name]), name
    assert both_rejects.equals(one_rejects)
    cells = by_cell(both_rejects)
    assert {row for file, row, _ in cells if file == "history_balances.csv"} == {3, 4, 5, 6, 7}
    assert cells[("history_balances.csv", 4, "Месяц")] == ("2026-03", cells[("history_balances.csv", 7, "Месяц")][1])
    assert "2026-01–2026-02" in cells[("history_balances.csv", 4, "Месяц")][1]
    assert not (staging_folder(ws) / "history_balances" / "2026-03").exists()
