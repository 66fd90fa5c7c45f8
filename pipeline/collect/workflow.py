"""The collection commands over a workspace: read the sealed period, step the cases, write.

Every function that changes the case store holds the workspace lock, writes atomically
(:func:`pipeline.collect.cases.write_store`) and is audited (``pipeline.workspace.audit``).
The debt is read only from sealed periods, verified first (:func:`pipeline.verify.check_sealed`).
Documents go to ``HOME/collection/<case_id>/``, restriction lists to
``HOME/collection/restriction/``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from pipeline.collect import cases as store
from pipeline.collect.cases import ACTIVE, Event
from pipeline.collect.debtors import (
    agreements_in_force,
    block_of_flats,
    case_debts,
    due_dates,
    find_debtors,
    norm_month_charges,
    overdue_debts,
    paused_keys,
)
from pipeline.collect.documents import (
    DEFAULT_COURT,
    CourtFacts,
    WarningFacts,
    arbitration_view,
    claim_view,
    court_order_view,
    pdf_bytes,
    render_html,
    warning_text,
    warning_view,
)
from pipeline.collect.policy import duty_source, load_collection, load_state_duty, state_duty_kop
from pipeline.money import kopecks_to_decimal_expr
from pipeline.penalties.monthly import PENALTY_SERVICE
from pipeline.sealed import read_internal
from pipeline.workspace import BillingError, Workspace, atomic_write_bytes, audit, workspace_lock


def possible_on(since: date, days: int) -> date:
    """The first day the next step may be taken: ``days`` full days after ``since``.

    A term of N days starts the day after the delivery (ГК 191) and ends with its N-th day.

    >>> possible_on(date(2026, 11, 20), 20)
    datetime.date(2026, 12, 11)
    """
    return since + timedelta(days=days + 1)


def collection_dir(ws: Workspace) -> Path:
    return ws.home / "collection"


def _sealed(ws: Workspace, period: str | None) -> str:
    sealed = ws.sealed_periods()
    if not sealed:
        raise BillingError("Нет закрытых периодов: должники определяются по закрытым периодам "
                           "(billing close --period ГГГГ-ММ).")
    if period is None:
        period = sealed[-1]
    elif period not in sealed:
        raise BillingError(f"Период {period} не закрыт: должники определяются только по закрытым периодам "
                           f"(закрыты: {sealed[0]} — {sealed[-1]}).")
    from pipeline.verify import check_sealed

    check_sealed(ws, [period])
    return period


def _registers(ws: Workspace, period: str) -> dict[str, pl.DataFrame]:
    from pipeline.penalties.court import sealed_registers

    return sealed_registers(ws, period)


def _names(frame: pl.DataFrame, key: str, value: str) -> dict[str, str]:
    return dict(zip(frame[key].to_list(), frame[value].to_list(), strict=True))


# --------------------------------------------------------------------------- list


@dataclass(frozen=True)
class ListResult:
    """What ``billing collect list`` found and changed."""

    period: str
    on: date
    opened: int
    paid: int
    paused: int
    resumed: int
    updated: int
    cases: pl.DataFrame
    problems: tuple[str, ...] = ()
    service_names: dict[str, str] = field(default_factory=dict)


def found_debtors(ws: Workspace, period: str, on: date,
                  regs: dict[str, pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame, tuple[str, ...]]:
    """The debtors of the sealed ``period`` on ``on`` (one row per account and supplier), the
    period's open items and the problems (services with a ``norm_months`` rule but no norm)."""
    from rules import load_rules, read_rule_table

    rules = load_rules(ws.rules)
    debts = read_internal(ws.period_dir(period), "debts")
    dues = due_dates(read_rule_table(ws.rules, "due_dates"), debts["charge_period"].unique().to_list())
    overdue = overdue_debts(debts, dues, on)
    norms = norm_month_charges(regs, rules, overdue.select("account_id", "service_id", "supplier_id"), on)
    found = find_debtors(overdue, norms, regs["accounts"], load_collection(ws.rules),
                         block_of_flats(regs["premises"]), regs["premises"], on)
    missing = found.filter((pl.col("threshold") == "norm_months") & pl.col("norm_charge_kop").is_null())
    problems = tuple(sorted({f"нет норматива или тарифа на {on:%d.%m.%Y} для услуги {s}: порог п.118 "
                             "не посчитан, долг по ней не учитывается"
                             for s in missing["service_id"].to_list()}))
    met = found.filter(pl.col("meets"))
    per_supplier = overdue.group_by("account_id", "supplier_id").agg(
        pl.col("debt_kop").sum(), pl.col("through_period").max())
    debtors = met.group_by("account_id", "supplier_id").agg(
        pl.col("payer_kind").first(), pl.col("service_id").sort().alias("service_ids"),
        pl.col("service_id").filter(pl.col("restrictable")).sort().alias("restrictable_ids"),
        pl.col("warning_days").max(),
    ).join(per_supplier, on=["account_id", "supplier_id"], how="left").sort("account_id", "supplier_id")
    return debtors, debts, problems


def collect_list(ws: Workspace, period: str | None = None, on: date | None = None) -> ListResult:
    """Find new debtors on the sealed ``period`` (default: the last), update the cases' debt,
    pause and resume them by the repayment agreements, close the paid ones."""
    with workspace_lock(ws, "collect list"):
        period = _sealed(ws, period)
        on = on or date.today()
        regs = _registers(ws, period)
        debtors, debts, problems = found_debtors(ws, period, on, regs)
        cases, events = store.read_store(ws)
        active = cases.filter(pl.col("status").is_in(list(ACTIVE)))
        now = case_debts(debts, active.select("case_id", "account_id", "supplier_id", "through_period"))
        # Agreements are signed any day: the current registers, not the period's snapshot.
        from pipeline.ingest.registers import load_store

        now_regs = load_store(ws, names=["accounts", "repayment_agreements"])
        kept = agreements_in_force(now_regs["accounts"], now_regs.get("repayment_agreements"), on)
        keys = pl.concat([debtors.select("account_id", "supplier_id"),
                          active.select("account_id", "supplier_id")]).unique()
        paused = paused_keys(kept, keys)
        result = store.sync(cases, debtors, now, paused, period, on)
        if result.events:
            store.write_store(ws, result.cases, store.append_events(events, result.events))
        audit(ws, "collect list", inputs={"period": period, "on": str(on)},
              outputs={"opened": result.opened, "paid": result.paid, "paused": result.paused,
                       "resumed": result.resumed, "updated": result.updated})
    from rules import read_rule_table

    names = _names(read_rule_table(ws.rules, "services"), "service_id", "name")
    return ListResult(period, on, result.opened, result.paid, result.paused, result.resumed, result.updated,
                      result.cases, problems, names)


# --------------------------------------------------------------------------- warnings


@dataclass(frozen=True)
class WarnResult:
    """The warnings made (case → PDF), e-mailed and the cases skipped with the reason."""

    documents: dict[str, Path]
    sent: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _case_services(debts: pl.DataFrame, case: dict, names: dict[str, str]) -> tuple[list[tuple[str, int]],
                                                                                 list[str]]:
    rows = debts.filter(
        (pl.col("account_id") == case["account_id"]) & (pl.col("supplier_id") == case["supplier_id"])
        & (pl.col("charge_period") <= case["through_period"]) & (pl.col("outstanding_kop") > 0)
        & (pl.col("service_id") != PENALTY_SERVICE))
    per = rows.group_by("service_id").agg(pl.col("outstanding_kop").sum()).sort("service_id")
    months = sorted(rows["charge_period"].unique().to_list())
    return [(names.get(s, s), int(k)) for s, k in per.iter_rows()], months


def warning_facts(case: dict, regs: dict[str, pl.DataFrame], debts: pl.DataFrame, services: pl.DataFrame,
                  on: date) -> WarningFacts:
    from pipeline.penalties.parties import creditor, premise_address

    names = _names(services, "service_id", "name")
    acc = regs["accounts"].filter(pl.col("account_id") == case["account_id"]).row(0, named=True)
    orgs = regs["organizations"].filter(pl.col("org_id") == case["supplier_id"])
    phone = orgs["phone"][0] if orgs.height and "phone" in orgs.columns else None
    party = creditor(regs, case["supplier_id"])
    lines, months = _case_services(debts, case, names)
    return WarningFacts(
        case_id=case["case_id"], account_id=case["account_id"], debtor_name=str(acc["payer_name"]),
        address=premise_address(regs, str(acc["premise_id"])) or "—", creditor_name=party.name,
        creditor_address=party.address, creditor_phone=phone, on=on, months=months, services=lines,
        restrictable=[names.get(s, s) for s in case["restrictable_ids"] or []],
        warning_days=int(case["warning_days"] or 20))


def _write_document(ws: Workspace, case_id: str, name: str, data: bytes) -> tuple[Path, str]:
    path = collection_dir(ws) / case_id / name
    atomic_write_bytes(path, data)
    return path, hashlib.sha256(data).hexdigest()


def _relative(ws: Workspace, path: Path) -> str:
    return str(path.relative_to(ws.home))


def collect_warn(ws: Workspace, period: str | None = None, accounts: list[str] | None = None,
                 on: date | None = None, send: bool = False) -> WarnResult:
    """A п.119 warning for each open person's case in ``debtor`` (of ``accounts`` when given):
    the PDF, the case moved to ``warned`` on ``on`` (the delivery day); ``send`` e-mails it to
    the payer's address when there is one."""
    from rules import read_rule_table

    with workspace_lock(ws, "collect warn"):
        period = _sealed(ws, period)
        on = on or date.today()
        regs = _registers(ws, period)
        debts = read_internal(ws.period_dir(period), "debts")
        services = read_rule_table(ws.rules, "services")
        cases, events = store.read_store(ws)
        chosen = cases.filter((pl.col("stage") == "debtor") & (pl.col("payer_kind") == "person"))
        if accounts:
            chosen = chosen.filter(pl.col("account_id").is_in(accounts))
        # Every case below looks up its account: narrow the region's frames to the cases' accounts.
        wanted = cases.filter(pl.col("stage").is_in(["debtor", "warned"]))["account_id"].unique()
        regs = narrow(regs, wanted)
        debts = debts.filter(pl.col("account_id").is_in(wanted.implode()))
        documents: dict[str, Path] = {}
        skipped: dict[str, str] = {}
        new_events: list[dict] = []
        mails: list[tuple[str, str, str, str, bytes]] = []
        emails = _emails(ws) if send else {}
        for case in chosen.iter_rows(named=True):
            if case["status"] != "open":
                skipped[case["case_id"]] = store.STATUS_NAMES[case["status"]]
                continue
            facts = warning_facts(case, regs, debts, services, on)
            data = pdf_bytes([render_html("warning", warning_view(facts))])
            path, digest = _write_document(ws, case["case_id"], f"warning-{on:%Y-%m-%d}.pdf", data)
            updated, ev = store.step(case, Event("warned", on, amount_kop=case["debt_kop"],
                                                 document=_relative(ws, path), sha256=digest, period=period))
            cases = store.replace_case(cases, updated)
            new_events.append(ev)
            documents[case["case_id"]] = path
            email = emails.get(case["account_id"])
            if send and email:
                mails.append((case["case_id"], str(email), facts.debtor_name, warning_text(facts), data))
        if new_events:
            store.write_store(ws, cases, store.append_events(events, new_events))
        if send:  # warnings made earlier and not e-mailed yet (no server then, or a refusal)
            mails += _unsent(ws, cases, store.append_events(events, new_events), regs, debts, services,
                             accounts, set(documents), emails)
        sent: dict[str, str] = {}
        if send and mails:
            from pipeline.collect.mail import send_warnings

            sent = send_warnings(ws, mails)
            cases, events = store.read_store(ws)
            rows = []
            for case_id, address in sent.items():
                updated, ev = store.with_event(store.case_row(cases, case_id),
                                               Event("sent", on, reason=address))
                cases = store.replace_case(cases, updated)
                rows.append(ev)
            if rows:
                store.write_store(ws, cases, store.append_events(events, rows))
        audit(ws, "collect warn",
              inputs={"period": period, "on": str(on), "accounts": accounts, "send": send},
              outputs={"documents": [str(p) for p in documents.values()], "sent": sorted(sent)})
    return WarnResult(documents, sent, skipped)


def _emails(ws: Workspace) -> dict[str, str]:
    """account_id → e-mail of the current registers (an address given after the seal counts)."""
    from pipeline.ingest.registers import load_store

    accounts = load_store(ws, names=["accounts"])["accounts"].filter(pl.col("email").is_not_null())
    return dict(zip(accounts["account_id"].to_list(), accounts["email"].str.strip_chars().to_list(),
                    strict=True))


def _unsent(ws: Workspace, cases: pl.DataFrame, events: pl.DataFrame, regs: dict[str, pl.DataFrame],
            debts: pl.DataFrame, services: pl.DataFrame, accounts: list[str] | None,
            done: set[str], emails: dict[str, str]) -> list[tuple[str, str, str, str, bytes]]:
    """The warned open cases whose warning has no ``sent`` event yet, with the payer's e-mail."""
    sent = set(events.filter(pl.col("action") == "sent")["case_id"].to_list())
    chosen = cases.filter((pl.col("stage") == "warned") & (pl.col("status") == "open")
                          & ~pl.col("case_id").is_in(sorted(sent | done)))
    if accounts:
        chosen = chosen.filter(pl.col("account_id").is_in(accounts))
    last = events.filter(pl.col("action") == "warned").sort("seq").group_by("case_id").last()
    warned = {r["case_id"]: r for r in last.iter_rows(named=True)}
    out = []
    for case in chosen.iter_rows(named=True):
        email = emails.get(case["account_id"])
        event = warned.get(case["case_id"])
        if not email or event is None or not event["document"]:
            continue
        path = ws.home / str(event["document"])
        if not path.is_file():
            continue
        facts = warning_facts(case, regs, debts, services, event["on"])
        out.append((case["case_id"], email, facts.debtor_name, warning_text(facts), path.read_bytes()))
    return out


# --------------------------------------------------------------------------- restriction


RESTRICTION_TITLES = {
    "case_id": "Дело", "account_id": "Лицевой счёт", "payer_name": "Потребитель", "address": "Адрес",
    "service": "Услуга", "measure": "Мера", "debt": "Долг, руб.", "warned_on": "Предупреждение доставлено",
    "possible_on": "Ограничение возможно с",
}


@dataclass(frozen=True)
class RestrictResult:
    """Per supplier the list written (CSV and XLSX) and the cases on it."""

    files: dict[str, list[Path]]
    rows: pl.DataFrame


def _event_on(events: pl.DataFrame, case_id: str, action: str) -> date | None:
    rows = events.filter((pl.col("case_id") == case_id) & (pl.col("action") == action))
    return rows["on"].max() if rows.height else None  # type: ignore[return-value]


def narrow(regs: dict[str, pl.DataFrame], account_ids: pl.Series) -> dict[str, pl.DataFrame]:
    """``regs`` with accounts, premises and buildings cut to ``account_ids`` (lookups per case stay
    cheap in a region of a million accounts)."""
    accounts = regs["accounts"].filter(pl.col("account_id").is_in(account_ids.implode()))
    premises = regs["premises"].filter(pl.col("premise_id").is_in(accounts["premise_id"].implode()))
    buildings = regs["buildings"].filter(pl.col("building_id").is_in(premises["building_id"].implode()))
    return {**regs, "accounts": accounts, "premises": premises, "buildings": buildings}


def restriction_rows(cases: pl.DataFrame, events: pl.DataFrame, regs: dict[str, pl.DataFrame],
                     names: dict[str, str], on: date) -> tuple[pl.DataFrame, list[str]]:
    """The restriction and suspension list on ``on`` and the cases moved to ``restriction``.

    A warned open case whose warning days have passed is listed for restriction of each of its
    ``restrictable_ids`` (never heating, nor cold water in a block of flats — п.122, decided
    when the case was opened); a case already in ``restriction`` is listed for suspension
    (п.119 «в»: restriction impossible, or the debt still unpaid). Pure.
    """
    from pipeline.penalties.parties import premise_address

    out: list[dict] = []
    moved: list[str] = []
    listed = cases.filter((pl.col("status") == "open") & pl.col("stage").is_in(["warned", "restriction"])
                          & (pl.col("restrictable_ids").list.len() > 0))
    regs = narrow(regs, listed["account_id"].unique())
    accounts = {r["account_id"]: r for r in regs["accounts"].iter_rows(named=True)}
    warned_on = dict(events.filter(pl.col("action") == "warned").group_by("case_id").agg(pl.col("on").max())
                     .iter_rows())
    for case in listed.sort("case_id").iter_rows(named=True):
        restrictable = case["restrictable_ids"]
        warned = warned_on.get(case["case_id"])
        if warned is None:
            continue
        start = possible_on(warned, int(case["warning_days"] or 20))
        if on < start:
            continue
        measure = "ограничение (при невозможности — приостановление)" if case["stage"] == "warned" \
            else "приостановление"
        if case["stage"] == "warned":
            moved.append(case["case_id"])
        acc = accounts.get(case["account_id"], {})
        for service in restrictable:
            out.append({"supplier_id": case["supplier_id"], "case_id": case["case_id"],
                        "account_id": case["account_id"], "payer_name": acc.get("payer_name"),
                        "address": premise_address(regs, str(acc.get("premise_id"))) if acc else None,
                        "service_id": service, "service": names.get(service, service), "measure": measure,
                        "debt_kop": case["debt_kop"], "warned_on": warned, "possible_on": start})
    schema = {"supplier_id": pl.String, "case_id": pl.String, "account_id": pl.String,
              "payer_name": pl.String, "address": pl.String, "service_id": pl.String, "service": pl.String,
              "measure": pl.String,
              "debt_kop": pl.Int64, "warned_on": pl.Date, "possible_on": pl.Date}
    return pl.DataFrame(out, schema=schema), moved


def collect_restrict(ws: Workspace, on: date | None = None, supplier: str | None = None) -> RestrictResult:
    """Write the restriction and suspension lists (CSV and XLSX per supplier) for ``on``."""
    from datetime import datetime, time

    from pipeline.tables import excel_csv_bytes, xlsx_bytes
    from rules import read_rule_table

    with workspace_lock(ws, "collect restrict"):
        period = _sealed(ws, None)
        on = on or date.today()
        regs = _registers(ws, period)
        names = _names(read_rule_table(ws.rules, "services"), "service_id", "name")
        cases, events = store.read_store(ws)
        if supplier:
            cases = cases.filter(pl.col("supplier_id") == supplier)
        rows, moved = restriction_rows(cases, events, regs, names, on)
        files: dict[str, list[Path]] = {}
        for (sup,), part in rows.partition_by("supplier_id", as_dict=True, maintain_order=True).items():
            frame = part.with_columns(kopecks_to_decimal_expr("debt_kop").alias("debt")).select(
                list(RESTRICTION_TITLES))
            folder = collection_dir(ws) / "restriction" / str(sup)
            stem = f"restriction-{on:%Y-%m-%d}"
            csv_path, xlsx_path = folder / f"{stem}.csv", folder / f"{stem}.xlsx"
            atomic_write_bytes(csv_path, excel_csv_bytes(frame, RESTRICTION_TITLES))
            atomic_write_bytes(xlsx_path, xlsx_bytes(frame, datetime.combine(on, time()), sheet="Ограничение",
                                                     titles=RESTRICTION_TITLES))
            files[str(sup)] = [csv_path, xlsx_path]
        all_cases, all_events = store.read_store(ws)
        new_events = []
        for case_id in moved:
            case = store.case_row(all_cases, case_id)
            docs = files.get(case["supplier_id"], [None])
            updated, ev = store.step(case, Event("restricted", on, amount_kop=case["debt_kop"],
                                                 document=_relative(ws, docs[0]) if docs[0] else None))
            all_cases = store.replace_case(all_cases, updated)
            new_events.append(ev)
        if new_events:
            store.write_store(ws, all_cases, store.append_events(all_events, new_events))
        audit(ws, "collect restrict", inputs={"on": str(on), "supplier": supplier},
              outputs={"files": [str(p) for ps in files.values() for p in ps], "cases": moved})
    return RestrictResult(files, rows)


# --------------------------------------------------------------------------- court packages


@dataclass(frozen=True)
class PackageResult:
    """A court document made for a case."""

    case_id: str
    kind: str
    path: Path
    debt_kop: int
    penalty_kop: int
    duty_kop: int


def _court_facts(ws: Workspace, case: dict, on: date, court: str, duty_court: str,
                 earlier: date | None) -> tuple[CourtFacts, str]:
    from pipeline.penalties.court import court_statement
    from pipeline.penalties.parties import creditor, debtor, premise_address
    from rules import read_rule_table

    period = _sealed(ws, None)
    regs = _registers(ws, period)
    statement = court_statement(ws, case["account_id"], on, case["supplier_id"])
    services = read_rule_table(ws.rules, "services")
    names = _names(services, "service_id", "name")
    schemes = _names(services, "service_id", "penalty_scheme")
    claim_kop = statement.debt_kop + statement.penalty_kop
    duty = load_state_duty(ws.rules)
    acc = regs["accounts"].filter(pl.col("account_id") == case["account_id"]).row(0, named=True)
    capital = all(schemes.get(s) == "capital_repair" for s in case["service_ids"] or [])
    facts = CourtFacts(
        case_id=case["case_id"], account_id=case["account_id"], court=court,
        creditor=creditor(regs, case["supplier_id"]), debtor=debtor(regs, case["account_id"]),
        address=premise_address(regs, str(acc["premise_id"])) or "—",
        services=[names.get(s, s) for s in case["service_ids"] or []], periods=statement.periods,
        debt_kop=statement.debt_kop, penalty_kop=statement.penalty_kop,
        limited=(statement.debt_total_kop, statement.penalty_total_kop) != (statement.debt_kop,
                                                                            statement.penalty_kop),
        until=on, duty_kop=state_duty_kop(duty, duty_court, claim_kop, on),
        duty_source=duty_source(duty, duty_court, on), on=on, penalty_part="14.1" if capital else "14",
        subject="взносов на капитальный ремонт" if capital else "жилого помещения и коммунальных услуг",
        warned_on=earlier if case["payer_kind"] == "person" else None,
        claim_on=earlier if case["payer_kind"] == "organization" else None,
        warning_days=int(case["warning_days"] or 0))
    return facts, statement.html


def _step_document(ws: Workspace, case: dict, action: str, on: date, data: bytes, name: str,
                   amount_kop: int, penalty_kop: int | None, events: pl.DataFrame,
                   cases: pl.DataFrame) -> Path:
    path, digest = _write_document(ws, case["case_id"], name, data)
    changes = {} if penalty_kop is None else {"penalty_kop": penalty_kop}
    updated, ev = store.step(case, Event(action, on, amount_kop=amount_kop, document=_relative(ws, path),
                                         sha256=digest), changes=changes)
    store.write_store(ws, store.replace_case(cases, updated), store.append_events(events, [ev]))
    return path


def _not_before(case: dict, events: pl.DataFrame, action: str, on: date, what: str) -> date:
    since = _event_on(events, case["case_id"], action)
    if since is None:
        raise BillingError(f"Дело {case['case_id']}: нет записи «{store.ACTION_NAMES[action]}» — {what} "
                           "составляется после неё.")
    start = possible_on(since, int(case["warning_days"] or 0))
    if on < start:
        raise BillingError(
            f"Дело {case['case_id']}: {what} можно составить не раньше {start:%d.%m.%Y} — "
            f"{case['warning_days']} дн. со дня «{store.ACTION_NAMES[action]}» {since:%d.%m.%Y} ещё "
            "не прошли.")
    return since


def collect_court(ws: Workspace, case_id: str, on: date | None = None, court: str | None = None
                  ) -> PackageResult:
    """The court package of a case: a person's application for a court order (after the warning
    days), an organization's arbitration claim (after the claim's 30 days); one PDF with the
    court statement."""
    with workspace_lock(ws, "collect court"):
        on = on or date.today()
        cases, events = store.read_store(ws)
        case = store.case_row(cases, case_id)
        person = case["payer_kind"] == "person"
        action = "court" if person else "arbitration"
        store.step(case, Event(action, on))  # refuses a step out of order before anything is computed
        what = "заявление о вынесении судебного приказа" if person else "иск в арбитражный суд"
        earlier = _not_before(case, events, "warned" if person else "claim", on, what)
        kind = "order" if person else "arbitration"
        facts, statement_html = _court_facts(ws, case, on, court or DEFAULT_COURT[kind], kind, earlier)
        html = render_html("court_order", court_order_view(facts)) if person \
            else render_html("arbitration", arbitration_view(facts))
        data = pdf_bytes([html], [statement_html])
        name = f"{'court-order' if person else 'arbitration'}-{on:%Y-%m-%d}.pdf"
        path = _step_document(ws, case, action, on, data, name, facts.debt_kop + facts.penalty_kop,
                              facts.penalty_kop, events, cases)
        audit(ws, f"collect {'court' if person else 'arbitration'}", inputs={"case": case_id, "on": str(on)},
              outputs={"document": str(path), "debt_kop": facts.debt_kop, "penalty_kop": facts.penalty_kop,
                       "duty_kop": facts.duty_kop, "duty_rule": facts.duty_source})
    return PackageResult(case_id, action, path, facts.debt_kop, facts.penalty_kop, facts.duty_kop)


def collect_claim(ws: Workspace, case_id: str, on: date | None = None) -> PackageResult:
    """An organization's claim (претензия): the debt and penalty on ``on``, 30 days to pay
    (АПК 4 ч.5); the case moves to ``claim``."""
    with workspace_lock(ws, "collect claim"):
        on = on or date.today()
        cases, events = store.read_store(ws)
        case = store.case_row(cases, case_id)
        store.step(case, Event("claim", on))
        facts, _ = _court_facts(ws, case, on, "", "arbitration", None)
        data = pdf_bytes([render_html("claim", claim_view(facts))])
        path = _step_document(ws, case, "claim", on, data, f"claim-{on:%Y-%m-%d}.pdf",
                              facts.debt_kop + facts.penalty_kop, facts.penalty_kop, events, cases)
        audit(ws, "collect claim", inputs={"case": case_id, "on": str(on)},
              outputs={"document": str(path), "debt_kop": facts.debt_kop, "penalty_kop": facts.penalty_kop})
    return PackageResult(case_id, "claim", path, facts.debt_kop, facts.penalty_kop, 0)


# --------------------------------------------------------------------------- record


def collect_record(ws: Workspace, case_id: str, event: str, on: date, reason: str | None = None,
                   number: str | None = None, amount_kop: int | None = None) -> dict:
    """Record the court's answer or the case's end (:data:`pipeline.collect.cases.RECORDED`)."""
    if event not in store.RECORDED:
        raise BillingError(f"Событие «{event}» не записывается: допустимо {', '.join(store.RECORDED)}.")
    with workspace_lock(ws, "collect record"):
        cases, events = store.read_store(ws)
        case = store.case_row(cases, case_id)
        changes: dict[str, object] = {}
        if event == "paid":
            changes = {"recovered_kop": case["debt_opened_kop"] if amount_kop is None else amount_kop}
        updated, ev = store.step(case, Event(event, on, amount_kop=amount_kop, reason=reason, number=number),
                                 changes=changes)
        store.write_store(ws, store.replace_case(cases, updated), store.append_events(events, [ev]))
        audit(ws, "collect record", inputs={"case": case_id, "event": event, "on": str(on), "reason": reason,
                                            "number": number})
    return updated


def case_events(ws: Workspace, case_id: str) -> pl.DataFrame:
    """The log of one case, oldest first."""
    _, events = store.read_store(ws)
    return events.filter(pl.col("case_id") == case_id).sort("seq")
