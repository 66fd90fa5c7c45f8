"""Payments as a bookkeeper meets them: the import names its suspense payments, tables read
the Russian way, the agent is never guessed, a wrong file is taken back while its period is
open, ``billing sql`` writes a workbook, report CSVs carry a decimal comma.

The town (tests/conftest.py) with August 2026 sealed; its accounts are A1, A2, A3.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.close import compute, load_inputs, seal
from pipeline.dates import Period
from pipeline.ingest.bank_formats import sber_register_bytes
from pipeline.ingest.payments import (
    import_inbox,
    import_payment_file,
    load_bank_readings,
    load_imported_files,
    load_payments,
    load_suspense,
    revert_payment_file,
)
from pipeline.ingest.registers import ingest
from pipeline.workspace import BillingError, Workspace

HEADER = "payment_id,paid_on,account_id,amount,period,agent,refund_of\n"
NBSP = "\u00a0"


def close(ws: Workspace, period: str) -> Path:
    inputs = load_inputs(ws, Period.parse(period))
    return seal(ws, compute(inputs), inputs)


def billing(ws: Workspace, *args: str) -> str:
    """``billing ARGS --home HOME`` in this process; its output (a failure raises)."""
    result = CliRunner().invoke(app, [*args, "--home", str(ws.home)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def audit_lines(ws: Workspace) -> list[dict]:
    return [json.loads(line) for line in (ws.audit / "log.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def august(town: Workspace) -> Workspace:
    ingest(town)
    close(town, "2026-08")
    return town


# --------------------------------------------------------------------------- suspense


SEVEN_UNKNOWN = "".join(f"x{i},2026-09-0{i},999900000{i},1234.56,,post,\n" for i in range(1, 8))


def test_import_summary_names_the_suspense_payments_and_the_commands(
        august: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "pay.csv", HEADER + "p1,2026-09-05,A1,100.00,,post,\n" + SEVEN_UNKNOWN)
    out = billing(august, "payments", "import", str(path))
    assert "принято платежей 1 на 100,00 ₽, невыясненных 7" in out
    assert f"x1 (post) от 01.09.2026, счёт 9999000001, 1{NBSP}234,56 ₽ — неизвестный лицевой счёт" in out
    assert "x5 (post) от 05.09.2026" in out and "x6 (post)" not in out
    assert "и ещё 2" in out
    assert f"billing payments suspense --home {august.home}" in out
    assert f"billing payments match ПЛАТЁЖ СЧЁТ --home {august.home}" in out


def test_nightly_import_names_the_suspense_payments(august: Workspace) -> None:
    (august.inbox / "night.csv").write_text(HEADER + "x1,2026-09-05,9999000001,10.00,,post,\n",
                                            encoding="utf-8")
    [info] = import_inbox(august, datetime.now() + timedelta(hours=1), today=date(2026, 9, 30))
    assert info["suspense_list"] == [
        "Невыясненные платежи (1) — не зачтены, ждут лицевого счёта:",
        "  x1 (post) от 05.09.2026, счёт 9999000001, 10,00 ₽ — неизвестный лицевой счёт",
        "Список: billing payments suspense; зачесть на лицевой счёт: billing payments match ПЛАТЁЖ СЧЁТ",
    ]


def test_suspense_list_is_a_readable_russian_table(august: Workspace, tmp_path: Path) -> None:
    import_payment_file(august, write(tmp_path, "pay.csv",
                                      HEADER + "x1,2026-09-05,9999000001,1234.56,,post,\n"))
    out = billing(august, "payments", "suspense")
    assert "shape:" not in out and "str" not in out and "decimal" not in out
    lines = out.splitlines()
    assert lines[0] == f"Невыясненные платежи: 1 на 1{NBSP}234,56 ₽"
    assert lines[1].split() == ["Платёж", "Агент", "Дата", "Лицевой", "счёт", "Сумма,", "₽", "Причина",
                                "Файл", "Строка"]
    assert re.fullmatch(rf"x1 +post +05\.09\.2026 +9999000001 +1{NBSP}234,56 +неизвестный лицевой счёт"
                        r" +pay\.csv +2", lines[3])
    assert "billing payments match ПЛАТЁЖ СЧЁТ" in lines[4]


def test_sql_table_has_no_shape_or_dtype_rows(august: Workspace, tmp_path: Path) -> None:
    import_payment_file(august, write(tmp_path, "pay.csv", HEADER + "p1,2026-09-05,A1,1234.50,,post,\n"))
    out = billing(august, "sql", "select payment_id, paid_on, amount from payments")
    assert out.splitlines() == ["payment_id  paid_on       amount",
                                "----------  ----------  --------",
                                f"p1          05.09.2026  1{NBSP}234,50"]


# --------------------------------------------------------------------------- agent


def test_csv_without_agent_column_is_refused_and_taken_with_agent(august: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "post.csv", "payment_id,paid_on,account_id,amount,period\n"
                                       "p1,2026-09-05,A1,100.00,\n")
    with pytest.raises(BillingError) as err:
        import_payment_file(august, path)
    assert str(err.value) == (
        "post.csv: нет столбца agent (платёжный агент) — без него платёж нельзя отличить от платежа "
        "с тем же кодом другого агента; добавьте столбец или укажите агента всего файла: "
        "billing payments import post.csv --agent ИМЯ")
    assert load_payments(august).height == 0 and load_imported_files(august).height == 0
    out = billing(august, "payments", "import", str(path), "--agent", "post")
    assert "принято платежей 1 на 100,00 ₽" in out
    assert load_payments(august).select("payment_id", "agent").rows() == [("p1", "post")]


def test_empty_agent_cell_is_a_reject_unless_agent_is_given(august: Workspace, tmp_path: Path) -> None:
    rows = "p1,2026-09-05,A1,100.00,,post,\np2,2026-09-05,A2,50.00,,,\n"
    first = import_payment_file(august, write(tmp_path, "a.csv", HEADER + rows))
    assert (first.accepted, first.rejected) == (1, 1)
    assert first.rejects_path is not None
    report = pl.read_csv(first.rejects_path, separator=";", infer_schema=False)
    assert report.select("row", "column", "reason").rows() == [(
        "3", "agent", "не указан платёжный агент (столбец agent пуст) — заполните его или загрузите "
                      "файл с --agent ИМЯ")]
    swapped = "".join(reversed(rows.splitlines(keepends=True)))
    second = import_payment_file(august, write(tmp_path, "b.csv", HEADER + swapped), agent="kassa")
    assert (second.accepted, second.duplicates, second.rejected) == (1, 1, 0)
    assert sorted(load_payments(august).select("payment_id", "agent").rows()) == [
        ("p1", "post"), ("p2", "kassa")]


def test_bank_register_keeps_its_own_agent(august: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "sber_001.txt"
    path.write_bytes(sber_register_bytes(sber_rows([("1001", "A1", 10000)])))
    with pytest.raises(BillingError, match="реестр sber сам называет агента"):
        import_payment_file(august, path, agent="post")
    assert import_payment_file(august, path, agent="sber").accepted == 1
    assert load_payments(august)["agent"].to_list() == ["sber"]


def sber_rows(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame([{"payment_id": p, "paid_on": date(2026, 9, 7), "account_id": a, "amount_kop": k,
                          "period": None, "payer_name": "Иванов И. И.", "address": "г. Энск, ул. Ленина, д. 1"}
                         for p, a, k in rows], schema_overrides={"period": pl.String})


# --------------------------------------------------------------------------- revert


def test_revert_takes_back_an_open_period_file_which_then_imports_again(
        august: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "pay.csv", HEADER + "p1,2026-09-05,A1,100.00,,post,\n"
                                               "x1,2026-09-05,9999000001,10.00,,post,\n")
    import_payment_file(august, write(tmp_path, "keep.csv", HEADER + "k1,2026-09-06,A2,7.00,,post,\n"))
    import_payment_file(august, path)
    out = billing(august, "payments", "revert", "pay.csv")
    assert out.strip() == ("Загрузка файла pay.csv отменена: убрано платежей 1 на 100,00 ₽, невыясненных 1. "
                           "Файл можно загрузить снова (billing payments import).")
    assert load_payments(august)["payment_id"].to_list() == ["k1"]
    assert load_suspense(august).height == 0
    files = load_imported_files(august)
    assert files.filter(pl.col("file") == "pay.csv")["reverted_at"].is_not_null().all()
    entry = audit_lines(august)[-1]
    assert (entry["command"], entry["inputs"]["file"], entry["outputs"]["payments"],
            entry["outputs"]["amount_kop"]) == ("payments revert", "pay.csv", 1, 10000)

    again = import_payment_file(august, path)
    assert (again.already_imported, again.accepted, again.suspense) == (False, 1, 1)
    assert sorted(load_payments(august)["payment_id"]) == ["k1", "p1"]
    folder = close(august, "2026-09")
    paid = pl.read_parquet(folder / "allocations.parquet").filter(pl.col("payment_id") == "p1")
    assert paid["amount"].sum() == Decimal("100.00")


def test_revert_is_refused_once_a_sealed_close_used_the_file(august: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "pay.csv", HEADER + "p1,2026-09-05,A1,100.00,,post,\n")
    import_payment_file(august, path)
    close(august, "2026-09")
    before = load_payments(august)
    with pytest.raises(BillingError) as err:
        revert_payment_file(august, path)
    assert str(err.value) == (
        "Файл pay.csv нельзя отменить: его платежи уже распределены при закрытии периода 2026-09 (p1). "
        "Закрытый период не переписывается — верните ошибочные платежи возвратом: отрицательным "
        "платежом со ссылкой refund_of на исходный.")
    assert load_payments(august).equals(before)
    assert load_imported_files(august)["reverted_at"].is_null().all()


def test_revert_removes_the_bank_readings_of_its_file(august: Workspace, tmp_path: Path) -> None:
    readings = pl.DataFrame({"payment_id": ["1001"], "meter_serial": ["111"], "resource": ["ХВС"],
                             "zone": [None], "value": [Decimal("112.5")]})
    path = tmp_path / "sber_001.txt"
    path.write_bytes(sber_register_bytes(sber_rows([("1001", "A1", 10000)]), readings=readings))
    digest = import_payment_file(august, path).sha256
    assert load_bank_readings(august).height == 1
    result = revert_payment_file(august, digest[:12])
    assert (result.payments, result.readings) == (1, 1)
    assert load_bank_readings(august).height == 0 and load_payments(august).height == 0


def test_revert_is_refused_while_another_file_refunds_its_payment(
        august: Workspace, tmp_path: Path) -> None:
    import_payment_file(august, write(tmp_path, "pay.csv", HEADER + "p1,2026-09-05,A1,100.00,,post,\n"))
    import_payment_file(august, write(tmp_path, "refund.csv", HEADER + "r1,2026-09-06,A1,-100.00,,post,p1\n"))
    with pytest.raises(BillingError, match=re.escape(
            "на его платежи ссылаются возвраты из других файлов — r1 (refund.csv). Сначала отмените "
            "те файлы")):
        revert_payment_file(august, "pay.csv")
    revert_payment_file(august, "refund.csv")
    assert revert_payment_file(august, "pay.csv").payments == 1


def test_revert_of_an_unknown_or_reverted_file_says_so(august: Workspace, tmp_path: Path) -> None:
    with pytest.raises(BillingError, match=re.escape("«nothing.csv»: такой файл не загружался")):
        revert_payment_file(august, "nothing.csv")
    import_payment_file(august, write(tmp_path, "pay.csv", HEADER + "p1,2026-09-05,A1,100.00,,post,\n"))
    revert_payment_file(august, "pay.csv")
    with pytest.raises(BillingError, match=re.escape("«pay.csv»: загрузка этого файла уже отменена")):
        revert_payment_file(august, "pay.csv")


# --------------------------------------------------------------------------- files for Excel


def test_sql_writes_a_workbook(august: Workspace, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    import_payment_file(august, write(tmp_path, "pay.csv", HEADER + "p1,2026-09-05,A1,1234.50,,post,\n"
                                                                    "p2,2026-09-06,A2,7.00,,post,\n"))
    out = tmp_path / "q.xlsx"
    said = billing(august, "sql", "select payment_id, paid_on, amount from payments order by 1",
                   "--format", "xlsx", "--out", str(out))
    assert said.strip() == f"Записано строк: 2 — {out}"
    sheet = load_workbook(out)["Запрос"]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows == [["payment_id", "paid_on", "amount"],
                    ["p1", datetime(2026, 9, 5), 1234.5], ["p2", datetime(2026, 9, 6), 7]]
    result = CliRunner().invoke(app, ["sql", "select 1", "--format", "xlsx", "--home", str(august.home)])
    assert result.exit_code == 2 and "--out" in result.output


def test_report_csv_has_a_decimal_comma(august: Workspace, tmp_path: Path) -> None:
    import_payment_file(august, write(tmp_path, "pay.csv", HEADER + "p1,2026-09-05,A1,1000.00,,post,\n"))
    folder = close(august, "2026-09")
    text = (folder / "reports" / "split" / "VK-payments.csv").read_bytes()
    assert text.startswith(b"\xef\xbb\xbf")
    # 1000.00 of A1 split in proportion: cold water 76.56 + sewerage 60.30 are VK's.
    assert text.decode("utf-8-sig").splitlines() == [
        "paid_on;Агент;Платёж;Лицевой счёт;Сумма поставщику, ₽".replace("paid_on", "Дата платежа"),
        "2026-09-05;post;p1;A1;136,86"]
    turnover = (folder / "reports" / "turnover.csv").read_text(encoding="utf-8-sig")
    assert not re.search(r"\d\.\d", turnover) and re.search(r";\d+,\d\d;", turnover)
