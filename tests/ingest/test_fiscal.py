"""Fiscal receipt identifiers of imported payments (``billing payments fiscal FILE``).

Receipts are taken once, checked against the payment store, and the ЕПД gets the
receipt of each account's last payment.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pipeline.ingest.fiscal import (
    FISCAL_SCHEMA,
    fiscal_line,
    fiscal_qr_text,
    import_fiscal_file,
    last_fiscal_receipts,
    load_fiscal,
    load_fiscal_files,
)
from pipeline.ingest.payments import import_payment_file, load_payments, match_payment
from pipeline.ingest.registers import ingest
from pipeline.workspace import BillingError, Workspace

PAYMENTS = """\
payment_id,paid_on,account_id,amount,period,agent,refund_of
p1,2026-09-05,A1,1000.00,2026-08,sber,
p2,2026-09-06,A2,500.00,,post,
p3,2026-09-10,A1,250.50,2026-08,sber,
p4,2026-09-10,A3,300.00,,post,
p5,2026-09-12,A3,-100.00,,post,p4
p6,2026-09-06,A2,42.00,,post,
p9,2026-09-07,9999,77.00,,post,
"""

FN1 = "9287440300123456"
FN2 = "9999078900001111"
HEADER = "payment_id,agent,fn,fd,fp,issued_at,amount\n"
GOOD = HEADER + (
    f"p1,sber,{FN1},101,1234567890,2026-09-05 14:30,1000.00\n"
    f"p2,post,{FN2},7,0012345678,06.09.2026 09:15:30,500\n"
)


@pytest.fixture
def ws(town: Workspace, tmp_path: Path) -> Workspace:
    ingest(town)
    path = tmp_path / "payments.csv"
    path.write_text(PAYMENTS, encoding="utf-8")
    result = import_payment_file(town, path, today=date(2026, 9, 30))
    assert (result.accepted, result.suspense, result.rejected) == (6, 1, 0)
    return town


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def rejects_of(path: Path | None) -> list[tuple[int, str, str | None, str]]:
    assert path is not None
    report = pl.read_csv(path, separator=";", infer_schema=False)
    return [(int(r["row"]), r["column"], r["value"], r["reason"]) for r in report.iter_rows(named=True)]


def test_good_file_is_stored(ws: Workspace, tmp_path: Path) -> None:
    result = import_fiscal_file(ws, write(tmp_path, "good.csv", GOOD))
    assert (result.file, result.already_imported, result.accepted, result.duplicates, result.rejected,
            result.rejects_path) == ("good.csv", False, 2, 0, 0, None)
    stored = load_fiscal(ws)
    assert stored.schema == FISCAL_SCHEMA
    assert stored.drop("imported_at").rows() == [
        ("sber", "p1", FN1, "101", "1234567890", datetime(2026, 9, 5, 14, 30), Decimal("1000.00"),
         "good.csv", 2),
        # Leading zeros of ФП are not significant; seconds are kept.
        ("post", "p2", FN2, "7", "12345678", datetime(2026, 9, 6, 9, 15, 30), Decimal("500.00"),
         "good.csv", 3),
    ]
    files = load_fiscal_files(ws)
    assert files.select("file", "accepted", "duplicates", "rejected").rows() == [("good.csv", 2, 0, 0)]
    assert files["sha256"][0] == result.sha256


def test_reimport_changes_nothing(ws: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "good.csv", GOOD)
    import_fiscal_file(ws, path)
    before = load_fiscal(ws)
    again = import_fiscal_file(ws, path)
    assert (again.already_imported, again.accepted, again.duplicates, again.rejected) == (True, 0, 0, 0)
    assert load_fiscal(ws).equals(before)
    assert load_fiscal_files(ws).height == 1
    # The same receipts in another file (other layout, ФД with zeros, no seconds): duplicates.
    other = write(tmp_path, "other.csv", HEADER.replace(",", ";") + (
        f"p2;post;{FN2};0007;12345678;2026-09-06 09:15;500,00\n"
        f"p1;sber;{FN1};101;1234567890;05.09.2026 14:30:00;1000\n"
        f"p1;sber;{FN1};101;1234567890;05.09.2026 14:30:00;1000\n"
    ))
    same = import_fiscal_file(ws, other)
    assert (same.already_imported, same.accepted, same.duplicates, same.rejected) == (False, 0, 3, 0)
    assert load_fiscal(ws).equals(before)


REJECTS = HEADER + (
    f"p1,sber,928744030012345,101,1234567890,2026-09-05 14:30,1000.00\n"       # 2: ФН 15 digits
    f"p2,post,{FN2},12345678901,7,2026-09-06 09:15,500.00\n"                   # 3: ФД 11 digits
    f"p3,sber,{FN1},102,12a,2026-09-10 10:00,250.50\n"                         # 4: ФП not digits
    f"p4,post,{FN2},8,55,2026-09-31 10:00,300.00\n"                            # 5: no such day
    f"p4,post,{FN2},8,55,2026-09-10 10:00,\"300,005\"\n"                       # 6: 3 decimals
    f"p404,post,{FN2},20,77,2026-09-06 10:00,10.00\n"                          # 7: unknown payment
    f"p9,post,{FN2},21,78,2026-09-07 10:00,77.00\n"                            # 8: in suspense
    f"p6,post,{FN2},22,79,2026-09-06 10:00,41.99\n"                            # 9: amount differs
    f"p3,sber,{FN1},103,80,2026-09-10 10:00,250.50\n"                          # 10: two receipts
    f"p3,sber,{FN1},104,81,2026-09-10 10:00,250.50\n"                          # 11:   for p3
    f"p1,sber,{FN1},105,82,2026-09-05 14:30,1000.00\n"                         # 12: p1 has one
    f"p4,post,{FN1},101,83,2026-09-10 10:00,300.00\n"                          # 13: p1's receipt
    f"p6,,{FN2},23,84,2026-09-06 10:00,42.00\n"                                # 14: no agent
    f"p6,post,,23,84,2026-09-06 10:00,42.00\n"                                 # 15: no ФН
)

NOT_FOUND = "платёж не найден среди загруженных"


def test_each_reject_reason(ws: Workspace, tmp_path: Path) -> None:
    import_fiscal_file(ws, write(tmp_path, "good.csv", GOOD))
    before = load_fiscal(ws)
    result = import_fiscal_file(ws, write(tmp_path, "bad.csv", REJECTS))
    assert (result.accepted, result.duplicates, result.rejected) == (0, 0, 14)
    assert rejects_of(result.rejects_path) == [
        (2, "fn", "928744030012345", "номер фискального накопителя ФН — ровно 16 цифр"),
        (3, "fd", "12345678901", "номер фискального документа ФД — от 1 до 10 цифр"),
        (4, "fp", "12a", "фискальный признак ФП (ФПД) — от 1 до 10 цифр"),
        (5, "issued_at", "2026-09-31 10:00", "не удалось прочитать дату и время чека: нужно "
         "ГГГГ-ММ-ДД ЧЧ:ММ[:СС] или ДД.ММ.ГГГГ ЧЧ:ММ[:СС]"),
        (6, "amount", "300,005", "не удалось прочитать сумму чека: нужны рубли с копейками через запятую "
         "или точку (не больше 2 знаков после запятой)"),
        (7, "payment_id", "p404", NOT_FOUND),
        (8, "payment_id", "p9", NOT_FOUND + " (он среди невыясненных: сначала зачтите его — billing "
         "payments match КОД СЧЁТ, затем загрузите этот файл снова)"),
        (9, "amount", "41.99", "сумма чека 41,99 ₽ ≠ сумме платежа 42,00 ₽"),
        (10, "payment_id", "p3", "в файле для этого платежа разные чеки: строки 10, 11"),
        (11, "payment_id", "p3", "в файле для этого платежа разные чеки: строки 10, 11"),
        (12, "fn", FN1, f"у платежа уже есть чек ФН {FN1} ФД 101 ФП 1234567890 от 05.09.2026 14:30 "
         "на 1000,00 ₽ (файл good.csv, строка 2)"),
        (13, "fd", "101", f"чек ФН {FN1} ФД 101 уже привязан к платежу p1 (sber)"),
        (14, "agent", None, "не указан платёжный агент — заполните столбец agent или загрузите файл "
         "с --agent ИМЯ"),
        (15, "fn", None, "не заполнено: номер ФН"),
    ]
    assert load_fiscal(ws).equals(before)


def test_file_with_rejects_is_checked_again(ws: Workspace, tmp_path: Path) -> None:
    """The receipt of a payment matched since is taken when the same file comes again."""
    path = write(tmp_path, "later.csv", HEADER + (
        f"p1,sber,{FN1},101,1234567890,2026-09-05 14:30,1000.00\n"
        f"p9,post,{FN2},21,78,2026-09-07 10:00,77.00\n"))
    first = import_fiscal_file(ws, path)
    assert (first.accepted, first.duplicates, first.rejected) == (1, 0, 1)
    match_payment(ws, "p9", "A2", today=date(2026, 9, 30))
    second = import_fiscal_file(ws, path)
    assert (second.already_imported, second.accepted, second.duplicates, second.rejected) == (
        False, 1, 1, 0)
    assert load_fiscal(ws).select("payment_id", "fd", "source_row").rows() == [
        ("p1", "101", 2), ("p9", "21", 3)]
    third = import_fiscal_file(ws, path)
    assert (third.already_imported, third.accepted) == (True, 0)


def test_one_receipt_for_two_payments_of_a_file(ws: Workspace, tmp_path: Path) -> None:
    result = import_fiscal_file(ws, write(tmp_path, "shared.csv", HEADER + (
        f"p2,post,{FN2},7,11,2026-09-06 10:00,500.00\n"
        f"p6,post,{FN2},7,11,2026-09-06 10:00,42.00\n"
        f"p1,sber,{FN1},101,1234567890,2026-09-05 14:30,1000.00\n")))
    assert (result.accepted, result.rejected) == (1, 2)
    reason = f"чек ФН {FN2} ФД 7 указан в файле для разных платежей: строки 2, 3"
    assert rejects_of(result.rejects_path) == [(2, "fd", "7", reason), (3, "fd", "7", reason)]
    assert load_fiscal(ws)["payment_id"].to_list() == ["p1"]


def test_ofd_russian_headers_cp1251(ws: Workspace, tmp_path: Path) -> None:
    text = ("Код платежа;Агент;Номер ФН;ФД №;ФПД;Дата/время;Признак расчёта;Итого\r\n"
            "p3;sber;9287 4403 0012 3456;000102;2222;10.09.2026 18:05;Приход;250,50\r\n"
            "p5;post;9999078900001111;9;3333;12.09.2026 11:00;Возврат прихода;100,00\r\n")
    path = write(tmp_path, "ofd.csv", text, "cp1251")
    result = import_fiscal_file(ws, path)
    assert (result.accepted, result.rejected) == (2, 0)
    # A refund's receipt («возврат прихода») carries the absolute amount.
    assert load_fiscal(ws).select("agent", "payment_id", "fn", "fd", "fp", "issued_at", "amount").rows() == [
        ("sber", "p3", FN1, "102", "2222", datetime(2026, 9, 10, 18, 5), Decimal("250.50")),
        ("post", "p5", FN2, "9", "3333", datetime(2026, 9, 12, 11, 0), Decimal("100.00")),
    ]


def test_agent_from_the_option(ws: Workspace, tmp_path: Path) -> None:
    text = ("ФН;ФД;Фискальный признак;Дата и время;Сумма;Идентификатор платежа\n"
            f"{FN2};7;11;2026-09-06 10:00;500,00;p2\n")
    path = write(tmp_path, "post.csv", text, "cp1251")
    with pytest.raises(BillingError, match=r"post\.csv: нет столбца agent .*--agent ИМЯ"):
        import_fiscal_file(ws, path)
    assert load_fiscal_files(ws).height == 0 and not (ws.store / "fiscal.parquet").exists()
    with pytest.raises(BillingError, match="--agent: укажите имя"):
        import_fiscal_file(ws, path, agent=" ")
    result = import_fiscal_file(ws, path, agent="post")
    assert (result.accepted, result.rejected) == (1, 0)
    assert load_fiscal(ws).select("agent", "payment_id", "amount").rows() == [("post", "p2", Decimal("500.00"))]


def test_refused_files(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(BillingError, match=r"nofp\.csv: нет обязательных столбцов: fp \(фискальный "
                                           r"признак ФП\)"):
        import_fiscal_file(ws, write(tmp_path, "nofp.csv", "payment_id,agent,fn,fd,issued_at,amount\n"
                                                          "p1,sber,1,1,2026-09-05 10:00,1\n"))
    with pytest.raises(BillingError, match="столбцы «ФП» и «ФПД» оба означают"):
        import_fiscal_file(ws, write(tmp_path, "twice.csv", "payment_id,agent,fn,fd,issued_at,amount,ФП,ФПД\n"))
    with pytest.raises(BillingError, match="без перевода строки"):
        import_fiscal_file(ws, write(tmp_path, "cut.csv", GOOD[:-5]))
    assert load_fiscal_files(ws).height == 0


def test_last_receipt_per_account(ws: Workspace, tmp_path: Path) -> None:
    import_fiscal_file(ws, write(tmp_path, "all.csv", HEADER + (
        f"p1,sber,{FN1},101,1,2026-09-05 14:30,1000.00\n"
        f"p3,sber,{FN1},102,2,2026-09-10 18:05,250.50\n"
        f"p2,post,{FN2},7,3,2026-09-06 10:00,500.00\n"
        f"p6,post,{FN2},8,4,2026-09-06 10:05,42.00\n"
        f"p4,post,{FN2},9,5,2026-09-10 10:00,300.00\n")))
    payments = load_payments(ws)
    # A1: p3 is later than p1; A2: p2 and p6 the same day, p6 the greater id; A3: the refund p5
    # is the last payment and has no receipt yet — no row.
    assert last_fiscal_receipts(ws, payments).rows() == [
        ("A1", date(2026, 9, 10), Decimal("250.50"), FN1, "102", "2", datetime(2026, 9, 10, 18, 5)),
        ("A2", date(2026, 9, 6), Decimal("42.00"), FN2, "8", "4", datetime(2026, 9, 6, 10, 5)),
    ]
    import_fiscal_file(ws, write(tmp_path, "refund.csv", HEADER + (
        f"p5,post,{FN2},10,6,2026-09-12 11:00,100.00\n")))
    last = last_fiscal_receipts(ws, payments)
    assert last.filter(pl.col("account_id") == "A3").rows() == [
        ("A3", date(2026, 9, 12), Decimal("-100.00"), FN2, "10", "6", datetime(2026, 9, 12, 11, 0))]
    assert fiscal_line(last.row(2, named=True)) == (
        f"Кассовый чек возврата: ФН {FN2}, ФД 10, ФП 6, 12.09.2026 11:00, сумма 100,00 ₽. Чек можно "
        "проверить в приложении ФНС «Проверка чеков» или получить у оператора фискальных данных.")
    # Only the given payments count: without p3, A1's last payment is p1.
    only = last_fiscal_receipts(ws, payments.filter(pl.col("payment_id") != "p3"))
    assert only.filter(pl.col("account_id") == "A1")["fd"].to_list() == ["101"]


def test_last_receipt_without_any_store(ws: Workspace) -> None:
    assert load_fiscal(ws).height == 0 and load_fiscal(ws).schema == FISCAL_SCHEMA
    assert last_fiscal_receipts(ws, load_payments(ws)).height == 0


def test_receipt_text_and_qr() -> None:
    row = {"fn": FN1, "fd": "12345", "fp": "1234567890", "issued_at": datetime(2026, 9, 5, 14, 30),
           "amount": Decimal("12345.60")}
    assert fiscal_line(row) == (
        f"Кассовый чек: ФН {FN1}, ФД 12345, ФП 1234567890, 05.09.2026 14:30, сумма 12\u00a0345,60 ₽. "
        "Чек можно проверить в приложении ФНС «Проверка чеков» или получить у оператора фискальных данных.")
    assert fiscal_qr_text(row) == f"t=20260905T1430&s=12345.60&fn={FN1}&i=12345&fp=1234567890&n=1"
    assert fiscal_qr_text({**row, "amount": Decimal("-5")}).endswith("&s=5.00&fn=" + FN1
                                                                      + "&i=12345&fp=1234567890&n=2")


# --------------------------------------------------------------------------- receipts in a payment file

REGISTER = f"""\
payment_id,paid_on,account_id,amount,period,agent,fn,fd,fp,fiscal_at
r1,2026-09-05,A1,1000.00,2026-08,kassa,{FN1},101,1234567890,2026-09-05 14:30
r2,2026-09-06,A2,500.00,,kassa,,,,
r3,2026-09-07,A3,300.00,,kassa,12345,102,55,2026-09-07 10:00
r4,2026-09-07,9999,77.00,,kassa,{FN1},103,56,07.09.2026 11:00
r5,2026-09-08,A2,0,,kassa,{FN1},104,57,2026-09-08 10:00
"""


@pytest.fixture
def ingested(town: Workspace) -> Workspace:
    ingest(town)
    return town


def test_receipts_in_a_payment_file(ingested: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "kassa.csv", REGISTER)
    result = import_payment_file(ingested, path, today=date(2026, 9, 30))
    # r3's receipt is refused, not its payment; r4 waits for its account with its receipt;
    # r5 is no payment (zero): its receipt is not looked at.
    assert (result.accepted, result.suspense, result.rejected, result.receipts,
            result.receipts_rejected) == (3, 1, 1, 2, 1)
    assert rejects_of(result.rejects_path) == [
        (4, "fn", "12345", "номер фискального накопителя ФН — ровно 16 цифр"),
        (6, "amount", "0.00", "нулевая сумма платежа"),
    ]
    assert load_fiscal(ingested).select("agent", "payment_id", "fn", "fd", "fp", "issued_at", "amount",
                                        "source_file", "source_row").rows() == [
        ("kassa", "r1", FN1, "101", "1234567890", datetime(2026, 9, 5, 14, 30), Decimal("1000.00"),
         "kassa.csv", 2),
        ("kassa", "r4", FN1, "103", "56", datetime(2026, 9, 7, 11, 0), Decimal("77.00"), "kassa.csv", 5),
    ]
    last = last_fiscal_receipts(ingested, load_payments(ingested))
    assert last.select("account_id", "fd").rows() == [("A1", "101")]
    # The same file again changes nothing; so does the standalone receipts file of the same receipt.
    stored = load_fiscal(ingested)
    assert import_payment_file(ingested, path, today=date(2026, 9, 30)).already_imported
    again = import_fiscal_file(ingested, write(tmp_path, "ofd.csv", HEADER + (
        f"r1,kassa,{FN1},101,1234567890,2026-09-05 14:30,1000.00\n")))
    assert (again.accepted, again.duplicates, again.rejected) == (0, 1, 0)
    assert load_fiscal(ingested).equals(stored)


def test_revert_takes_the_file_receipts_back(ingested: Workspace, tmp_path: Path) -> None:
    from pipeline.ingest.payments import revert_payment_file

    path = write(tmp_path, "kassa.csv", REGISTER)
    import_payment_file(ingested, path, today=date(2026, 9, 30))
    other = import_fiscal_file(ingested, write(tmp_path, "ofd.csv", HEADER + (
        f"p1,sber,{FN2},7,9,2026-09-05 14:30,1000.00\n")))
    assert other.rejected == 1  # p1 is not loaded: an unrelated file's receipt stays out of this
    revert_payment_file(ingested, "kassa.csv")
    assert load_fiscal(ingested).height == 0
    # The mended file (r3's ФН) brings all three receipts.
    mended = write(tmp_path, "kassa.csv", REGISTER.replace(",12345,", f",{FN2},"))
    result = import_payment_file(ingested, mended, today=date(2026, 9, 30))
    assert (result.receipts, result.receipts_rejected, result.rejected) == (3, 0, 1)
    assert sorted(load_fiscal(ingested)["payment_id"]) == ["r1", "r3", "r4"]


def test_russian_fiscal_headers_and_a_partial_set(ingested: Workspace, tmp_path: Path) -> None:
    russian = REGISTER.split("\n", 1)[0].replace("fn,fd,fp,fiscal_at", "ФН;ФД;ФПД;Дата и время чека")
    text = russian.replace(",", ";") + "\n" + REGISTER.split("\n", 1)[1].replace(",", ";")
    result = import_payment_file(ingested, write(tmp_path, "kassa.csv", text), today=date(2026, 9, 30))
    assert result.receipts == 2
    assert ("fn" not in {c for _, c, _, _ in rejects_of(result.rejects_path)}
            and (4, "ФН") in {(r, c) for r, c, _, _ in rejects_of(result.rejects_path)})
    partial = REGISTER.replace(",fp,fiscal_at", ",x,y")
    with pytest.raises(BillingError, match=r"нет fp \(ФП\), fiscal_at \(дата и время чека\)"):
        import_payment_file(ingested, write(tmp_path, "partial.csv", partial), today=date(2026, 9, 30))
    assert load_payments(ingested).filter(pl.col("source_file") == "partial.csv").height == 0
