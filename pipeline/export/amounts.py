"""What the receipt of a sealed period asks to pay — «к оплате» per account, payee and line.

The exports (bank and agent registers, the post's register, ГИС ЖКХ payment documents) ask
exactly what the ЕПД asks. With ``[receipts] benefits = "info"`` (the default) that is the
closing balance, 0 for an advance. With ``"discount"`` the welfare body's amounts of the
period's receipts (``billing import welfare``; ``pipeline.ingest.welfare.receipt_welfare``)
come off it as the receipt deducts them (``pipeline.render.build``):

* a service's amount stands on the service's first line in print order (services.csv order,
  then supplier, then the line's first day; a service recalculated without a charge this month
  has a line after the charge lines) and comes off the part of that line's supplier, at most
  what is due to it (:func:`payee_discounts`);
* amounts for all services (and for a service without a line) come off the payees in print
  order (the sealed ``balances`` rows of the account), each at most what is still due to it;
* a payee's «к оплате» is ``max(closing - discount, 0)``; the account's is
  ``max(Σ closing - Σ discount, 0)`` (``Payee.to_pay`` and ``Receipt.to_pay``).

Beyond the receipt, the exports need the deduction per line (a ГИС ЖКХ ``ChargeInfo``, a
bank register limited to some services): a payee's discount is spread over its lines in
print order (:func:`spread_discount`) — first each benefit line up to its own benefit, then
the rest over its lines up to what each line asks, the remainder on its last line. The lines'
parts add up to the payee's discount; a payee with no line this month (only an old debt)
keeps its discount at the payee level only.

An organization payer with charges gets an invoice, not a receipt, and nothing is deducted.
The discount is not a posting: the sealed balances keep the full charge. What the welfare
body transfers comes in later as a payment on the account.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from pipeline.workspace import Workspace

__all__ = ["LINE_SCHEMA", "PAYEE_SCHEMA", "Discounts", "account_to_pay", "benefit_discounts",
           "load_discounts", "payee_discounts", "print_lines", "spread_discount"]

#: Per payee: the part of the welfare amounts deducted from what is due to it.
PAYEE_SCHEMA = {"account_id": pl.String, "supplier_id": pl.String, "discount_kop": pl.Int64}
#: Per line (account, service, supplier): the payee's discount spread over its lines.
LINE_SCHEMA = {"account_id": pl.String, "service_id": pl.String, "supplier_id": pl.String,
               "discount_kop": pl.Int64}


@dataclass(frozen=True)
class Discounts:
    """The welfare amounts a period's receipts deduct (both frames empty in ``info`` mode)."""

    #: account_id, supplier_id, discount_kop — non-zero rows only (``Payee.discount``).
    payees: pl.DataFrame
    #: account_id, service_id, supplier_id, discount_kop — non-zero rows only.
    lines: pl.DataFrame

    @classmethod
    def none(cls) -> Discounts:
        return cls(pl.DataFrame(schema=PAYEE_SCHEMA), pl.DataFrame(schema=LINE_SCHEMA))


def payee_discounts(payees: Sequence[tuple[str, int]], line_benefits: Mapping[str, int],
                    granted: int) -> tuple[int, ...]:
    """The part of the welfare amounts deducted from each payee (``[receipts] benefits = "discount"``).

    ``payees``: (org_id, closing kopecks) in print order; ``line_benefits``: org_id → the
    benefits standing on that supplier's lines; ``granted``: all the account's amounts (lines'
    and for all services). A line's benefit comes off its supplier's part, at most what is due
    to it (a benefit for water never pays the heating); the rest from the payees in print
    order, each at most what is still due to it. What exceeds the debt is not deducted.

    >>> payee_discounts([("VK", 5000), ("UK", 3000)], {"VK": 6000}, 8000)
    (5000, 2000)
    >>> payee_discounts([("VK", -700), ("UK", 3000)], {"VK": 500}, 1500)
    (0, 1000)
    """
    out: list[int] = []
    left = granted - sum(line_benefits.values())
    for org_id, closing in payees:
        due = max(closing, 0)
        own = min(line_benefits.get(org_id, 0), due)
        shared = min(max(left, 0), due - own)
        left -= shared
        out.append(own + shared)
    return tuple(out)


def spread_discount(discount: int, lines: Sequence[tuple[int, int]]) -> list[int]:
    """A payee's ``discount`` over its ``lines`` (benefit, asked kopecks) in print order.

    First each line up to its own benefit, then the rest over the lines up to what each still
    asks, the remainder on the last line. The parts add up to ``discount`` (none without lines).

    >>> spread_discount(900, [(0, 500), (600, 700)])
    [300, 600]
    >>> spread_discount(1000, [(0, 300), (0, 200)])
    [300, 700]
    """
    if not lines:
        return []
    parts = [0] * len(lines)
    left = discount
    for i, (benefit, _) in enumerate(lines):
        take = min(max(benefit, 0), left)
        parts[i] += take
        left -= take
    for i, (_, asked) in enumerate(lines):
        take = min(max(asked - parts[i], 0), left)
        parts[i] += take
        left -= take
    parts[-1] += left
    return parts


def print_lines(charges: pl.DataFrame, recalculations: pl.DataFrame, services: pl.DataFrame
                ) -> pl.DataFrame:
    """The receipt's lines per (account, service, supplier) in print order (``rank`` from 0).

    ``charges``: account_id, service_id, supplier_id, line_from, amount_kop (the sealed
    internal table); ``recalculations``: account_id, service_id, supplier_id, amount_kop;
    ``services``: service_id, order. A charge line's key first appears in the order of the
    receipt (services.csv ``order``, supplier, first day); a key only recalculated (its
    period's sum not zero) follows, by supplier and service. ``asked_kop``: charge and
    recalculation of the key.
    """
    order = dict(zip(services["service_id"].to_list(), services["order"].to_list(), strict=True))
    ch = charges.select("account_id", "service_id", "supplier_id", "line_from", "amount_kop").with_columns(
        pl.col("service_id").replace_strict(order, default=0, return_dtype=pl.Int64).alias("_order"))
    keyed = ch.sort("account_id", "_order", "supplier_id", "line_from").group_by(
        "account_id", "service_id", "supplier_id", maintain_order=True).agg(
        pl.col("amount_kop").sum().alias("charged_kop")).with_columns(pl.lit(0).alias("_tail"))
    rc = recalculations
    if "supplier_id" not in rc.columns:
        rc = rc.with_columns(pl.lit("", pl.String).alias("supplier_id"))
    rc = rc.group_by("account_id", "supplier_id", "service_id").agg(
        pl.col("amount_kop").sum().alias("recalc_kop")).filter(pl.col("recalc_kop") != 0)
    only = rc.join(keyed, on=["account_id", "service_id", "supplier_id"], how="anti").sort(
        "account_id", "supplier_id", "service_id").select(
        "account_id", "service_id", "supplier_id", pl.lit(0, pl.Int64).alias("charged_kop"),
        pl.lit(1).alias("_tail"))
    lines = pl.concat([keyed, only], how="vertical_relaxed").with_row_index("_n").sort(
        "account_id", "_tail", "_n").drop("_n", "_tail")
    return lines.join(rc, on=["account_id", "service_id", "supplier_id"], how="left",
                      maintain_order="left").select(
        "account_id", "service_id", "supplier_id",
        (pl.col("charged_kop") + pl.col("recalc_kop").fill_null(0)).alias("asked_kop"),
        pl.int_range(pl.len()).over("account_id").cast(pl.Int64).alias("rank"))


def benefit_discounts(lines: pl.DataFrame, balances: pl.DataFrame, welfare: pl.DataFrame) -> Discounts:
    """The deductions of ``discount`` mode: per payee (as the receipt) and per line.

    ``lines``: :func:`print_lines`; ``balances``: account_id, supplier_id, closing_kop in the
    sealed table's order (the receipt's payees); ``welfare``: account_id, service_id (null: all
    services), amount_kop (``receipt_welfare``). Only the accounts with welfare amounts are
    walked, one by one, through :func:`payee_discounts` and :func:`spread_discount`.
    """
    if not welfare.height:
        return Discounts.none()
    granted = welfare.group_by("account_id").agg(pl.col("amount_kop").sum().alias("granted_kop"))
    per_service = welfare.filter(pl.col("service_id").is_not_null()).group_by(
        "account_id", "service_id").agg(pl.col("amount_kop").sum().alias("benefit_kop"))
    ids = granted.select("account_id")
    mine = lines.join(ids, on="account_id", how="semi").sort("account_id", "rank")
    # A service's amount stands on its first line in print order.
    first = mine.group_by("account_id", "service_id", maintain_order=True).agg(pl.col("rank").first())
    placed = first.join(per_service, on=["account_id", "service_id"], how="inner").select(
        "account_id", "rank", "benefit_kop")
    mine = mine.join(placed, on=["account_id", "rank"], how="left", maintain_order="left").with_columns(
        pl.col("benefit_kop").fill_null(0), pl.col("supplier_id").fill_null(""))
    by_line = mine.group_by("account_id", maintain_order=True).agg(
        pl.col("service_id").alias("l_service"), pl.col("supplier_id").alias("l_supplier"),
        pl.col("benefit_kop").alias("l_benefit"), pl.col("asked_kop").alias("l_asked"))
    by_payee = balances.join(ids, on="account_id", how="semi", maintain_order="left").group_by(
        "account_id", maintain_order=True).agg(
        pl.col("supplier_id").fill_null("").alias("p_supplier"), pl.col("closing_kop").alias("p_closing"))
    walk = granted.join(by_payee, on="account_id", how="inner").join(by_line, on="account_id", how="left")
    payee_rows: list[tuple[str, str | None, int]] = []
    line_rows: list[tuple[str, str, str | None, int]] = []
    for account_id, total, suppliers, closings, l_service, l_supplier, l_benefit, l_asked in walk.select(
            "account_id", "granted_kop", "p_supplier", "p_closing", "l_service", "l_supplier", "l_benefit",
            "l_asked").iter_rows():
        l_service, l_supplier = l_service or [], l_supplier or []
        l_benefit, l_asked = l_benefit or [], l_asked or []
        benefits: dict[str, int] = {}
        for supplier, benefit in zip(l_supplier, l_benefit, strict=True):
            benefits[supplier] = benefits.get(supplier, 0) + benefit
        discounts = payee_discounts(list(zip(suppliers, closings, strict=True)), benefits, total)
        for org_id, discount in zip(suppliers, discounts, strict=True):
            if not discount:
                continue
            payee_rows.append((account_id, org_id or None, discount))
            own = [i for i, supplier in enumerate(l_supplier) if supplier == org_id]
            parts = spread_discount(discount, [(l_benefit[i], l_asked[i]) for i in own])
            line_rows.extend((account_id, l_service[i], org_id or None, part)
                             for i, part in zip(own, parts, strict=True) if part)
    return Discounts(pl.DataFrame(payee_rows, schema=PAYEE_SCHEMA, orient="row").sort(
                         "account_id", maintain_order=True),
                     pl.DataFrame(line_rows, schema=LINE_SCHEMA, orient="row").sort(
                         "account_id", maintain_order=True))


def account_to_pay(balances: pl.DataFrame, discounts: pl.DataFrame | None = None) -> pl.DataFrame:
    """account_id, closing_kop, discount_kop, to_pay_kop: the receipt's «Итого к оплате».

    ``balances``: account_id, closing_kop (rows per supplier or service); ``discounts``:
    account_id, discount_kop (:attr:`Discounts.payees` or a part of :attr:`Discounts.lines`).
    ``to_pay_kop = max(closing - discount, 0)``.
    """
    due = balances.group_by("account_id").agg(pl.col("closing_kop").sum())
    off = (discounts if discounts is not None else pl.DataFrame(schema=PAYEE_SCHEMA)).group_by(
        "account_id").agg(pl.col("discount_kop").sum())
    return due.join(off, on="account_id", how="left").with_columns(
        pl.col("discount_kop").fill_null(0)).with_columns(
        pl.max_horizontal(pl.col("closing_kop") - pl.col("discount_kop"), pl.lit(0)).alias("to_pay_kop"))


def load_discounts(ws: Workspace, period: str) -> Discounts:
    """The deductions of the sealed ``period``'s receipts (empty unless ``[receipts] benefits =
    "discount"`` and the period's receipts carry welfare amounts).

    Read as ``billing receipts print`` rebuilds a receipt: today's ``[receipts] benefits``, the
    welfare amounts stored for the period's receipts, the sealed tables.
    """
    from pipeline.ingest.registers import load_store
    from pipeline.ingest.welfare import receipt_welfare
    from pipeline.sealed import read_internal
    from pipeline.settings import Receipts, load_section
    from rules import read_rule_table

    if load_section(ws.settings_path, Receipts).benefits != "discount":
        return Discounts.none()
    welfare = receipt_welfare(ws, period)
    if not welfare.height:
        return Discounts.none()
    folder = ws.period_dir(period)
    charges = read_internal(folder, "charges",
                            ["account_id", "service_id", "supplier_id", "line_from", "amount"])
    # An organization payer with charges gets an invoice, not a receipt: nothing is deducted.
    # (The caller checked the sealed period: its manifest names the registers snapshot.)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    accounts = load_store(ws, manifest["store_version"], names=("accounts",))["accounts"]
    if "payer_kind" in accounts.columns:
        invoiced = accounts.filter(pl.col("payer_kind") == "organization").select("account_id").join(
            charges.select("account_id").unique(), on="account_id", how="semi")
        welfare = welfare.join(invoiced, on="account_id", how="anti")
    recalculations = read_internal(folder, "recalculations",
                                   ["account_id", "service_id", "supplier_id", "amount"])
    lines = print_lines(
        charges, recalculations, read_rule_table(ws.rules, "services").select("service_id", "order"))
    balances = read_internal(folder, "balances", ["account_id", "supplier_id", "closing"])
    return benefit_discounts(lines, balances, welfare.select("account_id", "service_id", "amount_kop"))
