"""E-mail of the п.119 warnings (``billing collect warn --send``) through ``[smtp]``.

The warning text is the message body and its PDF the attachment. One connection per run;
a server that cannot be reached stops the run (the warnings stay made, the cases ``warned``;
``--send`` again later sends those without a ``sent`` event).
"""

from __future__ import annotations

import contextlib
import hashlib
import smtplib
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from pipeline.render.mail import connect
from pipeline.settings import Smtp, load_section
from pipeline.workspace import BillingError, Workspace


def send_warnings(ws: Workspace, mails: list[tuple[str, str, str, str, bytes]]) -> dict[str, str]:
    """Send ``(case_id, address, payer, text, pdf)``; return case_id → address of those accepted."""
    smtp = load_section(ws.settings_path, Smtp)
    if not smtp.host or not smtp.sender:
        raise BillingError("Почтовый сервер не настроен: заполните host и sender в разделе [smtp] "
                           "файла settings.toml (предупреждения составлены, но не отправлены).")
    sent: dict[str, str] = {}
    domain = smtp.sender.rpartition("@")[2] or "billing.local"
    try:
        server = connect(smtp)
    except OSError as err:
        raise BillingError(f"Не удалось связаться с почтовым сервером {smtp.host}:{smtp.port}: {err}. "
                           "Предупреждения составлены; отправьте их позже (--send).") from None
    try:
        for case_id, address, payer, text, pdf in mails:
            msg = EmailMessage()
            msg["From"] = formataddr((smtp.sender_name, smtp.sender)) if smtp.sender_name else smtp.sender
            msg["To"] = address
            msg["Subject"] = "Предупреждение о задолженности за жилищно-коммунальные услуги"
            digest = hashlib.sha256(pdf).hexdigest()[:16]
            msg["Message-ID"] = make_msgid(idstring=f"warning.{case_id}.{digest}", domain=domain)
            msg.set_content(f"Здравствуйте, {payer}!\n\n{text}\n\nПредупреждение — во вложении.\n")
            msg.add_attachment(pdf, maintype="application", subtype="pdf",
                               filename=f"Предупреждение_{case_id}.pdf")
            try:
                server.send_message(msg)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError):
                continue
            sent[case_id] = address
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            server.quit()
    return sent
