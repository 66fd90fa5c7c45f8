"""The welfare body's answer (``billing import welfare FILE``): ЕДК and subsidies per person or
account, service and period, with the reject discipline of every register, taken once."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pipeline.ingest.readers import ROW
from pipeline.ingest.registers import ingest
from pipeline.ingest.welfare import (
    WELFARE_SCHEMA,
    canonical_columns,
    classify_welfare,
    import_welfare_file,
    load_welfare,
    load_welfare_files,
    parse_welfare_rows,
    receipt_welfare,
)
from pipeline.workspace import BillingError, Workspace

LONG = """\
period,account_id,person_id,service_id,kind,amount
2026-08,A1,R1,cold_water,ЕДК,"150,25"
2026-08,,R3,,субсидия,1 200.00
08.2026,A3,,Водоотведение,компенсация,40
"""

#: A regional layout: Russian headers, one column per kind, cp1251 and «;».
WIDE = """\
Месяц;Лицевой счёт;Код гражданина;Услуга;Сумма ЕДК;Сумма субсидии
08.2026;A2;R3;maintenance;100,00;
09.2026;A2;;;;250,50
"""


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def rejects_of(path: Path | None) -> list[tuple[int, str, str | None, str]]:
    assert path is not None
    report = pl.read_csv(path, separator=";", infer_schema=False)
    return [(int(r["row"]), r["column"], r["value"], r["reason"]) for r in report.iter_rows(named=True)]


def text_frame(text: str) -> pl.DataFrame:
    rows = [line.split(",") for line in text.strip().splitlines()]
    frame = pl.DataFrame({name: [r[i] or None for r in rows[1:]] for i, name in enumerate(rows[0])},
                         schema={name: pl.String for name in rows[0]})
    return frame.with_row_index(ROW, offset=2).with_columns(pl.col(ROW).cast(pl.Int64))


@pytest.fixture
def ws(town: Workspace) -> Workspace:
    ingest(town)
    return town


def test_long_layout_is_stored_with_the_person_account_and_service_resolved(ws: Workspace, tmp_path: Path) -> None:
    result = import_welfare_file(ws, write(tmp_path, "uszn.csv", LONG))
    assert (result.accepted, result.duplicates, result.rejected, result.rejects_path) == (3, 0, 0, None)
    assert result.accepted_kop == 15025 + 120000 + 4000 and result.receipt_periods == ("2026-08",)
    stored = load_welfare(ws)
    assert stored.schema == WELFARE_SCHEMA
    assert stored.select("period", "receipt_period", "account_id", "person_id", "service_id", "kind", "amount",
                         "source_row").rows() == [
        ("2026-08", "2026-08", "A1", "R1", "cold_water", "compensation", Decimal("150.25"), 2),
        # A person alone names the account they are registered on; no service: all services.
        ("2026-08", "2026-08", "A2", "R3", None, "subsidy", Decimal("1200.00"), 3),
        # ММ.ГГГГ and a service by its name.
        ("2026-08", "2026-08", "A3", None, "sewerage", "compensation", Decimal("40.00"), 4),
    ]


def test_wide_layout_with_russian_headers_in_cp1251(ws: Workspace, tmp_path: Path) -> None:
    result = import_welfare_file(ws, write(tmp_path, "edk.csv", WIDE, "cp1251"))
    assert (result.accepted, result.rejected) == (2, 0)
    assert load_welfare(ws).select("period", "account_id", "service_id", "kind", "amount").rows() == [
        ("2026-08", "A2", "maintenance", "compensation", Decimal("100.00")),
        ("2026-09", "A2", None, "subsidy", Decimal("250.50")),
    ]


def test_every_bad_row_is_rejected_with_its_column_and_reason(ws: Workspace, tmp_path: Path) -> None:
    text = """\
period,account_id,person_id,service_id,kind,amount
2026-13,A1,,,ЕДК,10
2026-08,Z9,,,ЕДК,10
2026-08,,R99,,ЕДК,10
2026-08,A1,R3,,ЕДК,10
2026-08,A1,,gas,ЕДК,10
2026-08,A1,,,пенсия,10
2026-08,A1,,,ЕДК,-5
2026-08,A1,,,ЕДК,"1,005"
2026-08,,,,ЕДК,10
,A1,,,ЕДК,10
2026-08,A2,,heating,ЕДК,10
2026-08,A2,,heating,ЕДК,11
2026-08,A3,,,субсидия,7
2026-08,A3,,,субсидия,7
"""
    result = import_welfare_file(ws, write(tmp_path, "bad.csv", text))
    assert (result.accepted, result.duplicates, result.rejected) == (1, 1, 12)
    rows = rejects_of(result.rejects_path)
    assert rows == [
        (2, "period", "2026-13", "не удалось прочитать период: нужно ГГГГ-ММ или ММ.ГГГГ"),
        (3, "account_id", "Z9", "лицевой счёт не найден в реестре лицевых счетов"),
        (4, "person_id", "R99", "гражданин не найден в реестре проживающих (residents)"),
        (5, "person_id", "R3", "гражданин не зарегистрирован на лицевом счёте A1"),
        (6, "service_id", "gas", "услуга не найдена в services.csv (нужен её код или название)"),
        (7, "kind", "пенсия", "неизвестный вид выплаты: нужно ЕДК (компенсация) или субсидия"),
        (8, "amount", "-5", "не удалось прочитать сумму: нужны рубли с копейками через запятую или точку "
                            "(не больше 2 знаков после запятой, не отрицательная)"),
        (9, "amount", "1,005", "не удалось прочитать сумму: нужны рубли с копейками через запятую или точку "
                               "(не больше 2 знаков после запятой, не отрицательная)"),
        (10, "account_id", None, "не указан ни лицевой счёт, ни код гражданина"),
        (11, "period", None, "не заполнено: период"),
        (12, "amount", "10", "в файле для этой выплаты разные суммы: строки 12, 13"),
        (13, "amount", "11", "в файле для этой выплаты разные суммы: строки 12, 13"),
    ]
    # The same amount twice in one file: the first row counts, the second is a duplicate.
    assert load_welfare(ws).select("account_id", "amount", "source_row").rows() == [("A3", Decimal("7.00"), 14)]


def test_reimport_changes_nothing_and_a_changed_sum_is_rejected(ws: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "uszn.csv", LONG)
    import_welfare_file(ws, path)
    before = load_welfare(ws)
    again = import_welfare_file(ws, path)
    assert again.already_imported and load_welfare(ws).equals(before)
    # The same rows in another file: duplicates; a different sum for a stored amount: a reject.
    other = write(tmp_path, "uszn2.csv", LONG.replace('"150,25"', '"151,00"').replace("08.2026,A3", "2026-08,A3"))
    result = import_welfare_file(ws, other)
    assert (result.accepted, result.duplicates, result.rejected) == (0, 2, 1)
    assert rejects_of(result.rejects_path) == [
        (2, "amount", "151,00", "для этой выплаты уже загружена другая сумма 150,25 ₽ (файл uszn.csv, строка 2)")]
    assert load_welfare(ws).equals(before)
    assert load_welfare_files(ws)["rejected"].to_list() == [0, 1]


def test_a_person_on_two_accounts_needs_the_account() -> None:
    raw = canonical_columns(text_frame("Период,Код гражданина,Вид выплаты,Сумма\n2026-08,R1,ЕДК,5\n"), "f.csv")
    good, rejects = parse_welfare_rows(raw, "f.csv")
    assert not rejects.height
    residents = pl.DataFrame({"person_id": ["R1", "R1"], "account_id": ["A1", "A2"]})
    accepted, _, rejects = classify_welfare(
        good, pl.DataFrame({"account_id": ["A1", "A2"]}), residents,
        pl.DataFrame({"service_id": ["x"], "name": ["X"]}), pl.DataFrame(schema=WELFARE_SCHEMA), "f.csv")
    assert not accepted.height
    assert rejects["reason"].to_list() == [
        "гражданин зарегистрирован на нескольких лицевых счетах (A1, A2) — укажите лицевой счёт"]


def test_files_without_the_needed_columns_are_refused() -> None:
    with pytest.raises(BillingError, match="нет обязательного столбца period"):
        canonical_columns(text_frame("account_id,kind,amount\nA1,ЕДК,1\n"), "f.csv")
    with pytest.raises(BillingError, match="ни столбца account_id"):
        canonical_columns(text_frame("period,kind,amount\n2026-08,ЕДК,1\n"), "f.csv")
    with pytest.raises(BillingError, match="нужен один из двух видов"):
        canonical_columns(text_frame("period,ЛС,Сумма,Сумма ЕДК,kind\n2026-08,A1,1,1,ЕДК\n"), "f.csv")
    with pytest.raises(BillingError, match="оба означают"):
        canonical_columns(text_frame("period,ЛС,Лицевой счёт,ЕДК\n2026-08,A1,A1,1\n"), "f.csv")


def test_an_answer_for_a_sealed_period_goes_to_the_next_open_receipt(ws: Workspace, tmp_path: Path) -> None:
    folder = ws.period_dir("2026-08")
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({}), encoding="utf-8")  # sealed, as far as the store goes
    result = import_welfare_file(ws, write(tmp_path, "late.csv", LONG))
    assert result.receipt_periods == ("2026-09",)
    assert receipt_welfare(ws, "2026-08").height == 0
    shown = receipt_welfare(ws, "2026-09")
    assert shown.filter(pl.col("account_id") == "A1").rows() == [("A1", "cold_water", "compensation", "2026-08", 15025)]
    assert int(shown["amount_kop"].sum()) == 15025 + 120000 + 4000


def test_the_command_reports_in_russian_and_skips_a_second_run(ws: Workspace, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = write(tmp_path, "uszn.csv", LONG)
    first = CliRunner().invoke(app, ["import", "welfare", str(path), "--home", str(ws.home)])
    assert first.exit_code == 0, first.output
    assert "uszn.csv: принято сумм 3 на 1 390,25 ₽ (в квитанции за 2026-08)" in first.output.replace("\xa0", " ")
    again = CliRunner().invoke(app, ["import", "welfare", str(path), "--home", str(ws.home)])
    assert again.exit_code == 0 and "уже загружен ранее — пропущен" in again.output
