"""Bank payment registers (Sberbank / VTB nightly «реестр платежей»): bytes in, frames out.

Layout (exchange-format research notes, §2.2): cp1251 (UTF-8 accepted),
``;``-separated, no header, CRLF or LF, one payment per line, the last line a
footer ``=<count>;<sum>;<sum transferred>;<fee>;<order number>;<order date>``.
A payment line is

``date;time;branch;terminal;operation id;ЛС;payer;address;MMYYYY;``
``[meter serial;resource;zone;reading;]* [!]; [service code;name;amount;]* [!];;``
``amount;amount transferred;bank fee``

Sber writes decimal commas, VTB decimal dots; both are accepted on every line.
Leading ``#`` comment lines and blank lines are skipped.

Choices made where the format is only partly known:

* **Footer check.** The footer's count must equal the number of body lines and its
  sum the sum of the body's amounts, *every* body line included (also lines that
  are rejected here, e.g. for an empty ЛС or a bad date, and refunds with their
  minus sign). A line whose amount cannot be read adds nothing to the body sum:
  if the bank counted it, the sums differ and the whole file is refused (the
  message names the lines with unreadable amounts), because an unverifiable total
  must not be imported in part. A missing footer, a second footer, a line after
  the footer or an unreadable footer also refuse the whole file. A missing footer,
  and a failing footer that ends the file without a line ending (it may be half
  written), raise :class:`~pipeline.workspace.IncompleteFileError`: the file is
  not complete yet, and the nightly import leaves it in the inbox. The footer's
  "transferred" and "fee" totals are returned but not checked (their meaning is
  inferred, not specified); compare them with the frame if needed.
* **Amounts.** Rubles with at most two decimals, parsed exactly to kopecks. A
  negative amount is a refund/cancellation and is kept negative; a zero amount is
  rejected. An empty "transferred" or "fee" cell gives null. The three amounts are
  not required to add up (who bears the fee depends on the contract).
* **Line problems** (bad or missing date, time, operation id, ЛС, period or
  amount; wrong line structure; malformed service blocks) reject the payment: one
  reject row per problem, the other lines still parse. An operation id that occurs
  on more than one line rejects all those lines (the importer deduplicates by
  operation id, so a repeated id could silently drop money).
* **Readings** come only from accepted payment lines; ``read_on`` is the payment
  date. An empty reading is skipped. A bad reading (no serial, bad zone, bad or
  negative value, blocks not in fours) is a reject row *for the reading only*:
  the payment itself is accepted, and the reason says so.
* Service blocks are checked for shape (groups of three) but not returned: the
  engine splits payments over services itself (п. 118).
* ``agent`` is the format name (``sber`` or ``vtb``); the caller picks it, e.g.
  with :func:`detect_format`, which reads the VTB hint from the file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.ingest.parse import REJECT_SCHEMA
from pipeline.ingest.readers import decode_text
from pipeline.money import format_rub, parse_fixed, parse_rubles
from pipeline.settings import PAYMENT_FORMATS
from pipeline.workspace import BillingError, IncompleteFileError, atomic_write_bytes

FORMATS = tuple(f for f in PAYMENT_FORMATS if f != "1c")  # the 1С statement: pipeline.ingest.onec

#: What a payment file becomes before it meets the store (amount in kopecks).
INCOMING_SCHEMA = pl.Schema({
    "payment_id": pl.String(),
    "agent": pl.String(),
    "paid_on": pl.Date(),
    "account_id": pl.String(),
    "amount_kop": pl.Int64(),
    "period": pl.String(),
    "refund_of": pl.String(),
    "source_row": pl.Int64(),
})

MARKER = "[!]"
#: Fields before the variable part: date … period.
FIXED_FIELDS = 9
#: Shortest possible line: 9 fixed fields, two markers, the empty field and three amounts.
MIN_FIELDS = FIXED_FIELDS + 2 + 4
READING_SCALE = 6

PAYMENTS_SCHEMA = pl.Schema({
    "payment_id": pl.String(),
    "paid_on": pl.Date(),
    "paid_at": pl.Datetime("us"),
    "account_id": pl.String(),
    "amount_kop": pl.Int64(),
    "period": pl.String(),
    "agent": pl.String(),
    "payer_name": pl.String(),
    "address": pl.String(),
    "fee_kop": pl.Int64(),
    "transferred_kop": pl.Int64(),
    "source_row": pl.Int64(),
})

READINGS_SCHEMA = pl.Schema({
    "account_id": pl.String(),
    "meter_serial": pl.String(),
    "resource": pl.String(),
    "zone": pl.Int64(),
    "value": pl.Decimal(18, READING_SCALE),
    "read_on": pl.Date(),
    "payment_id": pl.String(),
    "source_row": pl.Int64(),
})

_DATE_RE = re.compile(r"^(\d{2})[-./](\d{2})[-./](\d{4})$")
_TIME_RE = re.compile(r"^(\d{2})[-:.](\d{2})[-:.](\d{2})$")
_PERIOD_RE = re.compile(r"^(0[1-9]|1[0-2])(\d{4})$")
_REGISTER_LINE_RE = re.compile(r"^\d{2}[-./]\d{2}[-./]\d{4};")
_NAME_TOKENS_RE = re.compile(r"[^0-9A-Za-zА-Яа-яЁё]+")
_LAYOUT = (
    "дата;время;отделение;касса;операция;ЛС;ФИО;адрес;период;[счётчики];[!];[услуги];[!];;"
    "сумма;к перечислению;комиссия"
)


@dataclass(frozen=True)
class BankRegister:
    """A parsed bank payment register.

    ``payments`` and ``readings`` follow :data:`PAYMENTS_SCHEMA` and
    :data:`READINGS_SCHEMA`; ``rejects`` has the project's reject columns (file, row,
    column, value, reason); ``footer`` holds the control totals as read (``count``,
    ``sum_kop``, ``transferred_kop``, ``fee_kop``, ``order_number``, ``order_date``);
    ``encoding`` is the decoding used (``cp1251`` or ``utf-8``).
    """

    payments: pl.DataFrame
    readings: pl.DataFrame
    rejects: pl.DataFrame
    footer: dict[str, Any]
    encoding: str


@dataclass
class _Line:
    """One body line while it is being parsed."""

    row: int
    amount_kop: int | None = None  # the raw amount as far as it can be read, for the footer check
    payment: dict[str, Any] | None = None
    readings: list[dict[str, Any]] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # payment-level: column, value, reason
    reading_problems: list[tuple[str, str, str]] = field(default_factory=list)


#: The first line of a 1С «Клиент-банк» exchange file (pipeline.ingest.onec reads it).
ONEC_FIRST_LINE = "1CClientBankExchange"


def is_statement(data: bytes) -> bool:
    """Whether ``data`` starts with the line ``1CClientBankExchange`` (BOM and blanks allowed)."""
    head = data[:64].removeprefix(b"\xef\xbb\xbf").lstrip()
    n = len(ONEC_FIRST_LINE)
    return head.startswith(ONEC_FIRST_LINE.encode()) and head[n:n + 1] in (b"", b"\r", b"\n", b" ", b"\t")


def detect_format(name: str, data: bytes) -> str:
    """Tell an agent CSV from a Sber/VTB payment register by its content (and name).

    ``1c`` for a 1С statement (first line ``1CClientBankExchange``);
    ``csv`` when the first line names ``payment_id`` and ``account_id``; a register
    when the first line (after ``#`` comments) starts with a ``DD-MM-YYYY;`` date or is
    a footer. A register is ``vtb`` when the file name carries a ``VTB``/``ВТБ``
    token (``201023_VTB_223308_003.txt``), else ``sber``. Raises
    :class:`BillingError` otherwise.

    >>> detect_format("201023_VTB_223308_003.txt", b"20-10-2023;10-00-00;1;2;A1;1;;;;[!];[!];;1.00;1.00;0.00")
    'vtb'
    >>> detect_format("p.csv", b"payment_id,paid_on,account_id,amount,period,agent\\n")
    'csv'
    """
    if is_statement(data):  # a bank statement in the 1С exchange format (pipeline.ingest.onec)
        return "1c"
    text, _ = _decode(name, data)
    lines = [ln.strip() for ln in text.split("\n")]
    meaningful = [ln for ln in lines if ln and not ln.startswith("#")]
    if meaningful:
        first = meaningful[0]
        if "payment_id" in first and "account_id" in first:
            return "csv"
        if _REGISTER_LINE_RE.match(first) or first.startswith("="):
            return "vtb" if _vtb_name(name) else "sber"
    raise BillingError(
        f"{name}: неизвестный формат файла платежей: ожидается CSV агента (столбцы payment_id, "
        f"account_id, …), реестр платежей Сбербанка/ВТБ (строки «ДД-ММ-ГГГГ;ЧЧ-ММ-СС;…», итог «=…») "
        f"или выписка банка в формате 1С (первая строка «1CClientBankExchange»)"
    )


def parse_bank_register(name: str, data: bytes, fmt: str) -> BankRegister:
    """Parse a Sber/VTB payment register; see the module docstring for the rules.

    ``name`` is used in messages and in the ``file`` column of the rejects; ``fmt``
    is ``sber`` or ``vtb`` and becomes the ``agent``. Raises :class:`BillingError`
    (Russian message) when the whole file must be refused: unreadable bytes, no or a
    bad footer, or a footer that does not match the body.
    """
    if fmt not in ("sber", "vtb"):
        raise BillingError(
            f"{name}: формат «{fmt}» не является реестром банка (ожидается sber или vtb; "
            f"CSV агента читает импорт платежей)"
        )
    text, encoding = _decode(name, data)
    body: list[tuple[int, str]] = []
    footer_at: tuple[int, str] | None = None
    for row, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        stripped = line.strip()
        if not stripped:
            continue
        if footer_at is not None:
            raise BillingError(
                f"{name}: строка {row} идёт после итоговой строки {footer_at[0]}: итог («=…») должен быть "
                f"последним — файл не принят"
            )
        if stripped.startswith("#"):
            continue
        if stripped.startswith("="):
            footer_at = (row, stripped)
            continue
        body.append((row, line))
    if footer_at is None:
        raise IncompleteFileError(
            f"{name}: нет итоговой строки («=количество;сумма;к перечислению;комиссия;№ п/п;дата»): "
            f"файл, возможно, обрезан или ещё записывается — не принят"
        )
    lines = [_parse_line(row, line) for row, line in body]
    try:
        footer = _parse_footer(name, *footer_at)
        _check_footer(name, footer, lines)
    except BillingError as err:
        if text.endswith("\n"):
            raise
        # The footer is the file's last bytes, without a line ending: it may be half written.
        raise IncompleteFileError(
            f"{err} (итоговая строка {footer_at[0]} не завершена переводом строки — похоже, файл ещё "
            f"записывается; загрузите его, когда он будет полностью получен)"
        ) from None
    _reject_repeated_ids(lines)

    payments: list[dict[str, Any]] = []
    readings: list[dict[str, Any]] = []
    rejects: list[tuple[str, int, str, str, str]] = []
    for ln in lines:
        rejects.extend((name, ln.row, col, value, reason) for col, value, reason in ln.problems)
        if ln.problems or ln.payment is None:
            continue
        payments.append({**ln.payment, "agent": fmt})
        readings.extend(ln.readings)
        rejects.extend((name, ln.row, col, value, reason) for col, value, reason in ln.reading_problems)
    return BankRegister(
        payments=pl.DataFrame(payments, schema=PAYMENTS_SCHEMA, orient="row") if payments
        else pl.DataFrame(schema=PAYMENTS_SCHEMA),
        readings=pl.DataFrame(readings, schema=READINGS_SCHEMA) if readings
        else pl.DataFrame(schema=READINGS_SCHEMA),
        rejects=pl.DataFrame(rejects, schema=REJECT_SCHEMA, orient="row") if rejects
        else pl.DataFrame(schema=REJECT_SCHEMA),
        footer=footer,
        encoding=encoding,
    )


# --------------------------------------------------------------------------- parsing


def _decode(name: str, data: bytes) -> tuple[str, str]:
    try:
        return decode_text(data, name)
    except UnicodeDecodeError:
        raise BillingError(f"{name}: файл не читается: это не текст в UTF-8 или Windows-1251") from None


def _vtb_name(name: str) -> bool:
    tokens = {t.lower() for t in _NAME_TOKENS_RE.split(Path(name).name)}
    return bool(tokens & {"vtb", "втб"})


def parse_dmy(text: str) -> date | None:
    """``ДД.ММ.ГГГГ`` (also with ``-`` or ``/``) as a date; None when it is not one."""
    m = _DATE_RE.match(text.strip())
    if not m:
        return None
    try:
        return date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        return None


def _parse_time(text: str) -> time | None:
    m = _TIME_RE.match(text)
    if not m:
        return None
    try:
        return time(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def _parse_footer(name: str, row: int, line: str) -> dict[str, Any]:
    fields = [f.strip() for f in line[1:].split(";")]
    fields += [""] * (6 - len(fields))

    def bad(what: str, value: str) -> BillingError:
        return BillingError(f"{name}: итоговая строка {row} не читается: {what} «{value}» — файл не принят")

    if not fields[0].isdigit():
        raise bad("количество платежей", fields[0])
    money: list[int | None] = []
    for label, text in (("сумма платежей", fields[1]), ("сумма к перечислению", fields[2]),
                        ("комиссия", fields[3])):
        if not text and label != "сумма платежей":
            money.append(None)
            continue
        try:
            money.append(parse_rubles(text))
        except ValueError:
            raise bad(label, text) from None
    order_date = None
    if fields[5]:
        order_date = parse_dmy(fields[5])
        if order_date is None:
            raise bad("дата платёжного поручения", fields[5])
    return {
        "count": int(fields[0]),
        "sum_kop": money[0],
        "transferred_kop": money[1],
        "fee_kop": money[2],
        "order_number": fields[4] or None,
        "order_date": order_date,
    }


def _parse_line(row: int, line: str) -> _Line:
    out = _Line(row)
    fields = [f.strip() for f in line.split(";")]
    markers = [i for i in range(FIXED_FIELDS, len(fields)) if fields[i] == MARKER]
    if len(fields) < MIN_FIELDS or len(markers) < 2:
        reason = (f"в строке {len(fields)} полей, нужно не меньше {MIN_FIELDS}" if len(fields) < MIN_FIELDS
                  else "нет двух маркеров [!]")
        out.problems.append(("строка", line, f"строка не по формату реестра ({reason}): {_LAYOUT}"))
        return out
    first, second = markers[0], markers[1]
    tail = fields[second + 1:]
    if len(tail) < 4 or tail[0]:
        out.problems.append(("строка", line, "после второго [!] ожидаются пустое поле, сумма, сумма к "
                                             f"перечислению и комиссия: {_LAYOUT}"))
        return out

    problems = out.problems
    amount = _money(tail[1], "сумма", problems, required=True)
    out.amount_kop = amount
    if amount == 0:
        problems.append(("сумма", tail[1], "сумма платежа равна нулю"))
    transferred = _money(tail[2], "сумма к перечислению", problems, required=False)
    fee = _money(tail[3], "комиссия", problems, required=False)
    if any(tail[4:]):
        problems.append(("строка", line, f"лишние поля после комиссии: {';'.join(tail[4:])}"))
    services = fields[first + 1:second]
    if len(services) % 3:
        problems.append(("услуги", ";".join(services),
                         "блок услуг должен состоять из троек «код;название;сумма»"))

    paid_on = parse_dmy(fields[0])
    if paid_on is None:
        problems.append(("дата", fields[0], "дата платежа должна быть в виде ДД-ММ-ГГГГ"))
    paid_time = _parse_time(fields[1]) if fields[1] else None
    if fields[1] and paid_time is None:
        problems.append(("время", fields[1], "время платежа должно быть в виде ЧЧ-ММ-СС"))
    if not fields[4]:
        problems.append(("номер операции", "", "нет номера операции"))
    if not fields[5]:
        problems.append(("ЛС", "", "нет лицевого счёта: платёж не принят (невыясненный)"))
    period = None
    if fields[8]:
        m = _PERIOD_RE.match(fields[8])
        if m:
            period = f"{m[2]}-{m[1]}"
        else:
            problems.append(("период", fields[8], "период должен быть в виде ММГГГГ"))
    if problems or paid_on is None:
        return out

    out.payment = {
        "payment_id": fields[4],
        "paid_on": paid_on,
        "paid_at": datetime.combine(paid_on, paid_time) if paid_time is not None else None,
        "account_id": fields[5],
        "amount_kop": amount,
        "period": period,
        "payer_name": fields[6] or None,
        "address": fields[7] or None,
        "fee_kop": fee,
        "transferred_kop": transferred,
        "source_row": row,
    }
    _parse_meters(out, fields[FIXED_FIELDS:first], fields[4], fields[5], paid_on)
    return out


def _money(text: str, column: str, problems: list[tuple[str, str, str]], *, required: bool) -> int | None:
    if not text:
        if required:
            problems.append((column, "", "нет суммы"))
        return None
    try:
        return parse_rubles(text)
    except ValueError as exc:
        problems.append((column, text, str(exc)))
        return None


def _parse_meters(out: _Line, meters: list[str], payment_id: str, account_id: str, read_on: date) -> None:
    kept = "; платёж принят"
    if len(meters) % 4:
        out.reading_problems.append((
            "счётчики", ";".join(meters),
            f"блок показаний должен состоять из четвёрок «номер;ресурс;зона;показание»: "
            f"показания строки не приняты{kept}",
        ))
        return
    for i in range(0, len(meters), 4):
        serial, resource, zone_text, value_text = meters[i:i + 4]
        if not value_text:
            continue
        if not serial:
            out.reading_problems.append(("номер счётчика", "",
                                         f"показание без номера счётчика не принято{kept}"))
            continue
        zone = None
        if zone_text:
            if not zone_text.isdigit():
                out.reading_problems.append(("зона", zone_text,
                                             f"номер тарифной зоны должен быть целым числом; "
                                             f"показание не принято{kept}"))
                continue
            zone = int(zone_text)
        try:
            micro = parse_fixed(value_text, READING_SCALE)
        except ValueError as exc:
            out.reading_problems.append(("показание", value_text, f"{exc}; показание не принято{kept}"))
            continue
        if micro < 0:
            out.reading_problems.append(("показание", value_text,
                                         f"показание не может быть отрицательным; "
                                         f"показание не принято{kept}"))
            continue
        out.readings.append({
            "account_id": account_id,
            "meter_serial": serial,
            "resource": resource or None,
            "zone": zone,
            "value": Decimal(micro).scaleb(-READING_SCALE),
            "read_on": read_on,
            "payment_id": payment_id,
            "source_row": out.row,
        })


def _check_footer(name: str, footer: dict[str, Any], lines: list[_Line]) -> None:
    count = len(lines)
    total = sum(ln.amount_kop for ln in lines if ln.amount_kop is not None)
    parts = []
    if footer["count"] != count:
        parts.append(f"строк {count}, в итоге {footer['count']} (разница {abs(footer['count'] - count)})")
    if footer["sum_kop"] != total:
        parts.append(f"сумма {format_rub(total)} ₽, в итоге {format_rub(footer['sum_kop'])} ₽ "
                     f"(разница {format_rub(abs(footer['sum_kop'] - total))} ₽)")
    if not parts:
        return
    unread = [str(ln.row) for ln in lines if ln.amount_kop is None]
    note = f"; не прочитаны суммы в строках {', '.join(unread)}" if unread else ""
    raise BillingError(f"{name}: итоговая строка не сходится с реестром: {'; '.join(parts)}{note} — "
                       f"файл не принят")


def _reject_repeated_ids(lines: list[_Line]) -> None:
    rows: dict[str, list[int]] = {}
    for ln in lines:
        if ln.payment is not None:
            rows.setdefault(ln.payment["payment_id"], []).append(ln.row)
    for ln in lines:
        if ln.payment is None:
            continue
        same = rows[ln.payment["payment_id"]]
        if len(same) > 1:
            ln.problems.append(("номер операции", ln.payment["payment_id"],
                                f"номер операции повторяется в файле (строки {', '.join(map(str, same))})"))


# --------------------------------------------------------------------------- writing


def sber_register_bytes(
    payments: pl.DataFrame,
    decimal: str = ",",
    *,
    readings: pl.DataFrame | None = None,
    order_number: str = "1",
    order_date: date | None = None,
) -> bytes:
    """A payment register in the Sber layout (cp1251, CRLF, footer) as bytes.

    ``payments`` needs ``payment_id``, ``paid_on``, ``account_id``, ``amount_kop``,
    ``period`` ('YYYY-MM' or null), ``payer_name``, ``address``; optional ``paid_at``
    (the time; default 12-00-00), ``branch``, ``terminal``, ``fee_kop`` (default 0)
    and ``transferred_kop`` (default amount − fee). ``readings`` (``payment_id``,
    ``meter_serial``, ``resource``, ``zone``, ``value`` as Decimal, text or integer)
    become meter blocks of their payment's line. Every line gets one service block
    for its whole amount. ``order_date`` defaults to the latest payment date.
    ``decimal`` is ``,`` (Sber) or ``.`` (VTB).
    """
    if decimal not in (",", "."):
        raise ValueError(f"десятичный разделитель должен быть «,» или «.», а не «{decimal}»")
    meter_blocks: dict[str, list[str]] = {}
    if readings is not None:
        for r in readings.iter_rows(named=True):
            zone = "" if r.get("zone") is None else str(r["zone"])
            value = _reading_text(r["value"], decimal)
            block = [_field(r["meter_serial"]), _field(r.get("resource")), zone, value]
            meter_blocks.setdefault(str(r["payment_id"]), []).extend(block)

    out: list[str] = []
    total = transferred_total = fee_total = 0
    for p in payments.iter_rows(named=True):
        amount = int(p["amount_kop"])
        fee = int(p["fee_kop"]) if p.get("fee_kop") is not None else 0
        transferred = int(p["transferred_kop"]) if p.get("transferred_kop") is not None else amount - fee
        total, transferred_total, fee_total = total + amount, transferred_total + transferred, fee_total + fee
        paid_at = p.get("paid_at")
        period = p.get("period")
        fields = [
            p["paid_on"].strftime("%d-%m-%Y"),
            paid_at.strftime("%H-%M-%S") if paid_at is not None else "12-00-00",
            _field(p.get("branch")) or "0001",
            _field(p.get("terminal")) or "00010001",
            _field(p["payment_id"]),
            _field(p["account_id"]),
            _field(p.get("payer_name")),
            _field(p.get("address")),
            f"{period[5:7]}{period[:4]}" if period else "",
            *meter_blocks.get(str(p["payment_id"]), []),
            MARKER, "1", "Жилищно-коммунальные услуги", _rub(amount, decimal), MARKER,
            "", _rub(amount, decimal), _rub(transferred, decimal), _rub(fee, decimal),
        ]
        out.append(";".join(fields))
    if order_date is None and payments.height:
        latest = payments["paid_on"].max()
        order_date = latest if isinstance(latest, date) else None
    sums = ";".join(_rub(v, decimal) for v in (total, transferred_total, fee_total))
    dated = order_date.strftime("%d-%m-%Y") if order_date is not None else ""
    out.append(f"={payments.height};{sums};{_field(order_number)};{dated}")
    text = "\r\n".join(out) + "\r\n"
    try:
        return text.encode("cp1251")
    except UnicodeEncodeError as exc:
        raise ValueError(f"символ «{exc.object[exc.start:exc.end]}» не записывается в Windows-1251") from None


def write_sber_register(
    payments: pl.DataFrame,
    path: Path,
    decimal: str = ",",
    *,
    readings: pl.DataFrame | None = None,
    order_number: str = "1",
    order_date: date | None = None,
) -> None:
    """Write :func:`sber_register_bytes` to ``path`` atomically."""
    data = sber_register_bytes(payments, decimal, readings=readings, order_number=order_number,
                               order_date=order_date)
    atomic_write_bytes(path, data)


def _field(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    if any(ch in text for ch in ";\r\n"):
        raise ValueError(f"поле реестра не может содержать «;» или перевод строки: «{text}»")
    return text


def _rub(kopecks: int, decimal: str) -> str:
    sign = "-" if kopecks < 0 else ""
    rub, kop = divmod(abs(kopecks), 100)
    return f"{sign}{rub}{decimal}{kop:02d}"


def _reading_text(value: object, decimal: str) -> str:
    if isinstance(value, (bool, float)):
        raise ValueError("показание передайте как Decimal, строку или целое число, не float")
    text = format(value.normalize(), "f") if isinstance(value, Decimal) else _field(value)
    return text.replace(".", decimal) if decimal == "," else text.replace(",", ".")
