"""``billing statement``: the court statement (расчёт задолженности и пени) of one account to one claimant.

A court statement is one claimant's: a management company cannot claim the
capital-repair fund's money, nor a water company the heat supplier's. So every
statement is of one supplier (``supplier_id``); an account owing several gets one
statement each (:func:`account_statements`).

From the sealed periods it gathers the supplier's monthly debts — the charges of a
period plus the sealed recalculations that came back to it, by the same rule the
close's ledger and penalty accrual use (:func:`pipeline.calc.recalc.ledger_period`:
the origin period, except an increase by the yearly heating correction, which falls
due with the bill that first asked for it) — and the payments allocated to them, and
hands them to :mod:`pipeline.penalties.statement` with the claimant's and the
debtor's details (:mod:`pipeline.penalties.parties`, from the registers snapshot of
the last sealed period). For court the rate basis is the calculation (decision) day
(Обзор ВС РФ № 3 (2016), вопрос 3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from pipeline.penalties import load_policy
from pipeline.penalties.monthly import PAYING_KINDS, bucket_schemes
from pipeline.penalties.parties import creditor, debtor
from pipeline.penalties.statement import Heading, statement_result, write_statement
from pipeline.sealed import scan_internal
from pipeline.workspace import BillingError, Workspace


@dataclass(frozen=True)
class CourtStatement:
    """The court statement of one account's debt to one supplier.

    Attributes:
        account_id, supplier_id: the debtor's account and the claimant.
        until: the last day counted (the decision day for a court), inclusive.
        debt_kop, penalty_kop: the claim — principal and penalty within the limitation
            (ГК РФ ст.196, 200, 207).
        debt_total_kop, penalty_total_kop: the same without the limitation cut.
        html: the whole statement (parties, debt and penalty tables, totals), for WeasyPrint.
        periods: the charge periods with debt left, oldest first.
    """

    account_id: str
    supplier_id: str
    until: date
    debt_kop: int
    penalty_kop: int
    debt_total_kop: int
    penalty_total_kop: int
    html: str
    periods: tuple[str, ...]


@dataclass(frozen=True)
class StatementFiles:
    """The files of one supplier's statement (:func:`account_statements`)."""

    supplier_id: str
    pdf: Path
    xlsx: Path


def _sealed(ws: Workspace) -> list[str]:
    sealed = ws.sealed_periods()
    if not sealed:
        raise BillingError("Нет закрытых периодов: расчёт пени строится по закрытым периодам.")
    from pipeline.verify import check_sealed

    check_sealed(ws, sealed)
    return sealed


def sealed_registers(ws: Workspace, period: str | None = None) -> dict[str, pl.DataFrame]:
    """The registers snapshot a sealed period was closed with (default: the last sealed one)."""
    from pipeline.ingest.registers import load_store

    period = period or _sealed(ws)[-1]
    manifest = json.loads((ws.period_dir(period) / "manifest.json").read_text(encoding="utf-8"))
    version = manifest.get("store_version")
    if version is None:
        return load_store(ws)
    # A snapshot never changes once written: statements of many accounts (collection cases)
    # read it once.
    key = (str(ws.home.resolve()), str(version))
    if key not in _SNAPSHOTS:
        _SNAPSHOTS.clear()
        _SNAPSHOTS[key] = load_store(ws, version)
    return dict(_SNAPSHOTS[key])


_SNAPSHOTS: dict[tuple[str, str], dict[str, pl.DataFrame]] = {}


def _movements(ws: Workspace, account_id: str, sealed: list[str]) -> pl.DataFrame:
    """The account's charges and recalculations: supplier_id, service_id, charge_period,
    charged_kop, recalculated_kop (one row per sealed line)."""
    from pipeline.calc.recalc import ledger_period

    mine = pl.col("account_id") == account_id
    charges = pl.concat([
        scan_internal(ws.period_dir(p), "charges", ["period", "account_id", "service_id", "supplier_id",
                                                   "amount"]).filter(mine).collect()
        for p in sealed])
    recalcs = pl.concat([scan_internal(ws.period_dir(p), "recalculations").filter(mine).collect()
                         for p in sealed], how="diagonal_relaxed")
    zero = pl.lit(0, pl.Int64)
    return pl.concat([
        charges.select("supplier_id", "service_id", pl.col("period").alias("charge_period"),
                       pl.col("amount_kop").alias("charged_kop"), zero.alias("recalculated_kop")),
        recalcs.select("supplier_id", "service_id", ledger_period(pl.col("period")).alias("charge_period"),
                       zero.alias("charged_kop"), pl.col("amount_kop").alias("recalculated_kop")),
    ])


def _buckets(ws: Workspace, movements: pl.DataFrame) -> pl.DataFrame:
    """supplier_id, charge_period, amount_kop, charged_kop, recalculated_kop, scheme, services."""
    from rules import read_rule_table

    schemes = bucket_schemes(read_rule_table(ws.rules, "services"))
    return movements.join(schemes, on="service_id", how="left").group_by(
        "supplier_id", "charge_period").agg(
        (pl.col("charged_kop") + pl.col("recalculated_kop")).sum().alias("amount_kop"),
        pl.col("charged_kop").sum(), pl.col("recalculated_kop").sum(),
        # A supplier's bucket follows ч.14.1 only when all its services are capital repair (as the close).
        pl.when((pl.col("scheme") == "capital_repair").all()).then(pl.lit("capital_repair"))
        .otherwise(pl.lit("standard")).alias("scheme"),
        pl.col("service_id").unique().sort().alias("services"),
    ).filter(pl.col("amount_kop") > 0).sort("charge_period", "supplier_id")


def _payments(ws: Workspace, account_id: str, sealed: list[str]) -> pl.DataFrame:
    mine = pl.col("account_id") == account_id
    allocations = pl.concat([scan_internal(ws.period_dir(p), "allocations").filter(mine).collect()
                             for p in sealed], how="diagonal_relaxed")
    return allocations.filter(
        pl.col("kind").is_in(PAYING_KINDS) & pl.col("charge_period").is_not_null()
        & (pl.col("amount_kop") > 0)
    ).group_by("supplier_id", "charge_period", "paid_on").agg(pl.col("amount_kop").sum()).sort(
        "paid_on", "supplier_id", "charge_period")


def _ledger(ws: Workspace, account_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    sealed = _sealed(ws)
    movements = _movements(ws, account_id, sealed)
    if not movements.height:
        raise BillingError(f"У лицевого счёта {account_id} нет начислений в закрытых периодах.")
    return _buckets(ws, movements), _payments(ws, account_id, sealed)


def account_suppliers(ws: Workspace, account_id: str) -> list[str]:
    """The suppliers the account owes principal to on the sealed periods (charges and
    recalculations less the payments allocated to them), sorted."""
    buckets, payments = _ledger(ws, account_id)
    paid = payments.group_by("supplier_id", "charge_period").agg(pl.col("amount_kop").sum().alias("_paid"))
    left = buckets.join(paid, on=["supplier_id", "charge_period"], how="left").filter(
        pl.col("amount_kop") - pl.col("_paid").fill_null(0) > 0)
    return sorted(left["supplier_id"].unique().to_list())


def _heading(ws: Workspace, account_id: str, supplier_id: str) -> Heading:
    from rules import read_rule_table

    regs = sealed_registers(ws)
    services = read_rule_table(ws.rules, "services")
    orgs = regs["organizations"]
    return Heading(
        creditor=creditor(regs, supplier_id), debtor=debtor(regs, account_id),
        supplier_names=dict(zip(orgs["org_id"].to_list(), orgs["name"].to_list(), strict=True)),
        service_names=dict(zip(services["service_id"].to_list(), services["name"].to_list(), strict=True)),
    )


def _one_supplier(ws: Workspace, account_id: str, supplier_id: str
                  ) -> tuple[pl.DataFrame, pl.DataFrame]:
    buckets, payments = _ledger(ws, account_id)
    mine = pl.col("supplier_id") == supplier_id
    buckets, payments = buckets.filter(mine), payments.filter(mine)
    if not buckets.height:
        owed = ", ".join(sorted(set(_ledger(ws, account_id)[0]["supplier_id"].to_list()))) or "нет"
        raise BillingError(f"У лицевого счёта {account_id} нет начислений поставщика {supplier_id} "
                           f"в закрытых периодах (поставщики счёта: {owed}).")
    return buckets.with_columns(pl.lit(None, pl.Date).alias("due_date")), payments


def court_statement(ws: Workspace, account_id: str, until: date, supplier_id: str,
                    rate_basis: str = "calc_date") -> CourtStatement:
    """The statement of ``account_id``'s debt to ``supplier_id`` and its penalty through ``until``."""
    buckets, payments = _one_supplier(ws, account_id, supplier_id)
    policy = load_policy(ws.rules, rate_basis=rate_basis)
    heading = _heading(ws, account_id, supplier_id)
    result = statement_result(account_id, buckets, payments, policy, until, heading)
    return CourtStatement(
        account_id=account_id, supplier_id=supplier_id, until=until, debt_kop=result.debt_in_kop,
        penalty_kop=result.penalty_in_kop, debt_total_kop=result.debt_kop,
        penalty_total_kop=result.penalty_kop, html=result.html, periods=result.periods)


def account_statement(ws: Workspace, account_id: str, until: date, out_dir: Path | None = None,
                      rate_basis: str = "calc_date", supplier_id: str | None = None) -> tuple[Path, Path]:
    """Write the PDF and XLSX statement of ``account_id``'s debt to ``supplier_id``; return both paths.

    ``supplier_id`` may be left out when the account has charges of one supplier only.
    Files: ``<account>-<supplier>-penalty-<until>.pdf`` / ``.xlsx`` in ``out_dir``
    (default ``HOME/statements``).
    """
    if supplier_id is None:
        suppliers = sorted(set(_ledger(ws, account_id)[0]["supplier_id"].to_list()))
        if len(suppliers) != 1:
            raise BillingError(
                f"У лицевого счёта {account_id} долги нескольким поставщикам ({', '.join(suppliers)}): "
                "расчёт для суда составляется на одного взыскателя — укажите --supplier.")
        supplier_id = suppliers[0]
    buckets, payments = _one_supplier(ws, account_id, supplier_id)
    policy = load_policy(ws.rules, rate_basis=rate_basis)
    target = out_dir or (ws.home / "statements")
    return write_statement(account_id, buckets, payments, policy, until, target,
                           _heading(ws, account_id, supplier_id))


def account_statements(ws: Workspace, account_id: str, until: date, out_dir: Path | None = None,
                       rate_basis: str = "calc_date") -> list[StatementFiles]:
    """One statement per supplier the account owes (:func:`account_suppliers`); when it owes
    nobody, one per supplier it was charged by (the statement then shows the debts paid)."""
    suppliers = account_suppliers(ws, account_id) or sorted(
        set(_ledger(ws, account_id)[0]["supplier_id"].to_list()))
    out = []
    for supplier in suppliers:
        pdf, xlsx = account_statement(ws, account_id, until, out_dir, rate_basis, supplier)
        out.append(StatementFiles(supplier, pdf, xlsx))
    return out


__all__ = ["CourtStatement", "StatementFiles", "account_statement", "account_statements", "account_suppliers",
           "court_statement", "sealed_registers"]
