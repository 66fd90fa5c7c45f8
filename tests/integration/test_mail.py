"""E-mail delivery against a real SMTP server on loopback (aiosmtpd), with STARTTLS and a login.

The server refuses one recipient once (451, "try later"): the first run records the refusal
and sends the rest, the second sends the refused one and nothing twice, the third sends
nothing. Every message is read back from the server: subject, recipient, the PDF attached
byte for byte.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.app import run_close
from pipeline.ingest.registers import ingest
from pipeline.render.mail import read_journal, send_receipts
from pipeline.workspace import BillingError, Workspace
from tests.conftest import ACCOUNTS, run_billing, write_registers

USER, PASSWORD = "epd", "not-in-a-file-7Qx"

DELIVERY = {"A1": ("email", "ivanov@example.ru"), "A2": ("email_only", "petrova@example.ru")}


def _accounts() -> str:
    lines = ACCOUNTS.strip().splitlines()
    out = [lines[0].replace(",email", ",email,delivery")]
    for line in lines[1:]:
        account = line.split(",", 1)[0]
        how, address = DELIVERY.get(account, ("paper", ""))
        out.append(line[:-1] + f",{address},{how}")  # the empty email cell replaced
    return "\n".join(out) + "\n"


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the client trusts it through ``ca_file``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "server.crt", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Mailbox:
    """The server's side: what it accepted, and recipients it refuses (a number of times)."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: dict[str, int] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse.get(address, 0) > 0:
            self.refuse[address] -= 1
            return "451 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 Message accepted"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() \
        and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[Mailbox, int, Path]]:
    import ssl

    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox()
    # aiosmtpd needs a port number (it cannot be given 0): a free one is picked, and picked again
    # if another process took it between the check and the bind.
    for attempt in range(5):
        port = _free_port()
        controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=context,
                                require_starttls=True, authenticator=_authenticate, auth_required=True,
                                ready_timeout=60)  # waits until the server answers; generous when busy
        try:
            controller.start()
            break
        except (OSError, RuntimeError):
            if attempt == 4:
                raise
    try:
        yield box, port, cert
    finally:
        controller.stop()


def _configure(ws: Workspace, port: int, cert: Path) -> None:
    text = ws.settings_path.read_text(encoding="utf-8")
    text = text.replace('host = ""', 'host = "127.0.0.1"').replace("port = 587", f"port = {port}")
    text = text.replace('user = ""', f'user = "{USER}"').replace('sender = ""', 'sender = "epd@eirc.example.ru"')
    text = text.replace('sender_name = ""', 'sender_name = "ЕИРЦ г. Энска"')
    text = text.replace('ca_file = ""', f'ca_file = "{cert}"')
    ws.settings_path.write_text(text, encoding="utf-8")


def test_receipts_go_by_email_once_and_a_refused_one_goes_on_the_next_run(
        town: Workspace, smtp_server: tuple[Mailbox, int, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    box, port, cert = smtp_server
    write_registers(town, {"accounts": _accounts()})
    ingest(town)
    run_close(town, "2026-08")
    _configure(town, port, cert)
    folder = town.period_dir("2026-08")

    # The e-mail-only payer is left out of the building's print batch.
    from pypdf import PdfReader

    outline = PdfReader(folder / "receipts" / "batches" / "B1.pdf").outline
    titles = [item.title for item in outline if not isinstance(item, list)]
    assert titles == ["Лицевой счёт A1", "Лицевой счёт A3"]

    monkeypatch.delenv("BILLING_SMTP_PASSWORD", raising=False)
    with pytest.raises(BillingError, match="переменной окружения BILLING_SMTP_PASSWORD"):
        send_receipts(town, "2026-08")
    assert box.messages == []
    monkeypatch.setenv("BILLING_SMTP_PASSWORD", PASSWORD)

    box.refuse["petrova@example.ru"] = 1
    first = send_receipts(town, "2026-08")
    assert (first.sent, first.failed, first.already_sent) == (1, 1, 0)
    assert first.failures == {"A2": "сервер отказал получателю: 451 4.2.1 Mailbox busy, try again later"}
    assert box.envelopes == [("epd@eirc.example.ru", ["ivanov@example.ru"])]
    msg = box.messages[0]
    assert msg["Subject"] == "Квитанция за август 2026 г., лицевой счёт A1"
    assert msg["To"] == "ivanov@example.ru" and "ЕИРЦ г. Энска" in msg["From"]
    body = msg.get_body(preferencelist=("plain",)).get_content()
    assert "лицевому счёту A1" in body and "К оплате:" in body
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "ЕПД_A1_2026-08.pdf"
    assert attachment.get_content() == (folder / "receipts" / "A1.pdf").read_bytes()

    second = send_receipts(town, "2026-08")
    assert (second.sent, second.failed, second.already_sent) == (1, 0, 1)
    assert [to for _, to in box.envelopes] == [["ivanov@example.ru"], ["petrova@example.ru"]]

    # The command line says the same, and sends nothing a third time.
    proc = run_billing("receipts", "send", "--period", "2026-08", home=town.home,
                       env={"BILLING_SMTP_PASSWORD": PASSWORD})
    assert "отправлено 0, уже были отправлены 2." in proc.stdout
    assert len(box.messages) == 2
    journal = read_journal(town, "2026-08")
    assert [(e["account_id"], e["status"], e["attempt"]) for e in journal] == [
        ("A1", "sent", 1), ("A2", "failed", 1), ("A2", "sent", 2)]
    assert all(PASSWORD not in json.dumps(e, ensure_ascii=False) for e in journal)
    assert PASSWORD not in town.settings_path.read_text(encoding="utf-8")


def test_a_server_that_cannot_be_reached_stops_the_run_and_loses_nothing(town: Workspace) -> None:
    write_registers(town, {"accounts": _accounts()})
    ingest(town)
    run_close(town, "2026-08")
    _configure(town, _free_port(), Path("/nonexistent"))
    text = town.settings_path.read_text(encoding="utf-8")
    town.settings_path.write_text(text.replace('security = "starttls"', 'security = "none"')
                                  .replace(f'user = "{USER}"', 'user = ""'), encoding="utf-8")
    report = send_receipts(town, "2026-08")
    assert (report.sent, report.failed) == (0, 1)
    assert report.stopped.startswith("не удалось связаться с сервером 127.0.0.1:")
    assert [e["account_id"] for e in read_journal(town, "2026-08")] == ["A1"]  # A2 untouched


def test_an_account_asking_for_email_without_an_address_is_refused(town: Workspace) -> None:
    write_registers(town, {"accounts": _accounts().replace("petrova@example.ru", "")})
    result = ingest(town)
    import polars as pl

    rejects = pl.read_csv(result.rejects_path, separator=";", infer_schema=False)
    row = rejects.filter(pl.col("file") == "accounts.csv").row(0, named=True)
    assert (row["row"], row["column"]) == ("3", "email")
    assert row["reason"] == "не заполнено, а «доставка квитанции» — email_only"
