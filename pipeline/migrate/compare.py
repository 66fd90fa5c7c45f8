"""The parallel run (``billing migrate compare --period P FILE``): our month against the old system's.

Before a centre switches the old system off it closes a few months in both and compares
them line by line. :func:`compare_lines` is the comparison (pure): per account, service
and supplier, the amount and the volume of our sealed ``charges`` against the old
system's charges of the same month (the columns of ``history_charges``, read through the
workspace's mapping). A line only in one system, or with another amount or volume, is a
difference; :func:`compare_period` explains each (up to ``explain_limit``) with our
``billing explain`` of that account and service and writes
``migration/reports/compare-P.xlsx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from pathlib import Path

import polars as pl

from pipeline.dates import Period
from pipeline.workspace import BillingError, Workspace, atomic_write_bytes

KEY = ["account_id", "service_id", "supplier_id"]

#: What a difference is, in the words of the report.
KINDS = {
    "only_ours": "начислено только у нас",
    "only_theirs": "начислено только в прежней системе",
    "amount": "сумма различается",
    "volume": "объём различается",
}

DIFFERENCE_SCHEMA = pl.Schema({
    "kind": pl.String, "account_id": pl.String, "service_id": pl.String, "supplier_id": pl.String,
    "ours_kop": pl.Int64, "theirs_kop": pl.Int64, "difference_kop": pl.Int64,
    "ours_volume_micro": pl.Int64, "theirs_volume_micro": pl.Int64,
})


def _per_line(frame: pl.DataFrame, side: str) -> pl.DataFrame:
    """One row per account, service and supplier (several pieces of a month add up)."""
    return frame.group_by(KEY).agg(
        pl.col("amount_kop").sum().alias(f"{side}_kop"),
        # A volume is compared only where the side states one.
        pl.when(pl.col("volume_micro").is_not_null().any()).then(pl.col("volume_micro").sum())
        .alias(f"{side}_volume_micro"),
    )


def compare_lines(ours: pl.DataFrame, theirs: pl.DataFrame) -> pl.DataFrame:
    """Differences between two months of charges (account_id, service_id, supplier_id,
    amount_kop, volume_micro each), sorted by account, service and supplier.

    ``amount`` wins over ``volume`` when both differ; a volume is compared only where both
    systems state one.
    """
    both = _per_line(ours, "ours").join(_per_line(theirs, "theirs"), on=KEY, how="full", coalesce=True)
    volume_differs = (pl.col("ours_volume_micro").is_not_null() & pl.col("theirs_volume_micro").is_not_null()
                      & (pl.col("ours_volume_micro") != pl.col("theirs_volume_micro")))
    kind = (pl.when(pl.col("theirs_kop").is_null()).then(pl.lit("only_ours"))
            .when(pl.col("ours_kop").is_null()).then(pl.lit("only_theirs"))
            .when(pl.col("ours_kop") != pl.col("theirs_kop")).then(pl.lit("amount"))
            .when(volume_differs).then(pl.lit("volume")))
    return both.with_columns(kind.alias("kind")).filter(pl.col("kind").is_not_null()).select(
        "kind", *KEY, "ours_kop", "theirs_kop",
        (pl.col("ours_kop").fill_null(0) - pl.col("theirs_kop").fill_null(0)).alias("difference_kop"),
        "ours_volume_micro", "theirs_volume_micro",
    ).cast(DIFFERENCE_SCHEMA).sort(KEY)


@dataclass(frozen=True)
class Comparison:
    """What ``billing migrate compare`` found."""

    period: str
    lines_ours: int
    lines_theirs: int
    differences: pl.DataFrame  # DIFFERENCE_SCHEMA + explanation
    rejects: pl.DataFrame
    report: Path


def compare_period(ws: Workspace, period: str, path: Path, explain_limit: int = 100) -> Comparison:
    """Compare our sealed ``period`` with the old system's charges in ``path``; write the report."""
    from pipeline.explain import explain_account
    from pipeline.migrate.history import read_charges_file
    from pipeline.sealed import has_table, read_internal

    Period.parse(period)
    folder = ws.period_dir(period)
    if not (folder / "manifest.json").is_file() or not has_table(folder, "charges"):
        raise BillingError(f"Период {period} не закрыт: сравнивать можно только закрытый период "
                           f"(billing close --period {period}).")
    if not path.is_file():
        raise BillingError(f"{path}: файл не найден")
    ours = read_internal(folder, "charges", ["account_id", "service_id", "supplier_id", "amount", "volume"])
    theirs, rejects = read_charges_file(ws, path)
    other_months = sorted(set(theirs["period"].drop_nulls().to_list()) - {period})
    if other_months:
        raise BillingError(f"{path.name}: в файле есть начисления за другие месяцы "
                           f"({', '.join(other_months)}); нужны начисления только за {period}.")
    theirs = theirs.filter(pl.col("service_id") != "penalty")
    found = compare_lines(ours, theirs)
    texts: list[str | None] = []
    cache: dict[str, str] = {}
    for i, row in enumerate(found.iter_rows(named=True)):
        if i >= explain_limit or row["kind"] == "only_theirs":
            texts.append(None if i >= explain_limit else "у нас этой строки нет: услуга не начислена "
                         "(проверьте услуги дома, даты лицевого счёта и поставщика)")
            continue
        if row["account_id"] not in cache:
            cache[row["account_id"]] = explain_account(ws, row["account_id"], period)
        texts.append(_service_block(cache[row["account_id"]], row["service_id"], ws))
    found = found.with_columns(pl.Series("explanation", texts, dtype=pl.String))
    report = ws.home / "migration" / "reports" / f"compare-{period}.xlsx"
    _write_report(report, found, period)
    return Comparison(period, ours.height, theirs.height, found, rejects, report)


def _service_block(text: str, service_id: str, ws: Workspace) -> str:
    """The part of an account's explanation about one service (the blocks start with its name)."""
    from rules import read_rule_table

    names = {r["service_id"]: r["name"] for r in read_rule_table(ws.rules, "services").iter_rows(named=True)}
    name = names.get(service_id, service_id)
    blocks = text.split("\n\n")
    mine = [b for b in blocks if b.startswith(f"{name} — ")]
    return "\n\n".join(mine) if mine else text


def _write_report(path: Path, found: pl.DataFrame, period: str) -> None:
    from openpyxl import Workbook

    from pipeline.money import format_rub
    from pipeline.xlsx import workbook_bytes

    book = Workbook()
    sheet = book.active
    sheet.title = "Расхождения"
    sheet.append(["Вид", "Лицевой счёт", "Услуга", "Поставщик", "У нас, ₽", "В прежней системе, ₽",
                  "Разница, ₽", "Объём у нас", "Объём в прежней системе", "Как начислено у нас"])

    def rub(kop: int | None) -> str | None:
        return None if kop is None else format_rub(kop)

    def vol(micro: int | None) -> str | None:
        return None if micro is None else f"{Decimal(micro).scaleb(-6):.6f}".replace(".", ",")

    for r in found.iter_rows(named=True):
        sheet.append([KINDS[r["kind"]], r["account_id"], r["service_id"], r["supplier_id"],
                      rub(r["ours_kop"]), rub(r["theirs_kop"]), rub(r["difference_kop"]),
                      vol(r["ours_volume_micro"]), vol(r["theirs_volume_micro"]), r["explanation"]])
    atomic_write_bytes(path, workbook_bytes(book, datetime.combine(Period.parse(period).last, time())))
