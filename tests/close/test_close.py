"""Period lifecycle and money in = money out, through the stage functions (no Prefect)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.allocate import balances
from pipeline.close import check_can_close, compute, load_inputs, seal
from pipeline.close.compute import summary
from pipeline.dates import Period
from pipeline.ingest.payments import import_payment_file, load_payments
from pipeline.ingest.registers import ingest
from pipeline.workspace import BillingError, Workspace
from rules import load_rules

PAYMENTS = """\
payment_id,paid_on,account_id,amount,period,agent
p1,2026-09-05,A1,1000.00,2026-08,sber
p2,2026-09-06,A2,6244.01,,post
p3,2026-09-07,A3,100000.00,,lk
"""


def close(ws: Workspace, period: str) -> Path:
    inputs = load_inputs(ws, Period.parse(period))
    return seal(ws, compute(inputs), inputs)


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        digest.update(str(p.relative_to(root)).encode())
        if p.is_file():
            digest.update(p.read_bytes())
    return digest.hexdigest()


def test_sealed_period_is_never_rewritten(town: Workspace) -> None:
    ingest(town)
    folder = close(town, "2026-08")
    before = tree_digest(folder)
    with pytest.raises(BillingError, match="уже закрыт"):
        close(town, "2026-08")
    with pytest.raises(BillingError, match="раньше последнего закрытого"):
        check_can_close(town, Period(2026, 7))
    with pytest.raises(BillingError, match="Сначала закройте период 2026-09"):
        check_can_close(town, Period(2026, 10))
    assert tree_digest(folder) == before
    assert not [p for p in town.periods.iterdir() if p.name.startswith(".")]


def test_failed_close_leaves_no_half_written_period(town: Workspace) -> None:
    ingest(town)
    inputs = load_inputs(town, Period(2026, 8))
    result = compute(inputs)

    def broken_render(tmp: Path) -> dict:
        (tmp / "receipts").mkdir()
        raise RuntimeError("renderer died")

    with pytest.raises(RuntimeError):
        seal(town, result, inputs, broken_render)
    assert list(town.periods.iterdir()) == []
    close(town, "2026-08")  # and the period can still be closed afterwards


def test_balances_carry_and_payments_apply_once(town: Workspace, tmp_path: Path) -> None:
    ingest(town)
    close(town, "2026-08")
    pay = tmp_path / "pay.csv"
    pay.write_text(PAYMENTS, encoding="utf-8")
    first = import_payment_file(town, pay)
    again = import_payment_file(town, pay)
    assert (first.accepted, first.accepted_kop) == (3, 10724401)
    assert again.already_imported and load_payments(town).height == 3

    close(town, "2026-09")
    sep = pl.read_parquet(town.period_dir("2026-09") / "balances.parquet")
    aug = pl.read_parquet(town.period_dir("2026-08") / "balances.parquet")
    charges = pl.read_parquet(town.period_dir("2026-09") / "charges.parquet")
    alloc = pl.read_parquet(town.period_dir("2026-09") / "allocations.parquet")
    # opening of September = closing of August, per account and supplier
    joined = aug.select("account_id", "supplier_id", "closing").join(
        sep.select("account_id", "supplier_id", "opening"), on=["account_id", "supplier_id"])
    assert (joined["closing"] == joined["opening"]).all()
    # charges per account add up to the balances' charged column
    per_acc = charges.group_by("account_id").agg(pl.col("amount").sum()).sort("account_id")
    bal_acc = sep.group_by("account_id").agg(pl.col("charged").sum()).sort("account_id")
    assert per_acc["amount"].to_list() == bal_acc["charged"].to_list()
    assert str(alloc["amount"].sum()) == "107244.01"
    # A2 paid exactly its August bill; A3 overpaid and carries an advance.
    closing = dict(sep.group_by("account_id").agg(pl.col("closing").sum()).iter_rows())
    opening = dict(sep.group_by("account_id").agg(pl.col("opening").sum()).iter_rows())
    charged = dict(sep.group_by("account_id").agg(pl.col("charged").sum()).iter_rows())
    assert closing["A2"] == charged["A2"]
    assert closing["A3"] == opening["A3"] + charged["A3"] - 100000
    assert alloc["amount"].dtype == pl.Decimal(18, 2)

    # A payment imported after its period was closed is applied in the next open period.
    late = tmp_path / "late.csv"
    late.write_text("payment_id,paid_on,account_id,amount,period,agent\n"
                    "p9,2026-09-30,A1,10.00,,sber\n", encoding="utf-8")
    import_payment_file(town, late)
    inputs = load_inputs(town, Period(2026, 10))
    result = compute(inputs)
    # A3's advance is offset against October as the pseudo-payment «advance»: the summary counts p9 alone.
    assert result.allocations.filter(pl.col("kind") == "advance_offset").height > 0
    assert summary(result)["payments"] == 1
    seal(town, result, inputs)
    oct_alloc = pl.read_parquet(town.period_dir("2026-10") / "allocations.parquet")
    received = oct_alloc.filter(pl.col("kind").is_in(["payment", "advance"]))
    assert received["payment_id"].unique().to_list() == ["p9"]


accounts = st.sampled_from(["A1", "A2", "A3", "A4"])
S, I64 = pl.String, pl.Int64


def frame(rows: list, schema: dict) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.lists(st.tuples(accounts, st.sampled_from(["s1", "s2", "s3"]),
                             st.sampled_from(["X", "Y"]), st.integers(0, 500_000)), max_size=20),
    second=st.lists(st.tuples(accounts, st.sampled_from(["s1", "s2"]),
                              st.sampled_from(["X", "Y"]), st.integers(0, 500_000)), max_size=20),
    payments=st.lists(st.tuples(accounts, st.integers(1, 1_000_000),
                                st.sampled_from([None, "2026-08", "2026-09"]),
                                st.integers(1, 28), st.booleans()), max_size=15),
)
def test_money_in_equals_money_out(first: list, second: list, payments: list) -> None:
    """Over two periods: every payment is allocated to the kopeck, nothing is overpaid,
    and the balances equal the open items per account and supplier."""
    from datetime import date

    from pipeline.allocate.ledger import ITEM_SCHEMA, PAID_KINDS, apply_period

    charge_schema = {"account_id": S, "service_id": S, "supplier_id": S, "amount_kop": I64}
    pay_schema = {"payment_id": S, "agent": S, "account_id": S, "paid_on": pl.Date,
                  "period": S, "amount_kop": I64}
    items = pl.DataFrame(schema=ITEM_SCHEMA)
    opening = pl.DataFrame(schema={"account_id": S, "supplier_id": S, "opening_kop": I64})
    for month, charges in (("2026-08", first), ("2026-09", second)):
        month_no = int(month[-2:])
        pays = frame([(f"p{i}", "bank", a, date(2026, month_no, d), named, amt)
                      for i, (a, amt, named, d, in_first) in enumerate(payments)
                      if in_first == (month == "2026-08")], pay_schema)
        ch = frame(charges, charge_schema)
        alloc, new_items = apply_period(items, ch, pays, month)
        received = alloc.filter(pl.col("kind").is_in(["payment", "advance"]))
        per_payment = dict(received.group_by("payment_id").agg(pl.col("amount_kop").sum()).iter_rows())
        assert per_payment == dict(pays.select("payment_id", "amount_kop").iter_rows())
        assert (alloc["amount_kop"] > 0).all() or alloc.filter(
            pl.col("amount_kop") <= 0)["kind"].eq("advance_transfer").all()
        assert (new_items.filter(pl.col("charge_period").is_not_null())["outstanding_kop"] > 0).all()
        assert new_items["outstanding_kop"].sum() == (
            items["outstanding_kop"].sum() + ch["amount_kop"].sum() - pays["amount_kop"].sum())
        bal = balances(opening, ch, alloc.filter(pl.col("kind").is_in(PAID_KINDS)))
        per_supplier = new_items.group_by("account_id", "supplier_id").agg(
            pl.col("outstanding_kop").sum())
        joined = bal.join(per_supplier, on=["account_id", "supplier_id"], how="full", coalesce=True,
                          nulls_equal=True)
        assert (joined["closing_kop"].fill_null(0) == joined["outstanding_kop"].fill_null(0)).all()
        assert (bal["closing_kop"] == bal["opening_kop"] + bal["charged_kop"]
                + bal["recalculated_kop"] + bal["penalty_kop"] - bal["paid_kop"]).all()
        items = new_items
        opening = bal.select("account_id", "supplier_id", pl.col("closing_kop").alias("opening_kop"))


def test_same_inputs_give_identical_tables(tmp_path: Path) -> None:
    """A close is reproducible: computed twice, every output table is the same, row for row."""
    from pipeline.close import to_outputs
    from pipeline.demo import _pay_and_import
    from pipeline.synth import generate_city
    from pipeline.workspace import init_workspace

    ws = init_workspace(tmp_path / "city")
    generate_city(ws.home, accounts=2000, start=Period(2026, 8), months=2)
    ingest(ws)
    close(ws, "2026-08")
    _pay_and_import(ws, Period(2026, 8))
    inputs = load_inputs(ws, Period(2026, 9))
    first, second = to_outputs(compute(inputs)), to_outputs(compute(inputs))
    assert {name: first[name].equals(second[name]) for name in first} == {name: True for name in first}


def test_broken_settings_file_is_named_in_the_message(town: Workspace) -> None:
    ingest(town)
    (town.home / "settings.toml").write_text("[readings\nwindow_end_day = 25\n", encoding="utf-8")
    with pytest.raises(BillingError, match=r"settings\.toml: файл настроек не читается"):
        load_inputs(town, Period(2026, 8))


@pytest.mark.parametrize(("section", "line", "message"), [
    ("heating", 'true_up_month = 13', "true_up_month = 13: нужен номер месяца 1–12"),
    ("heating", 'payment = "monthly"', "payment = 'monthly': допустимо «even» или «in_season»"),
    ("readings", 'settle_norm_months = "no"', "settle_norm_months = 'no': нужно true или false"),
])
def test_a_bad_setting_stops_the_close_with_its_name(town: Workspace, section: str, line: str,
                                                     message: str) -> None:
    path = town.home / "settings.toml"
    key = line.split(" = ")[0]
    text = "\n".join(line if row.startswith(f"{key} = ") else row
                     for row in path.read_text(encoding="utf-8").splitlines())
    path.write_text(text, encoding="utf-8")
    ingest(town)
    with pytest.raises(BillingError, match=f"settings.toml \\[{section}\\] {message}"):
        load_inputs(town, Period(2026, 8))


def test_settled_by_must_name_a_metered_service(town: Workspace) -> None:
    path = town.rules / "services.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "общего имущества,м³,common_property,standard,61,cold_water",
        "общего имущества,м³,common_property,standard,61,maintenance"), encoding="utf-8")
    with pytest.raises(BillingError, match="settled_by = «maintenance»: нужен код услуги-ресурса"):
        load_rules(town.rules)
