"""The payment QR code (ГОСТ Р 56042-2014): its payload, and the code read back from the PDF.

The decode tests render a receipt with WeasyPrint, turn the page into a picture with
``pdftoppm`` (poppler-utils) and read every code on it with ``zbarimg`` (zbar-tools), the
same chain as a phone camera: what the bank app gets must be exactly the payload.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.money import format_rub
from pipeline.render.qr import (
    Payload,
    QrPayee,
    QrPolicy,
    decode_payload,
    load_qr_policy,
    parse_payload,
    payment_payload,
)
from pipeline.render.receipts import Payee, Receipt, render_pdf
from pipeline.workspace import BillingError
from tests.render.test_render import make_receipt

PAYEE = QrPayee("ООО «УК Дом»", "40702810200000000001", "ПАО Сбербанк", "044525225",
                "30101810400000000225", "7707083893", "770701001")
LONG_NAME = "Константинопольская-Преображенская Александра-Анастасия Вячеславовна"
LONG_ADDRESS = "Новосибирская обл., г. Энск, ул. Героев Революции, д. 145, корп. 3, кв. 278"


def _payload(**kw: object) -> str:
    args: dict = {"sum_kop": 123456, "account_id": "1000001", "period": "2026-10",
                  "payer_name": "Иванов Иван Иванович", "payer_address": "г. Энск, ул. Ленина, д. 1"}
    args.update(kw)
    return payment_payload(PAYEE, **args).text


def test_the_mandatory_keys_come_first_in_the_standards_order() -> None:
    keys = [item.split("=", 1)[0] for item in _payload().split("|")[1:]]
    assert keys[:5] == ["Name", "PersonalAcc", "BankName", "BIC", "CorrespAcc"]
    assert keys[-1] == "TechCode" and parse_payload(_payload())["techcode"] == "02"
    fields = parse_payload(_payload())
    assert (fields["sum"], fields["persacc"], fields["paymperiod"]) == ("123456", "1000001", "102026")


def test_nothing_owed_leaves_the_sum_for_the_payer() -> None:
    assert "sum" not in parse_payload(_payload(sum_kop=0))


def test_a_long_name_is_shortened_at_a_word_and_reported() -> None:
    name = "Общество с ограниченной ответственностью «Управляющая компания " + "Очень Длинное " * 12 + "Название»"
    out = payment_payload(replace(PAYEE, name=name, bank_name="Публичное акционерное общество «Сбербанк России»"),
                          sum_kop=100, account_id="1", period="2026-10")
    fields = parse_payload(out.text)
    assert len(fields["name"]) <= 160 and name.startswith(fields["name"]) and not fields["name"].endswith(" ")
    assert name[len(fields["name"])] == " "  # cut between words
    assert len(fields["bankname"]) <= 45
    assert any(n.startswith("Name: сокращено до") for n in out.notes)
    assert any(n.startswith("BankName: сокращено до") for n in out.notes)


def test_the_separator_never_appears_inside_a_value() -> None:
    out = payment_payload(replace(PAYEE, name="ООО «Дом|Сервис»\nфилиал"), sum_kop=1, account_id="1",
                          period="2026-10")
    assert parse_payload(out.text)["name"] == "ООО «Дом/Сервис» филиал"
    assert "Name: знак «|» заменён на «/»" in out.notes


def test_an_oversized_payload_leaves_out_the_address_then_the_name() -> None:
    def payload(max_bytes: int) -> Payload:
        return payment_payload(PAYEE, sum_kop=1, account_id="1", period="2026-10", payer_name=LONG_NAME,
                               payer_address=LONG_ADDRESS, policy=QrPolicy(max_bytes=max_bytes))

    whole = payload(700)
    assert whole.notes == () and parse_payload(whole.text)["payeraddress"] == LONG_ADDRESS
    fields = parse_payload(payload(len(whole.data) - 1).text)
    assert "payeraddress" not in fields
    assert " ".join((fields["lastname"], fields["firstname"], fields["middlename"])) == LONG_NAME
    tighter = payload(300)
    assert "lastname" not in parse_payload(tighter.text) and len(tighter.data) <= 300
    assert tighter.notes[-1] == "код длиннее 300 байт: не включён ФИО плательщика"


@pytest.mark.parametrize(("payee", "reason"), [
    (replace(PAYEE, account="4070281020000000000"), "не 20 цифр"),
    (replace(PAYEE, bik="04452522"), "не 9 цифр"),
])
def test_a_broken_mandatory_detail_is_refused_not_printed(payee: QrPayee, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        payment_payload(payee, sum_kop=1, account_id="1", period="2026-10")


def test_cp1251_payload_names_its_encoding_in_the_header() -> None:
    out = payment_payload(PAYEE, sum_kop=1, account_id="1", period="2026-10",
                          policy=QrPolicy(encoding="cp1251", period_format="MM.YYYY"))
    assert out.text.startswith("ST00011|") and out.data == out.text.encode("cp1251")
    assert decode_payload(out.data) == out.text
    assert parse_payload(out.text)["paymperiod"] == "10.2026"


def test_the_policy_file_is_checked(tmp_path: Path) -> None:
    assert load_qr_policy(tmp_path) == QrPolicy()
    (tmp_path / "payment_qr.toml").write_text('[qr]\nmask = "auto"\nencoding = "cp1251"\n')
    assert load_qr_policy(tmp_path) == QrPolicy(mask=None, encoding="cp1251")
    (tmp_path / "payment_qr.toml").write_text('[qr]\nencodng = "cp1251"\n')
    with pytest.raises(BillingError, match="неизвестные параметры \\[qr\\]: encodng"):
        load_qr_policy(tmp_path)
    (tmp_path / "payment_qr.toml").write_text('[qr]\nerror = "X"\n')
    with pytest.raises(BillingError, match="error = «X»: допустимо L, M, Q или H"):
        load_qr_policy(tmp_path)


def test_the_defaults_file_states_the_built_in_defaults() -> None:
    defaults = Path(__file__).resolve().parents[2] / "rules" / "defaults"
    assert load_qr_policy(defaults) == QrPolicy()


# --------------------------------------------------------------------------- read back


def _tools() -> None:
    missing = [t for t in ("pdftoppm", "zbarimg") if shutil.which(t) is None]
    if missing:
        message = f"нет {', '.join(missing)}: scripts/setup.sh ставит poppler-utils и zbar-tools"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def decoded_codes(pdf: Path) -> list[str]:
    """Every QR code on every page of ``pdf``, read by zbarimg from a 300 dpi picture."""
    _tools()
    subprocess.run(["pdftoppm", "-r", "300", "-png", str(pdf), str(pdf.with_suffix(""))], check=True)
    texts: list[str] = []
    for page in sorted(pdf.parent.glob(pdf.stem + "-*.png")):
        done = subprocess.run(["zbarimg", "-q", "--raw", "-Sbinary", str(page)], capture_output=True)
        assert done.returncode in (0, 4), done.stderr  # 4: no code on this page
        # With -Sbinary zbarimg writes the codes' bytes back to back: each starts with its header.
        for data in re.split(rb"(?=ST0001[123]\|)", done.stdout):
            if data.strip():
                texts.append(decode_payload(data))
    return sorted(texts)


def _expected(receipt: Receipt, payees: tuple[Payee, ...], amounts: list[int]) -> list[str]:
    return sorted(
        payment_payload(QrPayee(p.name, p.account, p.bank_name, p.bik, p.corr_account, p.inn, p.kpp),
                        sum_kop=amount, account_id=receipt.account_id, period=receipt.period,
                        payer_name=receipt.payer_name, payer_address=receipt.address,
                        policy=receipt.qr_policy).text
        for p, amount in zip(payees, amounts, strict=True))


def test_every_payees_code_reads_back_exactly_from_the_pdf(tmp_path: Path) -> None:
    receipt = replace(make_receipt(), payer_name=LONG_NAME, address=LONG_ADDRESS)
    pdf = tmp_path / "r.pdf"
    render_pdf(receipt, pdf)
    expected = _expected(receipt, receipt.payees, [p.to_pay for p in receipt.payees])
    assert decoded_codes(pdf) == expected
    assert all(f"|MiddleName={LONG_NAME.split()[-1]}|PayerAddress={LONG_ADDRESS}|" in text for text in expected)


def test_a_collecting_agent_gets_one_code_for_the_whole_amount(tmp_path: Path) -> None:
    base = make_receipt()
    agent = replace(base.payees[0], org_id="eirc", name="АО «Энский расчётный центр»",
                    account="40702810500000000002")
    receipt = replace(base, agent=agent, qr_policy=QrPolicy(encoding="cp1251", mask=None))
    pdf = tmp_path / "r.pdf"
    render_pdf(receipt, pdf)
    codes = decoded_codes(pdf)
    assert codes == _expected(receipt, (agent,), [receipt.to_pay])
    assert codes[0].startswith("ST00011|Name=АО «Энский расчётный центр»|")


def test_a_tear_off_slip_carries_the_codes_under_its_cut_line(tmp_path: Path) -> None:
    """``[receipts] tear_off``: where to pay is the slip at the foot of the front, codes and all."""
    receipt = replace(make_receipt(), tear_off=True)
    pdf = tmp_path / "r.pdf"
    render_pdf(receipt, pdf)
    front = subprocess.run(["pdftotext", "-layout", "-f", "1", "-l", "1", str(pdf), "-"],
                           check=True, capture_output=True, text=True).stdout
    body = " ".join(front.split())
    cut = body.index("линия отрыва")
    assert body.index("Итого к оплате") < cut < body.index("Куда платить") < body.index("Подпись плательщика")
    assert (f"Извещение · лицевой счёт {receipt.account_id} · за октябрь 2026 г. · {receipt.payer_name}"
            in body)
    assert f"итого к оплате {format_rub(receipt.to_pay)} ₽".replace("\u00a0", " ") in body.replace("\u00a0", " ")
    assert decoded_codes(pdf) == _expected(receipt, receipt.payees, [p.to_pay for p in receipt.payees])
    # Without the setting the form has no slip.
    render_pdf(make_receipt(), tmp_path / "plain.pdf")
    plain = subprocess.run(["pdftotext", str(tmp_path / "plain.pdf"), "-"], check=True, capture_output=True,
                           text=True).stdout
    assert "линия отрыва" not in plain and "Подпись плательщика" not in plain
