"""``billing payments import``: agents' payment files into ``store/payments.parquet``.

Exactly once: a file already imported (same SHA-256) is skipped whole, and a
payment already known (same agent and payment id) is skipped and reported, so
importing the same file or the same payment twice changes nothing. Rows that
cannot be taken (bad cells, unknown account) go to the reject report.

This is the plain CSV agent format (payment_id, paid_on, account_id, amount,
period, agent); bank registers with footers are a later stage of this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.ingest.parse import missing_columns, parse_table
from pipeline.ingest.readers import ROW, read_table
from pipeline.ingest.registers import load_store, write_rejects
from pipeline.workspace import BillingError, Workspace, sha256_file, write_parquet_atomic
from schemas.registers import PAYMENTS

STORE_SCHEMA = pl.Schema({
    "payment_id": pl.String(),
    "paid_on": pl.Date(),
    "account_id": pl.String(),
    "amount": pl.Decimal(18, 2),
    "period": pl.String(),
    "agent": pl.String(),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    "file_sha256": pl.String(),
    "imported_at": pl.Datetime("us"),
})


FILES_SCHEMA = pl.Schema({
    "sha256": pl.String(),
    "file": pl.String(),
    "imported_at": pl.Datetime("us"),
    "accepted": pl.Int64(),
    "accepted_kop": pl.Int64(),
    "duplicates": pl.Int64(),
    "rejected": pl.Int64(),
})


@dataclass(frozen=True)
class PaymentImport:
    """The outcome of importing one file."""

    file: str
    sha256: str
    already_imported: bool
    accepted: int
    accepted_kop: int
    duplicates: int
    rejected: int
    rejects_path: Path | None


def payments_path(ws: Workspace) -> Path:
    return ws.store / "payments.parquet"


def load_payments(ws: Workspace) -> pl.DataFrame:
    path = payments_path(ws)
    if not path.is_file():
        return pl.DataFrame(schema=STORE_SCHEMA)
    return pl.read_parquet(path)


def load_imported_files(ws: Workspace) -> pl.DataFrame:
    path = ws.store / "imported_files.parquet"
    return pl.read_parquet(path) if path.is_file() else pl.DataFrame(schema=FILES_SCHEMA)


def import_payment_file(ws: Workspace, path: Path) -> PaymentImport:
    """Import one agent file; see the module docstring for the exactly-once rules."""
    if not path.is_file():
        raise BillingError(f"Файл платежей не найден: {path}")
    digest = sha256_file(path)
    stored = load_payments(ws)
    files = load_imported_files(ws)
    if files.filter(pl.col("sha256") == digest).height:
        return PaymentImport(path.name, digest, True, 0, 0, 0, 0, None)

    raw = read_table(path)
    missing = missing_columns(raw, PAYMENTS)
    if missing:
        raise BillingError(f"{path.name}: нет обязательных столбцов: {', '.join(missing)}")
    good, rejects = parse_table(raw, PAYMENTS, path.name)

    bad_period = good.filter(
        pl.col("period").is_not_null() & ~pl.col("period").str.contains(r"^\d{4}-(0[1-9]|1[0-2])$")
    )
    accounts = load_store(ws)["accounts"]["account_id"]
    unknown = good.filter(~pl.col("account_id").is_in(accounts.implode()))
    extra = [
        _reject(bad_period, path.name, "period", "период должен быть в виде ГГГГ-ММ"),
        _reject(unknown, path.name, "account_id",
                "неизвестный лицевой счёт: платёж не принят (невыясненный)"),
    ]
    refused = pl.concat([bad_period.select(ROW), unknown.select(ROW)])[ROW]
    good = good.filter(~pl.col(ROW).is_in(refused.implode()))
    rejects = pl.concat([rejects, *extra]).sort("row")

    known = stored.select("agent", "payment_id")
    dup = good.join(known, on=["agent", "payment_id"], how="semi")
    good = good.join(known, on=["agent", "payment_id"], how="anti")
    new = good.select(
        "payment_id", "paid_on", "account_id", "amount", "period", "agent",
        pl.lit(path.name).alias("source_file"), pl.col(ROW).alias("source_row"),
        pl.lit(digest).alias("file_sha256"),
        pl.lit(datetime.now()).cast(pl.Datetime("us")).alias("imported_at"),
    ).cast(STORE_SCHEMA)
    combined = pl.concat([stored.cast(STORE_SCHEMA), new])
    rejects_path = None
    if rejects.height:
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
        rejects_path = ws.rejects / f"payments-{stamp}.csv"
        write_rejects(rejects, rejects_path)
    accepted_kop = int((new["amount"].cast(pl.Decimal(18, 2)) * 100).cast(pl.Int64).sum())
    result = PaymentImport(path.name, digest, False, new.height, accepted_kop, dup.height,
                           int(rejects["row"].n_unique()), rejects_path)
    # Payments first, then the file list: a kill in between re-imports the file
    # next time, and the payment ids already stored make that a no-op.
    write_parquet_atomic(combined, payments_path(ws))
    record = pl.DataFrame([{
        "sha256": digest, "file": path.name, "imported_at": datetime.now(),
        "accepted": result.accepted, "accepted_kop": accepted_kop,
        "duplicates": result.duplicates, "rejected": result.rejected,
    }]).cast(FILES_SCHEMA)
    write_parquet_atomic(pl.concat([files, record]), ws.store / "imported_files.parquet")
    return result


def _reject(rows: pl.DataFrame, file: str, column: str, reason: str) -> pl.DataFrame:
    return rows.select(
        pl.lit(file).alias("file"), pl.col(ROW).alias("row"), pl.lit(column).alias("column"),
        pl.col(column).cast(pl.String).alias("value"), pl.lit(reason).alias("reason"),
    )


def import_inbox(ws: Workspace) -> list[dict[str, object]]:
    """Import every file waiting in ``inbox/`` and move it to ``inbox/archive/<date>/<outcome>/``."""
    import os

    outcomes: list[dict[str, object]] = []
    for path in sorted(p for p in ws.inbox.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            result = import_payment_file(ws, path)
            outcome = "duplicate" if result.already_imported else "imported"
            info: dict[str, object] = {"file": path.name, "outcome": outcome,
                                       "accepted": result.accepted,
                                       "accepted_kop": result.accepted_kop,
                                       "duplicates": result.duplicates,
                                       "rejected": result.rejected}
        except BillingError as err:
            outcome = "refused"
            info = {"file": path.name, "outcome": outcome, "error": str(err)}
        target = ws.inbox / "archive" / datetime.now().strftime("%Y-%m-%d") / outcome
        target.mkdir(parents=True, exist_ok=True)
        os.replace(path, target / path.name)
        outcomes.append(info)
    return outcomes
