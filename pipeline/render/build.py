"""From a close's tables to receipt view models (one :class:`Receipt` per account).

Only accounts with something to say get a receipt: a charge this period or a
non-zero balance. Lines keep the order of ``services.csv``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.close import CloseInputs, CloseResult
from pipeline.methods import method_label
from pipeline.render.qr import DEFAULT_QR_POLICY, QrPolicy, load_qr_policy
from pipeline.render.receipts import (
    Payee,
    RecalcLine,
    Receipt,
    ReceiptLine,
    check_pdf_stack,
    render_receipts,
)
from pipeline.settings import Receipts, load_section
from pipeline.workspace import BillingError, Workspace


def receipts_step(ws: Workspace, inputs: CloseInputs, result: CloseResult, workers: int | None = None
                  ) -> Callable[[Path], dict[str, Any]]:
    """The receipts step of a close (or of one partition of it): the close calls it with the
    period's staging directory, so one PDF per account lands inside the sealed folder.

    ``workers`` overrides ``[receipts] workers`` (a Dask worker renders with 1: it may not
    start processes). The close module itself never imports the rendering (it only takes
    the callable); the flow checks the PDF stack before the close starts.
    """
    check_pdf_stack()
    settings = load_section(ws.settings_path, Receipts)
    workers = workers or settings.workers or None
    batches = settings.print_batches
    policy = load_qr_policy(ws.rules)
    regs = inputs.registers()
    agent = collecting_agent(settings, regs["organizations"])

    def render(tmp: Path) -> dict[str, Any]:
        report = render_receipts(
            build_receipts(result, regs, inputs.rules.services, agent=agent, qr_policy=policy),
            tmp / "receipts", workers=workers, batches=batches,
        )
        # No timing here: the manifest of the same close must be the same bytes.
        return {"count": report.count, "batches": report.batches}

    return render


def collecting_agent(settings: Receipts, organizations: pl.DataFrame) -> Payee | None:
    """The agent of ``[receipts] pay_to = "agent"`` as a payee (``None`` for ``payees``).

    Refused before the close starts when the agent is not named, not registered or has no
    account to be paid to: its QR code would be the only one on every receipt.
    """
    if settings.pay_to != "agent":
        return None
    where = "settings.toml, [receipts]"
    if not settings.agent:
        raise BillingError(f"{where}: pay_to = \"agent\", но не указан agent — код организации-агента")
    rows = organizations.filter(pl.col("org_id") == settings.agent).to_dicts()
    if not rows:
        raise BillingError(f"{where}: agent = \"{settings.agent}\" — такой организации нет в реестре "
                           "организаций (или её строка отклонена при загрузке)")
    if not (rows[0].get("account") and rows[0].get("bik")):
        raise BillingError(f"{where}: у агента «{rows[0]['name']}» не указан расчётный счёт или БИК")
    return _payee({"supplier_id": settings.agent, "opening_kop": 0, "charged_kop": 0,
                   "recalculated_kop": 0, "paid_kop": 0, "penalty_kop": 0, "closing_kop": 0},
                  {settings.agent: rows[0]})


def build_receipts(
    result: CloseResult, regs: dict[str, pl.DataFrame], services: pl.DataFrame, *,
    agent: Payee | None = None, qr_policy: QrPolicy | None = None,
) -> Iterator[Receipt]:
    period = result.period
    orgs = {r["org_id"]: r for r in regs["organizations"].iter_rows(named=True)}
    svc = {r["service_id"]: r for r in services.iter_rows(named=True)}
    residents_now = regs["residents"].filter(
        (pl.col("from") <= pl.lit(period.last))
        & (pl.col("to").is_null() | (pl.col("to") >= pl.lit(period.last)))
    ).group_by("account_id").len("residents")
    accounts = (
        regs["accounts"]
        .join(regs["premises"].select("premise_id", "building_id", "number", "kind", "total_area"),
              on="premise_id")
        .join(regs["buildings"].select("building_id", pl.col("address").alias("b_address"),
                                       "manager_id"), on="building_id")
        .join(residents_now, on="account_id", how="left")
    )
    lines_by_acc = _group(result.lines.with_columns(
        pl.col("service_id").replace_strict(
            {k: v["order"] for k, v in svc.items()}, default=0).alias("order")
    ).sort("account_id", "order", "supplier_id", "line_from"), "account_id")
    bal_by_acc = _group(result.balances, "account_id")
    penalties = result.penalties if result.penalties is not None else pl.DataFrame(
        schema={"account_id": pl.String, "supplier_id": pl.String, "amount_kop": pl.Int64})
    if "scheme" not in penalties.columns:
        penalties = penalties.with_columns(pl.lit("standard").alias("scheme"))
    pen_by_acc = _group(penalties.filter(pl.col("amount_kop") != 0).group_by(
        "account_id", "supplier_id", "scheme").agg(pl.col("amount_kop").sum())
        .sort("account_id", "supplier_id", "scheme"), "account_id")
    recalcs = result.recalculations if result.recalculations is not None else pl.DataFrame(
        schema={"account_id": pl.String, "service_id": pl.String, "origin_period": pl.String,
                "reason": pl.String, "amount_kop": pl.Int64})
    recalc_by_acc = _group(recalcs.filter(pl.col("amount_kop") != 0).sort(
        "account_id", "service_id", "origin_period", "reason"), "account_id")
    wanted = set(lines_by_acc) | set(bal_by_acc)

    for acc in accounts.sort("building_id", "account_id").iter_rows(named=True):
        account_id = acc["account_id"]
        if account_id not in wanted:
            continue
        lines = tuple(
            ReceiptLine(
                service_name=svc[ln["service_id"]]["name"],
                unit=svc[ln["service_id"]]["unit"],
                method_label=method_label(ln["method"], ln["coef_milli"]),
                volume=None if ln["method"] == "fixed" else Decimal(ln["volume_micro"]) / 1_000_000,
                tariff=Decimal(ln["price_kop"]) / 100,
                amount=ln["amount_kop"],
                supplier_id=ln["supplier_id"],
            )
            for ln in lines_by_acc.get(account_id, [])
        ) + tuple(
            # ЖК 155 ч.14: penalties are their own line, per supplier.
            ReceiptLine(service_name="Пени", unit="",
                        method_label="ЖК РФ ст.155 ч.14.1" if p["scheme"] == "capital_repair"
                        else "ЖК РФ ст.155 ч.14",
                        volume=None, tariff=None, amount=p["amount_kop"], supplier_id=p["supplier_id"])
            for p in pen_by_acc.get(account_id, [])
        )
        payees = tuple(_payee(b, orgs) for b in bal_by_acc.get(account_id, []))
        totals = {k: sum(getattr(p, k) for p in payees)
                  for k in ("opening", "charged", "recalculated", "paid", "penalty", "closing")}
        manager = orgs.get(acc["manager_id"], {})
        place = "кв." if acc["kind"] == "residential" else "пом."
        yield Receipt(
            account_id=account_id,
            period=str(period),
            payer_name=acc["payer_name"],
            address=f"{acc['b_address']}, {place} {acc['number']}",
            total_area=acc["total_area"],
            residents=int(acc["residents"] or 0),
            manager_name=manager.get("name") or "",
            manager_contacts=", ".join(x for x in (manager.get("address"), manager.get("phone"))
                                       if x),
            lines=lines,
            payees=payees,
            due_date=result.due_date,
            building_id=acc["building_id"],
            recalculations=tuple(
                RecalcLine(service_name=svc.get(rc["service_id"], {"name": rc["service_id"]})["name"],
                           origin_period=rc["origin_period"], reason=rc["reason"], amount=rc["amount_kop"])
                for rc in recalc_by_acc.get(account_id, [])),
            agent=agent,
            qr_policy=qr_policy or DEFAULT_QR_POLICY,
            paper=acc.get("delivery") != "email_only",
            **totals,
        )


def _group(frame: pl.DataFrame, key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row[key], []).append(row)
    return out


def _payee(b: dict, orgs: dict[str, dict]) -> Payee:
    org = orgs.get(b["supplier_id"] or "", {})
    return Payee(
        org_id=b["supplier_id"] or "",
        name=org.get("name") or "Аванс (не распределён)",
        inn=org.get("inn") or "", kpp=org.get("kpp") or "",
        bank_name=org.get("bank_name") or "", bik=org.get("bik") or "",
        account=org.get("account") or "", corr_account=org.get("corr_account") or "",
        opening=b["opening_kop"], charged=b["charged_kop"], recalculated=b["recalculated_kop"],
        paid=b["paid_kop"], penalty=b["penalty_kop"], closing=b["closing_kop"],
    )
