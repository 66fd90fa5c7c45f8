"""Unit tests of the collection rules, debtors and the case state machine: inline frames, exact kopecks."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pipeline.collect.cases import Event, empty_cases, repair, step, sync, with_event
from pipeline.collect.debtors import (
    agreements_in_force,
    block_of_flats,
    case_debts,
    due_dates,
    find_debtors,
    is_paused,
    overdue_debts,
    paused_keys,
)
from pipeline.collect.policy import load_collection, load_state_duty, rule_for, state_duty_kop
from pipeline.collect.summary import stage_summary
from pipeline.collect.workflow import possible_on, restriction_rows
from pipeline.workspace import BillingError

DEFAULTS = Path(__file__).resolve().parents[2] / "rules" / "defaults"


def frame(text: str, **types: pl.DataType) -> pl.DataFrame:
    rows = [line.split(",") for line in text.strip().splitlines()]
    head, body = rows[0], rows[1:]
    data = {c: [r[i] or None for r in body] for i, c in enumerate(head)}
    out = pl.DataFrame(data, schema={c: pl.String for c in head})
    return out.with_columns(pl.col(c).str.to_date() if t == pl.Date else pl.col(c).cast(t) for c, t in types.items())


# --------------------------------------------------------------------------- state duty (НК 333.19, 333.21)

@pytest.mark.parametrize(("court", "claim_kop", "on", "duty_kop"), [
    # After 08.09.2024: up to 100 000 ₽ — 4 000 ₽; then + 3 % of the excess; a court order is half, ≥ 2 000 ₽.
    ("general", 5_000_000, date(2025, 1, 1), 400_000),
    ("general", 15_000_000, date(2025, 1, 1), 550_000),
    ("general", 40_000_000, date(2025, 1, 1), 1_250_000),        # 10 000 + 2,5 % × 100 000
    ("order", 139_599, date(2026, 12, 12), 200_000),
    ("order", 15_000_000, date(2025, 1, 1), 275_000),
    ("order", 40_000_000, date(2025, 1, 1), 625_000),
    # Before: 4 % with 400 ₽ minimum, 50 % for an order (no minimum of its own).
    ("general", 1_500_000, date(2024, 1, 1), 60_000),
    ("general", 5_000_000, date(2024, 1, 1), 170_000),           # 800 + 3 % × 30 000
    ("order", 5_000_000, date(2024, 1, 1), 85_000),
    ("general", 5_000_012, date(2024, 1, 1), 170_000),           # whole rubles (НК 52 п.6)
    ("arbitration", 5_000_000, date(2025, 1, 1), 1_000_000),
    ("arbitration", 20_000_000, date(2025, 1, 1), 1_500_000),    # 10 000 + 5 % × 100 000
])
def test_state_duty_scale(court: str, claim_kop: int, on: date, duty_kop: int) -> None:
    assert state_duty_kop(load_state_duty(DEFAULTS), court, claim_kop, on) == duty_kop


def test_state_duty_without_a_row_in_force_names_the_table() -> None:
    with pytest.raises(BillingError, match=r"state_duty\.csv"):
        state_duty_kop(load_state_duty(DEFAULTS), "order", 100, date(2000, 1, 1))


def test_collection_rule_own_row_then_star() -> None:
    table = load_collection(DEFAULTS)
    cold = rule_for(table, "cold_water", "person", date(2026, 11, 20))
    assert cold is not None and (cold.threshold, cold.months, cold.warning_days, cold.restriction) == (
        "norm_months", 2, 20, "not_in_block_of_flats")
    intercom = rule_for(table, "intercom", "person", date(2026, 11, 20))
    assert intercom is not None and intercom.service == "*" and intercom.amount_kop == 500_000
    org = rule_for(table, "cold_water", "organization", date(2026, 11, 20))
    assert org is not None and (org.threshold, org.warning_days, org.restriction) == ("amount", 30, "never")


def test_possible_on_counts_full_days_after_delivery() -> None:
    assert possible_on(date(2026, 11, 21), 20) == date(2026, 12, 12)
    assert possible_on(date(2026, 11, 21), 30) == date(2026, 12, 22)


# --------------------------------------------------------------------------- debtors

DEBTS = """
account_id,service_id,supplier_id,charge_period,outstanding_kop
A1,cold_water,VK,2026-08,24807
A1,cold_water,VK,2026-09,24807
A1,cold_water,VK,2026-10,27810
A1,heating,TS,2026-09,227630
A1,heating,TS,2026-10,255190
A1,penalty,VK,2026-10,225
A2,cold_water,VK,2026-10,27810
A2,maintenance,UK,2026-08,100000
A2,maintenance,UK,2026-09,100000
A2,maintenance,UK,2026-10,100001
"""


def debts() -> pl.DataFrame:
    return frame(DEBTS, outstanding_kop=pl.Int64)


def test_overdue_debt_counts_months_past_their_due_date_and_leaves_penalties_out() -> None:
    dues = due_dates(pl.DataFrame({"from": [date(2026, 2, 1)], "day": [15]}), ["2026-08", "2026-09", "2026-10", None])
    # October is due 16.11.2026 (15.11 a Sunday): on the 16th it is not overdue yet.
    on16 = overdue_debts(debts(), dues, date(2026, 11, 16)).filter(pl.col("account_id") == "A1")
    assert on16.filter(pl.col("service_id") == "cold_water")["debt_kop"].to_list() == [49614]
    on17 = overdue_debts(debts(), dues, date(2026, 11, 17))
    a1 = on17.filter(pl.col("account_id") == "A1").sort("service_id")
    assert a1.select("service_id", "debt_kop", "through_period").rows() == [
        ("cold_water", 77424, "2026-10"), ("heating", 482820, "2026-10")]


def _candidates(on: date, block: bool = True) -> pl.DataFrame:
    dues = due_dates(pl.DataFrame({"from": [date(2026, 2, 1)], "day": [15]}), ["2026-08", "2026-09", "2026-10"])
    overdue = overdue_debts(debts(), dues, on)
    norms = overdue.select("account_id", "service_id", "supplier_id").with_columns(
        pl.when(pl.col("service_id") == "cold_water").then(27810)   # 4.745 m³ × 58.61 ₽
        .when(pl.col("service_id") == "heating").then(255190).cast(pl.Int64).alias("norm_charge_kop"))
    accounts = frame("account_id,premise_id,payer_kind\nA1,P1,person\nA2,P2,person")
    # A block of flats: both flats in B1; else two private houses of one premise each.
    premises = pl.DataFrame({"premise_id": ["P1", "P2"], "building_id": ["B1", "B1"] if block else ["H1", "H2"]})
    return find_debtors(overdue, norms, accounts, load_collection(DEFAULTS), block_of_flats(premises), premises, on)


def test_norm_months_is_per_service_and_amount_per_supplier() -> None:
    found = _candidates(date(2026, 11, 17))
    rows = {(r["account_id"], r["service_id"]): r for r in found.iter_rows(named=True)}
    # 774.24 > 2 × 278.10: a debtor of cold water (п.118); heating 4 828.20 < 2 × 2 551.90: not yet.
    assert rows[("A1", "cold_water")]["meets"] and rows[("A1", "cold_water")]["threshold_kop"] == 55620
    assert not rows[("A1", "heating")]["meets"]
    assert not rows[("A2", "cold_water")]["meets"]  # 278.10 = one month only
    # Maintenance: 3 000.01 ₽ ≤ 5 000 ₽ → not a debtor by amount.
    assert not rows[("A2", "maintenance")]["meets"]
    # Never heating; cold water not in a block of flats, but in a private house it may be restricted.
    assert not rows[("A1", "heating")]["restrictable"] and not rows[("A1", "cold_water")]["restrictable"]


def test_cold_water_is_restrictable_in_a_private_house() -> None:
    found = _candidates(date(2026, 11, 17), block=False)
    cold = found.filter((pl.col("account_id") == "A1") & (pl.col("service_id") == "cold_water"))
    assert cold["restrictable"].to_list() == [True]
    assert not found.filter(pl.col("service_id") == "heating")["restrictable"].any()


def test_agreements_kept_and_broken() -> None:
    accounts = frame("account_id,repayment_agreement_until\nA1,2026-12-31\nA2,\nA3,2026-01-01",
                     repayment_agreement_until=pl.Date)
    agreements = frame("account_id,supplier_id,from,to,broken_on\nA2,VK,2026-11-01,2027-04-30,\n"
                       "A3,TS,2026-11-01,2027-04-30,2026-12-01", **{"from": pl.Date, "to": pl.Date,
                                                                   "broken_on": pl.Date})
    kept = agreements_in_force(accounts, agreements, date(2026, 11, 20))
    assert is_paused(kept, "A1", "TS") and is_paused(kept, "A2", "VK") and not is_paused(kept, "A2", "TS")
    assert is_paused(kept, "A3", "TS")
    later = agreements_in_force(accounts, agreements, date(2026, 12, 1))
    assert not is_paused(later, "A3", "TS")  # broken on that day: the case continues
    keys = pl.DataFrame({"account_id": ["A1", "A1", "A2", "A2", "A3"], "supplier_id": ["TS", "VK", "VK", "TS", "TS"]})
    assert paused_keys(kept, keys) == {("A1", "TS"), ("A1", "VK"), ("A2", "VK"), ("A3", "TS")}
    assert paused_keys(later, keys) == {("A1", "TS"), ("A1", "VK"), ("A2", "VK")}


def test_case_debt_is_the_supplier_principal_of_the_months_it_covers() -> None:
    keys = pl.DataFrame({"case_id": ["C1", "C2"], "account_id": ["A1", "A2"], "supplier_id": ["VK", "UK"],
                         "through_period": ["2026-09", "2026-10"]})
    assert case_debts(debts(), keys).sort("case_id").rows() == [("C1", 49614), ("C2", 300001)]


# --------------------------------------------------------------------------- cases

def _debtor(account: str = "A1", kind: str = "person", restrictable: list[str] | None = None) -> pl.DataFrame:
    return pl.DataFrame([{"account_id": account, "supplier_id": "VK", "payer_kind": kind,
                          "service_ids": ["cold_water", "sewerage"], "restrictable_ids": restrictable or [],
                          "debt_kop": 138392, "through_period": "2026-10", "warning_days": 20}])


def _opened(kind: str = "person") -> tuple[pl.DataFrame, dict]:
    done = sync(empty_cases(), _debtor(kind=kind), pl.DataFrame(schema={"case_id": pl.String, "debt_kop": pl.Int64}),
                set(), "2026-10", date(2026, 11, 20), user="tester")
    return done.cases, done.cases.row(0, named=True)


def test_sync_opens_once_and_closes_when_paid() -> None:
    cases, case = _opened()
    assert (case["case_id"], case["stage"], case["status"], case["seq"]) == ("C000001", "debtor", "open", 1)
    again = sync(cases, _debtor(), pl.DataFrame({"case_id": ["C000001"], "debt_kop": [138392]}), set(), "2026-10",
                 date(2026, 11, 20), user="tester")
    assert (again.opened, again.updated, len(again.events)) == (0, 0, 0)
    partly = sync(cases, _debtor(), pl.DataFrame({"case_id": ["C000001"], "debt_kop": [38392]}), set(), "2026-11",
                  date(2026, 12, 20), user="tester")
    assert partly.cases.row(0, named=True)["recovered_kop"] == 100000
    paid = sync(partly.cases, _debtor().clear(), pl.DataFrame({"case_id": ["C000001"], "debt_kop": [0]}), set(),
                "2026-12", date(2027, 1, 20), user="tester")
    row = paid.cases.row(0, named=True)
    assert (row["status"], row["recovered_kop"], paid.paid) == ("paid", 138392, 1)
    # An older period does not move a case back.
    stale = sync(paid.cases, _debtor().clear(), pl.DataFrame({"case_id": ["C000001"], "debt_kop": [5]}), set(),
                 "2026-10", date(2027, 1, 21), user="tester")
    assert not stale.events
    # Nor does an older period's debtor reopen the paid debt.
    reopened = sync(paid.cases, _debtor(), pl.DataFrame(schema={"case_id": pl.String, "debt_kop": pl.Int64}),
                    set(), "2026-10", date(2027, 1, 21), user="tester")
    assert reopened.opened == 0
    # A new debt found on a later period is a new case.
    later = sync(paid.cases, _debtor(), pl.DataFrame(schema={"case_id": pl.String, "debt_kop": pl.Int64}),
                 set(), "2027-01", date(2027, 2, 20), user="tester")
    assert later.opened == 1 and later.cases["case_id"].to_list() == ["C000001", "C000002"]


def test_sync_pauses_and_resumes() -> None:
    cases, _ = _opened()
    now = pl.DataFrame({"case_id": ["C000001"], "debt_kop": [138392]})
    paused = sync(cases, _debtor().clear(), now, {("A1", "VK")}, "2026-10", date(2026, 11, 21), user="t")
    assert paused.cases["status"].to_list() == ["paused"]
    with pytest.raises(BillingError, match="соглашение"):
        step(paused.cases.row(0, named=True), Event("warned", date(2026, 11, 22)))
    resumed = sync(paused.cases, _debtor().clear(), now, set(), "2026-10", date(2026, 12, 2), user="t")
    assert resumed.cases["status"].to_list() == ["open"] and resumed.resumed == 1


def test_state_machine_person_and_organization() -> None:
    _, case = _opened()
    with pytest.raises(BillingError, match="возможен только после"):
        step(case, Event("court", date(2026, 12, 12)))
    case, _ = step(case, Event("warned", date(2026, 11, 21)))
    case, _ = step(case, Event("court", date(2026, 12, 12)))
    case, _ = step(case, Event("order_issued", date(2026, 12, 25)))
    case, _ = step(case, Event("order_cancelled", date(2027, 1, 10)))
    case, ev = step(case, Event("claim_filed", date(2027, 2, 1)))
    assert (case["stage"], ev["stage"], ev["seq"]) == ("lawsuit", "lawsuit", 6)
    with pytest.raises(BillingError, match="с причиной"):
        step(case, Event("closed", date(2027, 3, 1)))
    case, _ = step(case, Event("closed", date(2027, 3, 1), reason="списано"))
    with pytest.raises(BillingError, match="уже закрыто"):
        step(case, Event("paid", date(2027, 3, 2)))
    _, org = _opened("organization")
    with pytest.raises(BillingError, match="не применяется"):
        step(org, Event("warned", date(2026, 11, 21)))
    org, _ = step(org, Event("claim", date(2026, 11, 21)))
    org, _ = step(org, Event("arbitration", date(2026, 12, 22)))
    assert org["stage"] == "arbitration"


def test_repair_gives_back_an_event_lost_between_the_two_writes() -> None:
    cases, case = _opened()
    case, _ = with_event(case, Event("warned", date(2026, 11, 21), document="collection/C000001/w.pdf"),
                         stage="warned", user="t")
    cases = pl.DataFrame([case], schema=cases.schema)
    events = pl.DataFrame([{"case_id": "C000001", "seq": 1, "on": date(2026, 11, 20), "stage": "debtor",
                            "action": "opened"}]).cast({"seq": pl.Int64})
    from pipeline.collect.cases import EVENT_SCHEMA

    events = pl.concat([pl.DataFrame(schema=EVENT_SCHEMA), events], how="diagonal_relaxed")
    _, fixed = repair(cases, events)
    assert fixed["action"].to_list() == ["opened", "warned"] and fixed["document"][1] == "collection/C000001/w.pdf"


def test_restriction_rows_never_list_what_may_not_be_restricted() -> None:
    cases, case = _opened()
    case, warned = step({**case, "restrictable_ids": ["sewerage"]}, Event("warned", date(2026, 11, 21)))
    cases = pl.DataFrame([case], schema=cases.schema)
    from pipeline.collect.cases import EVENT_SCHEMA

    events = pl.DataFrame([warned], schema=EVENT_SCHEMA)
    regs = {"accounts": pl.DataFrame({"account_id": ["A1"], "payer_name": ["Иванов"], "premise_id": ["P1"]}),
            "premises": pl.DataFrame({"premise_id": ["P1"], "building_id": ["B1"], "number": ["1"],
                                      "kind": ["residential"]}),
            "buildings": pl.DataFrame({"building_id": ["B1"], "address": ["г. Энск"]})}
    early, moved = restriction_rows(cases, events, regs, {"sewerage": "Водоотведение"}, date(2026, 12, 11))
    assert early.height == 0 and moved == []
    rows, moved = restriction_rows(cases, events, regs, {"sewerage": "Водоотведение"}, date(2026, 12, 12))
    assert rows["service_id"].to_list() == ["sewerage"] and moved == ["C000001"]
    assert rows["address"].to_list() == ["г. Энск, кв. 1"]


def test_stage_summary_counts_debt_and_recovery() -> None:
    cases, case = _opened()
    other = {**case, "case_id": "C000002", "stage": "warned", "debt_kop": 100, "recovered_kop": 50}
    paid = {**case, "case_id": "C000003", "status": "paid", "debt_kop": 0, "recovered_kop": 900}
    table = stage_summary(pl.DataFrame([case, other, paid], schema=cases.schema))
    assert table.rows() == [("должник выявлен", 1, 138392, 0), ("предупреждение вручено", 1, 100, 50),
                            ("погашено", 1, 0, 900), ("Итого", 3, 138492, 950)]


def test_collect_help_pages_are_russian() -> None:
    import re

    from typer.main import get_command
    from typer.testing import CliRunner

    from pipeline.cli import app

    group = get_command(app).commands["collect"]  # type: ignore[attr-defined]
    english = re.compile(r"Usage|Options|Arguments|Commands|Show this|\[required\]|\[default|<str>|<int|<path>")
    for words in (["collect"], *(["collect", name] for name in group.commands)):
        out = CliRunner().invoke(app, [*words, "--help"], prog_name="billing", env={"COLUMNS": "300"}).output
        assert "Вызов: billing" in out and "Показать эту справку и выйти." in out, words
        assert not english.search(out), (words, english.search(out))
    assert sorted(group.commands) == ["arbitration", "claim", "court", "list", "record", "restrict", "warn"]
