"""Collection cases on a workspace on disk: a person's case from the debtor found to the payment
that clears it, an organization's claim → arbitration package, a repayment agreement pausing a
case, and restriction lists that never hold heating nor cold water in a block of flats.

The town of tests/conftest.py (B1: three flats, cold water and sewerage of VK, heating of TS,
maintenance of UK1) plus a private house B2 (one premise, cold water of VK) and a shop of an
organization in B1. August–October 2026 are closed with nobody paying.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pipeline.close import compute, load_inputs, seal
from pipeline.collect import workflow as wf
from pipeline.collect.cases import read_store
from pipeline.dates import Period
from pipeline.ingest.payments import import_payment_file
from pipeline.ingest.registers import ingest
from pipeline.workspace import BillingError, Workspace
from tests.conftest import TOWN, run_billing, write_registers

EXTRA = {
    "buildings": TOWN["buildings"] + 'B2,"г. Энск, ул. Садовая, д. 7",UK1,80.00,0.00\n',
    "premises": TOWN["premises"] + "P4,B1,101,nonresidential,100.00,,false\nP5,B2,1,residential,80.00,3,false\n",
    "accounts": TOWN["accounts"] + "A4,P4,organization,ООО «Ромашка»,1,1,2020-01-01,,\n"
                                   "A5,P5,person,Кузнецов Олег Петрович,1,1,2020-01-01,,\n",
    "building_services": TOWN["building_services"] + "B2,cold_water,VK,2015-01-01,\n",
    "residents": TOWN["residents"] + "R5,A5,Кузнецов Олег Петрович,1975-05-05,permanent,2020-01-01,\n",
}


def close(ws: Workspace, period: str) -> None:
    inputs = load_inputs(ws, Period.parse(period))
    seal(ws, compute(inputs), inputs)


@pytest.fixture
def unpaid(town: Workspace) -> Workspace:
    """The town with B2 and the shop, August–October 2026 closed, nothing paid."""
    write_registers(town, {**TOWN, **EXTRA})
    ingest(town)
    for period in ("2026-08", "2026-09", "2026-10"):
        close(town, period)
    return town


def case_of(ws: Workspace, account: str, supplier: str) -> dict:
    cases, _ = read_store(ws)
    rows = cases.filter((pl.col("account_id") == account) & (pl.col("supplier_id") == supplier))
    assert rows.height == 1, rows
    return rows.row(0, named=True)


def pdf_text(path: Path) -> str:
    assert shutil.which("pdftotext"), "pdftotext (poppler-utils) is needed"
    out = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    return " ".join(out.split())


def test_person_case_walks_from_debtor_to_paid(unpaid: Workspace, tmp_path: Path) -> None:
    ws = unpaid
    # Debtor found on 20.11.2026: August–October are overdue (October due 16.11, 15.11 a Sunday).
    # A3 cold water: 248.07 + 248.07 + 278.10 = 774.24 > 2 × 4.745 × 58.61 = 2 × 278.10 (п.118).
    listed = wf.collect_list(ws, on=date(2026, 11, 20))
    assert listed.opened >= 1
    case = case_of(ws, "A3", "VK")
    assert (case["stage"], case["status"]) == ("debtor", "open")
    assert case["service_ids"] == ["cold_water", "sewerage"]
    assert case["restrictable_ids"] == ["sewerage"]  # cold water is never restricted in a block of flats
    assert case["debt_opened_kop"] == 77424 + 19535 + 19535 + 21898  # cold water + sewerage, Aug–Oct
    assert case["through_period"] == "2026-10"
    # Idempotent: running the list again opens nothing and logs nothing.
    _, events_before = read_store(ws)
    again = wf.collect_list(ws, on=date(2026, 11, 20))
    assert (again.opened, again.updated, again.paid) == (0, 0, 0)
    assert read_store(ws)[1].height == events_before.height

    # The warning (п.119), delivered on 21.11.2026.
    warned = wf.collect_warn(ws, accounts=["A3"], on=date(2026, 11, 21))
    warning = warned.documents[case["case_id"]]
    text = pdf_text(warning)
    assert "ПРЕДУПРЕЖДЕНИЕ" in text and "Сидоров Пётр Ильич" in text and "АО «Водоканал»" in text
    assert "1 383,92" in text and "20 дней" in text and "«Водоотведение»" in text

    # Before the 20 days have passed the court package is refused, naming the first possible day.
    with pytest.raises(BillingError, match=r"не раньше 12\.12\.2026"):
        wf.collect_court(ws, case["case_id"], on=date(2026, 12, 11))

    # 20 days later: the restriction list, then the court order package.
    restricted = wf.collect_restrict(ws, on=date(2026, 12, 12))
    vk = restricted.rows.filter(pl.col("case_id") == case["case_id"])
    assert vk["service_id"].to_list() == ["sewerage"]
    package = wf.collect_court(ws, case["case_id"], on=date(2026, 12, 12), court="Мировому судье судебного "
                               "участка № 3 Энского района")
    text = pdf_text(package.path)
    assert "ЗАЯВЛЕНИЕ о вынесении судебного приказа" in text
    assert "Мировому судье судебного участка № 3 Энского района" in text
    assert "Взыскатель: АО «Водоканал»" in text and "ИНН 7707083893" in text
    assert "Должник: Сидоров Пётр Ильич" in text and "ул. Ленина, д. 1, кв. 3" in text
    assert package.debt_kop == 138392 and package.penalty_kop > 0
    assert f"задолженность в размере {_rub(package.debt_kop)} руб." in text
    assert f"в размере {_rub(package.penalty_kop)} руб." in text
    assert f"Цена иска: {_rub(package.debt_kop + package.penalty_kop)} руб." in text
    assert package.duty_kop == 200000 and "Государственная пошлина: 2 000,00 руб." in text  # the minimum
    assert "Приложения:" in text and "Расчёт задолженности и пени по лицевому счёту A3" in text
    assert "Копия предупреждения о задолженности от 21.11.2026" in text
    assert "Расчёт задолженности и пени" in text.split("Приложения:")[1]  # the statement follows
    assert case_of(ws, "A3", "VK")["stage"] == "court"

    # The court's answer.
    wf.collect_record(ws, case["case_id"], "order_issued", date(2026, 12, 25), number="2-123/2026")
    assert case_of(ws, "A3", "VK")["stage"] == "order_issued"
    with pytest.raises(BillingError, match="возможен только после"):
        wf.collect_record(ws, case["case_id"], "claim_filed", date(2026, 12, 26))

    # A payment in November clears the debt: the November close shows nothing left of August–October.
    pay = tmp_path / "pay.csv"
    pay.write_text("payment_id,paid_on,account_id,amount,period,agent\nz1,2026-11-28,A3,20000.00,,sber\n",
                   encoding="utf-8")
    import_payment_file(ws, pay, today=date(2026, 11, 30))
    close(ws, "2026-11")
    done = wf.collect_list(ws, on=date(2026, 12, 20))
    assert done.paid >= 1
    case = case_of(ws, "A3", "VK")
    assert (case["status"], case["debt_kop"], case["recovered_kop"]) == ("paid", 0, 138392)
    log = wf.case_events(ws, case["case_id"])
    assert log["action"].to_list() == ["opened", "warned", "restricted", "court", "order_issued", "debt", "paid"]
    assert log["seq"].to_list() == list(range(1, 8))
    assert log.filter(pl.col("action") == "court")["sha256"][0]
    audit = (ws.audit / "log.jsonl").read_text(encoding="utf-8")
    for command in ("collect list", "collect warn", "collect restrict", "collect court", "collect record"):
        assert f'"command": "{command}"' in audit


def _rub(kop: int) -> str:
    from pipeline.money import format_rub

    return format_rub(kop).replace("\u00a0", " ")


def test_restriction_list_never_heating_nor_cold_water_in_a_block(unpaid: Workspace) -> None:
    ws = unpaid
    wf.collect_list(ws, on=date(2026, 11, 20))
    wf.collect_warn(ws, on=date(2026, 11, 21))
    rows = wf.collect_restrict(ws, on=date(2026, 12, 12)).rows
    assert rows.height > 0
    assert "heating" not in rows["service_id"].to_list()
    # Cold water only in the private house B2 (A5), never in the block of flats B1.
    cold = rows.filter(pl.col("service_id") == "cold_water")
    assert cold["account_id"].to_list() == ["A5"]
    heating_case = case_of(ws, "A1", "TS")
    assert heating_case["restrictable_ids"] == [] and heating_case["stage"] == "warned"
    files = [p for paths in wf.collect_restrict(ws, on=date(2026, 12, 13)).files.values() for p in paths]
    assert files and all(p.is_file() for p in files)
    # The second list: the restricted cases are now for suspension.
    assert set(wf.collect_restrict(ws, on=date(2026, 12, 14)).rows["measure"]) == {"приостановление"}


def test_warning_texts_for_the_receipts(unpaid: Workspace) -> None:
    from pipeline.collect.texts import warning_texts

    wf.collect_list(ws := unpaid, on=date(2026, 11, 20))
    texts = warning_texts(ws, "2026-11")
    # Only cases with a service that may be restricted: VK's sewerage (and cold water in B2), never
    # the heating of TS; not the organization; not a case found on the period itself.
    assert sorted(texts) == ["A1", "A2", "A3", "A5"]
    assert texts["A3"] == (
        "ПРЕДУПРЕЖДЕНИЕ. По лицевому счёту A3 на 31.10.2026 задолженность перед АО «Водоканал» за август 2026 — "
        "октябрь 2026 — 1\u00a0383,92 руб. Если она не будет погашена в течение 20 дней со дня доставки этого "
        "предупреждения, предоставление услуг «Водоотведение» будет ограничено, а затем приостановлено "
        "(п.117–119 Правил 354). Неоплаченный долг с пенями будет взыскан в судебном порядке.")
    assert "«Холодное водоснабжение»" in texts["A5"]
    assert warning_texts(ws, "2026-10") == {}

    # The November receipts print the cases' text in place of the debt-months proxy.
    from pipeline.ingest.registers import load_store
    from pipeline.render.build import workspace_receipts
    from rules import read_rule_table

    inputs = load_inputs(ws, Period.parse("2026-11"))
    receipts = {r.account_id: r for r in workspace_receipts(
        ws, compute(inputs), load_store(ws), read_rule_table(ws.rules, "services"),
        read_rule_table(ws.rules, "legal_thresholds"))}
    assert receipts["A3"].warning_text == texts["A3"]
    assert all(r.warning_suppliers == () for r in receipts.values())


def test_organization_goes_claim_then_arbitration(unpaid: Workspace) -> None:
    ws = unpaid
    wf.collect_list(ws, on=date(2026, 11, 20))
    # The shop's heating: 3 × ≈ 5 700 ₽ > 10 000 ₽, August overdue 66 days ≥ 60 (collection.csv).
    case = case_of(ws, "A4", "TS")
    assert case["payer_kind"] == "organization" and case["stage"] == "debtor"
    with pytest.raises(BillingError, match="возможен только после"):
        wf.collect_court(ws, case["case_id"], on=date(2026, 11, 21))  # no claim yet
    claim = wf.collect_claim(ws, case["case_id"], on=date(2026, 11, 21))
    text = pdf_text(claim.path)
    assert "ПРЕТЕНЗИЯ" in text and "ООО «Ромашка»" in text and "АО «Теплосеть»" in text and "30 календарных" in text
    with pytest.raises(BillingError, match=r"не раньше 22\.12\.2026"):
        wf.collect_court(ws, case["case_id"], on=date(2026, 12, 21))
    package = wf.collect_court(ws, case["case_id"], on=date(2026, 12, 22))
    text = pdf_text(package.path)
    assert "ИСКОВОЕ ЗАЯВЛЕНИЕ" in text and "Истец: АО «Теплосеть»" in text and "Ответчик: ООО «Ромашка»" in text
    assert "претензия направлена ответчику 21.11.2026" in text and "333.21" in text
    assert package.duty_kop == 1_000_000  # 10 000 ₽ up to 100 000 ₽ (НК 333.21, UNVERIFIED)
    assert f"Цена иска: {_rub(package.debt_kop + package.penalty_kop)} руб." in text
    assert "Расчёт задолженности и пени" in text
    assert case_of(ws, "A4", "TS")["stage"] == "arbitration"
    # A person's step is refused for an organization.
    with pytest.raises(BillingError, match="не применяется"):
        wf.collect_record(ws, case["case_id"], "order_issued", date(2026, 12, 30))


def test_repayment_agreement_pauses_and_a_broken_one_resumes(unpaid: Workspace) -> None:
    ws = unpaid
    header = "account_id,supplier_id,from,to,broken_on\n"
    path = ws.registers / "repayment_agreements.csv"
    path.write_text(header + "A2,VK,2026-11-01,2027-04-30,\n", encoding="utf-8")
    ingest(ws)
    wf.collect_list(ws, on=date(2026, 11, 20))
    assert case_of(ws, "A2", "VK")["status"] == "paused"
    assert case_of(ws, "A2", "TS")["status"] == "open"  # the agreement is with VK only
    warned = wf.collect_warn(ws, accounts=["A2"], on=date(2026, 11, 21))
    assert case_of(ws, "A2", "VK")["case_id"] in warned.skipped
    # Broken on 01.12.2026: the case goes on.
    path.write_text(header + "A2,VK,2026-11-01,2027-04-30,2026-12-01\n", encoding="utf-8")
    ingest(ws)
    resumed = wf.collect_list(ws, on=date(2026, 12, 2))
    assert resumed.resumed == 1 and case_of(ws, "A2", "VK")["status"] == "open"
    # accounts.repayment_agreement_until is honoured too (every supplier of the account).
    accounts = (ws.registers / "accounts.csv").read_text(encoding="utf-8")
    (ws.registers / "accounts.csv").write_text(
        accounts.replace("email\n", "email,repayment_agreement_until\n", 1)
        .replace("A1,P1,person,Иванов Иван Иванович,1,1,2020-01-01,,", "A1,P1,person,Иванов Иван Иванович,1,1,"
                 "2020-01-01,,,2027-01-31"), encoding="utf-8")
    ingest(ws)
    wf.collect_list(ws, on=date(2026, 12, 3))
    assert {case_of(ws, "A1", s)["status"] for s in ("VK", "TS")} == {"paused"}


def test_cli_list_and_record_in_russian(unpaid: Workspace) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    def billing(*args: str) -> tuple[int, str]:
        res = CliRunner().invoke(app, [*args, "--home", str(unpaid.home)])
        return res.exit_code, res.output

    code, out = billing("collect", "list", "--on", "20.11.2026")
    assert code == 0 and "новых дел" in out and "Итоги по стадиям" in out and "должник выявлен" in out
    assert "Холодное водоснабжение, Водоотведение" in out
    code, out = billing("collect", "list", "--on", "20.11.2026")
    assert code == 0 and "новых дел 0" in out
    case_id = case_of(unpaid, "A3", "VK")["case_id"]
    code, out = billing("collect", "record", "--case", case_id, "--event", "closed", "--on", "2026-12-01",
                        "--reason", "списано решением правления")
    assert code == 0 and "закрыто" in out
    # As a user runs it: a business error is exit 1 with a Russian message, a bad event a usage error (2).
    early = run_billing("collect", "court", "--case", case_id, "--on", "2026-12-02", home=unpaid.home, check=False)
    assert early.returncode == 1 and "Ошибка: Дело" in early.stderr and "закрыто" in early.stderr
    bad = run_billing("collect", "record", "--case", case_id, "--event", "won", "--on", "2026-12-01",
                      home=unpaid.home, check=False)
    assert bad.returncode == 2


def test_warn_send_mails_the_warning_once(unpaid: Workspace) -> None:
    import socket

    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[bytes] = []

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            self.messages.append(envelope.content)
            return "250 OK"

    ws = unpaid
    accounts = (ws.registers / "accounts.csv").read_text(encoding="utf-8")
    (ws.registers / "accounts.csv").write_text(
        accounts.replace("Сидоров Пётр Ильич,1,1,2020-01-01,,", "Сидоров Пётр Ильич,1,1,2020-01-01,,a3@example.ru"),
        encoding="utf-8")
    ingest(ws)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ws.settings_path.read_text(encoding="utf-8")
    settings = settings.replace('host = ""', 'host = "127.0.0.1"').replace("port = 587", f"port = {port}")
    settings = settings.replace('security = "starttls"', 'security = "none"').replace(
        'sender = ""', 'sender = "debt@eirc.example.ru"')
    ws.settings_path.write_text(settings, encoding="utf-8")
    wf.collect_list(ws, on=date(2026, 11, 20))
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        done = wf.collect_warn(ws, accounts=["A3"], on=date(2026, 11, 21), send=True)
        again = wf.collect_warn(ws, accounts=["A3"], on=date(2026, 11, 22), send=True)
    finally:
        controller.stop()
    case, heating = case_of(ws, "A3", "VK"), case_of(ws, "A3", "TS")
    # One message per case (per claimant), none again on the second run.
    assert done.sent == {case["case_id"]: "a3@example.ru", heating["case_id"]: "a3@example.ru"}
    assert again.sent == {} and not again.documents and len(inbox.messages) == 2
    import email
    import email.policy

    bodies = [email.message_from_bytes(m, policy=email.policy.default) for m in inbox.messages]
    msg = next(m for m in bodies if "АО «Водоканал»" in m.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "ПРЕДУПРЕЖДЕНИЕ. По лицевому счёту A3" in body and "«Водоотведение»" in body
    assert [p.get_content_type() for p in msg.iter_attachments()] == ["application/pdf"]
    assert wf.case_events(ws, case["case_id"])["action"].to_list() == ["opened", "warned", "sent"]
