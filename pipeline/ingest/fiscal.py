"""``billing payments fiscal FILE``: fiscal receipt identifiers of imported payments.

A payer who paid through a bank or a payment agent is entitled to a cash receipt
(кассовый чек, 54-ФЗ). Its identifiers — the fiscal drive number ФН (16 digits), the
fiscal document number ФД (up to 10 digits), the fiscal sign ФП/ФПД (up to 10 digits),
the date and time and the amount — come from the agent or from its fiscal data
operator (ОФД) as a CSV (UTF-8 or Windows-1251, ``;`` or ``,``, read by
:func:`pipeline.ingest.readers.read_table`) with the columns ``payment_id``, ``agent``,
``fn``, ``fd``, ``fp``, ``issued_at`` (``ГГГГ-ММ-ДД ЧЧ:ММ[:СС]`` or ``ДД.ММ.ГГГГ
ЧЧ:ММ[:СС]``) and ``amount`` (rubles, comma or dot, at most 2 decimals). Spaces inside
the numbers are ignored (``1 000,00``, ``9287 4403 0012 3456``); leading zeros of ФД and
ФП are not significant (both are numbers) and are dropped.

Russian headers of an OFD export are accepted too, case-insensitively
(:data:`HEADER_ALIASES`: «ФН», «Номер ФН», «ФД», «Номер ФД», «ФД №», «ФП», «ФПД»,
«Фискальный признак», «Дата и время», «Дата/время», «Сумма», «Итого», «Код платежа»,
«Идентификатор платежа», «Агент»). These OFD header names are UNVERIFIED: no official
export layout of an operator was available when this was written; they are what such
exports typically print. They are kept in that one mapping, so a new alias is one line.

The agent is never guessed (as in ``billing payments import``): a file without an
``agent`` column needs ``agent`` (``--agent``), else it is refused; with it, empty
cells are filled from it, without it a row with an empty cell is rejected.

Each row is checked; every failure is a row of the reject report (file, row, column,
value, reason in Russian, :func:`pipeline.ingest.registers.write_rejects`) and the row
is not stored:

* the formats above (ФН exactly 16 digits, ФД and ФП 1–10 digits, the date and time,
  the amount — Decimal, never float);
* the payment (agent, payment_id) is in the payment store (``store/payments.parquet``;
  one still in the suspense list is named so: it must be matched first);
* the receipt's amount equals the payment's (a refund, a negative payment, may carry
  its receipt «возврат прихода» with the amount's absolute value);
* a payment has one receipt: a payment that already has a different one is rejected,
  the same one again is a duplicate (counted, not an error); one receipt (ФН + ФД)
  belongs to one payment; two rows of one file for the same payment with different
  data are both rejected, as are two rows of one file with the same ФН + ФД for
  different payments. «The same receipt» is the same ФН, ФД, ФП and amount and the
  same date and time to the minute (an export without seconds is still the same receipt).

Exactly once: re-importing a file changes nothing. A file whose SHA-256 was imported
before without rejected rows is skipped whole (the digests are kept in
``store/fiscal_files.parquet``). A file that had rejected rows is checked again when
given again — its stored rows are duplicates then — so that the receipts of payments
loaded in the meantime (the OFD file often comes before the bank register) are taken
without editing the file. Good rows go to ``store/fiscal.parquet``
(:data:`FISCAL_SCHEMA`), written atomically before the file record: a kill in between
is repaired by importing the file again.

For the ЕПД, :func:`last_fiscal_receipts` gives the receipt of each account's last
payment and :func:`fiscal_line` the text to print under it, exactly::

    Кассовый чек: ФН 9287440300123456, ФД 12345, ФП 1234567890, 05.09.2026 14:30,
    сумма 1 000,00 ₽. Чек можно проверить в приложении ФНС «Проверка чеков» или
    получить у оператора фискальных данных.

(one line; a refund's receipt reads «Кассовый чек возврата: …»).
:func:`fiscal_qr_text` gives the string that receipts encode in their QR code
(``t=…&s=…&fn=…&i=…&fp=…&n=…``), which the ФНС app «Проверка чеков» scans.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import polars as pl

from pipeline.ingest.fiscal_rows import (
    COLUMNS,
    FISCAL_SCHEMA,
    PAYMENT_KEY,
    append_receipts,
    classify_fiscal,
    fiscal_path,
    load_fiscal,
    parse_fiscal_rows,
)
from pipeline.ingest.payments import check_csv_complete, load_payments, load_suspense
from pipeline.ingest.readers import ROW, file_stamp, match_headers, read_store_table, read_table
from pipeline.ingest.registers import write_rejects
from pipeline.workspace import (
    BillingError,
    IncompleteFileError,
    Workspace,
    locked,
    sha256_file,
    write_parquet_atomic,
)

__all__ = ["COLUMNS", "FISCAL_FILES_SCHEMA", "FISCAL_SCHEMA", "HEADER_ALIASES", "LAST_RECEIPT_SCHEMA",
           "FiscalImport", "canonical_columns", "classify_fiscal", "fiscal_files_path", "fiscal_line",
           "fiscal_path", "fiscal_qr_text", "import_fiscal_file", "last_fiscal_receipts", "load_fiscal",
           "load_fiscal_files", "parse_fiscal_rows"]

FISCAL_FILES_SCHEMA = pl.Schema({
    "sha256": pl.String(),
    "file": pl.String(),
    "imported_at": pl.Datetime("us"),
    "accepted": pl.Int64(),
    "duplicates": pl.Int64(),
    "rejected": pl.Int64(),
})

#: What :func:`last_fiscal_receipts` returns.
LAST_RECEIPT_SCHEMA = pl.Schema({
    "account_id": pl.String(),
    "paid_on": pl.Date(),
    "amount": pl.Decimal(18, 2),
    "fn": pl.String(),
    "fd": pl.String(),
    "fp": pl.String(),
    "issued_at": pl.Datetime("us"),
})

#: Header of a file (lower case, ё as е, spaces collapsed) -> column. The Russian names are
#: what OFD exports typically use — UNVERIFIED against an official layout; add an alias here.
HEADER_ALIASES: dict[str, str] = {
    **{name: name for name in COLUMNS},
    "фн": "fn",
    "номер фн": "fn",
    "фд": "fd",
    "номер фд": "fd",
    "фд №": "fd",
    "фп": "fp",
    "фпд": "fp",
    "фискальный признак": "fp",
    "дата и время": "issued_at",
    "дата/время": "issued_at",
    "сумма": "amount",
    "итого": "amount",
    "код платежа": "payment_id",
    "идентификатор платежа": "payment_id",
    "агент": "agent",
}



@dataclass(frozen=True)
class FiscalImport:
    """The outcome of importing one fiscal file."""

    file: str
    sha256: str
    already_imported: bool
    accepted: int
    duplicates: int
    rejected: int
    rejects_path: Path | None


def fiscal_files_path(ws: Workspace) -> Path:
    return ws.store / "fiscal_files.parquet"


def load_fiscal_files(ws: Workspace) -> pl.DataFrame:
    """One row per import run of a fiscal file (:data:`FISCAL_FILES_SCHEMA`)."""
    return read_store_table(fiscal_files_path(ws), FISCAL_FILES_SCHEMA)


def canonical_columns(raw: pl.DataFrame, file: str) -> pl.DataFrame:
    """The file's columns renamed to :data:`COLUMNS` by :data:`HEADER_ALIASES`; others dropped.

    Refuses a file where two headers name one column, or one without a required column.
    """
    found = match_headers(raw, HEADER_ALIASES, COLUMNS, file)
    missing = [c for c in COLUMNS if c != "agent" and c not in found]
    if missing:
        listing = ", ".join(f"{c} ({COLUMNS[c]})" for c in missing)
        raise BillingError(f"{file}: нет обязательных столбцов: {listing}")
    return raw.select(ROW, *[pl.col(name).alias(target) for target, name in found.items()])


def _with_agent(raw: pl.DataFrame, file: str, agent: str | None) -> pl.DataFrame:
    if agent is not None and not agent.strip():
        raise BillingError("--agent: укажите имя платёжного агента (например sber)")
    agent = agent.strip() if agent else None
    if "agent" not in raw.columns:
        if agent is None:
            raise BillingError(
                f"{file}: нет столбца agent (платёжный агент) — без него чек нельзя отнести к "
                f"платежу: код платежа различает только агент; добавьте столбец или укажите агента "
                f"всего файла: billing payments fiscal {file} --agent ИМЯ")
        return raw.with_columns(pl.lit(agent).alias("agent"))
    if agent is not None:
        return raw.with_columns(pl.col("agent").fill_null(agent))
    return raw


@locked("payments fiscal")
def import_fiscal_file(ws: Workspace, path: Path, agent: str | None = None) -> FiscalImport:
    """Import one file of fiscal receipts; see the module docstring for the rules.

    ``agent``: the agent of a file without an ``agent`` column (``--agent``), and of its
    empty cells. Refuses (:class:`BillingError`, nothing stored) an unreadable file, one
    without a required column, one without agents; a CSV cut mid-line or a file changed
    while read raise :class:`IncompleteFileError`.
    """
    if not path.is_file():
        raise BillingError(f"Файл чеков не найден: {path}")
    before = file_stamp(path)
    digest = sha256_file(path)
    files = load_fiscal_files(ws)
    if files.filter((pl.col("sha256") == digest) & (pl.col("rejected") == 0)).height:
        return FiscalImport(path.name, digest, True, 0, 0, 0, None)

    if path.suffix.lower() == ".csv":
        check_csv_complete(path.name, path.read_bytes())
    raw = _with_agent(canonical_columns(read_table(path), path.name), path.name, agent)
    if file_stamp(path) != before:
        raise IncompleteFileError(
            f"{path.name}: файл изменился, пока его читали, — похоже, он ещё записывается; "
            f"загрузите его, когда он будет полностью получен")
    good, rejects = parse_fiscal_rows(raw, path.name)
    stored = load_fiscal(ws)
    accepted, duplicates, more = classify_fiscal(good, load_payments(ws), load_suspense(ws), stored,
                                                 path.name)
    rejects = pl.concat([rejects, more]).sort("row", "column")
    now = datetime.now()
    rejects_path = None
    if rejects.height:
        rejects_path = ws.rejects / f"fiscal-{now:%Y%m%dT%H%M%S%f}.csv"
        write_rejects(rejects, rejects_path)
    result = FiscalImport(path.name, digest, False, accepted.height, duplicates.height,
                          int(rejects["row"].n_unique()), rejects_path)
    # Receipts first, the file record last: a kill in between is repaired by importing again.
    append_receipts(ws, stored, accepted, path.name, now)
    record = pl.DataFrame([{"sha256": digest, "file": path.name, "imported_at": now,
                            "accepted": result.accepted, "duplicates": result.duplicates,
                            "rejected": result.rejected}], schema=FISCAL_FILES_SCHEMA)
    write_parquet_atomic(pl.concat([files, record]), fiscal_files_path(ws))
    return result


def last_fiscal_receipts(ws: Workspace, payments: pl.DataFrame) -> pl.DataFrame:
    """The fiscal receipt of each account's last payment among ``payments``, if it has one.

    ``payments``: rows with account_id, agent, payment_id, paid_on, amount (e.g. the
    period's payments from :func:`pipeline.ingest.payments.load_payments`). The last
    payment of an account is the one with the latest ``paid_on``, then the greatest
    ``payment_id`` (then ``agent``). An account whose last payment has no receipt (or
    a receipt whose amount no longer matches the payment, after the payment file was
    reverted and corrected) gets no row. Returns :data:`LAST_RECEIPT_SCHEMA` (the
    payment's amount), sorted by account.
    """
    last = payments.select("account_id", "agent", "payment_id", "paid_on",
                           pl.col("amount").cast(pl.Decimal(18, 2))).sort(
        "account_id", "paid_on", "payment_id", "agent", nulls_last=False).unique(
        "account_id", keep="last", maintain_order=True)
    fiscal = load_fiscal(ws).select(*PAYMENT_KEY, "fn", "fd", "fp", "issued_at",
                                    pl.col("amount").alias("_receipt"))
    hit = last.join(fiscal, on=PAYMENT_KEY, how="inner").filter(
        (pl.col("_receipt") == pl.col("amount"))
        | ((pl.col("amount") < 0) & (pl.col("_receipt") == -pl.col("amount"))))
    return hit.select(list(LAST_RECEIPT_SCHEMA)).cast(LAST_RECEIPT_SCHEMA).sort("account_id")


def _rubles(amount: Decimal) -> str:
    from pipeline.money import rubles_text

    return rubles_text(int(amount.quantize(Decimal("0.01")) * 100))


def fiscal_line(row: dict[str, object]) -> str:
    """The receipt text of a ЕПД, from a row of :func:`last_fiscal_receipts` (one line).

    >>> from datetime import datetime
    >>> fiscal_line({"fn": "9287440300123456", "fd": "12345", "fp": "1234567890",
    ...              "issued_at": datetime(2026, 9, 5, 14, 30), "amount": Decimal("1000.00")})
    'Кассовый чек: ФН 9287440300123456, ФД 12345, ФП 1234567890, 05.09.2026 14:30, сумма 1\\xa0000,00 ₽. \
Чек можно проверить в приложении ФНС «Проверка чеков» или получить у оператора фискальных данных.'
    """
    amount = Decimal(str(row["amount"]))
    issued = row["issued_at"]
    if not isinstance(issued, datetime):
        raise TypeError(f"issued_at: нужна дата и время, а не {issued!r}")
    title = "Кассовый чек возврата" if amount < 0 else "Кассовый чек"
    return (f"{title}: ФН {row['fn']}, ФД {row['fd']}, ФП {row['fp']}, "
            f"{issued.day:02d}.{issued.month:02d}.{issued.year:04d} {issued:%H:%M}, "
            f"сумма {_rubles(abs(amount))}. Чек можно проверить в приложении ФНС «Проверка чеков» "
            f"или получить у оператора фискальных данных.")


def fiscal_qr_text(row: dict[str, object]) -> str:
    """The string a receipt's QR code holds (``n=1`` приход, ``n=2`` возврат прихода), for a QR on the ЕПД.

    >>> from datetime import datetime
    >>> fiscal_qr_text({"fn": "9287440300123456", "fd": "12345", "fp": "1234567890",
    ...                 "issued_at": datetime(2026, 9, 5, 14, 30), "amount": Decimal("1000.00")})
    't=20260905T1430&s=1000.00&fn=9287440300123456&i=12345&fp=1234567890&n=1'
    """
    amount = Decimal(str(row["amount"]))
    issued = row["issued_at"]
    if not isinstance(issued, datetime):
        raise TypeError(f"issued_at: нужна дата и время, а не {issued!r}")
    return (f"t={issued.year:04d}{issued:%m%dT%H%M}&s={abs(amount).quantize(Decimal('0.01'))}"
            f"&fn={row['fn']}&i={row['fd']}&fp={row['fp']}&n={2 if amount < 0 else 1}")
