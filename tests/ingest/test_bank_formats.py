"""Bank payment registers (Sber / VTB): parsing, footer control, rejects, detection, writing."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest.bank_formats import (
    FORMATS,
    PAYMENTS_SCHEMA,
    READINGS_SCHEMA,
    detect_format,
    parse_bank_register,
    sber_register_bytes,
    write_sber_register,
)
from pipeline.workspace import BillingError

INBOX = Path(__file__).resolve().parents[2] / "data" / "sample" / "inbox"

SBER_LINES = [
    "14-09-2026;09-15-32;8615;8615999V;200000000001;1000000001;Иванов Иван Иванович;г. Энск, ул. Садовая, д. 1, кв. 1;082026;26-00000001;ХВС;1;118;26-00000002;ГВС;1;61,5;[!];[!];;3000,00;2970,00;30,00",
    "14-09-2026;18-40-05;8615;86150012;200000000002;1000000004;Смирнова Елена Викторовна;г. Энск, ул. Садовая, д. 1, кв. 4;082026;[!];1;Оплата ЖКУ;1500,05;[!];;1500,05;1485,04;15,01",
    "15-09-2026;07-02-11;8615;8615999V;200000000003; 1000000010 ;Орлов Виктор Степанович;г. Энск, ул. Лесная, д. 7, кв. 3;;[!];[!];;0,07;0,07;0,00",
]
SBER_FOOTER = "=3;4500,12;4455,11;45,01;4711;16-09-2026"


def register(lines: list[str], footer: str | None, *, eol: str = "\r\n", encoding: str = "cp1251") -> bytes:
    rows = [*lines, footer] if footer is not None else list(lines)
    return (eol.join(rows) + eol).encode(encoding)


def line(op: str, account: str, amount: str, *, day: str = "15-09-2026", period: str = "082026",
         meters: str = "") -> str:
    middle = f"{meters};" if meters else ""
    return (f"{day};10-00-00;8615;8615999V;{op};{account};Тестов Тест Тестович;г. Энск, ул. Садовая, д. 1;"
            f"{period};{middle}[!];[!];;{amount};{amount};0,00")


# ----------------------------------------------------------------------------- parsing


def test_sber_cp1251_comma_decimals() -> None:
    reg = parse_bank_register("sber.txt", register(SBER_LINES, SBER_FOOTER), "sber")
    assert reg.encoding == "cp1251"
    assert reg.payments.schema == PAYMENTS_SCHEMA
    assert reg.rejects.columns == ["file", "row", "column", "value", "reason"]
    assert reg.rejects.height == 0
    p = reg.payments
    assert p["payment_id"].to_list() == ["200000000001", "200000000002", "200000000003"]
    assert p["amount_kop"].to_list() == [300000, 150005, 7]
    assert p["transferred_kop"].to_list() == [297000, 148504, 7]
    assert p["fee_kop"].to_list() == [3000, 1501, 0]
    assert p["account_id"].to_list() == ["1000000001", "1000000004", "1000000010"]
    assert p["period"].to_list() == ["2026-08", "2026-08", None]
    assert p["paid_on"].to_list() == [date(2026, 9, 14), date(2026, 9, 14), date(2026, 9, 15)]
    assert p["paid_at"][1] == datetime(2026, 9, 14, 18, 40, 5)
    assert p["agent"].unique().to_list() == ["sber"]
    assert p["payer_name"][1] == "Смирнова Елена Викторовна"
    assert p["source_row"].to_list() == [1, 2, 3]
    assert reg.footer == {"count": 3, "sum_kop": 450012, "transferred_kop": 445511, "fee_kop": 4501,
                          "order_number": "4711", "order_date": date(2026, 9, 16)}


def test_utf8_lf_and_comment_lines() -> None:
    data = register(["# выгрузка за 15.09.2026", "#", *SBER_LINES, "", SBER_FOOTER, ""], None,
                    eol="\n", encoding="utf-8")
    reg = parse_bank_register("sber.txt", data, "sber")
    assert reg.encoding == "utf-8"
    assert reg.payments["amount_kop"].sum() == 450012
    assert reg.payments["source_row"].to_list() == [3, 4, 5]


def test_sample_sber_file() -> None:
    name = "sber-2026-09-15.txt"
    data = (INBOX / name).read_bytes()
    assert b"\r\n" in data
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert detect_format(name, data) == "sber"
    reg = parse_bank_register(name, data, "sber")
    assert reg.rejects.height == 0
    assert reg.payments.height == reg.footer["count"] == 6
    assert reg.payments["amount_kop"].sum() == reg.footer["sum_kop"] == 1312166
    assert reg.payments["transferred_kop"].sum() == reg.footer["transferred_kop"] == 1298345
    assert reg.payments["fee_kop"].sum() == reg.footer["fee_kop"] == 13821
    refund = reg.payments.filter(pl.col("amount_kop") < 0)
    assert refund["account_id"].to_list() == ["1000000002"]
    assert refund["amount_kop"].to_list() == [-70000]
    assert reg.payments.filter(pl.col("period").is_null())["amount_kop"].to_list() == [57]
    # Three readings of 1000000001, two of 1000000010 (the empty ГВС one skipped), one of 1000000007.
    assert reg.readings.height == 6
    known = set(pl.read_csv(INBOX.parent / "registers" / "accounts.csv", infer_schema=False)["account_id"])
    assert set(reg.payments["account_id"]) <= known


def test_sample_vtb_file() -> None:
    name = "201026_VTB_000001_001.txt"
    data = (INBOX / name).read_bytes()
    assert b"\r" not in data
    assert detect_format(name, data) == "vtb"
    reg = parse_bank_register(name, data, "vtb")
    assert reg.rejects.height == 0
    assert reg.payments["agent"].unique().to_list() == ["vtb"]
    assert reg.payments["payment_id"].to_list() == ["A7K2M9Q4X1", "B3F8N1R6Z0", "C5D2H7L3W8", "D9E4J2P7T5"]
    assert reg.payments["amount_kop"].to_list() == [80000, 245075, 120000, 35010]
    assert reg.payments["amount_kop"].sum() == reg.footer["sum_kop"] == 480085
    assert reg.payments["period"].to_list() == ["2026-09", "2026-09", "2026-09", "2026-08"]
    assert reg.footer["order_date"] == date(2026, 10, 20)
    assert reg.readings["value"].to_list() == [Decimal("221.4"), Decimal("316.125"), Decimal("2610")]


def test_meter_blocks_become_readings() -> None:
    meters = ("26-00000001;ХВС;1;118,5;26-00000002;ГВС;;;26-00000003;ЭЛ/ЭН1;1;1452.123456;"
              "26-00000003;ЭЛ/ЭН2;2;1000")
    data = register([line("1", "1000000001", "100,00", meters=meters)], "=1;100,00;100,00;0,00;1;15-09-2026")
    reg = parse_bank_register("sber.txt", data, "sber")
    r = reg.readings
    assert r.schema == READINGS_SCHEMA
    assert r["meter_serial"].to_list() == ["26-00000001", "26-00000003", "26-00000003"]
    assert r["resource"].to_list() == ["ХВС", "ЭЛ/ЭН1", "ЭЛ/ЭН2"]
    assert r["zone"].to_list() == [1, 1, 2]
    assert r["value"].to_list() == [Decimal("118.5"), Decimal("1452.123456"), Decimal("1000")]
    assert r["read_on"].unique().to_list() == [date(2026, 9, 15)]
    assert r["account_id"].unique().to_list() == ["1000000001"]
    assert r["payment_id"].unique().to_list() == ["1"]
    assert r["source_row"].unique().to_list() == [1]


def test_bad_reading_rejected_but_payment_kept() -> None:
    lines = [
        line("1", "1000000001", "100,00", meters="26-1;ХВС;1;12,3456789;26-2;ГВС;1;-5;26-3;ЭЛ;один;7;26-4;ХВС;1;9"),
        line("2", "1000000002", "50,00", meters="26-5;ХВС;1"),
    ]
    reg = parse_bank_register("s.txt", register(lines, "=2;150,00;150,00;0,00;1;15-09-2026"), "sber")
    assert reg.payments["payment_id"].to_list() == ["1", "2"]
    assert reg.readings["meter_serial"].to_list() == ["26-4"]
    assert reg.rejects["row"].to_list() == [1, 1, 1, 2]
    assert reg.rejects["column"].to_list() == ["показание", "показание", "зона", "счётчики"]
    assert all("платёж принят" in reason for reason in reg.rejects["reason"])


# ----------------------------------------------------------------------------- footer control


def test_footer_mismatch_refuses_file_with_both_differences() -> None:
    lines = [line("1", "1000000001", "1000,00"), line("2", "1000000002", "200,00"),
             line("3", "1000000003", "34,56")]
    with pytest.raises(BillingError) as err:
        parse_bank_register("s.txt", register(lines, "=4;1300,00;1300,00;0,00;1;15-09-2026"), "sber")
    msg = str(err.value)
    assert "Итоговая строка не сходится с реестром".lower() in msg.lower()
    assert "строк 3, в итоге 4 (разница 1)" in msg
    assert "сумма 1\u00a0234,56 ₽, в итоге 1\u00a0300,00 ₽ (разница 65,44 ₽)" in msg


def test_footer_sum_only_mismatch() -> None:
    lines = [line("1", "1000000001", "10,00")]
    with pytest.raises(BillingError, match=r"сумма 10,00 ₽, в итоге 10,01 ₽ \(разница 0,01 ₽\)") as err:
        parse_bank_register("s.txt", register(lines, "=1;10,01;10,01;0,00;1;15-09-2026"), "sber")
    assert "строк " not in str(err.value)


def test_missing_footer_refuses_file() -> None:
    with pytest.raises(BillingError, match="нет итоговой строки"):
        parse_bank_register("s.txt", register(SBER_LINES, None), "sber")


def test_line_after_footer_and_bad_footer_refuse_file() -> None:
    with pytest.raises(BillingError, match="после итоговой строки"):
        parse_bank_register("s.txt", register([*SBER_LINES, SBER_FOOTER], SBER_LINES[0]), "sber")
    with pytest.raises(BillingError, match="итоговая строка 4 не читается: сумма платежей «сорок»"):
        parse_bank_register("s.txt", register(SBER_LINES, "=3;сорок"), "sber")


def test_refund_counts_negative_in_footer() -> None:
    lines = [line("1", "1000000001", "100,00"), line("2", "1000000001", "-40,00")]
    reg = parse_bank_register("s.txt", register(lines, "=2;60,00;60,00;0,00;1;15-09-2026"), "sber")
    assert reg.payments["amount_kop"].to_list() == [10000, -4000]


def test_empty_register_with_footer_only() -> None:
    reg = parse_bank_register("s.txt", register([], "=0;0,00;0,00;0,00;;"), "sber")
    assert reg.payments.height == 0
    assert reg.payments.schema == PAYMENTS_SCHEMA
    assert reg.footer["order_date"] is None
    assert reg.footer["order_number"] is None


# ----------------------------------------------------------------------------- bad lines


def test_bad_lines_rejected_others_parse() -> None:
    lines = [
        line("1", "1000000001", "100,00"),
        line("2", "1000000002", "200,00", day="31-02-2026"),          # bad date: counted in the footer
        "15-09-2026;10-00-00;8615;8615999V;3;1000000003;обрывок",     # too few fields, amount unreadable
        line("4", "", "400,00"),                                        # no ЛС
        line("5", "1000000005", "0,00"),                                # zero amount
        line("6", "1000000006", "12,345"),                              # three decimals, unreadable
        line("7", "1000000007", "70,00", period="132026"),              # bad period
        line("8", "1000000008", "80,00"),
        line("8", "1000000009", "90,00"),                               # repeated operation id
        line("10", "1000000010", "1,00"),
    ]
    footer = "=10;941,00;941,00;0,00;1;15-09-2026"
    reg = parse_bank_register("s.txt", register(lines, footer), "sber")
    assert reg.payments["payment_id"].to_list() == ["1", "10"]
    assert reg.payments["amount_kop"].to_list() == [10000, 100]
    rej = reg.rejects
    assert rej.columns == ["file", "row", "column", "value", "reason"]
    assert rej.schema["row"] == pl.Int64
    assert rej["file"].unique().to_list() == ["s.txt"]
    got = list(zip(rej["row"], rej["column"], rej["value"], strict=True))
    assert got == [
        (2, "дата", "31-02-2026"),
        (3, "строка", lines[2]),
        (4, "ЛС", ""),
        (5, "сумма", "0,00"),
        (6, "сумма", "12,345"),
        (6, "сумма к перечислению", "12,345"),
        (7, "период", "132026"),
        (8, "номер операции", "8"),
        (9, "номер операции", "8"),
    ]
    assert "в строке 7 полей, нужно не меньше 15" in rej["reason"][1]
    assert "строки 8, 9" in rej["reason"][7]


def test_unreadable_amount_named_when_footer_does_not_match() -> None:
    lines = [line("1", "1000000001", "100,00"), line("2", "1000000002", "сто")]
    with pytest.raises(BillingError, match="не прочитаны суммы в строках 2"):
        parse_bank_register("s.txt", register(lines, "=2;200,00;200,00;0,00;1;15-09-2026"), "sber")


# ----------------------------------------------------------------------------- detection


def test_detect_formats() -> None:
    assert FORMATS == ("sber", "vtb", "csv")
    csv = (INBOX / "payments-2026-09.csv").read_bytes()
    assert detect_format("payments-2026-09.csv", csv) == "csv"
    sber = register(SBER_LINES, SBER_FOOTER)
    assert detect_format("17066_7700000000_40702810000000000001_001.txt", sber) == "sber"
    assert detect_format("201023_VTB_223308_003.txt", sber) == "vtb"
    assert detect_format("реестр_втб.txt", sber) == "vtb"
    assert detect_format("sber.txt", b"# comment\r\n" + sber) == "sber"
    assert detect_format("vtbx.txt", sber) == "sber"  # only a whole token is a hint
    assert detect_format("empty_register.txt", b"=0;0,00;0,00;0,00;;\r\n") == "sber"


@pytest.mark.parametrize("data", [b"", b"hello;world\n", "Лицевой счёт;Сумма\n".encode("cp1251"), b"\x98\x98"])
def test_detect_unknown_format_refused(data: bytes) -> None:
    with pytest.raises(BillingError, match=r"^x\.txt: "):
        detect_format("x.txt", data)


def test_parse_refuses_non_register_format() -> None:
    with pytest.raises(BillingError, match="не является реестром банка"):
        parse_bank_register("p.csv", b"payment_id,account_id\n", "csv")


# ----------------------------------------------------------------------------- writing


def sample_payments() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "payment_id": ["900001", "900002", "900003"],
            "paid_on": [date(2026, 9, 5), date(2026, 9, 6), date(2026, 9, 6)],
            "account_id": ["1000000001", "1000000005", "1000000007"],
            "amount_kop": [300000, -1, 123456789],
            "period": ["2026-08", None, "2026-09"],
            "payer_name": ["Иванов Иван Иванович", "Кузнецов Андрей Викторович", "ООО «Продукты у дома»"],
            "address": ["г. Энск, ул. Садовая, д. 1, кв. 1", None, "г. Энск, ул. Садовая, д. 1, пом. Н1"],
        },
        schema_overrides={"amount_kop": pl.Int64},
    )


@pytest.mark.parametrize("decimal", [",", "."])
def test_round_trip(tmp_path: Path, decimal: str) -> None:
    payments = sample_payments()
    readings = pl.DataFrame({
        "payment_id": ["900001", "900001", "900003"],
        "meter_serial": ["26-00000001", "26-00000002", "26-00000012"],
        "resource": ["ХВС", "ГВС", "ЭЛ"],
        "zone": [1, None, 1],
        "value": [Decimal("118.5"), Decimal("61.000000"), Decimal("11480")],
    })
    path = tmp_path / "sber.txt"
    write_sber_register(payments, path, decimal, readings=readings, order_number="77")
    data = path.read_bytes()
    assert data.endswith(b"\r\n")
    text = data.decode("cp1251")
    assert text.splitlines()[-1] == ("=3;1237567,88;1237567,88;0,00;77;06-09-2026" if decimal == ","
                                     else "=3;1237567.88;1237567.88;0.00;77;06-09-2026")
    reg = parse_bank_register(path.name, data, "sber")
    assert reg.rejects.height == 0
    assert reg.encoding == "cp1251"
    cols = payments.columns
    assert reg.payments.select(cols).equals(payments)
    assert reg.payments["fee_kop"].to_list() == [0, 0, 0]
    assert reg.readings.select("payment_id", "meter_serial", "resource", "zone", "value").to_dicts() == [
        {"payment_id": "900001", "meter_serial": "26-00000001", "resource": "ХВС", "zone": 1,
         "value": Decimal("118.5")},
        {"payment_id": "900001", "meter_serial": "26-00000002", "resource": "ГВС", "zone": None,
         "value": Decimal("61")},
        {"payment_id": "900003", "meter_serial": "26-00000012", "resource": "ЭЛ", "zone": 1,
         "value": Decimal("11480")},
    ]


def test_writer_refuses_separator_in_text() -> None:
    bad = sample_payments().with_columns(pl.lit("Иванов;Иван").alias("payer_name"))
    with pytest.raises(ValueError, match="не может содержать"):
        sber_register_bytes(bad)


ACCOUNTS = [f"10000000{i:02d}" for i in range(1, 11)]
NAMES = ["Иванов Иван Иванович", "ООО «Продукты у дома»", "Ёлкина Анна", ""]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(ACCOUNTS),
            st.integers(-10**9, 10**11).filter(lambda k: k != 0),
            st.sampled_from([None, "2026-08", "2026-09"]),
            st.dates(date(2026, 8, 1), date(2026, 10, 31)),
            st.sampled_from(NAMES),
        ),
        max_size=30,
    ),
    decimal=st.sampled_from([",", "."]),
)
def test_write_then_parse_keeps_counts_and_sums(rows: list[tuple[str, int, str | None, date, str]],
                                                decimal: str) -> None:
    payments = pl.DataFrame(
        {
            "payment_id": [f"op{i}" for i in range(len(rows))],
            "paid_on": [r[3] for r in rows],
            "account_id": [r[0] for r in rows],
            "amount_kop": [r[1] for r in rows],
            "period": [r[2] for r in rows],
            "payer_name": [r[4] or None for r in rows],
            "address": ["г. Энск, ул. Садовая, д. 1"] * len(rows),
        },
        schema={"payment_id": pl.String, "paid_on": pl.Date, "account_id": pl.String,
                "amount_kop": pl.Int64, "period": pl.String, "payer_name": pl.String, "address": pl.String},
    )
    reg = parse_bank_register("r.txt", sber_register_bytes(payments, decimal), "sber")
    assert reg.rejects.height == 0
    assert reg.footer["count"] == reg.payments.height == len(rows)
    assert reg.footer["sum_kop"] == sum(r[1] for r in rows) == reg.payments["amount_kop"].sum()
    assert reg.payments.select(payments.columns).equals(payments)
