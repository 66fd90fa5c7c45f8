"""Period reports for suppliers and managers, written at the close into ``reports/``.

* ``turnover.csv`` / ``turnover.xlsx`` — оборотно-сальдовая ведомость by supplier
  and building: opening, charged, recalculated, penalty, paid, closing, accounts.
* ``split/<supplier>.csv`` / ``.xlsx`` — the daily split register (реестр
  расщепления): for each day and agent, how much of the collected money is the
  supplier's; ``split/<supplier>-payments.csv`` has every payment's share (CSV only:
  openpyxl wrote 900 000 detail rows of a 100 000-account town in ≈ 40 s).

Pure functions build the frames; :func:`write_reports` writes them. Money is
kopecks inside and rubles with two decimals in the files.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.allocate.ledger import PAID_KINDS
from pipeline.money import kopecks_to_decimal_expr
from pipeline.workspace import atomic_write_bytes
from pipeline.xlsx import workbook_bytes

MONEY = ["opening", "charged", "recalculated", "penalty", "paid", "closing"]

TURNOVER_TITLES = {
    "supplier_id": "Поставщик (код)", "supplier_name": "Поставщик", "building_id": "Дом (код)",
    "address": "Адрес дома", "accounts": "Лицевых счетов", "opening": "Сальдо на начало",
    "charged": "Начислено", "recalculated": "Перерасчёт", "penalty": "Пени", "paid": "Оплачено",
    "closing": "Сальдо на конец",
}
SPLIT_TITLES = {"paid_on": "Дата платежа", "agent": "Агент", "payments": "Платежей",
                "amount": "Сумма поставщику, ₽"}


def turnover(balances: pl.DataFrame, regs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Оборотно-сальдовая ведомость by supplier and building (kopeck columns ``*_kop``)."""
    where = regs["accounts"].select("account_id", "premise_id").join(
        regs["premises"].select("premise_id", "building_id"), on="premise_id").join(
        regs["buildings"].select("building_id", "address"), on="building_id")
    names = regs["organizations"].select(pl.col("org_id").alias("supplier_id"),
                                         pl.col("name").alias("supplier_name"))
    out = balances.lazy().join(where.lazy().drop("premise_id"), on="account_id", how="left").group_by(
        "supplier_id", "building_id", "address").agg(
        pl.col("account_id").n_unique().alias("accounts"),
        *[pl.col(f"{m}_kop").sum() for m in MONEY],
    ).join(names.lazy(), on="supplier_id", how="left")
    return out.select("supplier_id", "supplier_name", "building_id", "address", "accounts",
                      *[f"{m}_kop" for m in MONEY]).sort("supplier_id", "building_id", nulls_last=True
                                                         ).collect()


def daily_split(allocations: pl.DataFrame) -> pl.DataFrame:
    """Collected money per supplier, day and agent (kopecks)."""
    paid = allocations.filter(pl.col("kind").is_in(PAID_KINDS) & (pl.col("kind") != "advance_transfer"))
    return paid.lazy().group_by("supplier_id", "paid_on", "agent").agg(
        pl.col("payment_id").n_unique().alias("payments"), pl.col("amount_kop").sum(),
    ).sort("supplier_id", "paid_on", "agent", nulls_last=True).collect()


def _rubles(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    return frame.with_columns(kopecks_to_decimal_expr(f"{c}_kop").alias(c) for c in columns).drop(
        [f"{c}_kop" for c in columns])


def _xlsx(path: Path, sheets: dict[str, pl.DataFrame], titles: dict[str, str], created: datetime) -> None:
    """The workbook twin of a CSV report (openpyxl, streamed: write-only mode)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for name, frame in sheets.items():
        sheet = book.create_sheet(name)
        sheet.append([titles.get(c, c) for c in frame.columns])
        for row in frame.iter_rows():
            sheet.append(list(row))
    atomic_write_bytes(path, workbook_bytes(book, created))


def _csv(path: Path, frame: pl.DataFrame, titles: dict[str, str]) -> None:
    renamed = frame.rename({c: titles.get(c, c) for c in frame.columns})
    atomic_write_bytes(path, b"\xef\xbb\xbf" + renamed.write_csv(separator=";").encode())


def write_reports(out_dir: Path, balances: pl.DataFrame, allocations: pl.DataFrame,
                  regs: dict[str, pl.DataFrame], created: datetime) -> dict[str, int]:
    """Write the turnover sheet and one split register per supplier; returns row counts.

    ``created`` stamps the workbooks (the period's last day), so the same close gives
    the same bytes.
    """
    sheet = _rubles(turnover(balances, regs), MONEY)
    _csv(out_dir / "turnover.csv", sheet, TURNOVER_TITLES)
    _xlsx(out_dir / "turnover.xlsx", {"ОСВ": sheet}, TURNOVER_TITLES, created)
    split = _rubles(daily_split(allocations), ["amount"])
    detail = _rubles(allocations.lazy().filter(pl.col("kind").is_in(["payment", "advance", "refund"]))
                     .group_by("supplier_id", "paid_on", "agent", "payment_id", "account_id")
                     .agg(pl.col("amount_kop").sum()).collect(), ["amount"]
                     ).lazy().sort("paid_on", "agent", "payment_id").collect()
    suppliers = [s for s in split["supplier_id"].unique().sort().to_list() if s is not None]
    for supplier in suppliers:
        days = split.filter(pl.col("supplier_id") == supplier).drop("supplier_id")
        _csv(out_dir / "split" / f"{supplier}.csv", days, SPLIT_TITLES)
        payments = detail.filter(pl.col("supplier_id") == supplier).drop("supplier_id")
        _xlsx(out_dir / "split" / f"{supplier}.xlsx", {"По дням": days}, SPLIT_TITLES, created)
        _csv(out_dir / "split" / f"{supplier}-payments.csv", payments,
             {**SPLIT_TITLES, "payment_id": "Платёж", "account_id": "Лицевой счёт"})
    return {"turnover_rows": sheet.height, "split_suppliers": len(suppliers)}
