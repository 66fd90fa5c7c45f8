"""``billing payments import`` / ``match`` / ``revert``: agents' payment files into the store,
exactly once.

Formats: the Sberbank and VTB nightly registers (:mod:`pipeline.ingest.bank_formats`,
footer checked against the body, or the whole file is refused) and a plain CSV
for other agents (payment_id, paid_on, account_id, amount, period, agent and an
optional refund_of), and bank statements of our settlement accounts in the 1С exchange
format (:mod:`pipeline.ingest.onec`: payments matched by their purpose text, the agents'
daily transfers kept apart as settlements and reconciled). The format is detected or
named with ``--format``.

Exactly once:

* a file already imported (same SHA-256) is skipped whole;
* a payment already known (same agent and payment id) is skipped and counted;
* payments to an unknown or closed account go to the suspense list
  (невыясненные платежи, ``store/suspense.parquet``) and are applied by
  ``billing payments match`` once the account is known;
* a refund or cancellation is a negative payment whose ``refund_of`` names the
  original (same agent); it may not exceed what is left of the original;
* a payment dated after the import day, or before its account was opened
  (``opened_on``), goes to the suspense list with the reason, and ``match``
  refuses such a date too.

The agent is never guessed: a bank register is its bank's; an agent CSV without an
``agent`` column, or with an empty cell, needs ``--agent`` (else the file is refused,
the row rejected).

Taking a file back (:func:`revert_payment_file`) removes what it brought while no
sealed close has used it; afterwards the file may be imported again.

Only complete files. An agent CSV whose last line has no line ending is refused
as incomplete (it is still being written, or was cut: polars would read the cut
row as a short row padded with nulls), a row with fewer fields than the header
refuses the file; a bank register needs its footer. Nothing of a refused file is
stored, so the complete file later imports whole, once. The nightly
:func:`import_inbox` also waits for each file by the rule of ``settings.toml``
``[inbox.complete]`` (see :func:`inbox_rules`): ``footer``, ``settle`` (unchanged
for ``settle_seconds``) or ``done`` (a marker ``NAME.done``); a file not complete
yet, or refused as incomplete, stays in ``inbox/`` and is tried again next run.

Meter readings inside a bank register go to ``store/bank_readings.parquet``;
the close reads them together with the readings register. Bad rows go to the
reject report; nothing is silently dropped. Writes are ordered so that a kill
at any point is repaired by importing the same file again.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import os
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO, NamedTuple

import polars as pl

from pipeline.ingest.bank_formats import INCOMING_SCHEMA
from pipeline.ingest.fiscal_rows import (
    RegisterReceipts,
    append_receipts,
    check_register_receipts,
    fiscal_path,
    load_fiscal,
    no_receipts,
    register_receipts,
)
from pipeline.ingest.parse import empty_rejects, missing_columns, parse_table
from pipeline.ingest.readers import ROW, decode_text, read_table, sniff_separator
from pipeline.ingest.registers import load_store, write_rejects
from pipeline.sealed import table_files
from pipeline.settings import Inbox, is_name_pattern, load_section
from pipeline.workspace import (
    BillingError,
    IncompleteFileError,
    Workspace,
    locked,
    sha256_file,
    write_parquet_atomic,
)
from schemas.registers import PAYMENTS

STORE_SCHEMA = pl.Schema({
    "payment_id": pl.String(),
    "paid_on": pl.Date(),
    "account_id": pl.String(),
    "amount": pl.Decimal(18, 2),
    "period": pl.String(),
    "agent": pl.String(),
    "refund_of": pl.String(),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    "file_sha256": pl.String(),
    "imported_at": pl.Datetime("us"),
})

SUSPENSE_SCHEMA = pl.Schema({**STORE_SCHEMA, "reason": pl.String()})

FILES_SCHEMA = pl.Schema({
    "sha256": pl.String(),
    "file": pl.String(),
    "format": pl.String(),
    "imported_at": pl.Datetime("us"),
    "accepted": pl.Int64(),
    "accepted_kop": pl.Int64(),
    "suspense": pl.Int64(),
    "duplicates": pl.Int64(),
    "rejected": pl.Int64(),
    # Set by ``billing payments revert``: the file's payments were taken back; the
    # record stays as history and the same file may be imported again.
    "reverted_at": pl.Datetime("us"),
})

READINGS_SCHEMA = pl.Schema({
    "account_id": pl.String(),
    "meter_serial": pl.String(),
    "resource": pl.String(),
    "value": pl.Decimal(18, 6),
    "read_on": pl.Date(),
    "payment_id": pl.String(),
    "agent": pl.String(),
    "source_file": pl.String(),
})



@dataclass(frozen=True)
class PaymentImport:
    """The outcome of importing one file (amounts in kopecks)."""

    file: str
    sha256: str
    format: str
    already_imported: bool
    accepted: int
    accepted_kop: int
    suspense: int
    duplicates: int
    rejected: int
    readings: int
    rejects_path: Path | None
    #: The first suspense rows of the file (up to :data:`SUSPENSE_SHOWN`), for the summary.
    suspense_rows: tuple[SuspenseRow, ...] = ()
    #: What else the import says (Russian lines): a 1С statement's agent settlements and
    #: their reconciliation, documents that are not payments, control-sum warnings.
    notes: tuple[str, ...] = ()
    #: Fiscal receipts taken from the file's fiscal columns (``store/fiscal.parquet``), and the
    #: rows whose receipt was refused (their payments are counted as the other rows are; the
    #: reasons are in the same report).
    receipts: int = 0
    receipts_rejected: int = 0


#: How many suspense payments an import's summary names; the rest are counted.
SUSPENSE_SHOWN = 5


@dataclass(frozen=True)
class SuspenseRow:
    """A payment that went to the suspense list (невыясненный платёж)."""

    payment_id: str
    agent: str
    paid_on: date | None
    account_id: str | None
    amount_kop: int
    reason: str

    def text(self) -> str:
        """«p7 (sber) от 05.09.2026, счёт 9999, 100,00 ₽ — неизвестный лицевой счёт»."""
        from pipeline.money import rubles_text

        day = f" от {_ru_date(self.paid_on)}" if self.paid_on else ""
        return (f"{self.payment_id} ({self.agent}){day}, счёт {self.account_id or '—'}, "
                f"{rubles_text(self.amount_kop)} — {self.reason}")


def suspense_lines(result: PaymentImport, home: str = "") -> list[str]:
    """What an import says about its suspense payments: each of the first ones, the count of
    the rest and the commands that show and apply them (``home``: `` --home DIR`` to add)."""
    if not result.suspense:
        return []
    lines = [f"Невыясненные платежи ({result.suspense}) — не зачтены, ждут лицевого счёта:"]
    lines += [f"  {row.text()}" for row in result.suspense_rows]
    if result.suspense > len(result.suspense_rows):
        lines.append(f"  и ещё {result.suspense - len(result.suspense_rows)}")
    lines.append(f"Список: billing payments suspense{home}; зачесть на лицевой счёт: "
                 f"billing payments match ПЛАТЁЖ СЧЁТ{home}")
    return lines


def _load(path: Path, schema: pl.Schema) -> pl.DataFrame:
    if not path.is_file():
        return pl.DataFrame(schema=schema)
    return _conform(pl.read_parquet(path), schema)


def read_payments(source: Path | BinaryIO) -> pl.DataFrame:
    """Stored payments from the file or from its bytes already read, in the store's schema."""
    return _conform(pl.read_parquet(source), STORE_SCHEMA)


def _conform(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """A stored frame in ``schema``: columns an older version did not write are added empty."""
    missing = [c for c in schema if c not in frame.columns]
    return frame.with_columns(pl.lit(None, schema[c]).alias(c) for c in missing).select(
        list(schema)).cast(schema)


def payments_path(ws: Workspace) -> Path:
    return ws.store / "payments.parquet"


def load_payments(ws: Workspace) -> pl.DataFrame:
    return _load(payments_path(ws), STORE_SCHEMA)


def load_suspense(ws: Workspace) -> pl.DataFrame:
    return _load(ws.store / "suspense.parquet", SUSPENSE_SCHEMA)


def load_imported_files(ws: Workspace) -> pl.DataFrame:
    return _load(ws.store / "imported_files.parquet", FILES_SCHEMA)


def load_bank_readings(ws: Workspace) -> pl.DataFrame:
    return _load(ws.store / "bank_readings.parquet", READINGS_SCHEMA)


class PaymentFile(NamedTuple):
    """A payment file parsed (:func:`read_payment_file`)."""

    format: str
    incoming: pl.DataFrame  # INCOMING_SCHEMA
    readings: pl.DataFrame  # READINGS_SCHEMA: the meter readings of a bank register
    rejects: pl.DataFrame
    #: The fiscal receipts of an agent file's rows (:func:`pipeline.ingest.fiscal_rows.register_receipts`).
    receipts: RegisterReceipts


def read_payment_file(path: Path, fmt: str | None = None, agent: str | None = None) -> PaymentFile:
    """Parse a payment file: its format, incoming payments, meter readings, rejects and fiscal receipts.

    The agent is part of a payment's identity (the same code of two agents is two
    payments), so it is never guessed: a bank register is its bank's (``sber``,
    ``vtb``); an agent CSV names it in its ``agent`` column, or ``agent`` (``--agent``)
    gives it for a file without that column and for its empty cells. A CSV without
    the column and without ``agent`` is refused; without ``agent``, rows with an empty
    cell are rejects.
    """
    from pipeline.ingest import bank_formats

    data = path.read_bytes()
    fmt = fmt or bank_formats.detect_format(path.name, data)
    if fmt == "1c":  # matched against the workspace's registers: see import_payment_file
        raise BillingError(f"{path.name}: выписка банка в формате 1С загружается командой "
                           f"billing payments import (ей нужны реестры рабочей папки)")
    if fmt not in bank_formats.FORMATS:
        known = ", ".join((*bank_formats.FORMATS, "1c"))
        raise BillingError(f"Неизвестный формат «{fmt}»: допустимы {known}")
    if agent is not None and not agent.strip():
        raise BillingError("--agent: укажите имя платёжного агента (например post)")
    if fmt != "csv" and agent is not None and agent != fmt:
        raise BillingError(f"{path.name}: реестр {fmt} сам называет агента («{fmt}»), --agent "
                           f"«{agent}» к нему не относится — загрузите его без --agent")
    if fmt != "csv":
        reg = bank_formats.parse_bank_register(path.name, data, fmt)
        incoming = reg.payments.with_columns(
            pl.col("payment_id").cast(pl.String), pl.lit(None, pl.String).alias("refund_of"),
        ).select(list(INCOMING_SCHEMA)).cast(INCOMING_SCHEMA)
        return PaymentFile(fmt, incoming, reg.readings, reg.rejects, no_receipts())

    if path.suffix.lower() == ".csv":
        check_csv_complete(path.name, data)
    raw = read_table(path)
    raw, no_agent = _with_agent(raw, path.name, agent)
    missing = missing_columns(raw, PAYMENTS)
    if missing:
        raise BillingError(f"{path.name}: нет обязательных столбцов: {', '.join(missing)}")
    receipts = register_receipts(raw, path.name)
    good, rejects = parse_table(raw, PAYMENTS, path.name)
    rejects = pl.concat([no_agent, rejects])
    # «пени»/«penalty» in the period column: the payer pays penalties (law.md §4).
    good = good.with_columns(
        pl.when(pl.col("period").str.to_lowercase().is_in(["пени", "penalty"]))
        .then(pl.lit("penalty")).otherwise(pl.col("period")).alias("period"))
    bad_period = good.filter(
        pl.col("period").is_not_null() & (pl.col("period") != "penalty")
        & ~pl.col("period").str.contains(r"^\d{4}-(0[1-9]|1[0-2])$"))
    bad_refund = good.filter((pl.col("amount") < 0) & pl.col("refund_of").is_null())
    zero = good.filter(pl.col("amount") == 0)
    good = good.join(pl.concat([bad_period, bad_refund, zero]).select(ROW), on=ROW, how="anti")
    rejects = pl.concat([
        rejects,
        _reject(zero, path.name, "amount", "нулевая сумма платежа"),
        _reject(bad_period, path.name, "period", "период должен быть в виде ГГГГ-ММ (или «пени»)"),
        _reject(bad_refund, path.name, "refund_of",
                "отрицательная сумма (возврат) без ссылки на исходный платёж refund_of"),
    ])
    incoming = good.select(
        "payment_id", "agent", "paid_on", "account_id",
        (pl.col("amount") * 100).cast(pl.Int64).alias("amount_kop"), "period", "refund_of",
        pl.col(ROW).alias("source_row"),
    ).cast(INCOMING_SCHEMA)
    return PaymentFile(fmt, incoming, pl.DataFrame(schema=READINGS_SCHEMA), rejects, receipts)


def _with_agent(raw: pl.DataFrame, file: str, agent: str | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The agent CSV's text frame with its agent filled from ``agent``, and the rows left without one.

    Without ``agent``, a file lacking the column is refused and each row with an empty
    cell becomes a reject.
    """
    agent = agent.strip() if agent else None
    # A blank line is left as it was (the parser reports its empty required cells).
    filled = pl.any_horizontal(pl.lit(False), *[pl.col(c).is_not_null() for c in raw.columns
                                                if c not in (ROW, "agent")])
    if "agent" not in raw.columns:
        if agent is None:
            raise BillingError(
                f"{file}: нет столбца agent (платёжный агент) — без него платёж нельзя отличить от "
                f"платежа с тем же кодом другого агента; добавьте столбец или укажите агента всего "
                f"файла: billing payments import {file} --agent ИМЯ")
        return raw.with_columns(pl.when(filled).then(pl.lit(agent)).alias("agent")), empty_rejects()
    if agent is not None:
        return raw.with_columns(pl.when(filled).then(pl.col("agent").fill_null(agent))
                                .otherwise(pl.col("agent")).alias("agent")), empty_rejects()
    empty = raw.filter(pl.col("agent").is_null() & filled)
    return raw.join(empty.select(ROW), on=ROW, how="anti"), empty.select(
        pl.lit(file).alias("file"), pl.col(ROW).alias("row"), pl.lit("agent").alias("column"),
        pl.lit(None, pl.String).alias("value"),
        pl.lit("не указан платёжный агент (столбец agent пуст) — заполните его или загрузите файл "
               "с --agent ИМЯ").alias("reason")).cast(empty_rejects().schema)


def classify(
    incoming: pl.DataFrame, accounts: pl.DataFrame, stored: pl.DataFrame, file: str, today: date
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Split incoming payments into (accepted, suspense, duplicates, rejects). Pure.

    ``accounts``: account_id, opened_on, closed_on. ``stored``: payments already in the
    store. ``today``: the import day; a payment dated after it, or before its account
    was opened, waits in suspense (every reason of a row, joined by «; »).
    """
    keys = ["agent", "payment_id"]
    first = incoming.unique(keys, keep="first", maintain_order=True)
    repeated = incoming.join(first.select(*keys, ROW), on=[*keys, ROW], how="anti")
    known = stored.select(keys)
    duplicates = pl.concat([first.join(known, on=keys, how="semi"), repeated])
    fresh = first.join(known, on=keys, how="anti")

    # A negative bank line carries no reference to its original: it waits for a person.
    unlinked = fresh.filter((pl.col("amount_kop") < 0) & pl.col("refund_of").is_null())
    fresh = fresh.join(unlinked.select(ROW), on=ROW, how="anti")

    # Refunds: the original must exist and not be over-refunded.
    refunds = fresh.filter(pl.col("amount_kop") < 0)
    originals = pl.concat([
        stored.select("agent", "payment_id", (pl.col("amount") * 100).cast(pl.Int64).alias("amount_kop"),
                      "refund_of"),
        fresh.select("agent", "payment_id", "amount_kop", "refund_of"),
    ])
    paid = originals.filter(pl.col("amount_kop") > 0).select(
        "agent", pl.col("payment_id").alias("refund_of"), pl.col("amount_kop").alias("_original"))
    refunded = originals.filter(pl.col("amount_kop") < 0).group_by("agent", "refund_of").agg(
        (-pl.col("amount_kop")).sum().alias("_refunded"))
    check = refunds.join(paid, on=["agent", "refund_of"], how="left").join(
        refunded, on=["agent", "refund_of"], how="left")
    bad_refunds = check.filter(pl.col("_original").is_null()
                               | (pl.col("_refunded").fill_null(0) > pl.col("_original")))
    rejects = [
        _reject(bad_refunds.filter(pl.col("_original").is_null()), file, "refund_of",
                "возврат ссылается на неизвестный платёж этого агента"),
        _reject(bad_refunds.filter(pl.col("_original").is_not_null()), file, "amount",
                "возвращается больше, чем было оплачено исходным платежом"),
    ]
    fresh = fresh.join(bad_refunds.select(ROW), on=ROW, how="anti")

    acc = accounts.select("account_id", "opened_on", "closed_on")
    known_account = pl.col("account_id").is_not_null() & pl.col("account_id").is_in(
        acc["account_id"].implode())
    paid_text = pl.lit("дата платежа ") + pl.col("paid_on").dt.strftime("%d.%m.%Y")
    reasons = fresh.join(acc, on="account_id", how="left").with_columns(pl.concat_str([
        pl.when(~known_account).then(pl.lit("неизвестный лицевой счёт")),
        pl.when(pl.col("closed_on") < pl.col("paid_on")).then(
            pl.lit("лицевой счёт закрыт ") + pl.col("closed_on").dt.strftime("%d.%m.%Y")),
        pl.when(pl.col("paid_on") > pl.lit(today)).then(
            paid_text + pl.lit(f" позже дня загрузки {_ru_date(today)}")),
        pl.when(pl.col("paid_on") < pl.col("opened_on")).then(
            paid_text + pl.lit(" раньше открытия лицевого счёта ")
            + pl.col("opened_on").dt.strftime("%d.%m.%Y")),
    ], separator="; ", ignore_nulls=True).alias("reason"))
    suspense = pl.concat([
        unlinked.with_columns(pl.lit("возврат без ссылки на исходный платёж").alias("reason")),
        reasons.filter(pl.col("reason") != "").select(*fresh.columns, "reason"),
    ])
    accepted = fresh.join(suspense.select(ROW), on=ROW, how="anti")
    # A refund of a payment that waits in suspense waits there too.
    return accepted, suspense, duplicates, pl.concat(rejects) if rejects else empty_rejects()


def _file_receipts(receipts: RegisterReceipts, accepted: pl.DataFrame, suspense: pl.DataFrame,
                   duplicates: pl.DataFrame, known: pl.DataFrame, stored: pl.DataFrame, file: str,
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(receipts to store, rejects) of a payment file's fiscal columns: only the rows whose payment
    was taken (accepted, waiting in suspense, or known already); a rejected payment row is in the
    report already, and its receipt comes with the mended row."""
    if not receipts.rows.height:
        return receipts.rows, empty_rejects()
    taken = pl.concat([accepted.select(ROW), suspense.select(ROW), duplicates.select(ROW)])
    rows = receipts.rows.join(taken, on=ROW, how="semi")
    return check_register_receipts(RegisterReceipts(rows, receipts.headers), known, stored, file)


#: A payment's kopecks as the store's rubles (Decimal, exact: kopecks have two places).
_AMOUNT = (pl.col("amount_kop").cast(pl.Decimal(18, 2)) / 100).cast(pl.Decimal(18, 2)).alias("amount")


def _known_amounts(stored: pl.DataFrame, suspended: pl.DataFrame, fresh: pl.DataFrame) -> pl.DataFrame:
    """agent, payment_id and amount (rubles) of every payment a receipt may name: stored,
    waiting in suspense, or brought by this file (``fresh``, amounts in kopecks)."""
    rubles = pl.col("amount").cast(pl.Decimal(18, 2))
    return pl.concat([stored.select("agent", "payment_id", rubles),
                      suspended.select("agent", "payment_id", rubles),
                      fresh.select("agent", "payment_id", _AMOUNT)])


def _to_store(frame: pl.DataFrame, file: str, digest: str, now: datetime) -> pl.DataFrame:
    return frame.select(
        "payment_id", "paid_on", "account_id",
        _AMOUNT, "period", "agent", "refund_of", pl.lit(file).alias("source_file"),
        pl.col(ROW).alias("source_row"), pl.lit(digest).alias("file_sha256"),
        pl.lit(now).cast(pl.Datetime("us")).alias("imported_at"),
        *([pl.col("reason")] if "reason" in frame.columns else []),
    )


@locked("payments import")
def import_payment_file(ws: Workspace, path: Path, fmt: str | None = None, *,
                        today: date | None = None, agent: str | None = None) -> PaymentImport:
    """Import one agent file; see the module docstring for the exactly-once rules.

    A person naming a file vouches that it is complete; still a CSV cut mid-line,
    a register without its footer, or a file that changes while it is read raise
    :class:`IncompleteFileError` and nothing is stored. ``today`` is the import
    day for the payment date rule (default: the clock's); ``agent`` the agent of a
    CSV without an ``agent`` column (see :func:`read_payment_file`). A file taken
    back by :func:`revert_payment_file` imports again.
    """
    if not path.is_file():
        raise BillingError(f"Файл платежей не найден: {path}")
    before = _stamp(path)
    digest = sha256_file(path)
    files = load_imported_files(ws)
    if files.filter((pl.col("sha256") == digest) & pl.col("reverted_at").is_null()).height:
        return PaymentImport(path.name, digest, fmt or "", True, 0, 0, 0, 0, 0, 0, None)

    from pipeline.ingest import onec

    statement = None
    if fmt == onec.FORMAT or (fmt is None and onec.is_statement(path.read_bytes())):
        if agent is not None and agent != onec.AGENT:
            raise BillingError(f"{path.name}: выписка 1С сама называет агента («{onec.AGENT}») — загрузите "
                               f"её без --agent")
        paid = pl.concat([load_payments(ws).select("agent", "paid_on", "amount"),
                          load_suspense(ws).select("agent", "paid_on", "amount")])
        statement = onec.read_statement(ws, path.name, path.read_bytes(), paid)
        fmt, incoming, readings, rejects, receipts = (
            onec.FORMAT, statement.incoming, pl.DataFrame(schema=READINGS_SCHEMA), statement.rejects,
            no_receipts())
    else:
        fmt, incoming, readings, rejects, receipts = read_payment_file(path, fmt, agent)
    if _stamp(path) != before:
        raise IncompleteFileError(
            f"{path.name}: файл изменился, пока его читали, — похоже, он ещё записывается; "
            f"загрузите его, когда он будет полностью получен")
    from pipeline import progress

    progress.stage(f"{path.name}: прочитан ({fmt}) — платежей {progress.count_text(incoming.height)}")
    stored = load_payments(ws)
    suspended = load_suspense(ws)
    accounts = load_store(ws)["accounts"]
    accepted, suspense, duplicates, more_rejects = classify(
        incoming, accounts, pl.concat([stored.select(suspended.columns[:len(STORE_SCHEMA)]),
                                       suspended.drop("reason")]) if suspended.height else stored,
        path.name, today or date.today(),
    )
    fiscal_stored = load_fiscal(ws)
    fiscal, fiscal_rejects = _file_receipts(receipts, accepted, suspense.drop("reason"), duplicates,
                                            _known_amounts(stored, suspended, pl.concat(
                                                [accepted, suspense.drop("reason")])), fiscal_stored,
                                            path.name)
    payment_rejects = pl.concat([rejects, more_rejects])
    rejects = pl.concat([payment_rejects, fiscal_rejects]).sort("row")
    if statement is not None:  # the payer and the purpose in the reason of a suspense payment
        suspense = onec.explain_suspense(suspense, statement.explain)
    progress.stage(f"{path.name}: проверен — принято {progress.count_text(accepted.height)}, "
                   f"невыясненных {progress.count_text(suspense.height)}, "
                   f"повторных {progress.count_text(duplicates.height)}")
    now = datetime.now()
    rejects_path = None
    if rejects.height:
        rejects_path = ws.rejects / f"payments-{now:%Y%m%dT%H%M%S%f}.csv"
        write_rejects(rejects, rejects_path)
    accepted_kop = int(accepted["amount_kop"].sum())
    shown = tuple(SuspenseRow(r["payment_id"], r["agent"], r["paid_on"], r["account_id"],
                              r["amount_kop"], r["reason"])
                  for r in suspense.sort(ROW).head(SUSPENSE_SHOWN).iter_rows(named=True))
    result = PaymentImport(path.name, digest, fmt, False, accepted.height, accepted_kop,
                           suspense.height, duplicates.height, int(payment_rejects["row"].n_unique()),
                           readings.height, rejects_path, shown,
                           statement.notes if statement is not None else (), fiscal.height,
                           int(fiscal_rejects["row"].n_unique()))
    # Payments, suspense and readings first, the file list last: a kill in between
    # re-imports the file next time, and the known payment ids make that a no-op.
    if accepted.height:
        write_parquet_atomic(pl.concat([stored, _to_store(accepted, path.name, digest, now)
                                        .cast(STORE_SCHEMA)]), payments_path(ws))
    if suspense.height:
        write_parquet_atomic(pl.concat([suspended, _to_store(suspense, path.name, digest, now)
                                        .cast(SUSPENSE_SCHEMA)]), ws.store / "suspense.parquet")
    if readings.height:
        new_readings = readings.join(accepted.select("payment_id"), on="payment_id", how="semi")
        known = load_bank_readings(ws)
        fresh = new_readings.with_columns(pl.lit(fmt).alias("agent"), pl.lit(path.name).alias(
            "source_file")).select(list(READINGS_SCHEMA)).cast(READINGS_SCHEMA)
        write_parquet_atomic(pl.concat([known, fresh]).unique(
            ["agent", "payment_id", "meter_serial", "resource"], keep="first", maintain_order=True),
            ws.store / "bank_readings.parquet")
    append_receipts(ws, fiscal_stored, fiscal, path.name, now)
    if statement is not None:  # the agents' transfers: settlements, not payments
        onec.store_settlements(ws, statement.settlements, path.name, digest, now)
    record = pl.DataFrame([{
        "sha256": digest, "file": path.name, "format": fmt, "imported_at": now,
        "accepted": result.accepted, "accepted_kop": accepted_kop, "suspense": result.suspense,
        "duplicates": result.duplicates, "rejected": result.rejected, "reverted_at": None,
    }], schema=FILES_SCHEMA)
    write_parquet_atomic(pl.concat([files, record]), ws.store / "imported_files.parquet")
    return result


@locked("payments match")
def match_payment(ws: Workspace, payment_id: str, account_id: str, agent: str | None = None,
                  *, today: date | None = None) -> pl.DataFrame:
    """Apply a payment from the suspense list to ``account_id`` (``billing payments match``).

    The date rule of the import holds here too: a payment dated after ``today``
    (default: the clock's) is refused until that day comes, one dated before the
    account was opened is refused for that account.
    """
    suspense = load_suspense(ws)
    hit = suspense.filter(pl.col("payment_id") == payment_id)
    if agent:
        hit = hit.filter(pl.col("agent") == agent)
    if not hit.height:
        raise BillingError(f"Платёж {payment_id} не найден среди невыясненных.")
    if hit.height > 1:
        raise BillingError(f"Платёж {payment_id} есть у нескольких агентов "
                           f"({', '.join(hit['agent'])}): укажите --agent.")
    accounts = load_store(ws)["accounts"].filter(pl.col("account_id") == account_id)
    if not accounts.height:
        raise BillingError(f"Лицевой счёт {account_id} не найден.")
    closed_on = accounts["closed_on"][0]
    if closed_on is not None and closed_on < hit["paid_on"][0]:
        raise BillingError(f"Лицевой счёт {account_id} закрыт {closed_on:%d.%m.%Y}, "
                           "раньше даты платежа.")
    paid_on, opened_on, today = hit["paid_on"][0], accounts["opened_on"][0], today or date.today()
    if paid_on is not None and paid_on > today:
        raise BillingError(
            f"Платёж {payment_id}: дата платежа {_ru_date(paid_on)} позже сегодняшнего дня "
            f"{_ru_date(today)} — платёж из будущего не зачитывается; уточните дату у агента "
            f"(зачесть его можно будет, когда эта дата наступит).")
    if paid_on is not None and opened_on is not None and paid_on < opened_on:
        raise BillingError(
            f"Платёж {payment_id}: дата платежа {_ru_date(paid_on)} раньше открытия лицевого счёта "
            f"{account_id} {_ru_date(opened_on)} — на этот счёт его зачесть нельзя; уточните дату у агента.")
    stored = load_payments(ws)
    key = hit.select("agent", "payment_id")
    if not stored.join(key, on=["agent", "payment_id"], how="semi").height:
        moved = hit.drop("reason").with_columns(pl.lit(account_id).alias("account_id"))
        write_parquet_atomic(pl.concat([stored, moved.cast(STORE_SCHEMA)]), payments_path(ws))
    write_parquet_atomic(suspense.join(key, on=["agent", "payment_id"], how="anti"),
                         ws.store / "suspense.parquet")
    return hit


@dataclass(frozen=True)
class PaymentRevert:
    """The outcome of ``billing payments revert`` (amounts in kopecks)."""

    file: str
    sha256: str
    payments: int
    amount_kop: int
    suspense: int
    readings: int


def find_imported_file(ws: Workspace, target: str | Path) -> dict[str, object]:
    """The live record of ``store/imported_files.parquet`` a person names: a file's path
    (found by its SHA-256), its name as imported, or its SHA-256 (or its first 8+ characters).

    Refuses with a Russian message when nothing matches, when the file was reverted
    already, and when a name fits several imported files (then the SHA-256 tells them apart).
    """
    files = load_imported_files(ws)
    live = files.filter(pl.col("reverted_at").is_null())
    text = str(target).strip()
    path = Path(text)
    if path.is_file():
        digest = sha256_file(path)
        named = pl.col("sha256") == digest
        what = f"файл {path.name} (SHA-256 {digest})"
    else:
        low = text.lower()
        named = (pl.col("sha256") == low) | (pl.col("file") == path.name)
        if len(low) >= 8 and all(c in "0123456789abcdef" for c in low):
            named = named | pl.col("sha256").str.starts_with(low)
        what = f"«{text}»"
    hit = live.filter(named)
    if not hit.height:
        gone = files.filter(pl.col("reverted_at").is_not_null() & named).sort("reverted_at")
        if gone.height:
            raise BillingError(f"{what}: загрузка этого файла уже отменена "
                               f"{gone['reverted_at'][-1]:%d.%m.%Y %H:%M}.")
        raise BillingError(
            f"{what}: такой файл не загружался — его нет в store/imported_files.parquet. "
            f"Загруженные файлы: billing sql \"select file, sha256, imported_at from imported_files\"")
    if hit["sha256"].n_unique() > 1:
        listing = "; ".join(f"{r['file']}, загружен {r['imported_at']:%d.%m.%Y %H:%M}, SHA-256 {r['sha256']}"
                            for r in hit.sort("imported_at").iter_rows(named=True))
        raise BillingError(f"{what}: под этим именем загружено несколько разных файлов ({listing}) — "
                           f"укажите путь к файлу или его SHA-256.")
    return hit.row(0, named=True)


def _sealed_uses(ws: Workspace, keys: pl.DataFrame) -> pl.DataFrame:
    """(period, agent, payment_id) of ``keys`` that a sealed close allocated, checked first."""
    from pipeline.verify import check_sealed

    sealed = ws.sealed_periods()
    check_sealed(ws, sealed)
    found = []
    for period in sealed:
        for part in table_files(ws.period_dir(period), "allocations"):  # one file or its parts
            used = pl.read_parquet(part, columns=["agent", "payment_id"]).join(
                keys, on=["agent", "payment_id"], how="semi").unique()
            found.append(used.with_columns(pl.lit(period).alias("period")))
    if not found:
        return pl.DataFrame(schema={"agent": pl.String, "payment_id": pl.String, "period": pl.String})
    return pl.concat(found, how="vertical_relaxed").unique(maintain_order=True)


def _some(items: list[str], shown: int = 5) -> str:
    more = f" и ещё {len(items) - shown}" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


@locked("payments revert")
def revert_payment_file(ws: Workspace, target: str | Path) -> PaymentRevert:
    """Take back an imported file while its period is open (``billing payments revert``).

    Removes the file's payments (including those matched from suspense since), its
    suspense rows and its bank readings from the store, and marks its record in
    ``store/imported_files.parquet`` reverted (kept as history): the same file, or a
    corrected one, can then be imported again. Refused when a sealed close used it:
    one of its payments is in a sealed period's allocations (a closed period is
    never rewritten: the way out is a refund, a negative payment with ``refund_of``),
    or a refund of another file points at one of its payments (revert that file
    first). A bank reading is stored only with an accepted payment and dated its day,
    so a reading a sealed close could have counted belongs to a payment that close
    allocated: the payment check covers the readings.

    The fiscal receipts the file's own columns brought (``source_file``, its payments) go too.

    Write order: suspense, readings, receipts, payments, and the record last. A kill in
    between leaves the file recorded as imported with part of its rows gone; every
    step removes only this file's rows, so running the revert again completes it.
    """
    record = find_imported_file(ws, target)
    digest, name = str(record["sha256"]), str(record["file"])
    stored, suspended, readings = load_payments(ws), load_suspense(ws), load_bank_readings(ws)
    mine = stored.filter(pl.col("file_sha256") == digest)
    my_suspense = suspended.filter(pl.col("file_sha256") == digest)
    keys = mine.select("agent", "payment_id").unique()
    my_readings = readings.filter(pl.col("source_file") == name).join(
        keys, on=["agent", "payment_id"], how="semi")

    used = _sealed_uses(ws, keys)
    if used.height:
        periods = ", ".join(sorted(used["period"].unique()))
        raise BillingError(
            f"Файл {name} нельзя отменить: его платежи уже распределены при закрытии периода "
            f"{periods} ({_some(sorted(used['payment_id'].unique()))}). Закрытый период не "
            f"переписывается — верните ошибочные платежи возвратом: отрицательным платежом "
            f"со ссылкой refund_of на исходный.")
    others = pl.concat([stored.select("agent", "payment_id", "refund_of", "source_file", "file_sha256"),
                        suspended.select("agent", "payment_id", "refund_of", "source_file",
                                         "file_sha256")])
    refunds = others.filter(pl.col("file_sha256").ne_missing(digest)).join(
        keys.rename({"payment_id": "refund_of"}), on=["agent", "refund_of"], how="semi")
    if refunds.height:
        listing = _some([f"{r['payment_id']} ({r['source_file']})"
                         for r in refunds.iter_rows(named=True)])
        raise BillingError(
            f"Файл {name} нельзя отменить: на его платежи ссылаются возвраты из других файлов — "
            f"{listing}. Сначала отмените те файлы (billing payments revert ФАЙЛ).")

    if my_suspense.height:
        write_parquet_atomic(suspended.filter(pl.col("file_sha256").ne_missing(digest)),
                             ws.store / "suspense.parquet")
    if my_readings.height:
        write_parquet_atomic(readings.join(my_readings.select("agent", "payment_id", "source_file"),
                                           on=["agent", "payment_id", "source_file"], how="anti"),
                             ws.store / "bank_readings.parquet")
    fiscal = load_fiscal(ws)
    key = ["agent", "payment_id", "source_file"]
    my_receipts = fiscal.filter(pl.col("source_file") == name).join(
        pl.concat([keys, my_suspense.select("agent", "payment_id")]), on=["agent", "payment_id"], how="semi")
    if my_receipts.height:
        write_parquet_atomic(fiscal.join(my_receipts.select(key), on=key, how="anti"), fiscal_path(ws))
    if mine.height:
        write_parquet_atomic(stored.filter(pl.col("file_sha256").ne_missing(digest)), payments_path(ws))
    from pipeline.ingest.onec import drop_settlements

    drop_settlements(ws, digest)  # a 1С statement's agent transfers
    files = load_imported_files(ws)
    write_parquet_atomic(files.with_columns(
        pl.when((pl.col("sha256") == digest) & pl.col("reverted_at").is_null())
        .then(pl.lit(datetime.now()).cast(pl.Datetime("us"))).otherwise(pl.col("reverted_at"))
        .alias("reverted_at")), ws.store / "imported_files.parquet")
    amount_kop = int((mine["amount"].cast(pl.Decimal(18, 2)) * 100).cast(pl.Int64).sum())
    return PaymentRevert(name, digest, mine.height, amount_kop, my_suspense.height, my_readings.height)


def _reject(rows: pl.DataFrame, file: str, column: str, reason: str) -> pl.DataFrame:
    if column in rows.columns:
        value = pl.col(column).cast(pl.String)
    else:  # the amount travels as kopecks after parsing
        value = (pl.col(f"{column}_kop").cast(pl.Decimal(18, 2)) / 100).cast(pl.String)
    return rows.select(
        pl.lit(file).alias("file"), pl.col(ROW).alias("row"), pl.lit(column).alias("column"),
        value.alias("value"), pl.lit(reason).alias("reason"),
    )


@locked("payments import (ночной импорт из inbox/)")
def import_inbox(ws: Workspace, now: datetime | None = None, *,
                 today: date | None = None) -> list[dict[str, object]]:
    """Import every complete file in ``inbox/`` and move it to ``inbox/archive/<date>/<outcome>/``.

    A file is taken only when complete by its rule (:func:`inbox_rules`); a file not
    complete yet, or refused as incomplete (:class:`IncompleteFileError`: a CSV cut
    mid-line, a register without its footer), stays in ``inbox/`` untouched with the
    outcome ``waiting`` and its reason, and is tried again next run. Other refusals
    are archived under ``refused``. A marker ``NAME.done`` travels with its file.
    ``now`` is the moment of the run (default: the clock's; settle age and archive
    folder), ``today`` the import day for the payment dates (default: ``now``'s day).
    """
    now = now or datetime.now()
    rules = inbox_rules(ws)
    outcomes: list[dict[str, object]] = []
    for path in sorted(p for p in ws.inbox.iterdir()
                       if p.is_file() and not p.name.startswith(".") and not is_done_marker(p)):
        info: dict[str, object]
        waiting = waiting_reason(path, rules, now)
        outcome = "waiting"
        if waiting is None:
            try:
                result = import_payment_file(ws, path, today=today or now.date())
                outcome = "duplicate" if result.already_imported else "imported"
                info = {"file": path.name, "outcome": outcome, "format": result.format,
                        "accepted": result.accepted, "accepted_kop": result.accepted_kop,
                        "suspense": result.suspense, "duplicates": result.duplicates,
                        "rejected": result.rejected}
                if result.suspense:
                    info["suspense_list"] = suspense_lines(result)
                if result.notes:
                    info["notes"] = list(result.notes)
            except IncompleteFileError as err:
                waiting = str(err)
            except BillingError as err:
                outcome = "refused"
                info = {"file": path.name, "outcome": outcome, "error": str(err)}
        if waiting is not None:
            outcomes.append({"file": path.name, "outcome": "waiting", "reason": waiting})
            continue
        target = ws.inbox / "archive" / now.strftime("%Y-%m-%d") / outcome
        target.mkdir(parents=True, exist_ok=True)
        name = path.name
        while (target / name).exists() or done_marker(target / name).exists():
            name = f"{datetime.now():%H%M%S%f}-{path.name}"
        # The marker first: a marker left behind would let a later file of this name in unchecked.
        marker = done_marker(path)
        if marker.is_file():
            os.replace(marker, done_marker(target / name))
        os.replace(path, target / name)
        outcomes.append(info)
    return outcomes


# --------------------------------------------------------------------------- complete files

DONE_SUFFIX = ".done"
#: Temporary names of transfer clients (FTP/SFTP, browsers): the file is still on its way.
TRANSFER_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload")


@dataclass(frozen=True)
class InboxRules:
    """``settings.toml`` ``[inbox]``: the settle time and the rule per format or file-name pattern."""

    settle_seconds: int
    complete: dict[str, str]

    def rule_for(self, name: str, fmt: str | None) -> str:
        """The rule of a file: a matching name pattern first (case-insensitive), else its format.

        A file whose format cannot be told yet (empty, or its first line half written)
        waits to settle.
        """
        for key, rule in self.complete.items():
            if is_name_pattern(key) and fnmatch.fnmatchcase(name.lower(), key.lower()):
                return rule
        return self.complete.get(fmt, "settle") if fmt else "settle"


def inbox_rules(ws: Workspace) -> InboxRules:
    """``[inbox]`` of ``settings.toml``, checked by :mod:`pipeline.settings` (defaults for what is not there).

    ``settle_seconds`` (default 120) and ``[inbox.complete]``: keys are formats
    (``sber``, ``vtb``, ``csv``) or file-name patterns (``"post-*.csv"``, which win
    over the format); values ``footer`` (bank registers only: the checked footer is
    there), ``settle`` (unchanged for ``settle_seconds``) or ``done`` (a marker
    ``NAME.done`` beside the file, no older than the file).
    """
    inbox = load_section(ws.settings_path, Inbox)
    return InboxRules(inbox.settle_seconds, dict(inbox.complete))


def done_marker(path: Path) -> Path:
    """The marker ``NAME.done`` that tells that ``path`` is written to its end."""
    return path.with_name(path.name + DONE_SUFFIX)


def is_done_marker(path: Path) -> bool:
    return path.name.lower().endswith(DONE_SUFFIX)


def waiting_reason(path: Path, rules: InboxRules, now: datetime) -> str | None:
    """Why the nightly import must not take ``path`` yet (Russian, names the file), or None.

    ``footer`` files are judged by the parser (no footer: :class:`IncompleteFileError`).
    """
    from pipeline.ingest.bank_formats import detect_format

    name = path.name
    if name.lower().endswith(TRANSFER_SUFFIXES):
        return f"{name}: временное имя файла при передаче — ждём, пока файл получит своё имя"
    try:
        data, stat = path.read_bytes(), path.stat()
    except OSError as err:  # taken away or locked by its writer: try again next run
        return f"{name}: файл сейчас не читается ({err.strerror}) — попробуем при следующем запуске"
    fmt: str | None
    try:
        fmt = detect_format(name, data)
    except BillingError:
        fmt = None
    rule = rules.rule_for(name, fmt)
    marker = done_marker(path)
    if marker.is_file():
        if marker.stat().st_mtime_ns < stat.st_mtime_ns:
            return (f"{name}: файл изменён после метки {marker.name} — ждём, пока агент положит "
                    f"новую метку")
        if rule in ("settle", "done"):
            return None
    if rule == "done":
        return (f"{name}: нет файла-метки {marker.name} — агент ещё не подтвердил, что файл записан "
                f"до конца (settings.toml, [inbox.complete])")
    if rule == "settle":
        changed = datetime.fromtimestamp(stat.st_mtime)
        if (now - changed).total_seconds() < rules.settle_seconds:
            return (f"{name}: файл изменён {changed:%d.%m.%Y %H:%M:%S}, меньше {rules.settle_seconds} с "
                    f"назад (settings.toml, [inbox] settle_seconds) — похоже, он ещё записывается")
    return None


def check_csv_complete(name: str, data: bytes) -> None:
    """Refuse an agent CSV that is not whole: a last line without a line ending, a short row.

    polars reads a row cut mid-line (``p5;2026-09-15;A1;12`` of ``…;1234.56;2026-08;sber``)
    as a short row padded with nulls: 12 ₽ under the agent «unknown». So the bytes are
    looked at first: no line ending at the end raises :class:`IncompleteFileError`
    (it is being written, or was cut), a row with fewer fields than the header
    :class:`BillingError` (the file is damaged). Empty and unreadable files are left
    to the reader, which names them.
    """
    if not data.strip():
        return
    if not data.endswith(b"\n"):
        last = data.count(b"\n") + 1
        raise IncompleteFileError(
            f"{name}: файл обрывается на строке {last} без перевода строки — похоже, "
            f"он ещё записывается; загрузите его, когда он будет полностью получен (если файл "
            f"всё же полный, допишите в конце перевод строки)")
    try:
        text, _ = decode_text(data)
    except (UnicodeDecodeError, BillingError):  # read_table refuses it with the file's name
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_separator(text.split("\n", 1)[0]),
                        quotechar='"', strict=True)
    try:
        header = next(reader)
        for fields in reader:
            if len(fields) < len(header) and any(f.strip() for f in fields):
                short = ", ".join(c.strip() for c in header[len(fields):])
                raise BillingError(
                    f"{name}: строка {reader.line_num} неполная — полей {len(fields)}, а в заголовке "
                    f"{len(header)} (без значения остались бы столбцы {short}): файл обрезан или "
                    f"испорчен и не принят; исправьте строку и загрузите файл снова")
    except csv.Error:
        return  # the reader names what it cannot parse


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _ru_date(day: date) -> str:
    """``DD.MM.YYYY`` for any year (``strftime`` drops the zeros of year 1 on Linux)."""
    return f"{day.day:02d}.{day.month:02d}.{day.year:04d}"
