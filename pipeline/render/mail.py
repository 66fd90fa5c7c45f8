"""E-mail delivery of a sealed period's receipts (``billing receipts send --period P``).

Who gets one: an account whose ``delivery`` is ``email`` or ``email_only`` (the payer's
consent to electronic delivery) with an ``email``, as the registers stood when the period
was closed (the snapshot its manifest names), and a receipt PDF in the sealed folder.

Every attempt is a line of the delivery journal ``store/delivery/email-YYYY-MM.jsonl``,
written and flushed to disk right after the server answered, before the next message:

* a message the server accepted (``sent``) is never sent again by a re-run;
* a refused or failed one (``failed``: the server's code and text, or why it could not be
  reached) is tried again by the next run, once per run, until ``[smtp] max_attempts``;
* when the server cannot be reached at all, the run stops at the first message and says so:
  the rest wait for the next run untouched.

The command holds the workspace lock, so two runs cannot send the same message. The SMTP
password comes from the environment variable ``[smtp] password_env``, never from a file.
The sealed folder is not touched: the journal lives in ``store/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from pathlib import Path

import polars as pl

from pipeline.dates import Period
from pipeline.money import format_rub
from pipeline.render.receipts import period_text
from pipeline.sealed import read_internal
from pipeline.settings import Smtp, load_section
from pipeline.workspace import BillingError, Workspace, locked

__all__ = ["SendReport", "journal_path", "read_journal", "send_receipts"]

#: What a consent to electronic delivery looks like in ``accounts.delivery``.
BY_EMAIL = ("email", "email_only")


@dataclass(frozen=True)
class SendReport:
    """Outcome of one :func:`send_receipts` run."""

    period: str
    sent: int = 0
    failed: int = 0
    already_sent: int = 0
    gave_up: int = 0
    no_receipt: int = 0
    #: ``account → reason`` of this run's failures (Russian, with the server's answer).
    failures: dict[str, str] = field(default_factory=dict)
    #: Set when the run stopped because the server could not be reached.
    stopped: str = ""


def journal_path(ws: Workspace, period: str) -> Path:
    """The delivery journal of ``period``."""
    return ws.store / "delivery" / f"email-{period}.jsonl"


def read_journal(ws: Workspace, period: str) -> list[dict]:
    """Every attempt recorded for ``period``, in order (a torn last line is ignored)."""
    path = journal_path(ws, period)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash: that attempt's answer is unknown, it is tried again
    return out


def _append(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _recipients(ws: Workspace, period: str) -> pl.DataFrame:
    """account_id, email, payer_name, to_pay_kop of the accounts that consented, as sealed."""
    from pipeline.ingest.registers import load_store

    folder = ws.period_dir(period)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise BillingError(f"Период {period} не закрыт: квитанции рассылаются только из закрытого периода "
                           f"(billing close --period {period}).")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    accounts = load_store(ws, manifest["store_version"], names=["accounts"])["accounts"]
    if "delivery" not in accounts.columns:
        return pl.DataFrame(schema={"account_id": pl.String, "email": pl.String, "payer_name": pl.String,
                                    "to_pay_kop": pl.Int64})
    due = read_internal(folder, "balances", ["account_id", "closing"]).group_by("account_id").agg(
        pl.col("closing_kop").sum().clip(lower_bound=0).alias("to_pay_kop"))
    return (accounts.filter(pl.col("delivery").is_in(list(BY_EMAIL)) & pl.col("email").is_not_null())
            .select("account_id", pl.col("email").str.strip_chars(), "payer_name")
            .join(due, on="account_id", how="left")
            .with_columns(pl.col("to_pay_kop").fill_null(0))
            .sort("account_id"))


def _message(smtp: Smtp, period: str, row: dict, pdf: bytes, due_date: str | None) -> EmailMessage:
    month = period_text(period)
    msg = EmailMessage()
    msg["From"] = formataddr((smtp.sender_name, smtp.sender)) if smtp.sender_name else smtp.sender
    msg["To"] = row["email"]
    msg["Subject"] = f"Квитанция за {month}, лицевой счёт {row['account_id']}"
    domain = smtp.sender.rpartition("@")[2] or "billing.local"
    # One id per receipt content: a mail server or client can tell a repeat from a new message.
    digest = hashlib.sha256(pdf).hexdigest()[:16]
    msg["Message-ID"] = make_msgid(idstring=f"epd.{period}.{row['account_id']}.{digest}", domain=domain)
    due = f" Оплатить до {due_date}." if due_date else ""
    msg.set_content(
        f"Здравствуйте, {row['payer_name']}!\n\n"
        f"Во вложении — платёжный документ (ЕПД) за {month} по лицевому счёту {row['account_id']}.\n"
        f"К оплате: {format_rub(row['to_pay_kop'])} ₽.{due}\n"
        "Оплатить можно по QR-коду в квитанции в приложении любого банка.\n\n"
        "Вы получаете квитанцию по e-mail, потому что согласились на это. Чтобы получать её "
        "на бумаге, обратитесь в расчётный центр.\n"
    )
    msg.add_attachment(pdf, maintype="application", subtype="pdf",
                       filename=f"ЕПД_{row['account_id']}_{period}.pdf")
    return msg


def connect(smtp: Smtp) -> smtplib.SMTP:
    """A logged-in connection to ``[smtp]`` (starttls | ssl | none; the password from the
    environment variable ``password_env``, ASCII only). Also used by the collection warnings."""
    context = ssl.create_default_context(cafile=smtp.ca_file or None)
    server: smtplib.SMTP
    if smtp.security == "ssl":
        server = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout_seconds, context=context)
    else:
        server = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds)
        if smtp.security == "starttls":
            server.starttls(context=context)
    if smtp.user:
        password = os.environ.get(smtp.password_env)
        if password is None:
            server.close()
            raise BillingError("Пароль SMTP не задан: укажите его в переменной окружения "
                               f"{smtp.password_env} (settings.toml [smtp] password_env).")
        if not (smtp.user + password).isascii():
            server.close()
            raise BillingError("Имя и пароль SMTP должны быть латиницей, цифрами и знаками ASCII: "
                               "протокол входа (AUTH PLAIN/LOGIN в smtplib) другие не передаёт.")
        server.login(smtp.user, password)
    return server


def _answer(err: smtplib.SMTPException) -> str:
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(err.recipients.values()))
        return f"сервер отказал получателю: {code} {text.decode(errors='replace')}"
    if isinstance(err, smtplib.SMTPResponseException):
        raw: bytes | str = err.smtp_error
        answer = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        return f"сервер отказал: {err.smtp_code} {answer}"
    return f"ошибка SMTP: {err}"


@locked("receipts send")
def send_receipts(ws: Workspace, period: str, now: datetime | None = None) -> SendReport:
    """E-mail ``period``'s receipts to the accounts that consented (see the module's notes)."""
    period = str(Period.parse(period))
    smtp = load_section(ws.settings_path, Smtp)
    if not smtp.host or not smtp.sender:
        raise BillingError("Почтовый сервер не настроен: заполните host и sender в разделе [smtp] "
                           "файла settings.toml.")
    recipients = _recipients(ws, period)
    journal = read_journal(ws, period)
    sent = {e["account_id"] for e in journal if e["status"] == "sent"}
    attempts: dict[str, int] = {}
    for e in journal:
        attempts[e["account_id"]] = attempts.get(e["account_id"], 0) + 1
    manifest = json.loads((ws.period_dir(period) / "manifest.json").read_text(encoding="utf-8"))
    due_date = manifest.get("due_date")
    due_text = datetime.strptime(due_date, "%Y-%m-%d").strftime("%d.%m.%Y") if due_date else None
    path = journal_path(ws, period)
    counts = {"sent": 0, "failed": 0, "already_sent": 0, "gave_up": 0, "no_receipt": 0}
    failures: dict[str, str] = {}
    server: smtplib.SMTP | None = None
    stopped = ""
    try:
        for row in recipients.iter_rows(named=True):
            account = row["account_id"]
            if account in sent:
                counts["already_sent"] += 1
                continue
            if attempts.get(account, 0) >= smtp.max_attempts:
                counts["gave_up"] += 1
                continue
            pdf_path = ws.period_dir(period) / "receipts" / f"{account}.pdf"
            if not pdf_path.is_file():
                counts["no_receipt"] += 1
                continue
            pdf = pdf_path.read_bytes()
            msg = _message(smtp, period, row, pdf, due_text)
            entry = {"account_id": account, "email": row["email"], "message_id": msg["Message-ID"],
                     "sha256": hashlib.sha256(pdf).hexdigest(), "attempt": attempts.get(account, 0) + 1}
            try:
                if server is None:
                    server = connect(smtp)
                server.send_message(msg)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as err:
                # This message only (the recipient, or its content): the next one goes on.
                reason = _answer(err)
                _append(path, entry | {"status": "failed", "reason": reason, "at": _now(now)})
                counts["failed"] += 1
                failures[account] = reason
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    server.rset()  # type: ignore[union-attr]
                continue
            except OSError as err:  # smtplib's errors are OSErrors too: no server, no login, no sender
                # Nobody to talk to: record this message and leave the rest for the next run.
                if isinstance(err, smtplib.SMTPAuthenticationError):
                    reason = f"сервер не принял имя и пароль: {_answer(err)}"
                elif isinstance(err, smtplib.SMTPResponseException):
                    reason = f"{_answer(err)} (сервер {smtp.host}:{smtp.port})"
                else:
                    reason = f"не удалось связаться с сервером {smtp.host}:{smtp.port}: {err}"
                _append(path, entry | {"status": "failed", "reason": reason, "at": _now(now)})
                counts["failed"] += 1
                failures[account] = reason
                stopped = reason
                if server is not None:
                    with contextlib.suppress(smtplib.SMTPException, OSError):
                        server.close()
                server = None
                break
            _append(path, entry | {"status": "sent", "at": _now(now)})
            counts["sent"] += 1
    finally:
        if server is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                server.quit()
    return SendReport(period, failures=failures, stopped=stopped, **counts)


def _now(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).isoformat(timespec="seconds")


