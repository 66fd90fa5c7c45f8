"""Charge registers for banks and agents: layouts, control figures, and our importer reading them back."""

from __future__ import annotations

import csv
import io
import shutil
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pipeline.app import run_close
from pipeline.export import exports_dir, write_exports
from pipeline.export.banks import build_files
from pipeline.ingest.bank_formats import sber_register_bytes
from pipeline.ingest.payments import import_payment_file, load_bank_readings, load_payments
from pipeline.ingest.registers import ingest
from pipeline.sealed import read_table
from pipeline.settings import Banks, load_section
from pipeline.workspace import BillingError, Workspace, init_workspace
from tests.conftest import ACCOUNTS, METERS, READINGS, TOWN, write_registers

PERIOD = "2026-08"
#: Longer than max_text (200), with the separator inside.
LONG_NAME = ("Петрова-Водкина Анна-Мария Сергеевна; законный представитель несовершеннолетнего "
             "собственника Константинопольского Александра Владимировича, действующая на основании "
             "доверенности № 77 АБ 1234567 от 01.02.2025, удостоверенной нотариусом г. Энска")

SETTINGS = """
[[banks.agents]]
code = "sber"
name = "ПАО Сбербанк"
org_id = "UK1"

[[banks.agents]]
code = "kassa"
name = "Касса ЕИРЦ"
layout = "csv"

[[banks.agents]]
code = "uk"
org_id = "UK1"
file_name = "{code}_{inn}_{pay_mm}{pay_yyyy}.txt"
services = ["maintenance"]
separator = "|"
amounts = "kopecks"
columns = ["account", "payer", "period", "services", "marker", "amount"]
"""


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The three-flat house: A1 with a ЕЛС and meter 111, A2 with the long name, no ЕЛС and a meter
    without a serial, A3 paid 10 000 ₽ ahead (an advance)."""
    ws = init_workspace(tmp_path_factory.mktemp("banks") / "home")
    write_registers(ws, {
        **TOWN,
        "accounts": ACCOUNTS.replace("Петрова Анна Сергеевна", f'"{LONG_NAME}"'),
        "meters": METERS + "M2,cold_water,P2,,,2020-01-01,,2030-01-01,5,0\n",
        "readings": READINGS + "M2,2026-07-20,50.000,lk\nM2,2026-08-18,55.250,lk\n",
        "gis_ids": "account_id,service_id,els,izhku,from\nA1,,75da533315,,2020-01-01\n",
    })
    with open(ws.settings_path, "a", encoding="utf-8") as fh:
        fh.write(SETTINGS)
    ingest(ws)
    advance = ws.home / "advance.csv"
    advance.write_text("payment_id,paid_on,account_id,amount,period,agent\n"
                       "adv1,2026-08-10,A3,10000.00,,kassa\n", encoding="utf-8")
    assert import_payment_file(ws, advance, today=date(2026, 8, 31)).accepted == 1
    run_close(ws, PERIOD, receipts=False)
    return ws


@pytest.fixture(scope="module")
def files(sealed: Workspace) -> dict[str, bytes]:
    return {f.name: f.data for f in build_files(sealed, PERIOD)}


def _to_pay(ws: Workspace, services: list[str] | None = None, floor: bool = True) -> dict[str, int]:
    """The receipt's «к оплате» from the sealed public tables: Σ closing, never negative, kopecks
    (``floor=False``: the balance itself)."""
    table = "service_balances" if services else "balances"
    frame = read_table(ws.period_dir(PERIOD), table)
    if services:
        frame = frame.filter(pl.col("service_id").is_in(services))
    out: dict[str, Decimal] = {}
    for row in frame.iter_rows(named=True):
        out[row["account_id"]] = out.get(row["account_id"], Decimal(0)) + row["closing"]
    return {acc: max(int(total * 100), 0) if floor else int(total * 100) for acc, total in out.items()}


def _sber_lines(data: bytes, sep: str = ";") -> tuple[list[list[str]], list[str]]:
    text = data.decode("cp1251")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    lines = [ln.split(sep) for ln in text.removesuffix("\r\n").split("\r\n")]
    assert lines[-1][0].startswith("=")
    return lines[:-1], [lines[-1][0][1:], *lines[-1][1:]]


def _kop(text: str) -> int:
    rub, kop = text.split(",")
    return int(rub) * 100 + int(kop)


SBER = "sber/7707083893_40702810200000000001_001_0826.txt"


def test_the_sber_register_asks_each_account_its_receipt_total_and_the_footer_sums_it(
        sealed: Workspace, files: dict[str, bytes]) -> None:
    body, footer = _sber_lines(files[SBER])
    expected = _to_pay(sealed)
    assert [ln[0] for ln in body] == sorted(expected) == ["A1", "A2", "A3"]
    assert {ln[0]: _kop(ln[5]) for ln in body} == expected
    # the footer: count and sum to the kopeck, against the sealed tables
    assert footer == [str(len(expected)), f"{sum(expected.values()) // 100},{sum(expected.values()) % 100:02d}"]
    assert all(ln[4] == "082026" for ln in body)


def test_an_advance_is_asked_nothing_never_a_negative_amount(sealed: Workspace, files: dict[str, bytes]) -> None:
    closing = read_table(sealed.period_dir(PERIOD), "balances").filter(pl.col("account_id") == "A3")["closing"]
    assert sum(closing) < 0
    body, _ = _sber_lines(files[SBER])
    assert [ln[5] for ln in body if ln[0] == "A3"] == ["0,00"]


def test_a_separator_in_a_long_cyrillic_name_and_an_empty_field_keep_the_line(files: dict[str, bytes]) -> None:
    body, _ = _sber_lines(files[SBER])
    a1, a2, a3 = body
    # ЛС;ЕЛС;ФИО;адрес;период;сумма + four fields a meter: the same shape on every line
    assert (len(a1), len(a2), len(a3)) == (10, 10, 6)
    assert a1[1] == "75da533315" and a2[1] == ""  # no ЕЛС: an empty field, not a missing one
    assert a2[2].startswith("Петрова-Водкина Анна-Мария Сергеевна, законный представитель")
    assert len(a2[2]) <= 200 < len(LONG_NAME) and ";" not in a2[2]
    assert a2[3] == "г. Энск, ул. Ленина, д. 1, кв. 2"


def test_meter_blocks_carry_each_meters_last_accepted_reading(files: dict[str, bytes]) -> None:
    body, _ = _sber_lines(files[SBER])
    blocks = {ln[0]: ln[6:] for ln in body}
    # the serial (the meter id when the register has none), resource, zone, reading
    assert blocks == {"A1": ["111", "ХВС", "1", "107,5"], "A2": ["M2", "ХВС", "1", "55,25"], "A3": []}


def test_a_service_filter_layout_in_kopecks_and_a_service_block(sealed: Workspace, files: dict[str, bytes]) -> None:
    data = files["uk/uk_7707083893_092026.txt"]
    body, footer = _sber_lines(data, "|")
    expected = _to_pay(sealed, ["maintenance"])
    assert {ln[0]: int(ln[-1]) for ln in body} == expected
    assert footer == [str(len(expected)), str(sum(expected.values()))]
    closing = _to_pay(sealed, ["maintenance"], floor=False)
    for ln in body:  # account|payer|period|code|name|that service's balance|[!]|amount
        assert ln[3:5] == ["maintenance", "Содержание жилого помещения"] and ln[6] == "[!]"
        assert int(ln[5]) == closing[ln[0]] and int(ln[-1]) == max(closing[ln[0]], 0)
        assert "|" not in ln[1]
    assert closing["A3"] < 0  # the advance shows in its service block, the amount asked is 0


def _bank_pays(register: bytes, paid_on: date) -> bytes:
    """The bank's nightly payment register (§2.2) after each payer paid their line in full
    and sent the next reading (+1) of every meter the line listed."""
    body, _ = _sber_lines(register)
    payments, readings = [], []
    for i, ln in enumerate(body, start=1):
        amount = _kop(ln[5])
        if not amount:
            continue  # nothing to pay: a bank does not carry a zero payment
        op = f"77{i:06d}"
        payments.append({"payment_id": op, "paid_on": paid_on, "paid_at": datetime(2026, 9, 5, 10, 0, i),
                         "account_id": ln[0], "amount_kop": amount, "period": "2026-08",
                         "payer_name": ln[2], "address": ln[3]})
        for j in range(6, len(ln), 4):
            serial, resource, zone, value = ln[j:j + 4]
            readings.append({"payment_id": op, "meter_serial": serial, "resource": resource,
                             "zone": int(zone), "value": Decimal(value.replace(",", ".")) + 1})
    return sber_register_bytes(pl.DataFrame(payments), ",", readings=pl.DataFrame(readings))


def test_round_trip_the_bank_pays_the_register_and_our_importer_reads_it_back(
        sealed: Workspace, files: dict[str, bytes], tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "copy")
    shutil.copytree(sealed.home, ws.home)
    path = tmp_path / "17066_7707083893_40702810200000000001_001.txt"
    path.write_bytes(_bank_pays(files[SBER], date(2026, 9, 5)))
    result = import_payment_file(ws, path, today=date(2026, 9, 30))
    assert (result.accepted, result.suspense, result.rejected) == (2, 0, 0)
    paid = load_payments(ws).filter(pl.col("agent") == "sber")
    got = {r["account_id"]: int(r["amount"] * 100) for r in paid.iter_rows(named=True)}
    expected = {acc: kop for acc, kop in _to_pay(sealed).items() if kop}
    assert got == expected and result.accepted_kop == sum(expected.values())
    back = {(r["account_id"], r["meter_serial"], r["resource"]): r["value"]
            for r in load_bank_readings(ws).iter_rows(named=True)}
    assert back == {("A1", "111", "ХВС"): Decimal("108.5"), ("A2", "M2", "ХВС"): Decimal("56.25")}


def test_round_trip_an_agent_returns_the_csv_and_the_agent_csv_import_reads_it(
        sealed: Workspace, files: dict[str, bytes], tmp_path: Path) -> None:
    data = files["kassa/kassa_2026-08.csv"]
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert [r["account_id"] for r in rows] == ["A1", "A2", "A3"]
    assert next(r for r in rows if r["account_id"] == "A2")["payer_name"].startswith(
        "Петрова-Водкина Анна-Мария Сергеевна; законный")  # CSV quotes, nothing replaced
    control = files["kassa/kassa_2026-08_control.csv"].decode("utf-8").splitlines()
    expected = _to_pay(sealed)
    total = sum(expected.values())
    assert control == ["period,rows,amount", f"{PERIOD},3,{total // 100}.{total % 100:02d}"]
    # the agent adds its payment id and date to every line it took money for
    out = io.StringIO()
    writer = csv.DictWriter(out, ["payment_id", "paid_on", "agent", *rows[0]], lineterminator="\n")
    writer.writeheader()
    for i, r in enumerate(rows):
        if Decimal(r["amount"]):
            writer.writerow({"payment_id": f"k{i}", "paid_on": "2026-09-07", "agent": "kassa", **r})
    ws = Workspace(tmp_path / "copy")
    shutil.copytree(sealed.home, ws.home)
    path = tmp_path / "kassa-payments.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    result = import_payment_file(ws, path, today=date(2026, 9, 30))
    assert (result.accepted, result.suspense, result.rejected) == (2, 0, 0)
    paid = load_payments(ws).filter(pl.col("payment_id").str.starts_with("k"))
    assert {r["account_id"]: int(r["amount"] * 100) for r in paid.iter_rows(named=True)} == {
        a: k for a, k in expected.items() if k}
    assert set(paid["period"]) == {PERIOD}


def test_written_once_deterministic_and_listed_with_the_control_figures(
        sealed: Workspace, files: dict[str, bytes], tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "copy")
    shutil.copytree(sealed.home, ws.home)
    again = build_files(ws, PERIOD)
    assert {f.name: f.data for f in again} == files  # no clock, no random: the same bytes
    report = write_exports(ws, PERIOD, "banks", again)
    assert len(report.written) == 4
    assert write_exports(ws, PERIOD, "banks", build_files(ws, PERIOD)).written == ()
    sber = next(f for f in again if f.name == SBER)
    assert (sber.rows, sber.total_kop, sber.recipient) == (3, sum(_to_pay(sealed).values()), "ПАО Сбербанк")
    assert (exports_dir(ws, PERIOD) / "banks" / SBER).read_bytes() == files[SBER]


def test_an_open_period_or_no_agent_is_refused(sealed: Workspace, tmp_path: Path) -> None:
    with pytest.raises(BillingError, match="2026-09 не закрыт"):
        build_files(sealed, "2026-09")
    ws = Workspace(tmp_path / "copy")
    shutil.copytree(sealed.home, ws.home)
    ws.settings_path.write_text("", encoding="utf-8")
    with pytest.raises(BillingError, match=r"\[\[banks\.agents\]\]"):
        build_files(ws, PERIOD)
    ws.settings_path.write_text('[[banks.agents]]\ncode = "sber"\n', encoding="utf-8")
    with pytest.raises(BillingError, match="не указан org_id"):
        build_files(ws, PERIOD)
    ws.settings_path.write_text('[[banks.agents]]\ncode = "sber"\norg_id = "NOPE"\n', encoding="utf-8")
    with pytest.raises(BillingError, match="«NOPE» нет в реестре"):
        build_files(ws, PERIOD)


@pytest.mark.parametrize(("text", "message"), [
    ('[[banks.agents]]\nlayout = "sber"\n', "не указан code"),
    ('[[banks.agents]]\ncode = "sber"\nlayout = "xml"\n', "layout = 'xml'"),
    ('[[banks.agents]]\ncode = "sber"\ndecimals = ","\n', "неизвестный ключ «decimals»"),
    ('[[banks.agents]]\ncode = "sber"\ncolumns = ["payer", "amount"]\n', "account и amount"),
    ('[[banks.agents]]\ncode = "sber"\nfile_name = "../{inn}.txt"\n', "правило имени файла"),
    ('[[banks.agents]]\ncode = "sber"\nfile_name = "{bank}.txt"\n', "правило имени файла"),
    ('[[banks.agents]]\ncode = "sber"\nseparator = ","\n', "separator"),
    ('[[banks.agents]]\ncode = "a"\n[[banks.agents]]\ncode = "a"\n', "указан дважды"),
    ('[[banks.agents]]\ncode = "сбер"\n', "латинских букв"),
])
def test_bad_agent_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BillingError, match=message):
        load_section(path, Banks)


def test_agent_settings_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(SETTINGS, encoding="utf-8")
    sber, kassa, uk = load_section(path, Banks).agents
    assert (sber.layout, sber.separator, sber.decimal, sber.amounts, sber.max_text) == ("sber", ";", ",", "rubles", 200)
    assert kassa.layout == "csv" and uk.services == ("maintenance",) and uk.columns[3] == "services"
    assert load_section(tmp_path / "settings.toml", Banks) == load_section(path, Banks)
    path.write_text("", encoding="utf-8")
    assert load_section(path, Banks) == Banks()


def test_the_pure_builder_on_inline_frames_cleans_text_and_leaves_out_organizations() -> None:
    from pipeline.export.banks import BankFrames, register_for
    from pipeline.settings import BankAgent

    frames = BankFrames(
        accounts=pl.DataFrame({
            "account_id": ["01", "02", "03"], "payer_kind": ["person", "organization", "person"],
            "payer_name": ["Ёлкина\tОльга [!] Петровна\r\n😀", "ООО «Ромашка»", "Ли"],
            "address": ["д. 5|кв. 1", "пом. 2", None], "els": [None, None, None], "premise_id": ["P", "Q", "R"]}),
        balances=pl.DataFrame({"account_id": ["01", "01", "02", "03"], "supplier_id": ["A", "B", "A", "A"],
                               "closing_kop": [10_050, -50, 777, -1]}),
        service_balances=pl.DataFrame(schema={"account_id": pl.String, "service_id": pl.String,
                                              "supplier_id": pl.String, "closing_kop": pl.Int64}),
        meters=pl.DataFrame({"premise_id": ["P"], "meter_id": ["m"], "service_id": ["electricity"],
                             "serial": ["E|7"], "value_micro": [None]}, schema_overrides={"value_micro": pl.Int64}),
        services=pl.DataFrame(schema={"service_id": pl.String, "name": pl.String}),
        organizations=pl.DataFrame(schema={"org_id": pl.String, "inn": pl.String, "account": pl.String}))
    agent = BankAgent("vtb", file_name="vtb_{yyyy}{mm}_{seq}.txt", sequence=7, separator="|", decimal=".",
                      max_text=0)
    (only,) = register_for(agent, "2026-01", frames)
    assert only.name == "vtb/vtb_202601_007.txt" and (only.rows, only.total_kop) == (2, 10_000)
    assert only.data.decode("cp1251").split("\r\n") == [
        "01||Ёлкина Ольга (!) Петровна ?|д. 5,кв. 1|012026|100.00|E,7|ЭЛ|1|",  # no reading yet: empty
        "03||Ли||012026|0.00",
        "=2|100.00", ""]
    with_orgs = register_for(BankAgent("vtb", file_name="x.txt", organizations=True), "2026-01", frames)
    assert with_orgs[0].rows == 3 and with_orgs[0].total_kop == 10_777
