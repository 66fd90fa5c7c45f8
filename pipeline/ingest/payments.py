"""``billing payments import`` / ``match``: agents' payment files into the store, exactly once.

Formats: the Sberbank and VTB nightly registers (:mod:`pipeline.ingest.bank_formats`,
footer checked against the body, or the whole file is refused) and a plain CSV
for other agents (payment_id, paid_on, account_id, amount, period, agent and an
optional refund_of). The format is detected or named with ``--format``.

Exactly once:

* a file already imported (same SHA-256) is skipped whole;
* a payment already known (same agent and payment id) is skipped and counted;
* payments to an unknown or closed account go to the suspense list
  (невыясненные платежи, ``store/suspense.parquet``) and are applied by
  ``billing payments match`` once the account is known;
* a refund or cancellation is a negative payment whose ``refund_of`` names the
  original (same agent); it may not exceed what is left of the original.

Meter readings inside a bank register go to ``store/bank_readings.parquet``;
the close reads them together with the readings register. Bad rows go to the
reject report; nothing is silently dropped. Writes are ordered so that a kill
at any point is repaired by importing the same file again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.ingest.parse import empty_rejects, missing_columns, parse_table
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


def _load(path: Path, schema: pl.Schema) -> pl.DataFrame:
    if not path.is_file():
        return pl.DataFrame(schema=schema)
    frame = pl.read_parquet(path)
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


def read_payment_file(path: Path, fmt: str | None = None
                      ) -> tuple[str, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Parse a payment file: (format, incoming payments, meter readings, rejects)."""
    from pipeline.ingest import bank_formats

    data = path.read_bytes()
    fmt = fmt or bank_formats.detect_format(path.name, data)
    if fmt not in bank_formats.FORMATS:
        raise BillingError(f"Неизвестный формат «{fmt}»: допустимы {', '.join(bank_formats.FORMATS)}")
    if fmt != "csv":
        reg = bank_formats.parse_bank_register(path.name, data, fmt)
        incoming = reg.payments.with_columns(
            pl.col("payment_id").cast(pl.String), pl.lit(None, pl.String).alias("refund_of"),
        ).select(list(INCOMING_SCHEMA)).cast(INCOMING_SCHEMA)
        return fmt, incoming, reg.readings, reg.rejects

    raw = read_table(path)
    missing = missing_columns(raw, PAYMENTS)
    if missing:
        raise BillingError(f"{path.name}: нет обязательных столбцов: {', '.join(missing)}")
    good, rejects = parse_table(raw, PAYMENTS, path.name)
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
    return fmt, incoming, pl.DataFrame(schema=READINGS_SCHEMA), rejects


def classify(
    incoming: pl.DataFrame, accounts: pl.DataFrame, stored: pl.DataFrame, file: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Split incoming payments into (accepted, suspense, duplicates, rejects). Pure.

    ``accounts``: account_id, closed_on. ``stored``: payments already in the store.
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

    acc = accounts.select("account_id", "closed_on")
    with_acc = fresh.join(acc, on="account_id", how="left")
    unknown = with_acc.filter(pl.col("account_id").is_null() | ~pl.col("account_id").is_in(
        acc["account_id"].implode()))
    closed = with_acc.filter(pl.col("closed_on").is_not_null() & (pl.col("closed_on") < pl.col("paid_on")))
    suspense = pl.concat([
        unlinked.with_columns(pl.lit(None, pl.Date).alias("closed_on"),
                              pl.lit("возврат без ссылки на исходный платёж").alias("reason")),
        unknown.with_columns(pl.lit("неизвестный лицевой счёт").alias("reason")),
        closed.with_columns(
            (pl.lit("лицевой счёт закрыт ") + pl.col("closed_on").dt.strftime("%d.%m.%Y")).alias("reason")),
    ]).drop("closed_on")
    accepted = fresh.join(suspense.select(ROW), on=ROW, how="anti")
    # A refund of a payment that waits in suspense waits there too.
    return accepted, suspense, duplicates, pl.concat(rejects) if rejects else empty_rejects()


def _to_store(frame: pl.DataFrame, file: str, digest: str, now: datetime) -> pl.DataFrame:
    return frame.select(
        "payment_id", "paid_on", "account_id",
        (pl.col("amount_kop").cast(pl.Decimal(18, 2)) / 100).cast(pl.Decimal(18, 2)).alias("amount"),
        "period", "agent", "refund_of", pl.lit(file).alias("source_file"),
        pl.col(ROW).alias("source_row"), pl.lit(digest).alias("file_sha256"),
        pl.lit(now).cast(pl.Datetime("us")).alias("imported_at"),
        *([pl.col("reason")] if "reason" in frame.columns else []),
    )


def import_payment_file(ws: Workspace, path: Path, fmt: str | None = None) -> PaymentImport:
    """Import one agent file; see the module docstring for the exactly-once rules."""
    if not path.is_file():
        raise BillingError(f"Файл платежей не найден: {path}")
    digest = sha256_file(path)
    files = load_imported_files(ws)
    if files.filter(pl.col("sha256") == digest).height:
        return PaymentImport(path.name, digest, fmt or "", True, 0, 0, 0, 0, 0, 0, None)

    fmt, incoming, readings, rejects = read_payment_file(path, fmt)
    stored = load_payments(ws)
    suspended = load_suspense(ws)
    accounts = load_store(ws)["accounts"]
    accepted, suspense, duplicates, more_rejects = classify(
        incoming, accounts, pl.concat([stored.select(suspended.columns[:len(STORE_SCHEMA)]),
                                       suspended.drop("reason")]) if suspended.height else stored,
        path.name,
    )
    rejects = pl.concat([rejects, more_rejects]).sort("row")
    now = datetime.now()
    rejects_path = None
    if rejects.height:
        rejects_path = ws.rejects / f"payments-{now:%Y%m%dT%H%M%S%f}.csv"
        write_rejects(rejects, rejects_path)
    accepted_kop = int(accepted["amount_kop"].sum())
    result = PaymentImport(path.name, digest, fmt, False, accepted.height, accepted_kop,
                           suspense.height, duplicates.height, int(rejects["row"].n_unique()),
                           readings.height, rejects_path)
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
    record = pl.DataFrame([{
        "sha256": digest, "file": path.name, "format": fmt, "imported_at": now,
        "accepted": result.accepted, "accepted_kop": accepted_kop, "suspense": result.suspense,
        "duplicates": result.duplicates, "rejected": result.rejected,
    }]).cast(FILES_SCHEMA)
    write_parquet_atomic(pl.concat([files, record]), ws.store / "imported_files.parquet")
    return result


def match_payment(ws: Workspace, payment_id: str, account_id: str, agent: str | None = None
                  ) -> pl.DataFrame:
    """Apply a payment from the suspense list to ``account_id`` (``billing payments match``)."""
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
    stored = load_payments(ws)
    key = hit.select("agent", "payment_id")
    if not stored.join(key, on=["agent", "payment_id"], how="semi").height:
        moved = hit.drop("reason").with_columns(pl.lit(account_id).alias("account_id"))
        write_parquet_atomic(pl.concat([stored, moved.cast(STORE_SCHEMA)]), payments_path(ws))
    write_parquet_atomic(suspense.join(key, on=["agent", "payment_id"], how="anti"),
                         ws.store / "suspense.parquet")
    return hit


def _reject(rows: pl.DataFrame, file: str, column: str, reason: str) -> pl.DataFrame:
    if column in rows.columns:
        value = pl.col(column).cast(pl.String)
    else:  # the amount travels as kopecks after parsing
        value = (pl.col(f"{column}_kop").cast(pl.Decimal(18, 2)) / 100).cast(pl.String)
    return rows.select(
        pl.lit(file).alias("file"), pl.col(ROW).alias("row"), pl.lit(column).alias("column"),
        value.alias("value"), pl.lit(reason).alias("reason"),
    )


def import_inbox(ws: Workspace) -> list[dict[str, object]]:
    """Import every file waiting in ``inbox/`` and move it to ``inbox/archive/<date>/<outcome>/``."""
    outcomes: list[dict[str, object]] = []
    for path in sorted(p for p in ws.inbox.iterdir() if p.is_file() and not p.name.startswith(".")):
        info: dict[str, object]
        try:
            result = import_payment_file(ws, path)
            outcome = "duplicate" if result.already_imported else "imported"
            info = {"file": path.name, "outcome": outcome, "format": result.format,
                    "accepted": result.accepted, "accepted_kop": result.accepted_kop,
                    "suspense": result.suspense, "duplicates": result.duplicates,
                    "rejected": result.rejected}
        except BillingError as err:
            outcome = "refused"
            info = {"file": path.name, "outcome": outcome, "error": str(err)}
        target = ws.inbox / "archive" / datetime.now().strftime("%Y-%m-%d") / outcome
        target.mkdir(parents=True, exist_ok=True)
        name = path.name
        while (target / name).exists():
            name = f"{datetime.now():%H%M%S%f}-{path.name}"
        os.replace(path, target / name)
        outcomes.append(info)
    return outcomes
