"""From a close's tables to receipt view models (one :class:`Receipt` per account).

Only accounts with something to say get a receipt: a charge this period or a
non-zero balance. Lines keep the order of ``services.csv``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.calc.charges import amount_without_coefficient
from pipeline.close import CloseInputs, CloseResult
from pipeline.collect.texts import warning_texts
from pipeline.export.amounts import payee_discounts
from pipeline.methods import method_label
from pipeline.money import kopecks_to_decimal_expr
from pipeline.render.invoice import (
    build_invoices,
    load_vat_rates,
    organization_accounts,
    penalty_article,
    period_penalties,
    render_invoices,
)
from pipeline.render.qr import DEFAULT_QR_POLICY, QrPolicy, load_qr_policy
from pipeline.render.receipts import (
    HouseRow,
    InstalmentRow,
    MeterRow,
    NormRow,
    Payee,
    RecalcLine,
    Receipt,
    ReceiptLine,
    check_pdf_stack,
    fmt_decimal,
    period_text,
    render_receipts,
)
from pipeline.settings import Receipts, load_section
from pipeline.workspace import BillingError, Workspace
from rules import threshold


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
    vat_rates = load_vat_rates(ws.rules)  # a bad vat_rates.csv is refused before the close starts
    regs = inputs.registers()
    receipts = workspace_receipts(ws, result, regs, inputs.rules.services, inputs.rules.legal_thresholds)

    def render(tmp: Path) -> dict[str, Any]:
        report = render_receipts(receipts, tmp / "receipts", workers=workers, batches=batches,
                                 cache=receipt_cache_dir(ws, str(result.period)))
        # Organization payers get an invoice and an act per supplier instead of a receipt.
        invoices = render_invoices(build_invoices(result, regs, inputs.rules.services, vat_rates),
                                   tmp / "invoices")
        # No timing here: the manifest of the same close must be the same bytes.
        out: dict[str, Any] = {"count": report.count, "batches": report.batches}
        if invoices:
            out["invoices"] = invoices
        return out

    return render


def receipt_cache_dir(ws: Workspace, period: str) -> Path:
    """The receipts already laid out while ``period`` is being closed, by content hash.

    A close that fails after rendering (or is run again after a register was mended) lays out
    only the receipts whose content changed; once the period is sealed its receipts are the
    record and the flow removes this folder (:func:`drop_receipt_cache`).
    """
    return ws.home / "cache" / "receipts" / period


def drop_receipt_cache(ws: Workspace, period: str) -> None:
    """Remove the period's receipt cache (after its seal)."""
    shutil.rmtree(receipt_cache_dir(ws, period), ignore_errors=True)


def workspace_receipts(ws: Workspace, result: CloseResult, regs: dict[str, pl.DataFrame],
                       services: pl.DataFrame, thresholds: pl.DataFrame,
                       duplicate_on: date | None = None) -> Iterator[Receipt]:
    """:func:`build_receipts` with the workspace's choices: the collecting agent and the QR
    switches, the warning threshold, the fiscal receipts, the welfare body's amounts and how
    they are given (``[receipts] benefits``), its own templates. The close, the duplicates and
    the receipts bench all build their receipts here.

    The agent and the QR switches are checked at once (a bad setting stops before rendering).
    """
    from pipeline.ingest.gis_documents import document_ids

    settings = load_section(ws.settings_path, Receipts)
    agent = collecting_agent(settings, regs["organizations"])
    policy = load_qr_policy(ws.rules)
    return build_receipts(
        result, regs, services, agent=agent, qr_policy=policy,
        warning_months=threshold(thresholds, "warning_debt_months", result.period.last),
        fiscal=fiscal_texts(ws, period_payments(result.allocations)),
        welfare=welfare_amounts(ws, str(result.period)), benefits=settings.benefits,
        duplicate_on=duplicate_on, templates=ws.home / "templates", tear_off=settings.tear_off,
        document_ids=document_ids(ws, str(result.period)),
        collection_warnings=warning_texts(ws, str(result.period)) if (
            ws.store / "collection" / "cases.parquet").is_file() else None)


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
    agent: Payee | None = None, qr_policy: QrPolicy | None = None, warning_months: int = 2,
    fiscal: dict[str, str] | None = None, duplicate_on: date | None = None,
    templates: Path | None = None, welfare: pl.DataFrame | None = None, benefits: str = "info",
    collection_warnings: dict[str, str] | None = None, tear_off: bool = False,
    document_ids: dict[str, str] | None = None,
) -> Iterator[Receipt]:
    """One :class:`Receipt` per account with something to say, in delivery order.

    ``document_ids``: the ИПД ГИС ЖКХ gave the period's documents, per account
    (:func:`pipeline.ingest.gis_documents.document_ids`). ``welfare``: the welfare body's amounts
    shown on these receipts (account_id, service_id —
    null for all services —, kind, period, amount_kop: :func:`welfare_amounts`); ``benefits``:
    ``info`` prints them in the benefits column, ``discount`` also deducts them from the
    amount to pay (:func:`_apply_benefits`).
    """
    period = result.period
    orgs = {r["org_id"]: r for r in regs["organizations"].iter_rows(named=True)}
    svc = {r["service_id"]: r for r in services.iter_rows(named=True)}
    residents_now = regs["residents"].filter(
        (pl.col("from") <= pl.lit(period.last))
        & (pl.col("to").is_null() | (pl.col("to") >= pl.lit(period.last)))
    ).group_by("account_id").len("residents")
    accounts = (
        regs["accounts"]
        .join(regs["premises"].select("premise_id", "building_id", "number", "kind", "total_area",
                                      *[c for c in ("living_area", "entrance", "floor")
                                        if c in regs["premises"].columns]),
              on="premise_id")
        .join(regs["buildings"].select("building_id", pl.col("address").alias("b_address"),
                                       "manager_id"), on="building_id")
        .join(residents_now, on="account_id", how="left")
    )
    lines_by_acc = _group(_print_lines(result.lines, svc), "account_id")
    bal_by_acc = _group(result.balances, "account_id")
    pen_by_acc = _group(period_penalties(result.penalties), "account_id")
    recalcs = result.recalculations if result.recalculations is not None else pl.DataFrame(
        schema={"account_id": pl.String, "service_id": pl.String, "origin_period": pl.String,
                "reason": pl.String, "amount_kop": pl.Int64})
    recalc_by_acc = _group(recalcs.filter(pl.col("amount_kop") != 0).sort(
        "account_id", "service_id", "origin_period", "reason"), "account_id")
    wanted = set(lines_by_acc) | set(bal_by_acc)
    # Organization payers with charges get invoices instead (pipeline.render.invoice); one with
    # only a balance and no charge this period still gets its receipt (a statement of the debt).
    invoiced = organization_accounts(regs["accounts"]) & set(lines_by_acc)
    recalc_sums = _recalc_sums(recalcs)
    reference = _Reference(result, regs, svc, accounts)
    last_payments = _last_payments(period_payments(result.allocations))
    els, izhku = _gis_ids(regs.get("gis_ids"), period.last, svc)
    instalments = _instalments(regs.get("instalments"), str(period), svc, orgs)
    absent_now = _absent_at(regs, period.last)
    welfare_by_acc = _group(welfare, "account_id") if welfare is not None else {}

    for acc in _delivery_order(accounts).iter_rows(named=True):
        account_id = acc["account_id"]
        if account_id not in wanted or account_id in invoiced:
            continue
        grants = welfare_by_acc.get(account_id, [])
        by_service: dict[str, int] = {}
        for g in grants:
            if g["service_id"] is not None:
                by_service[g["service_id"]] = by_service.get(g["service_id"], 0) + g["amount_kop"]
        lines = _charge_lines(lines_by_acc.get(account_id, []), recalc_sums.get(account_id, {}), svc,
                              by_service) + tuple(
            # ЖК 155 ч.14: penalties are their own line, per supplier.
            ReceiptLine(service_name="Пени", unit="", method_label=penalty_article(p["scheme"]),
                        volume=None, tariff=None, amount=p["amount_kop"], supplier_id=p["supplier_id"])
            for p in pen_by_acc.get(account_id, [])
        )
        payees = tuple(_payee(b, orgs) for b in bal_by_acc.get(account_id, []))
        totals = {k: sum(getattr(p, k) for p in payees)
                  for k in ("opening", "charged", "recalculated", "paid", "penalty", "closing")}
        granted = sum(g["amount_kop"] for g in grants)
        if benefits == "discount" and granted:
            payees = _apply_benefits(lines, payees, granted)
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
            norms=reference.norms(lines_by_acc.get(account_id, [])),
            meters=reference.meters(acc["premise_id"]),
            building_meters=reference.building_meters(acc["building_id"]),
            house=reference.house(acc["building_id"]),
            last_payment=last_payments.get(account_id),
            fiscal=(fiscal or {}).get(account_id, ""),
            duplicate_on=duplicate_on,
            template_dir=template_dir(templates, acc["manager_id"]),
            els=els.get(account_id, ""),
            izhku=izhku.get(account_id, ()),
            instalments=instalments.get(account_id, ()),
            # With debt collection cases kept (pipeline/collect), their п.119 text replaces the proxy.
            warning_suppliers=() if collection_warnings is not None else _warning_suppliers(
                payees, lines_by_acc.get(account_id, []), svc, warning_months),
            warning_text=(collection_warnings or {}).get(account_id, ""),
            living_area=acc.get("living_area"),
            living=None if acc["residents"] is None else max(
                int(acc["residents"]) - absent_now.get(account_id, 0), 0),
            benefits=granted,
            discount=sum(p.discount for p in payees),
            benefits_deducted=benefits == "discount",
            tear_off=tear_off,
            ipd=(document_ids or {}).get(account_id, ""),
            benefits_note=_benefits_note(grants, str(period), sum(p.discount for p in payees),
                                         benefits == "discount"),
            **totals,
        )


#: Methods whose line was charged by a norm (its norm goes to the reference data).
_NORM_METHODS = ("norm", "norm_increased", "heating", "common_property")
#: What a norm of each kind of service is counted per.
_NORM_BASIS = {"heating": "на 1 м² в месяц", "common_property": "на 1 м² общего имущества в месяц"}


def _print_lines(lines: pl.DataFrame, svc: dict[str, dict]) -> pl.DataFrame:
    """The close's charge lines in print order (the services' order, then supplier and day), each
    with ``excess_kop``, what its increasing coefficient added (43/пр: its own figure)."""
    return lines.with_columns(
        pl.col("service_id").replace_strict({k: v["order"] for k, v in svc.items()}, default=0)
        .alias("order"),
        (pl.col("amount_kop") - amount_without_coefficient()).alias("excess_kop"),
    ).sort("account_id", "order", "supplier_id", "line_from")


def _charge_lines(rows: list[dict], recalcs: dict[tuple[str, str], int], svc: dict[str, dict],
                  benefits: dict[str, int] | None = None) -> tuple[ReceiptLine, ...]:
    """The account's charge lines in print order, each recalculation of a service on its first
    line (a service recalculated without a charge this month gets a line of its own), and the
    welfare amount of a service (``benefits``: service → kopecks) on the service's first line."""
    out: list[ReceiptLine] = []
    placed: set[tuple[str, str]] = set()
    granted = dict(benefits or {})
    for ln in rows:
        service = svc[ln["service_id"]]
        key = (ln["supplier_id"], ln["service_id"])
        recalculated = recalcs.get(key, 0) if key not in placed else 0
        placed.add(key)
        volume = None if ln["method"] == "fixed" else Decimal(ln["volume_micro"]) / 1_000_000
        excess = ln["excess_kop"]  # 43/пр: the increase the coefficient caused, its own figure
        out.append(ReceiptLine(
            service_name=service["name"], unit=service["unit"],
            method_label=method_label(ln["method"], ln["coef_milli"]), volume=volume,
            tariff=Decimal(ln["price_kop"]) / 100, amount=ln["amount_kop"], supplier_id=ln["supplier_id"],
            soi=service.get("kind") == "common_property", excess=excess, recalculated=recalculated,
            benefit=granted.pop(ln["service_id"], 0)))
    for (supplier, service_id), amount in recalcs.items():
        if (supplier, service_id) not in placed:
            service = svc.get(service_id, {"name": service_id, "unit": "", "kind": ""})
            out.append(ReceiptLine(service_name=service["name"], unit=service["unit"],
                                   method_label="перерасчёт", volume=None, tariff=None, amount=0,
                                   supplier_id=supplier,
                                   soi=service.get("kind") == "common_property", recalculated=amount,
                                   benefit=granted.pop(service_id, 0)))
    return tuple(out)


def _apply_benefits(lines: tuple[ReceiptLine, ...], payees: tuple[Payee, ...], granted: int
                    ) -> tuple[Payee, ...]:
    """The payees with the welfare amounts deducted (``[receipts] benefits = "discount"``): the
    rule of :func:`pipeline.export.amounts.payee_discounts`, which the exports share (their
    «к оплате» is the receipt's to the kopeck)."""
    by_line: dict[str, int] = {}
    for ln in lines:
        by_line[ln.supplier_id] = by_line.get(ln.supplier_id, 0) + ln.benefit
    discounts = payee_discounts([(p.org_id, p.closing) for p in payees], by_line, granted)
    return tuple(replace(p, discount=d) for p, d in zip(payees, discounts, strict=True))


def _benefits_note(grants: list[dict], period: str, discount: int, deducted: bool) -> str:
    """The ЕПД's line explaining the benefits column: kinds, the answer's period, the mode."""
    if not grants:
        return ""
    from pipeline.ingest.welfare import KINDS
    from pipeline.money import rubles_text

    sums: dict[str, int] = {}
    for g in grants:
        sums[g["kind"]] = sums.get(g["kind"], 0) + g["amount_kop"]
    kinds = ", ".join(f"{KINDS.get(k, k)} {rubles_text(v)}" for k, v in sorted(sums.items()))
    periods = sorted({g["period"] for g in grants})
    when = ", ".join(period_text(p) for p in periods)
    total = sum(sums.values())
    text = f"Льготы и субсидии по ответу органа соцзащиты за {when}: {kinds}"
    if not deducted:
        return text + " — справочно: выплачиваются получателю, сумму к оплате не уменьшают."
    if discount == total:
        return text + f" — вычтены из суммы к оплате ({rubles_text(discount)})."
    return text + (f" — из суммы к оплате вычтено {rubles_text(discount)}: не больше долга перед "
                   f"получателем за услугу.")


def _recalc_sums(recalcs: pl.DataFrame) -> dict[str, dict[tuple[str, str], int]]:
    """account → (supplier, service) → the period's recalculations, kopecks."""
    if "supplier_id" not in recalcs.columns:
        recalcs = recalcs.with_columns(pl.lit("", pl.String).alias("supplier_id"))
    sums = recalcs.group_by("account_id", "supplier_id", "service_id").agg(pl.col("amount_kop").sum()) \
        .filter(pl.col("amount_kop") != 0).sort("account_id", "supplier_id", "service_id")
    out: dict[str, dict[tuple[str, str], int]] = {}
    for row in sums.iter_rows(named=True):
        out.setdefault(row["account_id"], {})[(row["supplier_id"], row["service_id"])] = row["amount_kop"]
    return out


def _delivery_order(accounts: pl.DataFrame) -> pl.DataFrame:
    """Accounts in the order a postman walks: building, entrance, floor, flat (numbers as
    numbers: 2 before 10, then 10а), account; entrance and floor of ``premises`` when given."""
    missing = [c for c in ("entrance", "floor") if c not in accounts.columns]
    frame = accounts.with_columns(pl.lit(None, pl.Int64).alias(c) for c in missing)
    return frame.with_columns(
        pl.col("number").str.extract(r"^(\d+)").cast(pl.Int64).alias("_flat"),
    ).sort("building_id", "entrance", "floor", "_flat", "number", "account_id", nulls_last=True).drop("_flat")


def template_dir(templates: Path | None, org_id: str) -> str:
    """The folder of the receipt template for a building managed by ``org_id``: its own
    ``templates/<org_id>/``, else the workspace's ``templates/``, else "" (the default form)."""
    if templates is None:
        return ""
    for folder in (templates / org_id, templates):
        if (folder / "receipt.html.j2").is_file():
            return str(folder)
    return ""


def _gis_ids(gis: pl.DataFrame | None, day: date, svc: dict[str, dict]
             ) -> tuple[dict[str, str], dict[str, tuple[tuple[str, str], ...]]]:
    """account → ЕЛС, and account → ((service, ИЖКУ), …), as in force on ``day``."""
    if gis is None or not gis.height:
        return {}, {}
    current = gis.filter(pl.col("from") <= day).sort("from").group_by(
        "account_id", "service_id", maintain_order=True).last()
    els: dict[str, str] = {}
    izhku: dict[str, list[tuple[int, str, str]]] = {}
    order = {k: v.get("order", 0) for k, v in svc.items()}
    for row in current.sort("account_id", "service_id", nulls_last=False).iter_rows(named=True):
        if row["service_id"] is None or row["account_id"] not in els:
            els.setdefault(row["account_id"], row["els"])
        if row["service_id"] is not None and row["izhku"]:
            name = svc.get(row["service_id"], {"name": row["service_id"]})["name"]
            izhku.setdefault(row["account_id"], []).append(
                (order.get(row["service_id"], 0), name, row["izhku"]))
    return els, {a: tuple((n, i) for _, n, i in sorted(rows)) for a, rows in izhku.items()}


def _instalments(table: pl.DataFrame | None, period: str, svc: dict[str, dict], orgs: dict[str, dict]
                 ) -> dict[str, tuple[InstalmentRow, ...]]:
    """account → the instalments due in ``period`` (ЕПД section 6)."""
    if table is None or not table.height:
        return {}
    out: dict[str, list[InstalmentRow]] = {}
    rows = table.filter(pl.col("period") == period).with_columns(
        (pl.col("amount") * 100).cast(pl.Int64).alias("amount_kop"),
        (pl.col("interest") * 100).cast(pl.Int64).alias("interest_kop"),
    ).sort("account_id", "supplier_id", "service_id", nulls_last=False)
    for r in rows.iter_rows(named=True):
        service = svc.get(r["service_id"] or "", {"name": "все услуги поставщика"})["name"]
        out.setdefault(r["account_id"], []).append(InstalmentRow(
            service_name=service,
            supplier_name=orgs.get(r["supplier_id"], {}).get("name") or r["supplier_id"],
            amount=r["amount_kop"], interest=r["interest_kop"], rate=r["interest_rate"] or Decimal(0)))
    return {a: tuple(rows_) for a, rows_ in out.items()}


def period_payments(allocations: pl.DataFrame) -> pl.DataFrame:
    """account_id, agent, payment_id, paid_on, amount_kop of each payment the period applied."""
    schema = {"account_id": pl.String, "agent": pl.String, "payment_id": pl.String, "paid_on": pl.Date,
              "amount_kop": pl.Int64}
    if not allocations.height or "paid_on" not in allocations.columns:
        return pl.DataFrame(schema=schema)
    paid = allocations
    if "kind" in paid.columns:
        paid = paid.filter(pl.col("kind") != "advance_offset")  # an earlier advance, not a payment
    if "agent" not in paid.columns:
        paid = paid.with_columns(pl.lit("", pl.String).alias("agent"))
    return paid.group_by("account_id", "agent", "payment_id").agg(
        pl.col("paid_on").max(), pl.col("amount_kop").sum()).filter(pl.col("amount_kop") > 0) \
        .sort("account_id", "paid_on", "payment_id", "agent").select(list(schema))


def _last_payments(payments: pl.DataFrame) -> dict[str, tuple[date, int]]:
    """account → (date, kopecks) of its last payment applied in the period (the footer of 43/пр)."""
    last = payments.group_by("account_id", maintain_order=True).last()
    return {r["account_id"]: (r["paid_on"], r["amount_kop"]) for r in last.iter_rows(named=True)}


def fiscal_texts(ws: Workspace, payments: pl.DataFrame) -> dict[str, str]:
    """account → the fiscal receipt line of its last payment (``billing payments fiscal``)."""
    from pipeline.ingest.fiscal import fiscal_line, last_fiscal_receipts

    frame = payments.with_columns(kopecks_to_decimal_expr("amount_kop").alias("amount"))
    return {r["account_id"]: fiscal_line(r) for r in last_fiscal_receipts(ws, frame).iter_rows(named=True)}


def welfare_amounts(ws: Workspace, period: str) -> pl.DataFrame:
    """The welfare body's amounts shown on the receipts of ``period`` (``billing import welfare``)."""
    from pipeline.ingest.welfare import receipt_welfare

    return receipt_welfare(ws, period)


def _absent_at(regs: dict[str, pl.DataFrame], day: date) -> dict[str, int]:
    """account → registered persons temporarily away on ``day`` (absences register)."""
    absences = regs.get("absences")
    if absences is None or not absences.height:
        return {}
    away = absences.filter((pl.col("from") <= day) & (pl.col("to").is_null() | (pl.col("to") >= day)))
    joined = away.join(regs["residents"].select("person_id", "account_id"), on="person_id") \
        .unique(["person_id"]).group_by("account_id").len("away")
    return {r["account_id"]: r["away"] for r in joined.iter_rows(named=True)}


#: Service kinds whose supply Правила 354 п.117–119 may restrict: utilities (not maintenance,
#: capital repair, fixed fees or common-property resources), and never heating.
_RESTRICTABLE = ("metered", "sewerage", "per_person")


def _warning_suppliers(payees: tuple[Payee, ...], rows: list[dict], svc: dict[str, dict],
                       months: int) -> tuple[str, ...]:
    """Suppliers of restrictable utilities whose debt left from before the period exceeds
    ``months`` of this period's charges: the ЕПД then carries the warning of Правила 354 п.119.

    A proxy of п.118 (debt over two months' charges by the norm), documented in docs/receipts.md;
    the debtor rules per service and payer (cold water in a block of flats among them) are
    issue 15's.
    """
    utilities = {ln["supplier_id"] for ln in rows if svc[ln["service_id"]].get("kind") in _RESTRICTABLE}
    out = []
    for p in payees:
        if p.org_id not in utilities:
            continue
        overdue = p.opening - p.paid
        if p.org_id and p.charged > 0 and overdue > months * p.charged:
            out.append(p.name)
    return tuple(out)


def _dec(micro: int | None) -> Decimal | None:
    return None if micro is None else Decimal(micro) / 1_000_000


class _Reference:
    """The reference data of ЕПД section 4, computed once per building and premise."""

    def __init__(self, result: CloseResult, regs: dict[str, pl.DataFrame], svc: dict[str, dict],
                 accounts: pl.DataFrame) -> None:
        self.svc = svc
        period = result.period
        meters = regs["meters"]
        serial = {r["meter_id"]: r["serial"] or r["meter_id"] for r in meters.iter_rows(named=True)}
        issues: dict[str, list[str]] = {}
        for r in result.reading_issues.iter_rows(named=True):
            value = "—" if r["value"] is None else fmt_decimal(r["value"])
            issues.setdefault(r["meter_id"], []).append(
                f"показание {value} от {r['read_on']:%d.%m.%Y} не принято: {r['reason']}")
        notes = {"meter": "по показаниям", "average": "по среднему (п.59 Правил 354)",
                 "norm": "по нормативу (п.60 Правил 354)"}
        self._meters: dict[str, list[MeterRow]] = {}
        for r in result.meter_volumes.sort("premise_id", "service_id", "meter_id").iter_rows(named=True):
            note = "; ".join([notes.get(r["method"], r["method"]), *issues.get(r["meter_id"], [])])
            self._meters.setdefault(r["premise_id"], []).append(MeterRow(
                service_name=self._name(r["service_id"]), serial=serial.get(r["meter_id"], r["meter_id"]),
                prev_on=r["prev_read_on"], prev_value=_dec(r["prev_value_micro"]),
                curr_on=r["curr_read_on"], curr_value=_dec(r["curr_value_micro"]),
                volume=_dec(r["volume_micro"]), note=note))
        # Building meters: the last reading of the period and the one before it.
        self._building: dict[str, list[MeterRow]] = {}
        house_meters = meters.filter(pl.col("building_id").is_not_null() & pl.col("premise_id").is_null())
        if house_meters.height:
            readings = regs["readings"].join(house_meters.select("meter_id", "building_id", "service_id"),
                                             on="meter_id").filter(pl.col("read_on") <= period.last) \
                .sort("meter_id", "read_on")
            for (meter_id,), rows in readings.group_by(["meter_id"], maintain_order=True):
                last = rows.tail(2).to_dicts()
                if last[-1]["read_on"] < period.first:
                    continue
                prev = last[0] if len(last) == 2 else None
                self._building.setdefault(last[-1]["building_id"], []).append(MeterRow(
                    service_name=self._name(last[-1]["service_id"]), serial=serial.get(meter_id, meter_id),
                    prev_on=prev["read_on"] if prev else None, prev_value=prev["value"] if prev else None,
                    curr_on=last[-1]["read_on"], curr_value=last[-1]["value"], volume=None))
        # House volumes: the period's volumes of the building's accounts, in premises and СОИ.
        kinds = {k: v.get("kind") for k, v in svc.items()}
        lines = result.lines.filter(pl.col("method") != "fixed").join(
            accounts.select("account_id", "building_id"), on="account_id")
        self._house: dict[str, list[HouseRow]] = {}
        soi_of = {k: v.get("settled_by") or k.removesuffix("_soi") for k, v in svc.items()
                  if v.get("kind") == "common_property"}
        if lines.height:
            grouped = lines.with_columns(
                pl.col("service_id").replace(soi_of).alias("resource"),
                pl.col("service_id").replace_strict(kinds, default="").eq("common_property").alias("is_soi"),
            ).filter(pl.col("resource").replace_strict(kinds, default="").is_in(["metered", "heating"])) \
                .group_by("building_id", "resource").agg(
                    pl.col("volume_micro").filter(~pl.col("is_soi")).sum().alias("premises"),
                    pl.col("volume_micro").filter(pl.col("is_soi")).sum().alias("common"),
                    pl.col("is_soi").any().alias("has_soi"),
            ).sort("building_id", "resource")
            order = {k: v.get("order", 0) for k, v in svc.items()}
            volumes = sorted(grouped.iter_rows(named=True),
                             key=lambda r: (r["building_id"], order[r["resource"]]))
            for r in volumes:
                self._house.setdefault(r["building_id"], []).append(HouseRow(
                    service_name=self._name(r["resource"]), unit=svc[r["resource"]]["unit"],
                    premises=Decimal(r["premises"]) / 1_000_000,
                    common=Decimal(r["common"]) / 1_000_000 if r["has_soi"] else None))

    def _name(self, service_id: str) -> str:
        return str(self.svc.get(service_id, {"name": service_id})["name"])

    def norms(self, rows: list[dict]) -> tuple[NormRow, ...]:
        out: dict[str, NormRow] = {}
        for ln in rows:
            if ln["method"] not in _NORM_METHODS or ln.get("norm_micro") is None:
                continue
            service = self.svc[ln["service_id"]]
            kind = service.get("kind")
            basis = _NORM_BASIS.get(kind or "", "на 1 чел. в месяц")
            text = f"{fmt_decimal(Decimal(ln['norm_micro']) / 1_000_000)} {service['unit']} {basis}"
            out.setdefault(ln["service_id"], NormRow(service["name"], text, kind == "common_property"))
        return tuple(out.values())

    def meters(self, premise_id: str) -> tuple[MeterRow, ...]:
        return tuple(self._meters.get(premise_id, ()))

    def building_meters(self, building_id: str) -> tuple[MeterRow, ...]:
        return tuple(self._building.get(building_id, ()))

    def house(self, building_id: str) -> tuple[HouseRow, ...]:
        return tuple(self._house.get(building_id, ()))


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
