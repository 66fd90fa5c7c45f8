"""The post's register: the receipts of a sealed period to deliver on paper (``billing export post``).

One row per receipt that goes on paper — an account whose receipt the close built (it has
charges or a balance; an organization payer with charges gets an invoice instead, not in
this register) and whose ``accounts.delivery`` is not ``email_only`` — sorted as a post
office sorts its mail: by post index, then address, then entrance, floor and flat (numbers
as numbers) as the print batches run. Each row names the print batch of its building
(its building: ``receipts/batches/<building_id>.pdf``, or its parts ``-1``, ``-2``… when the
batch is over 200 pages) and its place in it among the building's paper receipts. Pages —
and so which part of a long batch — are not known without the laid-out PDFs and are not given.

Post index: ``buildings.post_index`` (six digits) when filled, else six digits that open the
building's address (``"123456, г. Энск, …"``); else empty, sorted last.

Two files, the same rows and a footer row ``ИТОГО`` (the count of receipts in ``№`` and the
sum to pay): ``post/pochta_<period>.csv`` (UTF-8 with BOM, ``;``, decimal comma — what
Russian Excel opens; UTF-8 keeps every letter of a payer's name, which cp1251 may not) and
``post/pochta_<period>.xlsx`` (numbers stay numbers). The amount to pay is the receipt's:
the account's closing balance over all its suppliers, 0 for an advance, less the welfare amounts
the receipt deducts where benefits are a discount (``[receipts] benefits = "discount"``,
:mod:`pipeline.export.amounts`).

The post's payment file comes back through ``billing payments import`` as a plain agent
CSV (``payment_id;paid_on;account_id;amount;period;agent``, agent = the post's code).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from pipeline.dates import Period
from pipeline.export import SAME_ROWS_AS, ExportFile, sealed_manifest
from pipeline.export.amounts import account_to_pay, load_discounts
from pipeline.ingest.registers import load_store
from pipeline.money import kopecks_to_decimal_expr
from pipeline.sealed import read_internal
from pipeline.sheet import frame_xlsx_bytes
from pipeline.tables import excel_csv_bytes
from pipeline.workspace import Workspace

__all__ = ["RECIPIENT", "TITLES", "build_files", "post_csv", "post_index_expr", "post_rows", "post_xlsx"]

RECIPIENT = "Почта России"

#: Column titles of both files, in order.
TITLES = {
    "n": "№",
    "post_index": "Индекс",
    "address": "Адрес",
    "flat": "Кв./пом.",
    "account_id": "Лицевой счёт",
    "payer_name": "Плательщик",
    "to_pay": "К оплате, руб.",
    "batch": "Пачка",
    "batch_order": "№ в пачке",
}
FOOTER = "ИТОГО"


def post_index_expr(index: pl.Expr, address: pl.Expr) -> pl.Expr:
    """The six-digit post index: ``index`` when it is six digits, else six digits opening ``address``."""
    own = index.str.strip_chars().str.extract(r"^(\d{6})$")
    return pl.coalesce(own, address.str.extract(r"^\s*(\d{6})(?:\D|$)"))


def post_rows(accounts: pl.DataFrame, premises: pl.DataFrame, buildings: pl.DataFrame,
              charges: pl.DataFrame, balances: pl.DataFrame, discounts: pl.DataFrame | None = None
              ) -> pl.DataFrame:
    """The register's rows (no footer): frames as the registers snapshot and the sealed
    internal tables hold them (``charges``: account_id; ``balances``: account_id,
    closing_kop; ``discounts``: account_id, discount_kop — the payees' deducted benefits,
    :attr:`pipeline.export.amounts.Discounts.payees`). Columns of :data:`TITLES` plus ``to_pay_kop``."""
    charged = charges.select("account_id").unique()
    wanted = pl.concat([charged, balances.select("account_id").unique()]).unique()
    acc = accounts.select(
        "account_id", "premise_id", "payer_name",
        (pl.col("payer_kind") if "payer_kind" in accounts.columns else pl.lit("person")).alias("payer_kind"),
        (pl.col("delivery") if "delivery" in accounts.columns else pl.lit("paper")).alias("delivery"))
    # Organization payers with charges get an invoice (pipeline.render.invoice), not a receipt.
    invoiced = acc.filter(pl.col("payer_kind") == "organization").join(charged, on="account_id")
    due = account_to_pay(balances, discounts).select("account_id", "to_pay_kop")
    prem = premises.select(
        "premise_id", "building_id", "number", "kind",
        *[(pl.col(c) if c in premises.columns else pl.lit(None, pl.Int64)).cast(pl.Int64).alias(c)
          for c in ("entrance", "floor")])
    bld = buildings.select(
        "building_id", "address",
        post_index_expr(pl.col("post_index") if "post_index" in buildings.columns
                        else pl.lit(None, pl.String), pl.col("address")).alias("post_index"))
    rows = (acc.join(wanted, on="account_id", how="semi")
            .join(invoiced, on="account_id", how="anti")
            .join(prem, on="premise_id").join(bld, on="building_id")
            .join(due, on="account_id", how="left")
            .with_columns(pl.col("number").str.extract(r"^(\d+)").cast(pl.Int64).alias("_flat")))
    # The print batches (pipeline.render.receipts): a building's paper receipts in delivery
    # order, its batch files named by the building.
    paper = rows.filter(pl.col("delivery") != "email_only").sort(
        "building_id", "entrance", "floor", "_flat", "number", "account_id", nulls_last=True)
    out = paper.with_columns(
        (pl.int_range(pl.len()).over("building_id") + 1).cast(pl.Int64).alias("batch_order"),
        pl.col("building_id").alias("batch"),
        pl.when(pl.col("kind") == "residential").then(pl.lit("кв. ")).otherwise(pl.lit("пом. "))
        .add(pl.col("number")).alias("flat"),
        pl.col("to_pay_kop").fill_null(0),
    ).sort("post_index", "address", "building_id", "entrance", "floor", "_flat", "number", "account_id",
           nulls_last=True)
    return out.with_row_index("n", offset=1).select(
        pl.col("n").cast(pl.Int64), "post_index", "address", "flat", "account_id", "payer_name",
        kopecks_to_decimal_expr("to_pay_kop").alias("to_pay"), "batch", "batch_order", "to_pay_kop")


def _with_footer(rows: pl.DataFrame) -> pl.DataFrame:
    body = rows.drop("to_pay_kop")
    footer = pl.DataFrame({"n": [rows.height], "post_index": [FOOTER],
                           "to_pay_kop": [int(rows["to_pay_kop"].sum() or 0)]},
                          schema={"n": pl.Int64, "post_index": pl.String, "to_pay_kop": pl.Int64})
    footer = footer.with_columns(kopecks_to_decimal_expr("to_pay_kop").alias("to_pay")).drop("to_pay_kop")
    return pl.concat([body, footer], how="diagonal_relaxed").select(body.columns)


def post_csv(rows: pl.DataFrame) -> bytes:
    """The CSV: UTF-8 with BOM, ``;``, decimal comma, Russian header, footer ``ИТОГО``."""
    return excel_csv_bytes(_with_footer(rows), TITLES)


def post_xlsx(rows: pl.DataFrame, created: datetime) -> bytes:
    """The same rows as a workbook stamped ``created`` (the builders are deterministic)."""
    return frame_xlsx_bytes(_with_footer(rows), created, sheet="Реестр", titles=TITLES)


def build_files(ws: Workspace, period: str) -> list[ExportFile]:
    """The post's register of the sealed ``period``: its CSV and XLSX."""
    folder = ws.period_dir(period)
    manifest = sealed_manifest(ws, period)
    regs = load_store(ws, manifest["store_version"], names=("accounts", "premises", "buildings"))
    rows = post_rows(regs["accounts"], regs["premises"], regs["buildings"],
                     read_internal(folder, "charges"), read_internal(folder, "balances"),
                     load_discounts(ws, period).payees)
    last = Period.parse(period).last
    created = datetime(last.year, last.month, last.day)
    total = int(rows["to_pay_kop"].sum() or 0)
    stem = f"pochta_{period.replace('-', '')}"
    extra = {"format": "post"}
    return [ExportFile(f"{stem}.csv", post_csv(rows), rows=rows.height, total_kop=total,
                       recipient=RECIPIENT, extra=extra),
            ExportFile(f"{stem}.xlsx", post_xlsx(rows, created), rows=rows.height, total_kop=total,
                       recipient=RECIPIENT, extra={**extra, SAME_ROWS_AS: f"{stem}.csv"})]
