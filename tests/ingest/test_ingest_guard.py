"""Ingest never lets a bad row or a broken file delete what the store already has.

Each case starts from the town of tests/conftest.py loaded once (the "last snapshot")
and breaks the registers the way it happens in practice: a flat listed twice, account
numbers whose leading zeros a spreadsheet dropped, a register file gone, a formula
saved without its value, a file glued from two encodings.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.ingest.payments import import_payment_file, load_payments
from pipeline.ingest.registers import current_version, ingest, load_store
from pipeline.workspace import BillingError, Workspace
from tests.conftest import ACCOUNTS, BUILDINGS, PREMISES, RESIDENTS, write_registers

P1_AGAIN = "P1,B1,1а,residential,55.00,2,true\n"


def reject_rows(path: Path | None) -> list[dict]:
    assert path is not None
    return pl.read_csv(path, separator=";", infer_schema=False).with_columns(pl.col("row").cast(pl.Int64)).to_dicts()


def latest_report(ws: Workspace) -> Path:
    return max(ws.rejects.glob("ingest-*.csv"))


def keep_last(ws: Workspace) -> None:
    path = ws.home / "settings.toml"
    text = path.read_text(encoding="utf-8")
    assert 'on_rejected_existing = "refuse"' in text
    path.write_text(text.replace('on_rejected_existing = "refuse"', 'on_rejected_existing = "keep_last"'),
                    encoding="utf-8")


# ------------------------------------------------------------------ a refused row of an existing record


def test_flat_listed_twice_refuses_the_ingest_and_leaves_the_store(town: Workspace) -> None:
    ingest(town)
    before = current_version(town)
    write_registers(town, {"premises": PREMISES + P1_AGAIN})
    with pytest.raises(BillingError) as err:
        ingest(town)
    message = str(err.value)
    # P1 itself, and in cascade its account A1, A1's residents R1, R2, its meter M1 and M1's readings.
    assert "пропали бы 7 записей" in message
    assert "premises.csv, строка 2 (premise_id=P1): повторяющийся ключ (premise_id=P1): строки 2, 5" in message
    assert "premises.csv, строка 5 (premise_id=P1): повторяющийся ключ (premise_id=P1): такой же ключ в строке 2" in message
    assert "accounts.csv, строка 2 (account_id=A1)" in message
    assert 'on_rejected_existing = "keep_last"' in message
    assert f"текущей остаётся загрузка {before}" in message
    assert current_version(town) == before
    assert load_store(town)["premises"]["premise_id"].to_list() == ["P1", "P2", "P3"]
    # The reject report is still written, and says why the whole load stopped.
    report = reject_rows(latest_report(town))
    assert {(r["file"], r["row"]) for r in report} >= {("premises.csv", 2), ("premises.csv", 5),
                                                        ("accounts.csv", 2), ("residents.csv", 2)}
    assert all("загрузка отменена, чтобы не потерять запись" in r["reason"] for r in report)


def test_resident_of_a_refused_account_counts_too(town: Workspace) -> None:
    ingest(town)
    write_registers(town, {"accounts": ACCOUNTS.replace("A3,P3,person,Сидоров Пётр Ильич,1,1,2020-01-01",
                                                        "A3,P3,person,Сидоров Пётр Ильич,1,1,01/01/2020")})
    with pytest.raises(BillingError, match=r"пропали бы 2 записи") as err:
        ingest(town)
    assert "residents.csv, строка 5 (person_id=R4, from=2020-01-01): нет такой записи в реестре «Лицевые счета»" \
        in str(err.value)


def test_keep_last_keeps_the_previous_version_and_says_so(town: Workspace) -> None:
    ingest(town)
    before = current_version(town)
    keep_last(town)
    write_registers(town, {"premises": PREMISES + P1_AGAIN})
    result = ingest(town)
    store = load_store(town)
    p1 = store["premises"].filter(pl.col("premise_id") == "P1")
    assert p1.select("number", pl.col("total_area").cast(pl.String)).rows() == [("1", "50.00")]
    assert store["premises"]["premise_id"].to_list() == ["P1", "P2", "P3"]
    # The cascade is kept too: A1 points at the kept P1, its residents at A1.
    assert store["accounts"]["account_id"].to_list() == ["A1", "A2", "A3"]
    assert store["residents"]["person_id"].to_list() == ["R1", "R2", "R3", "R4"]
    assert result.kept == {"premises": 1, "accounts": 1, "residents": 2, "meters": 1, "readings": 2}
    report = {(r["file"], r["row"]): r["reason"] for r in reject_rows(result.rejects_path)}
    note = f"строка отклонена; оставлена прежняя версия записи из загрузки {before}"
    assert report[("premises.csv", 2)].endswith(note) and report[("premises.csv", 5)].endswith(note)
    assert report[("residents.csv", 3)].endswith(note)


def test_keep_last_cannot_keep_a_record_whose_parent_is_gone(town: Workspace) -> None:
    ingest(town)
    keep_last(town)
    # P3 deleted on purpose, its account A3 left behind: A3 cannot keep a missing premise.
    write_registers(town, {"premises": PREMISES.replace("P3,B1,3,residential,40.00,1,false\n", "")})
    with pytest.raises(BillingError, match=r"accounts\.csv, строка 4 \(account_id=A3\)") as err:
        ingest(town, accept_removals=True)
    assert "прежние версии этих записей оставить нельзя" in str(err.value)
    assert "on_rejected_existing" not in str(err.value)


# ------------------------------------------------------------------ many records vanish at once


def zero_padded(text: str) -> str:
    for n in (1, 2, 3):
        text = text.replace(f"A{n},", f"000100001{n},").replace(f",A{n},", f",000100001{n},")
    return text


def zeros_dropped(text: str) -> str:
    for n in (1, 2, 3):
        text = text.replace(f"000100001{n}", f"100001{n}")
    return text


def test_leading_zeros_survive_and_their_loss_is_refused(town: Workspace) -> None:
    write_registers(town, {"accounts": zero_padded(ACCOUNTS), "residents": zero_padded(RESIDENTS)})
    ingest(town)
    assert load_store(town)["accounts"]["account_id"].to_list() == ["0001000011", "0001000012", "0001000013"]
    before = current_version(town)
    # The same files after a round trip through a spreadsheet: 0001000011 → 1000011.
    write_registers(town, {"accounts": zeros_dropped(zero_padded(ACCOUNTS)),
                           "residents": zeros_dropped(zero_padded(RESIDENTS))})
    with pytest.raises(BillingError) as err:
        ingest(town)
    message = str(err.value)
    assert ("лицевые счета: исчезнут 3 из 3 (0001000011, 0001000012, 0001000013); похоже, в номерах "
            "потеряны ведущие нули (0001000011 → 1000011") in message
    assert "если удаление намеренное — billing ingest --accept-removals" in message
    assert current_version(town) == before
    # Told so, the ingest goes through.
    ingest(town, accept_removals=True)
    assert load_store(town)["accounts"]["account_id"].to_list() == ["1000011", "1000012", "1000013"]


def test_accounts_deleted_from_the_file_are_refused_above_the_share(town: Workspace) -> None:
    ingest(town)
    write_registers(town, {"accounts": ACCOUNTS.replace("A3,P3,person,Сидоров Пётр Ильич,1,1,2020-01-01,,\n", ""),
                           "residents": RESIDENTS.replace("R4,A3,Сидоров Пётр Ильич,1970-01-01,permanent,2020-01-01,\n", "")})
    with pytest.raises(BillingError) as err:
        ingest(town)
    assert ("лицевые счета: исчезнут 1 из 3 (A3); проверьте, не потеряны ли ведущие нули в номерах; "
            "если удаление намеренное — billing ingest --accept-removals") in str(err.value)
    assert "проживающие: исчезнут 1 из 4 (R4)" in str(err.value)
    result = ingest(town, accept_removals=True)
    assert result.loaded["accounts"] == 2


# ------------------------------------------------------------------ a register file gone


def test_missing_register_is_refused_unless_dropped(town: Workspace) -> None:
    ingest(town)
    before = current_version(town)
    (town.registers / "residents.csv").unlink()
    with pytest.raises(BillingError) as err:
        ingest(town)
    assert str(err.value) == (
        "Реестр residents был в прошлой загрузке (residents.csv), а сейчас его нет в registers/: верните "
        "файл или, если реестр удалён намеренно, выполните billing ingest --drop residents")
    assert current_version(town) == before
    with pytest.raises(BillingError, match=r"--drop meter: нет такого реестра"):
        ingest(town, drop=["meter"])
    with pytest.raises(BillingError, match=r"--drop meters: файл meters\.csv есть в"):
        ingest(town, drop=["residents", "meters"])
    ingest(town, drop=["residents"])
    assert load_store(town)["residents"].height == 0


def test_cli_options_accept_removals_and_drop(town: Workspace, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    def billing(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["billing", "ingest", "--home", str(town.home), *args])
        with pytest.raises(SystemExit) as exit_:
            main()
        out = capsys.readouterr()
        return int(exit_.value.code or 0), out.out + out.err

    assert billing()[0] == 0
    (town.registers / "residents.csv").unlink()
    code, out = billing()
    assert code == 1 and "billing ingest --drop residents" in out
    assert billing("--drop", "residents")[0] == 0
    write_registers(town, {"accounts": ACCOUNTS.replace("A3,P3,person,Сидоров Пётр Ильич,1,1,2020-01-01,,\n", "")})
    code, out = billing()
    assert code == 1 and "лицевые счета: исчезнут 1 из 3 (A3)" in out
    assert billing("--accept-removals")[0] == 0


def test_a_bad_ingest_setting_is_named(town: Workspace) -> None:
    ingest(town)
    path = town.home / "settings.toml"
    path.write_text(path.read_text(encoding="utf-8").replace('"refuse"', '"skip"'), encoding="utf-8")
    write_registers(town, {"premises": PREMISES + "P4,B1,4,residential,30.00,1,true\n"})
    with pytest.raises(BillingError, match=r"settings\.toml \[ingest\] on_rejected_existing = 'skip'"):
        ingest(town)


# ------------------------------------------------------------------ XLSX formulas without a value


def test_formula_without_cached_value_is_a_reject_row(town: Workspace) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["building_id", "address", "manager_id", "total_area", "common_area"])
    sheet.append(["B1", "г. Энск, ул. Ленина, д. 1", "UK1", 1000, 100])
    sheet.append([])  # a blank row: rows are still named as the sheet numbers them
    # openpyxl writes a formula without its computed value, like any script does.
    sheet.append(["B2", "г. Энск, ул. Мира, д. 2", "UK1", 1200, "=700+99.8"])
    sheet.append(["B3", "г. Энск, ул. Мира, д. 3", "UK1", "=B2*2", 10])
    book.save(town.registers / "buildings.xlsx")
    (town.registers / "buildings.csv").unlink()
    result = ingest(town)
    reason = ("формула без вычисленного значения: откройте файл в Excel и сохраните его, чтобы значения "
              "пересчитались")
    report = [r for r in reject_rows(result.rejects_path) if r["file"] == "buildings.xlsx"]
    assert [(r["row"], r["column"], r["value"], r["reason"]) for r in report] == [
        (4, "common_area", "=700+99.8", reason), (5, "total_area", "=B2*2", reason)]
    assert load_store(town)["buildings"]["building_id"].to_list() == ["B1"]


# ------------------------------------------------------------------ many duplicates stay linear


def test_twenty_thousand_duplicates_are_reported_in_linear_time_and_size(town: Workspace) -> None:
    rows = 20_000
    write_registers(town, {"premises": PREMISES + "P9,B1,9,residential,30.00,1,true\n" * rows})
    started = time.perf_counter()
    result = ingest(town)
    seconds = time.perf_counter() - started
    assert seconds < 5, seconds
    assert result.rejects_path is not None
    assert result.rejects_path.stat().st_size < 200 * rows
    report = {r["row"]: r["reason"] for r in reject_rows(result.rejects_path) if r["file"] == "premises.csv"}
    assert len(report) == rows
    assert report[5] == f"повторяющийся ключ (premise_id=P9): строки 5, 6, 7, 8, 9 и ещё {rows - 5}"
    assert report[rows + 4] == "повторяющийся ключ (premise_id=P9): такой же ключ в строке 5"
    assert result.loaded["premises"] == 3


# ------------------------------------------------------------------ a file in two encodings


def test_register_in_mixed_encoding_is_refused(town: Workspace) -> None:
    data = BUILDINGS.encode() + "B2,г. Энск, ул. Мира, д. 2,UK1,500.00,\n".encode("cp1251")
    (town.registers / "buildings.csv").write_bytes(data)
    with pytest.raises(BillingError) as err:
        ingest(town)
    assert str(err.value) == ("buildings.csv: файл в смешанной кодировке: строки 1–2 в UTF-8, со строки 3 — "
                              "Windows-1251; сохраните файл в одной кодировке")
    assert not (town.store / "registers").exists()


def sber_line(op: str, account: str, payer: str) -> str:
    return (f"15-09-2026;10-00-00;8615;8615999V;{op};{account};{payer};г. Энск, ул. Ленина, д. 1;082026;"
            "[!];[!];;100,00;100,00;0,00")


@pytest.mark.parametrize(("name", "data", "message"), [
    ("pay.csv",
     "payment_id,paid_on,account_id,amount,period,agent,refund_of\n"
     "p1,2026-09-05,A1,10.00,пени,sber,\n".encode() + "p2,2026-09-05,A2,10.00,пени,sber,\n".encode("cp1251"),
     "pay.csv: файл в смешанной кодировке: строки 1–2 в UTF-8, со строки 3 — Windows-1251"),
    ("sber.txt",
     (sber_line("1", "A1", "Иванов Иван Иванович") + "\r\n").encode("cp1251")
     + (sber_line("2", "A2", "Петрова Анна Сергеевна") + "\r\n=2;200,00;200,00;0,00;1;16-09-2026\r\n").encode(),
     "sber.txt: файл в смешанной кодировке: строка 1 в Windows-1251, со строки 2 — UTF-8"),
])
def test_payment_file_in_mixed_encoding_is_refused(town: Workspace, tmp_path: Path, name: str, data: bytes,
                                                   message: str) -> None:
    ingest(town)
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(BillingError, match=message):
        import_payment_file(town, path)
    assert load_payments(town).height == 0
    assert not (town.store / "imported_files.parquet").exists()

