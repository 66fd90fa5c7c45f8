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

from pipeline.ingest.parse import REJECT_SCHEMA, empty_rejects
from pipeline.ingest.payments import check_csv_complete, load_payments, load_suspense
from pipeline.ingest.readers import FORMULA_CELLS, ROW, file_stamp, header_key, read_store_table, read_table
from pipeline.ingest.registers import write_rejects
from pipeline.workspace import (
    BillingError,
    IncompleteFileError,
    Workspace,
    locked,
    sha256_file,
    write_parquet_atomic,
)

FISCAL_SCHEMA = pl.Schema({
    "agent": pl.String(),
    "payment_id": pl.String(),
    "fn": pl.String(),
    "fd": pl.String(),
    "fp": pl.String(),
    "issued_at": pl.Datetime("us"),
    "amount": pl.Decimal(18, 2),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    "imported_at": pl.Datetime("us"),
})

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

#: The columns of a fiscal file, with the Russian name a message gives each.
COLUMNS = {
    "payment_id": "код платежа",
    "agent": "платёжный агент",
    "fn": "номер ФН",
    "fd": "номер ФД",
    "fp": "фискальный признак ФП",
    "issued_at": "дата и время чека",
    "amount": "сумма чека",
}

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

_DATETIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S")
_KEY = ["agent", "payment_id"]
_RECEIPT = ["fn", "fd"]
#: What makes two rows the same receipt (the time to the minute: see the module docstring).
_SAME = ["fn", "fd", "fp", "amount", "_minute"]


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


def fiscal_path(ws: Workspace) -> Path:
    return ws.store / "fiscal.parquet"


def fiscal_files_path(ws: Workspace) -> Path:
    return ws.store / "fiscal_files.parquet"


def load_fiscal(ws: Workspace) -> pl.DataFrame:
    """The stored fiscal receipts (:data:`FISCAL_SCHEMA`; empty when none)."""
    return read_store_table(fiscal_path(ws), FISCAL_SCHEMA)


def load_fiscal_files(ws: Workspace) -> pl.DataFrame:
    """One row per import run of a fiscal file (:data:`FISCAL_FILES_SCHEMA`)."""
    return read_store_table(fiscal_files_path(ws), FISCAL_FILES_SCHEMA)


def canonical_columns(raw: pl.DataFrame, file: str) -> pl.DataFrame:
    """The file's columns renamed to :data:`COLUMNS` by :data:`HEADER_ALIASES`; others dropped.

    Refuses a file where two headers name one column, or one without a required column.
    """
    found: dict[str, str] = {}
    for name in raw.columns:
        if name in (ROW, FORMULA_CELLS):
            continue
        target = HEADER_ALIASES.get(header_key(name))
        if target is None:
            continue
        if target in found:
            raise BillingError(f"{file}: столбцы «{found[target]}» и «{name}» оба означают "
                               f"{COLUMNS[target]} ({target}) — оставьте один из них")
        found[target] = name
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


def _reject(rows: pl.DataFrame, file: str, column: str, reason: str | pl.Expr,
            value: pl.Expr | None = None) -> pl.DataFrame:
    return rows.select(
        pl.lit(file).alias("file"), pl.col(ROW).alias("row"), pl.lit(column).alias("column"),
        (pl.col(f"_text_{column}") if value is None else value).cast(pl.String).alias("value"),
        (reason if isinstance(reason, pl.Expr) else pl.lit(reason)).cast(pl.String).alias("reason"),
    ).cast(REJECT_SCHEMA)


def _rub(col: str) -> pl.Expr:
    """A Decimal(18,2) column as «1000,00 ₽» (a reject reason)."""
    return pl.col(col).cast(pl.String).str.replace(".", ",", literal=True) + pl.lit(" ₽")


def _when(col: str) -> pl.Expr:
    return pl.col(col).dt.strftime("%d.%m.%Y %H:%M")


def parse_fiscal_rows(raw: pl.DataFrame, file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The canonical text frame (with ``agent``) parsed: (typed rows, rejects). Pure.

    Typed rows keep the cells' text as ``_text_<column>`` for the later reject reasons.
    """
    columns = list(COLUMNS)
    frame = raw.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in columns))  # blank lines
    frame = frame.with_columns(pl.col(c).alias(f"_text_{c}") for c in columns)
    digits = {c: pl.col(c).str.replace_all(r"\s", "") for c in ("fn", "fd", "fp", "amount")}
    number = {c: digits[c].str.strip_chars_start("0") for c in ("fd", "fp")}
    stamp = pl.col("issued_at").str.replace("T", " ", literal=True).str.replace_all(r"\s+", " ")
    typed = frame.with_columns(
        digits["fn"].alias("fn"),
        *[pl.when(number[c] == "").then(pl.lit("0")).otherwise(number[c]).alias(c) for c in ("fd", "fp")],
        pl.coalesce(*[stamp.str.strptime(pl.Datetime("us"), f, strict=False, exact=True)
                      for f in _DATETIME_FORMATS]).alias("issued_at"),
        pl.when(digits["amount"].str.contains(r"^[+-]?\d{1,15}([.,]\d{1,2})?$")).then(
            digits["amount"].str.replace(",", ".", literal=True).cast(pl.Decimal(18, 2), strict=False)
        ).alias("amount"),
    )
    checks: list[tuple[str, pl.Expr, str]] = [
        ("fn", ~digits["fn"].str.contains(r"^\d{16}$"),
         "номер фискального накопителя ФН — ровно 16 цифр"),
        ("fd", ~digits["fd"].str.contains(r"^\d{1,10}$"),
         "номер фискального документа ФД — от 1 до 10 цифр"),
        ("fp", ~digits["fp"].str.contains(r"^\d{1,10}$"),
         "фискальный признак ФП (ФПД) — от 1 до 10 цифр"),
        ("issued_at", pl.col("issued_at").is_null(),
         "не удалось прочитать дату и время чека: нужно ГГГГ-ММ-ДД ЧЧ:ММ[:СС] или ДД.ММ.ГГГГ ЧЧ:ММ[:СС]"),
        ("amount", pl.col("amount").is_null(),
         "не удалось прочитать сумму чека: нужны рубли с копейками через запятую или точку "
         "(не больше 2 знаков после запятой)"),
    ]
    parts = []
    for column in columns:
        empty = frame.filter(pl.col(column).is_null())
        reason = (f"не указан {COLUMNS[column]} — заполните столбец agent или загрузите файл с --agent ИМЯ"
                  if column == "agent" else f"не заполнено: {COLUMNS[column]}")
        parts.append(_reject(empty, file, column, reason))
    for column, bad, reason in checks:
        # Each column's own check, on the cells that are there (an empty one was named above).
        rows = frame.with_columns(bad.alias("_bad")) if column in ("fn", "fd", "fp") else \
            typed.with_columns(bad.alias("_bad"))
        parts.append(_reject(rows.filter(pl.col("_bad") & pl.col(f"_text_{column}").is_not_null()),
                             file, column, reason))
    rejects = pl.concat(parts)
    good = typed.join(rejects.select(pl.col("row").alias(ROW)).unique(), on=ROW, how="anti")
    return good, rejects


def _with_rows(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """``frame`` with ``_rows``: «3, 7», the rows of its group of ``by`` (five, then «и ещё N»)."""
    shown = 5
    groups = frame.group_by(by).agg(
        pl.col(ROW).sort().head(shown).cast(pl.String).str.join(", ").alias("_rows"),
        pl.len().alias("_count"))
    more = pl.when(pl.col("_count") > shown).then(
        pl.lit(" и ещё ") + (pl.col("_count") - shown).cast(pl.String)).otherwise(pl.lit(""))
    return frame.join(groups.with_columns((pl.col("_rows") + more).alias("_rows")).drop("_count"),
                      on=by, how="left", maintain_order="left")


def classify_fiscal(good: pl.DataFrame, payments: pl.DataFrame, suspense: pl.DataFrame,
                    stored: pl.DataFrame, file: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Split parsed rows into (accepted, duplicates, rejects) against the stores. Pure.

    ``payments``: the payment store (agent, payment_id, amount); ``suspense``: payments
    waiting for an account (agent, payment_id); ``stored``: :data:`FISCAL_SCHEMA` rows.
    """
    rows = good.with_columns(pl.col("issued_at").dt.truncate("1m").alias("_minute"))
    parts: list[pl.DataFrame] = []

    # One file, one payment, two different receipts: neither is taken.
    variants = pl.struct(_SAME).n_unique().over(_KEY)
    conflict = rows.filter(variants > 1)
    parts.append(_reject(_with_rows(conflict, _KEY), file, "payment_id",
                         pl.lit("в файле для этого платежа разные чеки: строки ") + pl.col("_rows")))
    # One file, one receipt (ФН + ФД), two payments.
    shared = rows.filter(pl.struct(_KEY).n_unique().over(_RECEIPT) > 1)
    parts.append(_reject(_with_rows(shared, _RECEIPT), file, "fd",
                         pl.lit("чек ФН ") + pl.col("fn") + pl.lit(" ФД ") + pl.col("fd")
                         + pl.lit(" указан в файле для разных платежей: строки ") + pl.col("_rows")))
    rows = rows.join(pl.concat([conflict, shared]).select(ROW), on=ROW, how="anti")

    # The same receipt twice in the file: the first row counts, the others are duplicates.
    first = rows.unique(_KEY, keep="first", maintain_order=True)
    duplicates = rows.join(first.select(ROW), on=ROW, how="anti")

    # The same receipt as stored: a duplicate; a different one: a reject.
    known = stored.select(
        *_KEY, *[pl.col(c).alias(f"_s_{c}") for c in ("fn", "fd", "fp", "amount", "source_file",
                                                       "source_row", "issued_at")])
    first = first.join(known, on=_KEY, how="left")
    same = pl.all_horizontal(
        *[pl.col(c) == pl.col(f"_s_{c}") for c in ("fn", "fd", "fp", "amount")],
        pl.col("_minute") == pl.col("_s_issued_at").dt.truncate("1m"))
    has = pl.col("_s_fn").is_not_null()
    duplicates = pl.concat([first.filter(has & same).select(duplicates.columns), duplicates])
    other = first.filter(has & ~same)
    parts.append(_reject(other, file, "fn", pl.concat_str([
        pl.lit("у платежа уже есть чек ФН "), pl.col("_s_fn"), pl.lit(" ФД "), pl.col("_s_fd"),
        pl.lit(" ФП "), pl.col("_s_fp"), pl.lit(" от "), _when("_s_issued_at"), pl.lit(" на "),
        _rub("_s_amount"), pl.lit(" (файл "), pl.col("_s_source_file"), pl.lit(", строка "),
        pl.col("_s_source_row").cast(pl.String), pl.lit(")")])))
    fresh = first.filter(~has).select(rows.columns)

    # The receipt already belongs to another payment.
    owners = stored.select(*_RECEIPT, pl.col("agent").alias("_o_agent"),
                           pl.col("payment_id").alias("_o_payment_id")).unique(_RECEIPT, keep="first")
    taken = fresh.join(owners, on=_RECEIPT, how="inner")
    parts.append(_reject(taken, file, "fd", pl.concat_str([
        pl.lit("чек ФН "), pl.col("fn"), pl.lit(" ФД "), pl.col("fd"), pl.lit(" уже привязан к платежу "),
        pl.col("_o_payment_id"), pl.lit(" ("), pl.col("_o_agent"), pl.lit(")")])))

    # The payment must be loaded, and its amount the receipt's.
    paid = payments.select(*_KEY, pl.col("amount").cast(pl.Decimal(18, 2)).alias("_paid")).unique(
        _KEY, keep="first")
    waiting = suspense.select(_KEY).unique().with_columns(pl.lit(True).alias("_waiting"))
    checked = fresh.join(paid, on=_KEY, how="left").join(waiting, on=_KEY, how="left")
    missing = checked.filter(pl.col("_paid").is_null())
    parts.append(_reject(missing, file, "payment_id", pl.lit("платёж не найден среди загруженных")
                         + pl.when(pl.col("_waiting")).then(pl.lit(
                             " (он среди невыясненных: сначала зачтите его — billing payments match "
                             "КОД СЧЁТ, затем загрузите этот файл снова)")).otherwise(pl.lit(""))))
    matches = (pl.col("amount") == pl.col("_paid")) | (
        (pl.col("_paid") < 0) & (pl.col("amount") == -pl.col("_paid")))
    wrong = checked.filter(pl.col("_paid").is_not_null() & ~matches)
    parts.append(_reject(wrong, file, "amount", pl.lit("сумма чека ") + _rub("amount")
                         + pl.lit(" ≠ сумме платежа ") + _rub("_paid")))

    rejects = pl.concat(parts) if parts else empty_rejects()
    accepted = fresh.join(rejects.select(pl.col("row").alias(ROW)).unique(), on=ROW, how="anti")
    return accepted, duplicates, rejects


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
    if accepted.height:
        fresh = accepted.sort(ROW).select(
            *_KEY, "fn", "fd", "fp", "issued_at", "amount", pl.lit(path.name).alias("source_file"),
            pl.col(ROW).alias("source_row"), pl.lit(now).alias("imported_at")).cast(FISCAL_SCHEMA)
        write_parquet_atomic(pl.concat([stored, fresh]), fiscal_path(ws))
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
    fiscal = load_fiscal(ws).select(*_KEY, "fn", "fd", "fp", "issued_at",
                                    pl.col("amount").alias("_receipt"))
    hit = last.join(fiscal, on=_KEY, how="inner").filter(
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
