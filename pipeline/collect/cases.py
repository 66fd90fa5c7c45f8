"""The collection case store and its state machine (дело о взыскании задолженности).

One case per debt of one account to one supplier (the claimant: a court hears one creditor
at a time). Kept by billing in ``HOME/store/collection/``:

* ``cases.parquet`` — one row per case: what it is (case_id, account_id, supplier_id,
  payer_kind, service_ids, restrictable_ids, through_period — the last month it covers),
  where it is (stage, status, stage_on), the money (debt_opened_kop, debt_kop now,
  recovered_kop, penalty_kop of the last court package) and its last event;
* ``events.parquet`` — the append-only log: case_id, seq, on, stage, action, amount_kop,
  document, sha256, user, reason, number, period, at.

Stages of a person's case: ``debtor`` → ``warned`` (п.119 warning delivered) →
``restriction`` (on the supplier's restriction list; skipped when nothing may be restricted) →
``court`` (application for a court order) → ``order_issued`` → ``order_cancelled`` →
``lawsuit`` (исковое заявление) → ``enforcement``. An organization's: ``debtor`` → ``claim``
(претензия) → ``arbitration`` (arbitration claim) → ``enforcement``. Statuses: ``open``,
``paused`` (a repayment agreement is kept), ``paid`` (the debt is cleared — found by a later
sealed period or recorded), ``closed`` (recorded, with a reason).

Everything here is pure (frames in, frames out); :mod:`pipeline.collect.workflow` reads and
writes the store under the workspace lock. The cases file is written before the events file;
a case whose ``seq`` is ahead of the log (a kill between the two writes) gets its last event
back from its own ``last_*`` columns when the store is read (:func:`repair`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.workspace import BillingError, Workspace, os_user, write_parquet_atomic

PERSON_STAGES = ("debtor", "warned", "restriction", "court", "order_issued", "order_cancelled",
                 "lawsuit", "enforcement")
ORGANIZATION_STAGES = ("debtor", "claim", "arbitration", "enforcement")
STAGES = tuple(dict.fromkeys((*PERSON_STAGES, *ORGANIZATION_STAGES)))
STATUSES = ("open", "paused", "paid", "closed")

STAGE_NAMES = {
    "debtor": "должник выявлен",
    "warned": "предупреждение вручено",
    "restriction": "ограничение услуги",
    "court": "заявление о судебном приказе",
    "order_issued": "судебный приказ вынесен",
    "order_cancelled": "судебный приказ отменён",
    "lawsuit": "исковое заявление",
    "enforcement": "исполнительное производство",
    "claim": "претензия направлена",
    "arbitration": "иск в арбитражный суд",
}
STATUS_NAMES = {"open": "в работе", "paused": "приостановлено (соглашение)", "paid": "погашено",
                "closed": "закрыто"}

#: Events ``billing collect record`` accepts: the court's answers and the case's end.
RECORDED = ("order_issued", "order_cancelled", "claim_filed", "enforcement", "paid", "closed")

ACTION_NAMES = {
    "opened": "дело открыто", "debt": "долг изменился", "paused": "приостановлено: соглашение о погашении",
    "resumed": "возобновлено: соглашения нет или оно нарушено", "warned": "предупреждение (п.119)",
    "restricted": "включено в список на ограничение", "court": "заявление о вынесении судебного приказа",
    "claim": "претензия", "arbitration": "исковое заявление в арбитражный суд",
    "order_issued": "судебный приказ вынесен", "order_cancelled": "судебный приказ отменён",
    "claim_filed": "исковое заявление подано", "enforcement": "исполнительный документ предъявлен",
    "paid": "долг погашен", "closed": "дело закрыто", "sent": "предупреждение отправлено по e-mail",
}

#: (action, payer kind) → (stages it may follow, stage it leads to; None = the stage stays).
TRANSITIONS: dict[tuple[str, str], tuple[tuple[str, ...], str | None]] = {
    ("warned", "person"): (("debtor",), "warned"),
    ("restricted", "person"): (("warned",), "restriction"),
    ("court", "person"): (("warned", "restriction"), "court"),
    ("order_issued", "person"): (("court",), "order_issued"),
    ("order_cancelled", "person"): (("order_issued",), "order_cancelled"),
    ("claim_filed", "person"): (("order_cancelled",), "lawsuit"),
    ("enforcement", "person"): (("order_issued", "lawsuit"), "enforcement"),
    ("claim", "organization"): (("debtor",), "claim"),
    ("arbitration", "organization"): (("claim",), "arbitration"),
    ("claim_filed", "organization"): (("arbitration",), None),
    ("enforcement", "organization"): (("arbitration",), "enforcement"),
}

CASE_SCHEMA = pl.Schema({  # type: ignore[arg-type]  # List(String) is a DataType
    "case_id": pl.String, "account_id": pl.String, "supplier_id": pl.String, "payer_kind": pl.String,
    "service_ids": pl.List(pl.String), "restrictable_ids": pl.List(pl.String), "stage": pl.String,
    "status": pl.String, "opened_on": pl.Date, "opened_period": pl.String, "through_period": pl.String,
    "updated_period": pl.String, "stage_on": pl.Date, "warning_days": pl.Int64,
    "debt_opened_kop": pl.Int64, "debt_kop": pl.Int64, "recovered_kop": pl.Int64, "penalty_kop": pl.Int64,
    "seq": pl.Int64, "last_action": pl.String, "last_on": pl.Date, "last_document": pl.String,
    "last_sha256": pl.String, "last_reason": pl.String, "last_number": pl.String,
})
EVENT_SCHEMA = pl.Schema({
    "case_id": pl.String, "seq": pl.Int64, "on": pl.Date, "stage": pl.String, "action": pl.String,
    "amount_kop": pl.Int64, "document": pl.String, "sha256": pl.String, "user": pl.String,
    "reason": pl.String, "number": pl.String, "period": pl.String, "at": pl.String,
})

ACTIVE = ("open", "paused")


@dataclass(frozen=True)
class Event:
    """One step of a case, as it goes into the log.

    Attributes:
        action: what happened (:data:`ACTION_NAMES`).
        on: the day it happened (delivery, the court's decision, the period's check day).
        amount_kop: the money the step is about (the debt found, the claim, the recovery).
        document: the file made (relative to HOME) and its sha256; reason, number: as recorded.
    """

    action: str
    on: date
    amount_kop: int | None = None
    document: str | None = None
    sha256: str | None = None
    reason: str | None = None
    number: str | None = None
    period: str | None = None


def store_dir(ws: Workspace) -> Path:
    return ws.store / "collection"


def empty_cases() -> pl.DataFrame:
    return pl.DataFrame(schema=CASE_SCHEMA)


def empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


def read_store(ws: Workspace) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The cases and the event log (empty when nothing was ever opened), repaired."""
    folder = store_dir(ws)
    path = folder / "cases.parquet"
    cases = pl.read_parquet(path) if path.is_file() else empty_cases()
    events = (pl.read_parquet(folder / "events.parquet") if (folder / "events.parquet").is_file()
              else empty_events())
    return repair(cases.cast(CASE_SCHEMA), events.cast(EVENT_SCHEMA))


def write_store(ws: Workspace, cases: pl.DataFrame, events: pl.DataFrame) -> None:
    """Write both files atomically, the cases first (see :func:`repair`). Under the lock."""
    folder = store_dir(ws)
    write_parquet_atomic(cases.select(CASE_SCHEMA.names()).sort("case_id"), folder / "cases.parquet")
    write_parquet_atomic(events.select(EVENT_SCHEMA.names()).sort("case_id", "seq"),
                         folder / "events.parquet")


def repair(cases: pl.DataFrame, events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Give back to the log the last event of a case written without it (a kill in between)."""
    if not cases.height:
        return cases, events
    logged = events.group_by("case_id").agg(pl.col("seq").max().alias("_logged"))
    behind = cases.join(logged, on="case_id", how="left").filter(
        pl.col("seq") > pl.col("_logged").fill_null(0))
    if not behind.height:
        return cases, events
    lost = behind.select(
        "case_id", "seq", pl.col("last_on").alias("on"), "stage", pl.col("last_action").alias("action"),
        pl.lit(None, pl.Int64).alias("amount_kop"), pl.col("last_document").alias("document"),
        pl.col("last_sha256").alias("sha256"), pl.lit(None, pl.String).alias("user"),
        pl.lit("восстановлено из дела после сбоя записи журнала").alias("reason"),
        pl.col("last_number").alias("number"), pl.col("updated_period").alias("period"),
        pl.lit(_now()).alias("at"))
    return cases, pl.concat([events, lost.cast(EVENT_SCHEMA)])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def next_case_ids(cases: pl.DataFrame, count: int) -> list[str]:
    """``count`` new case numbers after the highest one (``C000001``, ``C000002``, …)."""
    top = max((int(c[1:]) for c in cases["case_id"].to_list() if c[1:].isdigit()), default=0)
    return [f"C{top + i:06d}" for i in range(1, count + 1)]


def case_row(cases: pl.DataFrame, case_id: str) -> dict:
    rows = cases.filter(pl.col("case_id") == case_id)
    if not rows.height:
        raise BillingError(f"Дела {case_id} нет (billing collect list показывает дела).")
    return rows.row(0, named=True)


def _event_row(case: dict, event: Event, stage: str, user: str) -> dict:
    return {"case_id": case["case_id"], "seq": case["seq"], "on": event.on, "stage": stage,
            "action": event.action, "amount_kop": event.amount_kop, "document": event.document,
            "sha256": event.sha256, "user": user, "reason": event.reason, "number": event.number,
            "period": event.period, "at": _now()}


def with_event(case: dict, event: Event, *, stage: str | None = None, status: str | None = None,
               user: str | None = None, changes: dict[str, Any] | None = None) -> tuple[dict, dict]:
    """The case after ``event`` (its stage, status and ``changes`` of other columns) and the log row."""
    new = dict(case)
    new.update(changes or {})
    if stage is not None and stage != case["stage"]:
        new["stage"] = stage
        new["stage_on"] = event.on
    if status is not None:
        new["status"] = status
    new["seq"] = int(case["seq"] or 0) + 1
    new.update(last_action=event.action, last_on=event.on, last_document=event.document,
               last_sha256=event.sha256, last_reason=event.reason, last_number=event.number)
    return new, _event_row(new, event, new["stage"], user or os_user()[1])


def step(case: dict, event: Event, user: str | None = None,
         changes: dict[str, Any] | None = None) -> tuple[dict, dict]:
    """Apply a stage-changing ``event`` by the state machine, refusing a step out of order."""
    if case["status"] in ("paid", "closed"):
        raise BillingError(f"Дело {case['case_id']} уже {STATUS_NAMES[case['status']]}: шаги по нему не "
                           "записываются.")
    if event.action == "paid":
        return with_event(case, event, status="paid", user=user, changes=changes)
    if event.action == "closed":
        if not event.reason:
            raise BillingError("Закрытие дела без погашения записывается с причиной: --reason \"…\".")
        return with_event(case, event, status="closed", user=user, changes=changes)
    rule = TRANSITIONS.get((event.action, case["payer_kind"]))
    if rule is None:
        kinds = {"person": "гражданина", "organization": "организации"}
        raise BillingError(f"Шаг «{ACTION_NAMES.get(event.action, event.action)}» не применяется к делу "
                           f"{kinds.get(case['payer_kind'], case['payer_kind'])} ({case['case_id']}).")
    before, after = rule
    if case["stage"] not in before:
        allowed = ", ".join(f"«{STAGE_NAMES[s]}»" for s in before)
        raise BillingError(
            f"Дело {case['case_id']} на стадии «{STAGE_NAMES[case['stage']]}»: шаг "
            f"«{ACTION_NAMES.get(event.action, event.action)}» возможен только после стадии {allowed}.")
    if case["status"] == "paused" and event.action in ("warned", "restricted", "court", "claim",
                                                        "arbitration"):
        raise BillingError(f"Дело {case['case_id']} приостановлено: действует соглашение о погашении "
                           "задолженности (Правила 354 п.118). Новые шаги — после его окончания или "
                           "нарушения.")
    return with_event(case, event, stage=after, user=user, changes=changes)


def replace_case(cases: pl.DataFrame, case: dict) -> pl.DataFrame:
    """``cases`` with the row of ``case['case_id']`` replaced by ``case`` (or added)."""
    row = pl.DataFrame([case], schema=CASE_SCHEMA)
    return pl.concat([cases.filter(pl.col("case_id") != case["case_id"]), row]).sort("case_id")


def append_events(events: pl.DataFrame, rows: list[dict]) -> pl.DataFrame:
    if not rows:
        return events
    return pl.concat([events, pl.DataFrame(rows, schema=EVENT_SCHEMA)])


@dataclass(frozen=True)
class SyncResult:
    """What :func:`sync` changed: the cases, the new log rows and the counts for the summary."""

    cases: pl.DataFrame
    events: list[dict]
    opened: int
    paid: int
    paused: int
    resumed: int
    updated: int


def sync(cases: pl.DataFrame, debtors: pl.DataFrame, debts_now: pl.DataFrame,
         paused_keys: set[tuple[str, str]], period: str, on: date, user: str | None = None) -> SyncResult:
    """Open cases for new debtors, update the active ones' debt, pause, resume and close paid ones.

    ``debtors``: per account and supplier the debtor found (account_id, supplier_id,
    payer_kind, service_ids, restrictable_ids, debt_kop, through_period, warning_days) — one
    without an active case is opened. ``debts_now``: case_id, debt_kop for the active cases
    (:func:`pipeline.collect.debtors.case_debts`); a case updated from a later period than
    ``period`` is left alone. ``paused_keys``: (account, supplier) with an agreement kept.
    Nothing changes when nothing did (running twice opens nothing new).
    """
    user = user or os_user()[1]
    rows = {r["case_id"]: r for r in cases.iter_rows(named=True)}
    events: list[dict] = []
    counts = {"opened": 0, "paid": 0, "paused": 0, "resumed": 0, "updated": 0}
    now = dict(zip(debts_now["case_id"].to_list(), debts_now["debt_kop"].to_list(), strict=True))
    for case_id, case in sorted(rows.items()):
        if case["status"] not in ACTIVE or (case["updated_period"] or "") > period or case_id not in now:
            continue
        debt = int(now[case_id])
        key = (case["account_id"], case["supplier_id"])
        if debt != case["debt_kop"]:
            case, ev = with_event(case, Event("debt", on, amount_kop=debt, period=period), user=user,
                                  changes={"debt_kop": debt, "updated_period": period,
                                           "recovered_kop": max(int(case["debt_opened_kop"]) - debt, 0)})
            events.append(ev)
            counts["updated"] += 1
        if debt <= 0:
            case, ev = with_event(case, Event("paid", on, amount_kop=case["recovered_kop"], period=period),
                                  status="paid", user=user, changes={"updated_period": period})
            events.append(ev)
            counts["paid"] += 1
        elif key in paused_keys and case["status"] == "open":
            case, ev = with_event(case, Event("paused", on, period=period), status="paused", user=user)
            events.append(ev)
            counts["paused"] += 1
        elif key not in paused_keys and case["status"] == "paused":
            case, ev = with_event(case, Event("resumed", on, period=period), status="open", user=user)
            events.append(ev)
            counts["resumed"] += 1
        rows[case_id] = case
    # No case is opened twice, nor from an older period than one a case of the key already saw
    # (a debt paid since would come back).
    taken = {(c["account_id"], c["supplier_id"]) for c in rows.values()
             if c["status"] in ACTIVE or (c["updated_period"] or "") > period}
    fresh = [d for d in debtors.sort("account_id", "supplier_id").iter_rows(named=True)
             if (d["account_id"], d["supplier_id"]) not in taken]
    for case_id, d in zip(next_case_ids(cases, len(fresh)), fresh, strict=True):
        key = (d["account_id"], d["supplier_id"])
        case = {
            "case_id": case_id, "account_id": d["account_id"], "supplier_id": d["supplier_id"],
            "payer_kind": d["payer_kind"], "service_ids": d["service_ids"],
            "restrictable_ids": d["restrictable_ids"], "stage": "debtor", "status": "open",
            "opened_on": on, "opened_period": period, "through_period": d["through_period"],
            "updated_period": period, "stage_on": on, "warning_days": d["warning_days"],
            "debt_opened_kop": d["debt_kop"], "debt_kop": d["debt_kop"], "recovered_kop": 0,
            "penalty_kop": None, "seq": 0, "last_action": None, "last_on": None, "last_document": None,
            "last_sha256": None, "last_reason": None, "last_number": None,
        }
        case, ev = with_event(case, Event("opened", on, amount_kop=d["debt_kop"], period=period), user=user)
        events.append(ev)
        counts["opened"] += 1
        if key in paused_keys:
            case, ev = with_event(case, Event("paused", on, period=period), status="paused", user=user)
            events.append(ev)
            counts["paused"] += 1
        rows[case_id] = case
    frame = pl.DataFrame(list(rows.values()), schema=CASE_SCHEMA) if rows else empty_cases()
    return SyncResult(frame.sort("case_id"), events, **counts)
