"""The п.119 warning text of the ЕПД (Правила 354 п.119 «а» allows it in the payment document).

:func:`warning_texts` is what the receipts of a period print: for each account with an open
person's case in ``debtor`` or ``warned`` that has a service which may be restricted, the
warning of :func:`pipeline.collect.documents.warning_text`. It reads only the case store,
the registers snapshot and the sealed period the case was last updated from, so the close of
``period`` (not sealed yet) can call it for its receipts.
"""

from __future__ import annotations

import polars as pl

from pipeline.collect.cases import read_store
from pipeline.collect.documents import WarningFacts, warning_text
from pipeline.dates import Period
from pipeline.penalties.monthly import PENALTY_SERVICE
from pipeline.sealed import read_internal
from pipeline.workspace import Workspace


def warning_texts(ws: Workspace, period: str) -> dict[str, str]:
    """account_id → the warning text for the ЕПД of ``period`` (several cases: joined by a blank line).

    Cases found on a sealed period before ``period`` only; the debt is the one the case was
    last updated with, as of the last day of that period.
    """
    cases, _ = read_store(ws)
    chosen = cases.filter(
        (pl.col("status") == "open") & (pl.col("payer_kind") == "person")
        & pl.col("stage").is_in(["debtor", "warned"]) & (pl.col("restrictable_ids").list.len() > 0)
        & (pl.col("updated_period") < period))
    if not chosen.height:
        return {}
    from pipeline.ingest.registers import load_store
    from rules import read_rule_table

    regs = load_store(ws, names=["organizations", "accounts"])
    services = read_rule_table(ws.rules, "services")
    names = dict(zip(services["service_id"].to_list(), services["name"].to_list(), strict=True))
    orgs = {r["org_id"]: r for r in regs["organizations"].iter_rows(named=True)}
    payers = dict(zip(regs["accounts"]["account_id"].to_list(), regs["accounts"]["payer_name"].to_list(),
                      strict=True))
    out: dict[str, list[str]] = {}
    debts: dict[str, pl.DataFrame] = {}
    for case in chosen.sort("account_id", "case_id").iter_rows(named=True):
        source = case["updated_period"]
        if source not in debts:
            debts[source] = read_internal(ws.period_dir(source), "debts").filter(
                pl.col("account_id").is_in(chosen["account_id"].to_list()))
        rows = debts[source].filter(
            (pl.col("account_id") == case["account_id"]) & (pl.col("supplier_id") == case["supplier_id"])
            & (pl.col("charge_period") <= case["through_period"]) & (pl.col("outstanding_kop") > 0)
            & (pl.col("service_id") != PENALTY_SERVICE))
        per = rows.group_by("service_id").agg(pl.col("outstanding_kop").sum()).sort("service_id")
        org = orgs.get(case["supplier_id"], {})
        facts = WarningFacts(
            case_id=case["case_id"], account_id=case["account_id"],
            debtor_name=str(payers.get(case["account_id"], "")), address="",
            creditor_name=str(org.get("name") or case["supplier_id"]), creditor_address=org.get("address"),
            creditor_phone=org.get("phone"), on=Period.parse(source).last,
            months=sorted(rows["charge_period"].unique().to_list()),
            services=[(names.get(s, s), int(k)) for s, k in per.iter_rows()],
            restrictable=[names.get(s, s) for s in case["restrictable_ids"]],
            warning_days=int(case["warning_days"] or 20))
        if facts.services:
            out.setdefault(case["account_id"], []).append(warning_text(facts))
    return {account: "\n\n".join(texts) for account, texts in out.items()}


__all__ = ["warning_texts"]
