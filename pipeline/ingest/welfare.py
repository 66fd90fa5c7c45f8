"""``billing import welfare FILE``: the social welfare body's answer (ЕДК and subsidies).

The welfare body (УСЗН, the subsidy centre) answers the monthly register
(``billing export welfare``) with the amounts it granted: the compensation of benefits
(ЕДК, ежемесячная денежная компенсация) and housing subsidies (ЖК 159), per person or
per account, per service (or for all services) and per period. The file is a CSV (UTF-8
or Windows-1251, ``;`` or ``,``) or an XLSX, read by
:func:`pipeline.ingest.readers.read_table`, with the columns

* ``period`` — the month the amount is for, ``ГГГГ-ММ`` or ``ММ.ГГГГ``;
* ``account_id`` and/or ``person_id`` — the account, the person (``residents.person_id``)
  or both; a person alone names the account they are registered on;
* ``service_id`` — a service of ``services.csv`` (its id or its name); empty: the amount
  is for all services of the account (a subsidy usually is);
* the amounts, in one of two layouts: ``kind`` (``ЕДК``/``компенсация`` or
  ``субсидия``) and ``amount``; or one column per kind, ``compensation`` and ``subsidy``
  (either may be empty in a row, not both). Rubles, comma or dot, at most 2 decimals,
  spaces ignored, not negative — Decimal, never float.

The Russian headers of regional layouts are accepted case-insensitively through
:data:`HEADER_ALIASES` («Период», «Месяц», «Лицевой счёт», «ЛС», «Код гражданина»,
«Услуга», «Вид выплаты», «Сумма», «Сумма ЕДК», «Сумма субсидии», …). These layouts are
UNVERIFIED: no official regional format was available (``exchange-formats.md`` §5.3 —
each region agrees its own field list); a new alias is one line of that mapping, like
:mod:`pipeline.ingest.fiscal` does. Persons are our ``person_id`` (the id the register
we export carries); a layout keyed by СНИЛС needs a person register with СНИЛС first.

Each row is checked; every failure is a row of the reject report (file, row, column,
value, reason in Russian, :func:`pipeline.ingest.registers.write_rejects`) and the whole
source row is not stored: the formats above, an unknown account, person or service, a
person not registered on the given account, a person on several accounts without an
account, two rows of one file for the same amount (period, account, person, service,
kind) with different sums (both), a sum that differs from the one already stored for it.
The same sum again is a duplicate (counted, not an error).

Exactly once: a file whose SHA-256 was imported before without rejected rows is skipped
whole (``store/welfare_files.parquet``); a file with rejects is checked again when given
again (its stored rows are duplicates then). Good rows go to ``store/welfare.parquet``
(:data:`WELFARE_SCHEMA`), written atomically before the file record.

Which ЕПД shows an amount: the answer for period P goes on the receipt of P when P is
still open at the import (a subsidy granted in advance), else on the receipt of the
first open period after P (the usual ЕДК answer, computed from the sealed register of P,
arrives after P's close). The choice is made once, at the import, and stored in
``receipt_period``: a sealed receipt never changes, and its duplicate prints what the
original printed. :func:`receipt_welfare` gives a period's amounts to the receipts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.dates import Period
from pipeline.ingest.parse import REJECT_SCHEMA, empty_rejects
from pipeline.ingest.payments import check_csv_complete
from pipeline.ingest.readers import ROW, file_stamp, match_headers, read_store_table, read_table
from pipeline.ingest.registers import load_store, write_rejects
from pipeline.workspace import (
    BillingError,
    IncompleteFileError,
    Workspace,
    locked,
    sha256_file,
    write_parquet_atomic,
)

WELFARE_SCHEMA = pl.Schema({
    "period": pl.String(),
    "receipt_period": pl.String(),
    "account_id": pl.String(),
    "person_id": pl.String(),
    "service_id": pl.String(),
    "kind": pl.String(),
    "amount": pl.Decimal(18, 2),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    "imported_at": pl.Datetime("us"),
})

WELFARE_FILES_SCHEMA = pl.Schema({
    "sha256": pl.String(),
    "file": pl.String(),
    "imported_at": pl.Datetime("us"),
    "accepted": pl.Int64(),
    "duplicates": pl.Int64(),
    "rejected": pl.Int64(),
})

#: What :func:`receipt_welfare` returns: a receipt period's amounts per account.
RECEIPT_WELFARE_SCHEMA = pl.Schema({
    "account_id": pl.String(),
    "service_id": pl.String(),
    "kind": pl.String(),
    "period": pl.String(),
    "amount_kop": pl.Int64(),
})

#: The kinds of amounts, with the Russian name a message and the ЕПД give each.
KINDS = {"compensation": "ЕДК", "subsidy": "субсидия"}

#: The columns of a welfare answer, with the Russian name a message gives each.
COLUMNS = {
    "period": "период",
    "account_id": "лицевой счёт",
    "person_id": "код гражданина",
    "service_id": "услуга",
    "kind": "вид выплаты (ЕДК или субсидия)",
    "amount": "сумма",
    "compensation": "сумма ЕДК (компенсации)",
    "subsidy": "сумма субсидии",
}

#: Header of a file (lower case, ё as е, spaces collapsed) -> column. The Russian names are
#: what regional УСЗН answers typically print — UNVERIFIED; add an alias here.
HEADER_ALIASES: dict[str, str] = {
    **{name: name for name in COLUMNS},
    "период": "period",
    "месяц": "period",
    "расчетный период": "period",
    "период начисления": "period",
    "account": "account_id",
    "лицевой счет": "account_id",
    "номер лицевого счета": "account_id",
    "лс": "account_id",
    "номер лс": "account_id",
    "person": "person_id",
    "код гражданина": "person_id",
    "код получателя": "person_id",
    "идентификатор получателя": "person_id",
    "service": "service_id",
    "услуга": "service_id",
    "код услуги": "service_id",
    "вид": "kind",
    "вид выплаты": "kind",
    "вид меры": "kind",
    "тип": "kind",
    "сумма": "amount",
    "сумма, руб.": "amount",
    "сумма, руб": "amount",
    "edk": "compensation",
    "едк": "compensation",
    "сумма едк": "compensation",
    "компенсация": "compensation",
    "сумма компенсации": "compensation",
    "субсидия": "subsidy",
    "сумма субсидии": "subsidy",
}

#: A cell of ``kind`` (lower case, ё as е) -> kind. UNVERIFIED regional spellings; add one here.
KIND_ALIASES: dict[str, str] = {
    "compensation": "compensation",
    "edk": "compensation",
    "едк": "compensation",
    "компенсация": "compensation",
    "ежемесячная денежная компенсация": "compensation",
    "льгота": "compensation",
    "subsidy": "subsidy",
    "субсидия": "subsidy",
    "жилищная субсидия": "subsidy",
}

#: What one stored amount is: a second row with the same key is the same amount again.
_KEY = ["period", "account_id", "_person", "_service", "kind"]
_TEXT = ["period", "account_id", "person_id", "service_id"]


@dataclass(frozen=True)
class WelfareImport:
    """The outcome of importing one welfare answer."""

    file: str
    sha256: str
    already_imported: bool
    accepted: int
    duplicates: int
    rejected: int
    rejects_path: Path | None
    #: Kopecks of the accepted amounts, and the receipt periods they go to.
    accepted_kop: int = 0
    receipt_periods: tuple[str, ...] = ()


def welfare_path(ws: Workspace) -> Path:
    return ws.store / "welfare.parquet"


def welfare_files_path(ws: Workspace) -> Path:
    return ws.store / "welfare_files.parquet"


def load_welfare(ws: Workspace) -> pl.DataFrame:
    """The stored welfare amounts (:data:`WELFARE_SCHEMA`; empty when none)."""
    return read_store_table(welfare_path(ws), WELFARE_SCHEMA)


def load_welfare_files(ws: Workspace) -> pl.DataFrame:
    """One row per import run of a welfare answer (:data:`WELFARE_FILES_SCHEMA`)."""
    return read_store_table(welfare_files_path(ws), WELFARE_FILES_SCHEMA)


def canonical_columns(raw: pl.DataFrame, file: str) -> pl.DataFrame:
    """The file's columns renamed to :data:`COLUMNS` by :data:`HEADER_ALIASES`; others dropped.

    Refuses a file where two headers name one column, one without ``period``, without
    both ``account_id`` and ``person_id``, or without amounts (``kind`` and ``amount``,
    or ``compensation``/``subsidy``, not both layouts).
    """
    found = match_headers(raw, HEADER_ALIASES, COLUMNS, file)
    if "period" not in found:
        raise BillingError(f"{file}: нет обязательного столбца period ({COLUMNS['period']})")
    if "account_id" not in found and "person_id" not in found:
        raise BillingError(f"{file}: нет ни столбца account_id (лицевой счёт), ни person_id (код "
                           f"гражданина) — суммы не к кому отнести")
    long = [c for c in ("kind", "amount") if c in found]
    wide = [c for c in ("compensation", "subsidy") if c in found]
    if long and wide:
        raise BillingError(f"{file}: в файле и столбцы kind/amount, и столбцы compensation/subsidy — "
                           f"нужен один из двух видов: «вид выплаты + сумма» или «сумма ЕДК, сумма "
                           f"субсидии»")
    if not wide and len(long) < 2:
        need = [c for c in ("kind", "amount") if c not in found]
        listing = ", ".join(f"{c} ({COLUMNS[c]})" for c in need)
        raise BillingError(f"{file}: нет обязательных столбцов: {listing} (или столбцов compensation "
                           f"и/или subsidy — суммы ЕДК и субсидии)")
    frame = raw.select(ROW, *[pl.col(name).alias(target) for target, name in found.items()])
    missing = [c for c in ("account_id", "person_id", "service_id") if c not in frame.columns]
    return frame.with_columns(pl.lit(None, pl.String).alias(c) for c in missing)


def _reject(rows: pl.DataFrame, file: str, column: str | pl.Expr, reason: str | pl.Expr,
            value: pl.Expr | None = None) -> pl.DataFrame:
    """Reject rows of ``rows``: ``column`` names the file's column (or an expression giving it)."""
    if value is None:
        if not isinstance(column, str):
            raise TypeError("a reject whose column is an expression needs its value")
        value = pl.col(column)
    return rows.select(
        pl.lit(file).alias("file"), pl.col(ROW).alias("row"),
        (pl.lit(column) if isinstance(column, str) else column).cast(pl.String).alias("column"),
        value.cast(pl.String).alias("value"),
        (reason if isinstance(reason, pl.Expr) else pl.lit(reason)).cast(pl.String).alias("reason"),
    ).cast(REJECT_SCHEMA)


def _amount(col: str) -> pl.Expr:
    text = pl.col(col).str.replace_all(r"\s", "")
    return pl.when(text.str.contains(r"^\d{1,15}([.,]\d{1,2})?$")).then(
        text.str.replace(",", ".", literal=True).cast(pl.Decimal(18, 2), strict=False))


def _long(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per amount: (source row, ids, ``kind``, ``amount`` text, ``_column``, ``_kind_text``)."""
    ids = [ROW, *_TEXT]
    if "amount" in frame.columns:
        return frame.select(*ids, pl.col("kind").alias("_kind_text"), pl.col("amount"),
                            pl.lit("amount").alias("_column"))
    parts = [frame.filter(pl.col(c).is_not_null()).select(
        *ids, pl.lit(c).alias("_kind_text"), pl.col(c).alias("amount"), pl.lit(c).alias("_column"))
        for c in ("compensation", "subsidy") if c in frame.columns]
    return pl.concat(parts).sort(ROW, "_column")


def parse_welfare_rows(raw: pl.DataFrame, file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The canonical text frame parsed: (one typed row per amount, rejects). Pure.

    Typed rows: source row, ``period`` (``ГГГГ-ММ``), account_id, person_id, service_id
    (the cells' text), ``kind``, ``amount`` (Decimal), ``_column`` (the column it came from)
    and ``_amount_text`` (the cell as written, for reject reports).
    """
    wide = [c for c in ("compensation", "subsidy") if c in raw.columns]
    amounts = wide if wide else ["kind", "amount"]
    frame = raw.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in [*_TEXT, *amounts]))
    parts = [_reject(frame.filter(pl.col("period").is_null()), file, "period",
                     f"не заполнено: {COLUMNS['period']}")]
    parts.append(_reject(frame.filter(pl.col("account_id").is_null() & pl.col("person_id").is_null()),
                         file, "account_id", "не указан ни лицевой счёт, ни код гражданина"))
    if wide:
        nothing = frame.filter(pl.all_horizontal(pl.col(c).is_null() for c in wide))
        parts.append(_reject(nothing, file, wide[0], "нет суммы: заполните сумму ЕДК или сумму субсидии"))
    else:
        for c in amounts:
            parts.append(_reject(frame.filter(pl.col(c).is_null()), file, c, f"не заполнено: {COLUMNS[c]}"))
    period = pl.col("period").str.strip_chars()
    iso, ru = r"^(\d{4})-(\d{2})$", r"^(\d{2})\.(\d{4})$"  # ГГГГ-ММ, ММ.ГГГГ
    month = pl.coalesce(period.str.extract(iso, 1) + pl.lit("-") + period.str.extract(iso, 2),
                        period.str.extract(ru, 2) + pl.lit("-") + period.str.extract(ru, 1))
    rows = _long(frame).with_columns(pl.col("period").alias("_period_text"))
    typed = rows.with_columns(
        pl.when(month.str.slice(5, 2).cast(pl.Int32, strict=False).is_between(1, 12)).then(month)
        .alias("period"),
        pl.col("_kind_text").str.to_lowercase().str.replace_all("ё", "е").str.strip_chars()
        .replace_strict(KIND_ALIASES, default=None).alias("kind"),
        _amount("amount").alias("_amount"),
        *[pl.col(c).str.strip_chars().alias(c) for c in ("account_id", "person_id", "service_id")],
    )
    parts.append(_reject(typed.filter(pl.col("period").is_null() & pl.col("_period_text").is_not_null()),
                         file, "period", "не удалось прочитать период: нужно ГГГГ-ММ или ММ.ГГГГ",
                         pl.col("_period_text")))
    if not wide:
        parts.append(_reject(typed.filter(pl.col("kind").is_null() & pl.col("_kind_text").is_not_null()),
                             file, "kind", "неизвестный вид выплаты: нужно ЕДК (компенсация) или субсидия",
                             pl.col("_kind_text")))
    bad = typed.filter(pl.col("_amount").is_null() & pl.col("amount").is_not_null())
    for column in dict.fromkeys(bad["_column"].to_list()):
        parts.append(_reject(bad.filter(pl.col("_column") == column), file, column,
                             "не удалось прочитать сумму: нужны рубли с копейками через запятую или точку "
                             "(не больше 2 знаков после запятой, не отрицательная)", pl.col("amount")))
    rejects = pl.concat(parts)
    good = typed.join(rejects.select(pl.col("row").alias(ROW)).unique(), on=ROW, how="anti").select(
        ROW, "period", "account_id", "person_id", "service_id", "kind", pl.col("_amount").alias("amount"),
        "_column", pl.col("amount").alias("_amount_text"))
    return good, rejects


def _rub(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String).str.replace(".", ",", literal=True) + pl.lit(" ₽")


def _with_rows(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """``frame`` with ``_rows``: «3, 7», the source rows of its group of ``by``."""
    groups = frame.group_by(by).agg(pl.col(ROW).unique().sort().cast(pl.String).str.join(", ").alias("_rows"))
    return frame.join(groups, on=by, how="left", maintain_order="left")


def classify_welfare(good: pl.DataFrame, accounts: pl.DataFrame, residents: pl.DataFrame,
                     services: pl.DataFrame, stored: pl.DataFrame, file: str
                     ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Split parsed rows into (accepted, duplicates, rejects) against the registers and the store. Pure.

    ``accounts``: account_id; ``residents``: person_id, account_id; ``services``: service_id,
    name; ``stored``: :data:`WELFARE_SCHEMA` rows. Accepted rows get the account of a
    person given alone and the service's id for a service given by name.
    """
    parts: list[pl.DataFrame] = []
    known_accounts = accounts.select("account_id").unique().with_columns(pl.lit(True).alias("_acc"))
    links = residents.select("person_id", "account_id").unique()
    per_person = links.group_by("person_id").agg(
        pl.col("account_id").sort().str.join(", ").alias("_accounts"),
        pl.col("account_id").first().alias("_only"), pl.len().alias("_n"))
    pairs = links.with_columns(pl.lit(True).alias("_pair"))
    rows = good.join(known_accounts, on="account_id", how="left").join(per_person, on="person_id", how="left")
    rows = rows.with_columns(pl.col("account_id").is_not_null().alias("_given"))
    has_acc, has_person = pl.col("_given"), pl.col("person_id").is_not_null()
    parts.append(_reject(rows.filter(has_acc & pl.col("_acc").is_null()), file, "account_id",
                         "лицевой счёт не найден в реестре лицевых счетов"))
    parts.append(_reject(rows.filter(has_person & pl.col("_n").is_null()), file, "person_id",
                         "гражданин не найден в реестре проживающих (residents)"))
    several = rows.filter(has_person & ~has_acc & (pl.col("_n") > 1))
    parts.append(_reject(several, file, "person_id", pl.lit("гражданин зарегистрирован на нескольких "
                         "лицевых счетах (") + pl.col("_accounts") + pl.lit(") — укажите лицевой счёт")))
    rows = rows.with_columns(pl.coalesce("account_id", pl.when(pl.col("_n") == 1).then(pl.col("_only")))
                             .alias("account_id"))
    rows = rows.join(pairs, on=["person_id", "account_id"], how="left")
    parts.append(_reject(rows.filter(has_person & has_acc & pl.col("_acc") & pl.col("_n").is_not_null()
                                     & pl.col("_pair").is_null()), file, "person_id",
                         pl.lit("гражданин не зарегистрирован на лицевом счёте ") + pl.col("account_id")))
    # A service by its id or its name, either case.
    names = pl.concat([
        services.select(pl.col("service_id").str.to_lowercase().alias("_s"), "service_id"),
        services.select(pl.col("name").str.to_lowercase().str.replace_all("ё", "е").alias("_s"),
                        pl.col("service_id")),
    ]).unique("_s", keep="first").rename({"service_id": "_service_id"})
    rows = rows.with_columns(pl.col("service_id").str.to_lowercase().str.replace_all("ё", "е").alias("_s")) \
        .join(names, on="_s", how="left")
    parts.append(_reject(rows.filter(pl.col("service_id").is_not_null() & pl.col("_service_id").is_null()),
                         file, "service_id", "услуга не найдена в services.csv (нужен её код или название)"))
    rejected = pl.concat(parts).select(pl.col("row").alias(ROW)).unique()
    rows = rows.join(rejected, on=ROW, how="anti").with_columns(
        pl.col("_service_id").alias("service_id"),
        pl.col("person_id").fill_null("").alias("_person"),
        pl.col("_service_id").fill_null("").alias("_service"),
    ).select(ROW, "period", "account_id", "person_id", "service_id", "kind", "amount", "_column",
             "_amount_text", "_person", "_service")

    # One file, one amount, two sums: neither is taken.
    conflict = rows.filter(pl.col("amount").n_unique().over(_KEY) > 1)
    parts.append(_reject(_with_rows(conflict, _KEY), file, pl.col("_column"),
                         pl.lit("в файле для этой выплаты разные суммы: строки ") + pl.col("_rows"),
                         pl.col("_amount_text")))
    rows = rows.join(conflict.select(ROW).unique(), on=ROW, how="anti")
    first = rows.unique(_KEY, keep="first", maintain_order=True)
    duplicates = rows.join(first.select(ROW, *_KEY), on=[ROW, *_KEY], how="anti")

    known = stored.select(
        *[c for c in _KEY if not c.startswith("_")],
        pl.col("person_id").fill_null("").alias("_person"),
        pl.col("service_id").fill_null("").alias("_service"),
        pl.col("amount").alias("_s_amount"), pl.col("source_file").alias("_s_file"),
        pl.col("source_row").alias("_s_row")).unique(_KEY, keep="first")
    first = first.join(known, on=_KEY, how="left")
    has = pl.col("_s_amount").is_not_null()
    same = first.filter(has & (pl.col("amount") == pl.col("_s_amount")))
    duplicates = pl.concat([same.select(duplicates.columns), duplicates])
    other = first.filter(has & (pl.col("amount") != pl.col("_s_amount")))
    parts.append(_reject(other, file, pl.col("_column"), pl.concat_str([
        pl.lit("для этой выплаты уже загружена другая сумма "), _rub("_s_amount"), pl.lit(" (файл "),
        pl.col("_s_file"), pl.lit(", строка "), pl.col("_s_row").cast(pl.String), pl.lit(")")]),
        pl.col("_amount_text")))
    fresh = first.filter(~has).select(rows.columns)
    rejects = pl.concat(parts) if parts else empty_rejects()
    accepted = fresh.join(rejects.select(pl.col("row").alias(ROW)).unique(), on=ROW, how="anti")
    # A source row with one bad amount of two is not stored at all.
    duplicates = duplicates.join(rejects.select(pl.col("row").alias(ROW)).unique(), on=ROW, how="anti")
    return accepted, duplicates, rejects.unique(maintain_order=True)


def receipt_periods(periods: list[str], sealed: list[str]) -> dict[str, str]:
    """Answer period -> the period of the receipt that shows it: itself while it is open,
    else the first open period after it.

    >>> receipt_periods(["2026-08", "2026-09", "2026-11"], ["2026-07", "2026-08", "2026-09"])
    {'2026-08': '2026-10', '2026-09': '2026-10', '2026-11': '2026-11'}
    """
    closed = set(sealed)
    out = {}
    for text in sorted(set(periods)):
        period = Period.parse(text)
        while str(period) in closed:
            period = period.shift(1)
        out[text] = str(period)
    return out


@locked("import welfare")
def import_welfare_file(ws: Workspace, path: Path) -> WelfareImport:
    """Import one answer of the welfare body; see the module docstring for the rules.

    Refuses (:class:`BillingError`, nothing stored) an unreadable file or one without a
    required column; a CSV cut mid-line or a file changed while read raise
    :class:`IncompleteFileError`. The accounts and persons are those of the current registers.
    """
    if not path.is_file():
        raise BillingError(f"Файл ответа соцзащиты не найден: {path}")
    before = file_stamp(path)
    digest = sha256_file(path)
    files = load_welfare_files(ws)
    if files.filter((pl.col("sha256") == digest) & (pl.col("rejected") == 0)).height:
        return WelfareImport(path.name, digest, True, 0, 0, 0, None)

    if path.suffix.lower() == ".csv":
        check_csv_complete(path.name, path.read_bytes())
    raw = canonical_columns(read_table(path), path.name)
    if file_stamp(path) != before:
        raise IncompleteFileError(
            f"{path.name}: файл изменился, пока его читали, — похоже, он ещё записывается; "
            f"загрузите его, когда он будет полностью получен")
    from rules import read_rule_table

    good, rejects = parse_welfare_rows(raw, path.name)
    regs = load_store(ws, names=("accounts", "residents"))
    stored = load_welfare(ws)
    accepted, duplicates, more = classify_welfare(
        good, regs["accounts"], regs["residents"], read_rule_table(ws.rules, "services"), stored, path.name)
    rejects = pl.concat([rejects, more]).sort("row", "column")
    now = datetime.now()
    rejects_path = None
    if rejects.height:
        rejects_path = ws.rejects / f"welfare-{now:%Y%m%dT%H%M%S%f}.csv"
        write_rejects(rejects, rejects_path)
    targets = receipt_periods(accepted["period"].to_list(), ws.sealed_periods())
    total = accepted["amount"].sum() if accepted.height else 0
    result = WelfareImport(path.name, digest, False, accepted.height, duplicates.height,
                           int(rejects["row"].n_unique()), rejects_path, int(total * 100),
                           tuple(sorted(set(targets.values()))))
    # Amounts first, the file record last: a kill in between is repaired by importing again.
    if accepted.height:
        fresh = accepted.sort(ROW, "_column").select(
            "period",
            pl.col("period").replace_strict(targets, return_dtype=pl.String).alias("receipt_period"),
            "account_id", "person_id", "service_id", "kind", "amount", pl.lit(path.name).alias("source_file"),
            pl.col(ROW).alias("source_row"), pl.lit(now).alias("imported_at")).cast(WELFARE_SCHEMA)
        write_parquet_atomic(pl.concat([stored, fresh]), welfare_path(ws))
    record = pl.DataFrame([{"sha256": digest, "file": path.name, "imported_at": now,
                            "accepted": result.accepted, "duplicates": result.duplicates,
                            "rejected": result.rejected}], schema=WELFARE_FILES_SCHEMA)
    write_parquet_atomic(pl.concat([files, record]), welfare_files_path(ws))
    return result


def receipt_welfare(ws: Workspace, period: str) -> pl.DataFrame:
    """The amounts the receipts of ``period`` show: per account, service (null: all
    services), kind and answer period, kopecks (:data:`RECEIPT_WELFARE_SCHEMA`), sorted."""
    rows = load_welfare(ws).filter(pl.col("receipt_period") == period)
    return rows.group_by("account_id", "service_id", "kind", "period").agg(
        (pl.col("amount").sum() * 100).cast(pl.Int64).alias("amount_kop")
    ).select(list(RECEIPT_WELFARE_SCHEMA)).cast(RECEIPT_WELFARE_SCHEMA).sort(
        "account_id", "service_id", "kind", "period", nulls_last=False)
