"""Payments: import exactly once, suspense, refunds, and allocation with exact kopecks.

The town (tests/conftest.py) in August 2026: A1 owes VK 700.88 (cold water 392.10 +
sewerage 308.78), TS 2845.38, UK1 1575.00 — 5121.26 in all.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.allocate.ledger import ITEM_SCHEMA, apply_period
from pipeline.close import compute, load_inputs, seal
from pipeline.dates import Period
from pipeline.ingest.bank_formats import sber_register_bytes
from pipeline.ingest.payments import (
    PaymentImport,
    import_payment_file,
    load_payments,
    load_suspense,
    match_payment,
)
from pipeline.ingest.registers import ingest
from pipeline.workspace import BillingError, Workspace

HEADER = "payment_id,paid_on,account_id,amount,period,agent,refund_of\n"


def close(ws: Workspace, period: str) -> dict[str, pl.DataFrame]:
    inputs = load_inputs(ws, Period.parse(period))
    folder = seal(ws, compute(inputs), inputs)
    return {name: pl.read_parquet(folder / f"{name}.parquet")
            for name in ("allocations", "balances", "debts")}


def pay(ws: Workspace, tmp: Path, rows: str, name: str = "pay.csv") -> PaymentImport:
    path = tmp / name
    path.write_text(HEADER + rows, encoding="utf-8")
    return import_payment_file(ws, path)


def by(frame: pl.DataFrame, *keys: str) -> dict:
    return {tuple(r[k] for k in keys): str(r["amount"]) for r in frame.iter_rows(named=True)}


@pytest.fixture
def august(town: Workspace) -> Workspace:
    ingest(town)
    close(town, "2026-08")
    return town


def test_partial_unnamed_payment_is_split_in_proportion(august: Workspace, tmp_path: Path) -> None:
    pay(august, tmp_path, "p1,2026-09-05,A1,1000.00,,sber,\n")
    out = close(august, "2026-09")
    a1 = out["allocations"].filter(pl.col("payment_id") == "p1")
    # 100000 kop × 39210/512126 = 7656.32; × 30878/… = 6029.38; × 284538/… = 55560.15;
    # × 157500/… = 30754.15 → floors add up to 99999, the last kopeck to the largest
    # remainder (sewerage, .38).
    assert by(a1, "service_id") == {("cold_water",): "76.56", ("sewerage",): "60.30",
                                    ("heating",): "555.60", ("maintenance",): "307.54"}
    assert set(a1["charge_period"]) == {"2026-08"}


def test_named_payment_pays_its_period_and_overpayment_becomes_advance(
        august: Workspace, tmp_path: Path) -> None:
    pay(august, tmp_path, "p1,2026-09-05,A1,6000.00,2026-08,sber,\n")
    out = close(august, "2026-09")
    a1 = out["allocations"].filter(pl.col("payment_id") == "p1")
    paid_aug = a1.filter(pl.col("charge_period") == "2026-08")["amount"].sum()
    assert str(paid_aug) == "5121.26"
    # 878.74 left: September's own charges are not debts yet when the payment is applied? They
    # are: the close adds September's charges first, so the rest pays September, oldest first.
    assert str(a1["amount"].sum()) == "6000.00"
    assert a1.filter(pl.col("charge_period") == "2026-09")["amount"].sum() > 0


def test_unnamed_payment_pays_oldest_period_first(august: Workspace, tmp_path: Path) -> None:
    close(august, "2026-09")  # nothing paid in September: two months of debt
    pay(august, tmp_path, "p1,2026-10-03,A1,5121.26,,sber,\n")
    out = close(august, "2026-10")
    a1 = out["allocations"].filter(pl.col("payment_id") == "p1")
    assert set(a1["charge_period"]) == {"2026-08"}
    debts = out["debts"].filter(pl.col("account_id") == "A1")
    assert "2026-08" not in set(debts["charge_period"])


def test_payment_larger_than_all_debt_leaves_an_advance_consumed_next_month(
        august: Workspace, tmp_path: Path) -> None:
    pay(august, tmp_path, "p1,2026-09-05,A3,20000.00,,sber,\n")
    sep = close(august, "2026-09")
    a3 = sep["debts"].filter(pl.col("account_id") == "A3")
    assert a3["outstanding"].sum() < 0  # advance
    assert a3.filter(pl.col("outstanding") < 0)["charge_period"].null_count() == a3.filter(
        pl.col("outstanding") < 0).height
    oct_ = close(august, "2026-10")
    offsets = oct_["allocations"].filter((pl.col("account_id") == "A3")
                                         & (pl.col("kind") == "advance_offset"))
    assert offsets.height > 0 and set(offsets["charge_period"]) == {"2026-10"}
    bal = oct_["balances"].filter(pl.col("account_id") == "A3")
    assert (bal["closing"] == bal["opening"] + bal["charged"] - bal["paid"]).all()


def test_same_file_and_same_payment_twice_change_nothing(august: Workspace, tmp_path: Path) -> None:
    first = pay(august, tmp_path, "p1,2026-09-05,A1,100.00,,sber,\n")
    again = import_payment_file(august, tmp_path / "pay.csv")
    other = pay(august, tmp_path, "p1,2026-09-05,A1,100.00,,sber,\np2,2026-09-06,A2,50.00,,sber,\n",
                name="other.csv")
    assert (first.accepted, again.already_imported) == (1, True)
    assert (other.accepted, other.duplicates) == (1, 1)
    assert load_payments(august).height == 2


def test_refund_reverses_its_payment(august: Workspace, tmp_path: Path) -> None:
    pay(august, tmp_path, "p1,2026-09-05,A1,1000.00,,sber,\n")
    close(august, "2026-09")
    refund = pay(august, tmp_path, "r1,2026-10-02,A1,-1000.00,,sber,p1\n", name="refund.csv")
    assert refund.accepted == 1
    out = close(august, "2026-10")
    rows = out["allocations"].filter(pl.col("payment_id") == "r1")
    assert by(rows, "service_id") == {("cold_water",): "-76.56", ("sewerage",): "-60.30",
                                      ("heating",): "-555.60", ("maintenance",): "-307.54"}
    over = pay(august, tmp_path, "r2,2026-10-02,A1,-0.01,,sber,p1\n", name="refund2.csv")
    assert over.accepted == 0 and over.rejected == 1


def test_unknown_and_closed_accounts_go_to_suspense_and_can_be_matched(
        august: Workspace, tmp_path: Path) -> None:
    accounts = (august.registers / "accounts.csv").read_text().replace(
        "A3,P3,person,Сидоров Пётр Ильич,1,1,2020-01-01,,", "A3,P3,person,Сидоров Пётр Ильич,1,1,2020-01-01,2026-08-31,")
    (august.registers / "accounts.csv").write_text(accounts, encoding="utf-8")
    ingest(august)
    result = pay(august, tmp_path, "x1,2026-09-05,9999999999,10.00,,sber,\n"
                                   "x2,2026-09-05,A3,20.00,,sber,\n")
    assert (result.accepted, result.suspense) == (0, 2)
    reasons = dict(load_suspense(august).select("payment_id", "reason").iter_rows())
    assert reasons == {"x1": "неизвестный лицевой счёт", "x2": "лицевой счёт закрыт 31.08.2026"}
    with pytest.raises(BillingError, match="закрыт"):
        match_payment(august, "x2", "A3")
    match_payment(august, "x1", "A1")
    assert load_suspense(august)["payment_id"].to_list() == ["x2"]
    assert load_payments(august).filter(pl.col("payment_id") == "x1")["account_id"].to_list() == ["A1"]
    match_payment(august, "x2", "A2")
    out = close(august, "2026-09")
    assert str(out["allocations"].filter(pl.col("payment_id") == "x1")["amount"].sum()) == "10.00"


def sber_file(rows: list[tuple[str, date, str, int, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"payment_id": p, "paid_on": d, "account_id": a, "amount_kop": k, "period": per,
          "payer_name": "Иванов И. И.", "address": "г. Энск, ул. Ленина, д. 1"}
         for p, d, a, k, per in rows])


def test_sber_register_cp1251_comma_decimals(august: Workspace, tmp_path: Path) -> None:
    data = sber_register_bytes(sber_file([("1001", date(2026, 9, 7), "A1", 123456, "2026-08"),
                                          ("1002", date(2026, 9, 8), "A2", 5001, None)]))
    assert b"1234,56" in data and "Иванов".encode("cp1251") in data
    path = tmp_path / "17066_7707083893_40702810000000000001_001.txt"
    path.write_bytes(data)
    result = import_payment_file(august, path)
    assert (result.format, result.accepted, result.accepted_kop) == ("sber", 2, 128457)
    stored = load_payments(august).sort("payment_id")
    assert [str(x) for x in stored["amount"]] == ["1234.56", "50.01"]
    assert stored["period"].to_list() == ["2026-08", None]


def test_footer_mismatch_refuses_the_whole_file(august: Workspace, tmp_path: Path) -> None:
    data = sber_register_bytes(sber_file([("1001", date(2026, 9, 7), "A1", 123456, None)]))
    text = data.decode("cp1251").replace("=1;1234,56", "=2;1300,00")
    path = tmp_path / "bad_001.txt"
    path.write_bytes(text.encode("cp1251"))
    with pytest.raises(BillingError, match="разница 1"):
        import_payment_file(august, path)
    assert load_payments(august).height == 0


def test_ledger_named_and_unnamed_same_day_exact() -> None:
    """Two payments on one day: the named one first, whatever the row order."""
    items = pl.DataFrame(schema=ITEM_SCHEMA)
    charges = pl.DataFrame({"account_id": ["A"] * 2, "service_id": ["w", "h"],
                            "supplier_id": ["X", "Y"], "amount_kop": [100, 200]})
    payments = pl.DataFrame({
        "payment_id": ["b", "a"], "agent": ["s", "s"], "account_id": ["A", "A"],
        "paid_on": [date(2026, 8, 5)] * 2, "period": [None, "2026-08"], "amount_kop": [50, 250],
    })
    alloc, items_after = apply_period(items, charges, payments, "2026-08")
    again, _ = apply_period(items, charges, payments.reverse(), "2026-08")
    assert alloc.equals(again)
    assert dict(alloc.group_by("payment_id").agg(pl.col("amount_kop").sum()).iter_rows()) == {
        "a": 250, "b": 50}
    assert items_after["outstanding_kop"].sum() == 0


def test_turnover_sheet_and_daily_split_registers_add_up(august: Workspace, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    pay(august, tmp_path, "p1,2026-09-05,A1,1000.00,,sber,\np2,2026-09-05,A2,500.00,,post,\n"
                          "p3,2026-09-07,A1,10.00,2026-08,sber,\n")
    close(august, "2026-09")
    reports = august.period_dir("2026-09") / "reports"
    sheet = pl.read_csv(reports / "turnover.csv", separator=";", infer_schema=False)
    balances = pl.read_parquet(august.period_dir("2026-09") / "balances.parquet")
    def rubles(column: pl.Series) -> pl.Series:  # Russian Excel's decimal comma
        return column.str.replace(",", ".", literal=True).cast(pl.Decimal(18, 2))

    assert rubles(sheet["Оплачено"]).sum() == balances["paid"].sum()
    assert rubles(sheet["Сальдо на конец"]).sum() == balances["closing"].sum()
    vk = pl.read_csv(reports / "split" / "VK.csv", separator=";", infer_schema=False)
    allocations = pl.read_parquet(august.period_dir("2026-09") / "allocations.parquet")
    assert rubles(vk["Сумма поставщику, ₽"]).sum() == allocations.filter(
        pl.col("supplier_id") == "VK")["amount"].sum()
    assert vk["Дата платежа"].to_list() == ["2026-09-05", "2026-09-05", "2026-09-07"]
    book = load_workbook(reports / "split" / "VK.xlsx")
    days = book["По дням"]
    assert days.max_row == 4  # header + three (day, agent) rows
    assert not isinstance(days.cell(row=2, column=4).value, str)  # numbers, not text
    detail = pl.read_csv(reports / "split" / "VK-payments.csv", separator=";", infer_schema=False)
    assert sorted(detail["Платёж"]) == ["p1", "p2", "p3"]


def test_monthly_close_accrues_penalty_as_its_own_item(august: Workspace, tmp_path: Path) -> None:
    """August is due 15.09.2026; from day 31 (16.10) 1/300 of min(9.5 %, key rate) a day.

    October's close counts 16.10–31.10: 16 days. A1's VK bucket: 700.88 × 9.5 % / 300 × 16
    = 3.5511 → 3.55; TS 2845.38 → 14.4166 → 14.42; UK1 1575.00 → 7.98.
    """
    close(august, "2026-09")
    out = close(august, "2026-10")
    pen = pl.read_parquet(august.period_dir("2026-10") / "penalties.parquet").filter(
        (pl.col("account_id") == "A1") & (pl.col("charge_period") == "2026-08"))
    assert {r["supplier_id"]: str(r["amount"]) for r in pen.iter_rows(named=True)} == {
        "VK": "3.55", "TS": "14.42", "UK1": "7.98"}
    bal = out["balances"].filter(pl.col("account_id") == "A1")
    assert str(bal.filter(pl.col("supplier_id") == "TS")["penalty"][0]) == "14.42"
    items = out["debts"].filter((pl.col("account_id") == "A1") & (pl.col("service_id") == "penalty"))
    assert str(items["outstanding"].sum()) == "25.95"
    # An unnamed payment pays the debts, never the penalty.
    pay(august, tmp_path, "p1,2026-11-02,A1,100000.00,,sber,\n")
    nov = close(august, "2026-11")
    left = nov["debts"].filter(pl.col("account_id") == "A1")
    assert set(left.filter(pl.col("outstanding") > 0)["service_id"]) == {"penalty"}


def test_court_statement_for_an_account(august: Workspace, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from pipeline.penalties.court import account_statement

    close(august, "2026-09")
    pay(august, tmp_path, "p1,2026-10-20,A1,1000.00,2026-08,sber,\n")
    close(august, "2026-10")
    # One claimant per statement (issue 15): the heat supplier's debt of A1.
    pdf, xlsx = account_statement(august, "A1", date(2026, 12, 31), tmp_path / "out", supplier_id="TS")
    assert pdf.name == "A1-TS-penalty-2026-12-31.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    text = "\n".join(str(c.value) for ws_ in load_workbook(xlsx).worksheets
                     for row in ws_.iter_rows() for c in row if c.value is not None)
    assert "2026-08" in text or "08.2026" in text or "август" in text.lower()
    assert "1/300" in text


@pytest.mark.integration  # a workspace per example, in a tempfile directory (not tmp_path)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.sampled_from(["A1", "A2", "A3", "X9"]), st.integers(1, 10**7),
                               st.sampled_from(["sber", "post"]), st.integers(0, 30)),
                     min_size=1, max_size=30),
       earlier=st.lists(st.integers(0, 30), max_size=5))
def test_every_kopeck_of_a_file_is_accounted_for_and_twice_changes_nothing(
        rows: list[tuple[str, int, str, int]], earlier: list[int]) -> None:
    """accepted + suspense + duplicates = the file, to the kopeck; a second import is a no-op."""
    import tempfile

    from pipeline.workspace import init_workspace
    from tests.conftest import TOWN, write_registers

    with tempfile.TemporaryDirectory() as home:
        august = init_workspace(Path(home) / "home")
        write_registers(august, TOWN)
        ingest(august)
        if earlier:  # payments already known before this file
            prior = Path(home) / "prior.csv"
            prior.write_text(HEADER + "".join(f"id{n},2026-09-01,A1,1.00,,sber,\n" for n in earlier),
                             encoding="utf-8")
            import_payment_file(august, prior)
        check_file(august, rows)


def check_file(august: Workspace, rows: list[tuple[str, int, str, int]]) -> None:
    import tempfile

    lines = "".join(f"id{n},2026-09-05,{acc},{kop / 100:.2f},,{agent},\n"
                    for acc, kop, agent, n in rows)
    before = load_payments(august)
    suspense_before = load_suspense(august)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.csv"
        path.write_text(HEADER + lines, encoding="utf-8")
        first = import_payment_file(august, path)
        snapshot = (load_payments(august), load_suspense(august))
        again = import_payment_file(august, path)
        assert again.already_imported
        assert snapshot[0].equals(load_payments(august)) and snapshot[1].equals(load_suspense(august))
    new_payments = snapshot[0].join(before, on=["agent", "payment_id"], how="anti")
    new_suspense = snapshot[1].join(suspense_before, on=["agent", "payment_id"], how="anti")
    stored_kop = int((pl.concat([new_payments.select("amount"), new_suspense.select("amount")])["amount"]
                      .sum() or 0) * 100)
    # An id repeated inside one file is ambiguous: every such row goes to the reject report.
    # An id stored before is a duplicate. Every other row is stored, as a payment or in suspense.
    count: dict[tuple[str, str], int] = {}
    for _acc, _kop, agent, n in rows:
        count[(agent, f"id{n}")] = count.get((agent, f"id{n}"), 0) + 1
    known = {tuple(k) for k in pl.concat([before.select("agent", "payment_id"),
                                           suspense_before.select("agent", "payment_id")]).iter_rows()}
    expected = sum(kop for _acc, kop, agent, n in rows
                   if count[(agent, f"id{n}")] == 1 and (agent, f"id{n}") not in known)
    assert stored_kop == expected
    repeated = sum(c for c in count.values() if c > 1)
    assert first.accepted + first.suspense + first.duplicates == len(rows) - repeated
    assert first.rejected == repeated
    assert new_suspense["account_id"].to_list() == [acc for acc in new_suspense["account_id"]
                                                    if acc == "X9"]


def test_payment_named_for_penalties_pays_them(august: Workspace, tmp_path: Path) -> None:
    close(august, "2026-09")
    close(august, "2026-10")  # 25.95 of penalties on A1 (see the test above)
    pay(august, tmp_path, "p1,2026-11-02,A1,30.00,пени,sber,\n")
    nov = close(august, "2026-11")
    rows = nov["allocations"].filter(pl.col("payment_id") == "p1")
    assert str(rows.filter(pl.col("service_id") == "penalty")["amount"].sum()) == "25.95"
    assert str(rows["amount"].sum()) == "30.00"  # the rest pays the oldest debt
