"""Bank statements in the 1С exchange format: an organization's payment, an agent's daily
transfer and an unmatched purpose each in its place, to the kopeck; cp1251; rejects; once."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.ingest import onec
from pipeline.ingest.bank_formats import detect_format, sber_register_bytes
from pipeline.ingest.payments import (
    import_payment_file,
    load_imported_files,
    load_payments,
    load_suspense,
    read_payment_file,
    revert_payment_file,
)
from pipeline.ingest.registers import ingest
from pipeline.workspace import BillingError, IncompleteFileError, Workspace, init_workspace
from tests.conftest import ORGS, TOWN, write_registers

OURS = "40702810200000000001"  # UK1's settlement account (tests/conftest.py)
VK = "40702810500000000002"
AGENT_INN = "7700000009"  # a valid ИНН, not one of ours
ORG_INN = "7720000007"


def doc(number: str, amount: str, purpose: str, *, payer: str = "Иванов Иван Иванович",
        payer_inn: str = "", payer_account: str = "40817810000000000001", payee_account: str = OURS,
        day: str = "15.09.2026", received: str | None = None, kind: str = "Платежное поручение") -> str:
    return textwrap.dedent(f"""\
        СекцияДокумент={kind}
        Номер={number}
        Дата={day}
        Сумма={amount}
        ПлательщикСчет={payer_account}
        ПлательщикИНН={payer_inn}
        Плательщик1={payer}
        ПлательщикБИК=044525225
        ПолучательСчет={payee_account}
        ДатаПоступило={day if received is None else received}
        ПолучательИНН=7707083893
        Получатель1=ООО «УК Дом»
        НазначениеПлатежа={purpose}
        КонецДокумента
        """)


def statement(*docs: str, encoding: str = "Windows", total: str = "") -> str:
    head = textwrap.dedent(f"""\
        1CClientBankExchange
        ВерсияФормата=1.03
        Кодировка={encoding}
        Отправитель=Бухгалтерия
        ДатаНачала=15.09.2026
        ДатаКонца=15.09.2026
        РасчСчет={OURS}
        СекцияРасчСчет
        ДатаНачала=15.09.2026
        РасчСчет={OURS}
        ВсегоПоступило={total}
        КонецРасчСчет
        """)
    return head + "".join(docs) + "КонецФайла\n"


ORG_PAYMENT = doc("101", "12345.67", "Оплата по счёту № A3-202609-1 от 30.09.2026, в т.ч. НДС",
                  payer="ООО «Ромашка»", payer_inn=ORG_INN, payer_account="40702810900000000009")
AGENT_TRANSFER = doc("57", "301.50", "Перечисление денежных средств по реестру за 14.09.2026 "
                                     "(принятые платежи физических лиц)",
                     payer="ПАО Сбербанк", payer_inn=AGENT_INN, payer_account="30233810000000000001")
UNMATCHED = doc("7", "500", "Оплата коммунальных услуг, кв. 3", payer="Сидоров П. И.")
OUTGOING = doc("900", "1000.00", "Оплата поставщику", payer="ООО «УК Дом»", payer_account=OURS,
               payee_account="40702810000000000777")
REGISTER_DAY = date(2026, 9, 14)

EMPTY_AGENTS = pl.DataFrame(schema={"agent": pl.String, "inn": pl.String, "account": pl.String})


def context(register_kop: list[int] | None = None, **accounts: Any) -> onec.Context:
    paid = pl.DataFrame({"agent": ["sber"] * len(register_kop or []),
                         "paid_on": [REGISTER_DAY] * len(register_kop or []),
                         "amount_kop": register_kop or []},
                        schema={"agent": pl.String, "paid_on": pl.Date, "amount_kop": pl.Int64})
    frame = pl.DataFrame({"account_id": ["A1", "A2", "A3", "123"], **accounts})
    return onec.Context(frozenset({OURS, VK}),
                        pl.DataFrame({"agent": ["sber"], "inn": [AGENT_INN], "account": [None]},
                                     schema=EMPTY_AGENTS.schema),
                        frame, paid)


def sort(text: str, ctx: onec.Context | None = None, encoding: str = "cp1251") -> onec.Sorted:
    data = text.encode(encoding)
    return onec.sort_statement("выписка.txt", onec.parse_statement("выписка.txt", data), ctx or context())


# --------------------------------------------------------------------------- unit: inline text


def test_each_document_in_its_place_to_the_kopeck() -> None:
    out = sort(statement(ORG_PAYMENT, AGENT_TRANSFER, UNMATCHED, OUTGOING), context([20050, 10100]))
    rows = {r["amount_kop"]: r for r in out.incoming.to_dicts()}
    assert sorted(rows) == [50000, 1234567]  # the agent's transfer is not a payment
    org = rows[1234567]
    assert (org["account_id"], org["period"], org["agent"], org["paid_on"]) == (
        "A3", "2026-09", "1c", date(2026, 9, 15))
    assert rows[50000]["account_id"] is None
    why = dict(zip(out.explain["source_row"], out.explain["why"], strict=True))[rows[50000]["source_row"]]
    assert "нет ни лицевого счёта" in why and "«Оплата коммунальных услуг, кв. 3»" in why
    s = out.settlements.row(0, named=True)
    assert (s["agent"], s["amount_kop"], s["register_kop"], s["difference_kop"], s["status"], s["days"]) == (
        "sber", 30150, 30150, 0, "reconciled", "14.09.2026")
    assert out.skipped == 1 and out.rejects.height == 0
    assert any("сходится с реестрами за 14.09.2026" in n for n in out.notes)


def test_agent_transfer_that_differs_is_reported_in_russian() -> None:
    out = sort(statement(AGENT_TRANSFER), context([20050, 10100, 1000]))
    s = out.settlements.row(0, named=True)
    assert (s["status"], s["register_kop"], s["difference_kop"]) == ("difference", 31150, -1000)
    assert "поступило на 10,00 ₽ меньше" in s["message"] and "не сходится" in s["message"]
    none = sort(statement(AGENT_TRANSFER), context([])).settlements.row(0, named=True)
    assert none["status"] == "no_register" and "сверить не с чем" in none["message"]


@pytest.mark.parametrize(("purpose", "account", "period"), [
    ("Оплата ЛС 123 за 09.2026", "123", "2026-09"),
    ("ЛС123 09.2026", "123", "2026-09"),
    ("л/с 123, сентябрь 2026 г.", "123", "2026-09"),
    ("по лицевой счет №123 за 09/2026", "123", "2026-09"),
    ("ЛС: a2 период 2026-08", "A2", "2026-08"),
    ("Лицевой счёт А1 (кириллица) за август 2026 и штраф", "A1", "2026-08"),
    ("ЛС 123 за 08.2026 и 09.2026", "123", None),
    ("ЛС 999 за 09.2026", "999", "2026-09"),  # not in the register: suspense, «неизвестный лицевой счёт»
    ("ЛС 123 и ЛС A1", None, None),
    ("Оплата за 15.09.2026", None, None),
])
def test_purpose_text(purpose: str, account: str | None, period: str | None) -> None:
    assert onec.match_purpose(purpose, {"A1", "A2", "123"})[:2] == (account, period)


def test_organization_payer_found_by_its_inn() -> None:
    text = statement(doc("5", "10", "Оплата по договору", payer_inn=ORG_INN, payer="ООО «Ромашка»"))
    out = sort(text, context(payer_inn=[None, None, ORG_INN, None]))
    assert out.incoming["account_id"].to_list() == ["A3"]


def test_encodings_cp1251_utf8_and_dos() -> None:
    text = statement(UNMATCHED)
    for encoding, declared in (("cp1251", "Windows"), ("utf-8", "Windows"), ("cp866", "DOS")):
        data = statement(UNMATCHED, encoding=declared).replace("«", '"').replace("»", '"').encode(encoding)
        st = onec.parse_statement("x.txt", data)
        assert st.encoding == encoding and st.documents["purpose"][0] == "Оплата коммунальных услуг, кв. 3"
    crlf = text.replace("\n", "\r\n").encode("cp1251")
    assert onec.parse_statement("x.txt", crlf).documents["payer_name"][0] == "Сидоров П. И."
    assert detect_format("x.txt", crlf) == "1c" and detect_format("x.txt", b"\xef\xbb\xbf" + crlf) == "1c"


def test_bad_amount_rejected_with_file_row_column_and_reason() -> None:
    bad = doc("8", "12,345", "ЛС 123")  # three decimals
    text = statement(UNMATCHED, bad, doc("9", "", "ЛС A1"), doc("10", "-5.00", "ЛС A1"))
    out = sort(text)
    assert out.incoming["amount_kop"].to_list() == [50000]
    rejects = out.rejects.to_dicts()
    lines = text.split("\n")
    row = next(i for i, ln in enumerate(lines, start=1) if ln == "Сумма=12,345")
    assert rejects[0] == {"file": "выписка.txt", "row": row, "column": "Сумма", "value": "12,345",
                          "reason": "сумма не читается: не сумма в рублях с точностью до копейки: «12,345»"}
    assert [r["reason"] for r in rejects[1:]] == ["нет суммы документа",
                                                 "сумма документа должна быть больше нуля"]


def test_whole_file_refusals() -> None:
    with pytest.raises(IncompleteFileError, match="нет строки «КонецФайла»"):
        onec.parse_statement("x.txt", statement(UNMATCHED).replace("КонецФайла\n", "").encode("cp1251"))
    with pytest.raises(BillingError, match="не закрыт «КонецДокумента»"):
        onec.parse_statement("x.txt", statement(UNMATCHED.replace("КонецДокумента\n", ""), UNMATCHED)
                             .encode("cp1251"))
    with pytest.raises(BillingError, match="не выписка 1С"):
        onec.parse_statement("x.txt", b"payment_id;account_id\n")
    with pytest.raises(BillingError, match="после «КонецФайла»"):
        onec.parse_statement("x.txt", (statement(UNMATCHED) + "Сумма=1\n").encode("cp1251"))


def test_the_same_document_keeps_its_id_and_totals_are_checked() -> None:
    one = sort(statement(UNMATCHED, total="500.00"))
    two = sort(statement(ORG_PAYMENT, UNMATCHED, total="1.00").replace("Бухгалтерия", "Банк"))
    assert one.incoming["payment_id"][0] in two.incoming["payment_id"].to_list()
    assert one.notes == ()
    stranger = sort(statement(UNMATCHED).replace(f"РасчСчет={OURS}", "РасчСчет=40702810000000000999"))
    assert any("40702810000000000999 не указан" in n for n in stranger.notes)
    assert any("ВсегоПоступило" in n and "возможно, неполная" in n for n in two.notes)


# --------------------------------------------------------------------------- integration


ORGS_WITH_AGENT = ORGS + f"sber,ПАО Сбербанк,{AGENT_INN},,billing_centre,,,,,г. Москва,\n"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path, Any, Any]:
    base = tmp_path_factory.mktemp("onec")
    ws = init_workspace(base / "home")
    write_registers(ws, {**TOWN, "organizations": ORGS_WITH_AGENT})
    ingest(ws)
    register = pl.DataFrame({
        "payment_id": ["s1", "s2"], "paid_on": [REGISTER_DAY] * 2, "account_id": ["A1", "A2"],
        "amount_kop": [20050, 10100], "period": ["2026-08"] * 2, "payer_name": ["Иванов", "Петрова"],
        "address": ["", ""]})
    sber = base / "17066_7707083893_40702810200000000001_001.txt"
    sber.write_bytes(sber_register_bytes(register))
    import_payment_file(ws, sber, today=date(2026, 9, 20))
    path = base / "kl_to_1c.txt"
    bad = doc("8", "1O0.00", "ЛС A1")  # a letter O in the amount
    path.write_bytes(statement(ORG_PAYMENT, AGENT_TRANSFER, UNMATCHED, OUTGOING, bad)
                     .replace("\n", "\r\n").encode("cp1251"))
    first = import_payment_file(ws, path, today=date(2026, 9, 20))
    again = import_payment_file(ws, path, today=date(2026, 9, 20))
    return ws, path, first, again


def test_statement_imports_each_in_its_place(imported: tuple[Workspace, Path, Any, Any]) -> None:
    ws, path, first, _ = imported
    assert (first.format, first.accepted, first.accepted_kop, first.suspense, first.rejected) == (
        "1c", 1, 1234567, 1, 1)
    mine = load_payments(ws).filter(pl.col("agent") == "1c")
    assert mine.select("account_id", "period", pl.col("amount").cast(pl.String)).rows() == [
        ("A3", "2026-09", "12345.67")]
    waiting = load_suspense(ws).row(0, named=True)
    assert str(waiting["amount"]) == "500.00" and "«Оплата коммунальных услуг, кв. 3»" in waiting["reason"]
    assert "Оплата коммунальных услуг" in first.suspense_rows[0].text()
    settled = onec.load_settlements(ws).row(0, named=True)
    assert (settled["agent"], settled["amount_kop"], settled["status"], settled["source_file"]) == (
        "sber", 30150, "reconciled", path.name)
    assert any("сходится" in n for n in first.notes) and any("не платежи" in n for n in first.notes)
    report = first.rejects_path.read_text(encoding="utf-8")
    assert "Сумма" in report and "1O0.00" in report


def test_reimport_is_a_no_op(imported: tuple[Workspace, Path, Any, Any], tmp_path: Path) -> None:
    ws, path, _, again = imported
    assert again.already_imported
    before = (load_payments(ws).height, load_suspense(ws).height, onec.load_settlements(ws).height)
    # The same documents in another file (LF line ends): known payments, known settlement.
    copy = tmp_path / "kl_to_1c_copy.txt"
    copy.write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
    other = import_payment_file(ws, copy, "1c", today=date(2026, 9, 20))
    assert (other.accepted, other.suspense, other.duplicates) == (0, 0, 2)
    assert (load_payments(ws).height, load_suspense(ws).height, onec.load_settlements(ws).height) == before
    with pytest.raises(BillingError, match="выписка банка в формате 1С"):
        read_payment_file(copy)
    revert_payment_file(ws, copy)  # its own rows only: nothing of the first file goes
    assert onec.load_settlements(ws).height == before[2]
    assert load_imported_files(ws).filter(pl.col("format") == "1c").height == 2
