"""Fiscal receipt rows (54-ФЗ): their schema, the checks of a row, its fit with the payments, the store.

Shared by the two ways a receipt comes in: a file of receipts from the agent or its fiscal data
operator (``billing payments fiscal FILE``, :mod:`pipeline.ingest.fiscal`) and the fiscal columns
of an agent's payment file (``billing payments import``, :mod:`pipeline.ingest.payments`:
:func:`register_receipts`). The rules are those of :mod:`pipeline.ingest.fiscal`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.ingest.parse import REJECT_SCHEMA, empty_rejects
from pipeline.ingest.readers import ROW, match_headers, read_store_table
from pipeline.workspace import BillingError, Workspace, write_parquet_atomic

__all__ = ["COLUMNS", "FISCAL_SCHEMA", "PAYMENT_KEY", "REGISTER_ALIASES", "RegisterReceipts",
           "append_receipts", "check_register_receipts", "classify_fiscal", "fiscal_path", "load_fiscal",
           "no_receipts", "parse_fiscal_rows", "register_receipts"]

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

_DATETIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S")
#: A payment's identity: its code is unique within its agent.
PAYMENT_KEY = ["agent", "payment_id"]
_KEY = PAYMENT_KEY
_RECEIPT = ["fn", "fd"]
#: What makes two rows the same receipt (the time to the minute: see the module docstring).
_SAME = ["fn", "fd", "fp", "amount", "_minute"]


def fiscal_path(ws: Workspace) -> Path:
    return ws.store / "fiscal.parquet"


def load_fiscal(ws: Workspace) -> pl.DataFrame:
    """The stored fiscal receipts (:data:`FISCAL_SCHEMA`; empty when none)."""
    return read_store_table(fiscal_path(ws), FISCAL_SCHEMA)


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


#: The fiscal columns an agent's payment file may carry, by header (lower case, ё as е); the
#: receipt's amount is the payment's. The Russian names are UNVERIFIED, as in
#: :data:`pipeline.ingest.fiscal.HEADER_ALIASES`.
REGISTER_ALIASES: dict[str, str] = {
    "fn": "fn", "фн": "fn", "номер фн": "fn",
    "fd": "fd", "фд": "fd", "номер фд": "fd", "фд №": "fd",
    "fp": "fp", "фп": "fp", "фпд": "fp", "фискальный признак": "fp",
    "fiscal_at": "issued_at", "дата и время чека": "issued_at", "дата чека": "issued_at",
}
_FISCAL = ("fn", "fd", "fp", "issued_at")


@dataclass(frozen=True)
class RegisterReceipts:
    """The fiscal receipts of a payment file (:func:`register_receipts`)."""

    #: One row per payment row with a fiscal cell: the row and :data:`COLUMNS`, as text.
    rows: pl.DataFrame
    #: The file's header of each fiscal column (a reject names the column as the file does).
    headers: dict[str, str] = field(default_factory=dict)


def no_receipts() -> RegisterReceipts:
    """A payment file without fiscal columns (a bank register, a 1С statement)."""
    return RegisterReceipts(pl.DataFrame(schema={ROW: pl.Int64, **dict.fromkeys(COLUMNS, pl.String)}))


def register_receipts(raw: pl.DataFrame, file: str) -> RegisterReceipts:
    """The fiscal receipts of an agent's payment file, as the canonical text frame of a
    receipts file, for :func:`check_register_receipts`. Pure.

    ``raw``: the file's text frame with ``payment_id``, ``agent`` and ``amount`` (the
    receipt's amount: a payment has the receipt of its own sum). Only rows with a fiscal cell
    are receipts; a file without fiscal columns has none. A file with some of them but not
    all is refused: its receipts could not be checked.
    """
    found = match_headers(raw, REGISTER_ALIASES, COLUMNS, file)
    if not found:
        return no_receipts()
    missing = [c for c in _FISCAL if c not in found]
    if missing:
        names = {"fn": "fn (ФН)", "fd": "fd (ФД)", "fp": "fp (ФП)",
                 "issued_at": "fiscal_at (дата и время чека)"}
        raise BillingError(f"{file}: из данных кассового чека есть не все столбцы — нет "
                           f"{', '.join(names[c] for c in missing)}; чек нельзя проверить. Добавьте "
                           f"недостающие столбцы или уберите столбцы чека.")
    rows = raw.filter(pl.any_horizontal(pl.col(found[c]).is_not_null() for c in _FISCAL)).select(
        pl.col(ROW).cast(pl.Int64), pl.col("payment_id").cast(pl.String), pl.col("agent").cast(pl.String),
        *[pl.col(found[c]).cast(pl.String).alias(c) for c in _FISCAL], pl.col("amount").cast(pl.String))
    return RegisterReceipts(rows.select(ROW, *COLUMNS), found)


def check_register_receipts(receipts: RegisterReceipts, payments: pl.DataFrame, stored: pl.DataFrame,
                            file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(accepted, rejects) of a payment file's receipts. Pure.

    ``payments``: every payment the receipts may belong to (agent, payment_id, amount as
    Decimal): the stored ones, those waiting in suspense and the file's own — a payment that
    waits for its account still has its receipt. ``stored``: :data:`FISCAL_SCHEMA` rows. The
    checks are those of a receipts file; a rejected receipt leaves its payment as it is.
    """
    good, rejects = parse_fiscal_rows(receipts.rows, file)
    waiting = pl.DataFrame(schema={"agent": pl.String, "payment_id": pl.String})
    accepted, _, more = classify_fiscal(good, payments, waiting, stored, file)
    rejects = pl.concat([rejects, more]).with_columns(
        pl.col("column").replace(receipts.headers))
    return accepted, rejects


def append_receipts(ws: Workspace, stored: pl.DataFrame, accepted: pl.DataFrame, file: str,
                    now: datetime) -> None:
    """Add ``accepted`` (rows of :func:`classify_fiscal`) to the ``stored`` receipts, atomically."""
    if not accepted.height:
        return
    fresh = accepted.sort(ROW).select(
        *_KEY, "fn", "fd", "fp", "issued_at", "amount", pl.lit(file).alias("source_file"),
        pl.col(ROW).alias("source_row"), pl.lit(now).alias("imported_at")).cast(FISCAL_SCHEMA)
    write_parquet_atomic(pl.concat([stored, fresh]), fiscal_path(ws))
