"""The synthetic export of the old system (pipeline.migrate.synth): shape, determinism, consistency."""

from __future__ import annotations

import io
import itertools
import shutil
import tomllib
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pipeline.allocate.ledger import ITEM_SCHEMA, PAID_KINDS, PAYMENT_SCHEMA, apply_period
from pipeline.dates import Period
from pipeline.migrate.synth import COLUMNS, UNKNOWN_ACCOUNT, Inconsistency, city_start, write_old_export
from pipeline.synth import generate_city

START = Period(2026, 12)
FILES = [f"{register}.csv" for register in COLUMNS] + ["mapping.toml"]


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("city")
    generate_city(home, accounts=30, start=START, months=2, seed=2026)
    return home


@pytest.fixture(scope="module")
def export(city: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Inconsistency]]:
    home = tmp_path_factory.mktemp("export")
    shutil.copytree(city / "registers", home / "registers")
    shutil.copytree(city / "rules", home / "rules")
    return home, write_old_export(home)


def read(home: Path, register: str) -> pl.DataFrame:
    """An export file read back as the old system wrote it, in our columns and codes."""
    data = (home / "migration" / f"{register}.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # Cyrillic headers in Windows-1251, not UTF-8
    frame = pl.read_csv(io.BytesIO(data.decode("cp1251").encode()), separator=";", infer_schema=False)
    mapping = tomllib.loads((home / "migration" / "mapping.toml").read_text(encoding="utf-8"))
    columns = mapping["columns"][register]
    assert frame.columns == list(columns.values())
    frame = frame.rename({theirs: ours for ours, theirs in columns.items()})
    for column, codes in mapping["codes"].items():
        if column in frame.columns:
            back = {old: ours for ours, olds in codes.items() for old in olds}
            frame = frame.with_columns(pl.col(column).replace(back))
    return frame


def kop(text: str | None) -> int:
    if text is None:
        return 0
    value = Decimal(text.replace(",", "."))
    assert value == value.quantize(Decimal("0.01")), text
    return int(value * 100)


def day(text: str) -> date:
    d, m, y = text.split(".")
    return date(int(y), int(m), int(d))


def breaks(home: Path) -> dict[str, set[tuple[str, str, str, str, int]]]:
    """Every place the export does not add up: kind -> (account, service, supplier, month, difference).

    ``closing``: per account, service and supplier the first month whose closing is not
    opening + charged + penalty − paid (the payments without the old system's split split by
    our ledger, as the migration does), and for those accounts also per account (independent
    of any split). ``debts``: debts by month against the last closing, per account, service and supplier.
    """
    charges = read(home, "history_charges")
    payments = read(home, "history_payments")
    balances = read(home, "history_balances")
    debts = read(home, "history_debts")
    flow: dict[tuple[str, str, str, str], int] = defaultdict(int)
    account_charged: dict[tuple[str, str], int] = defaultdict(int)
    for r in charges.iter_rows(named=True):
        flow[(r["account_id"], r["service_id"], r["supplier_id"], r["period"])] += kop(r["amount"])
        account_charged[(r["account_id"], r["period"])] += kop(r["amount"])
    unsplit = set(payments.filter(pl.col("service_id").is_null())["account_id"])
    account_paid: dict[tuple[str, str], int] = defaultdict(int)
    for r in payments.iter_rows(named=True):
        account_paid[(r["account_id"], r["period"])] += kop(r["amount"])
        if r["service_id"] is not None:
            flow[(r["account_id"], r["service_id"], r["supplier_id"], r["period"])] -= kop(r["amount"])
    found: dict[str, set[tuple[str, str, str, str, int]]] = {"closing": set(), "debts": set()}
    last_closing: dict[tuple[str, str, str], int] = {}
    by_account: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for (account, service, supplier), rows in balances.sort("period").group_by(
            ["account_id", "service_id", "supplier_id"], maintain_order=True):
        key = (str(account), str(service), str(supplier))
        assert rows["opening"][0] is not None and rows["opening"][1:].null_count() == rows.height - 1
        value = kop(rows["opening"][0])
        by_account[key[0]][rows["period"][0]][0] += value
        broken = False
        for month, closing in zip(rows["period"], rows["closing"], strict=True):
            value += flow.get((*key, month), 0)
            by_account[key[0]][month][1] += kop(closing)
            if key[0] not in unsplit and not broken and kop(closing) != value:
                found["closing"].add((*key, month, kop(closing) - value))
                broken = True
        last_closing[key] = kop(rows["closing"][-1])
    months = sorted(set(balances["period"]))
    # The unsplit payments as our ledger splits them (opening debts: items of the month before).
    items = pl.DataFrame([
        {"account_id": r["account_id"], "service_id": r["service_id"], "supplier_id": r["supplier_id"],
         "charge_period": str(Period.parse(months[0]).shift(-1)), "outstanding_kop": kop(r["opening"])}
        for r in balances.filter(pl.col("account_id").is_in(list(unsplit)) & (pl.col("period") == months[0])
                                 & (pl.col("service_id") != "penalty")).iter_rows(named=True)
        if kop(r["opening"])], schema=ITEM_SCHEMA)
    for month in months:
        month_charges = charges.filter((pl.col("period") == month) & pl.col("account_id").is_in(list(unsplit))
                                       & (pl.col("service_id") != "penalty")).select(
            "account_id", "service_id", "supplier_id",
            pl.col("amount").map_elements(kop, return_dtype=pl.Int64).alias("amount_kop"))
        month_payments = pl.DataFrame([
            {"payment_id": r["payment_id"], "agent": r["agent"], "account_id": r["account_id"],
             "paid_on": day(r["paid_on"]), "period": None, "amount_kop": kop(r["amount"])}
            for r in payments.filter((pl.col("period") == month) & pl.col("service_id").is_null()).iter_rows(
                named=True)], schema=PAYMENT_SCHEMA)
        allocations, items = apply_period(items, month_charges, month_payments, month)
        for r in allocations.filter(pl.col("kind").is_in(PAID_KINDS)).iter_rows(named=True):
            flow[(r["account_id"], r["service_id"], r["supplier_id"], month)] -= r["amount_kop"]
    for (account, service, supplier), rows in balances.filter(pl.col("account_id").is_in(list(unsplit))).sort(
            "period").group_by(["account_id", "service_id", "supplier_id"], maintain_order=True):
        key = (str(account), str(service), str(supplier))
        value = kop(rows["opening"][0])
        for month, closing in zip(rows["period"], rows["closing"], strict=True):
            value += flow.get((*key, month), 0)
            if kop(closing) != value:
                found["closing"].add((*key, month, kop(closing) - value))
                break
    for account in unsplit:
        value = 0
        for month in months:
            if month not in by_account[account]:
                continue
            opening, closing = by_account[account][month]
            value += opening + account_charged.get((account, month), 0) - account_paid.get((account, month), 0)
            if closing != value:
                found["closing"].add((account, "", "", month, closing - value))
                break
    owed: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in debts.iter_rows(named=True):
        owed[(r["account_id"], r["service_id"], r["supplier_id"])] += kop(r["amount"])
    for key in sorted(set(owed) | set(last_closing)):
        if owed.get(key, 0) != last_closing.get(key, 0):
            found["debts"].add((*key, months[-1], owed.get(key, 0) - last_closing.get(key, 0)))
    return found


def expected_breaks(found: list[Inconsistency], last: str) -> dict[str, set[tuple[str, str, str, str, int]]]:
    """What :func:`breaks` finds in an export with the inconsistencies ``found``.

    The old system's debts by month are right where its balance went wrong, so against
    its own last closing they differ too (the reconciliation compares them with ours).
    """
    return {
        "closing": {(i.account_id, i.service_id, i.supplier_id, i.period, i.difference_kop)
                    for i in found if i.kind in ("closing", "payment_twice")},
        "debts": {(i.account_id, i.service_id, i.supplier_id, i.period, i.difference_kop)
                  for i in found if i.kind == "debts"}
        | {(i.account_id, i.service_id, i.supplier_id, last, -i.difference_kop)
           for i in found if i.kind in ("closing", "payment_twice")},
    }


def test_deterministic(city: Path, export: tuple[Path, list[Inconsistency]], tmp_path: Path) -> None:
    home, found = export
    shutil.copytree(city / "registers", tmp_path / "registers")
    shutil.copytree(city / "rules", tmp_path / "rules")
    assert write_old_export(tmp_path) == found
    for name in FILES:
        assert (tmp_path / "migration" / name).read_bytes() == (home / "migration" / name).read_bytes(), name
    with pytest.raises(ValueError, match="4 месяца"):
        write_old_export(tmp_path, months=3)


def test_months_end_before_the_first_close(city: Path, export: tuple[Path, list[Inconsistency]]) -> None:
    home, _ = export
    assert city_start(city) == START
    months = sorted(set(read(home, "history_charges")["period"]))
    assert months == [str(START.shift(i)) for i in range(-24, 0)]
    assert sorted(set(read(home, "history_balances")["period"])) == months


def test_the_inconsistencies_are_exactly_the_breaks(export: tuple[Path, list[Inconsistency]]) -> None:
    home, found = export
    assert [i.kind for i in found] == ["closing", "debts", "unknown_account", "payment_twice"]
    by_kind = {i.kind: i for i in found}
    assert by_kind["closing"].difference_kop == 12345 and by_kind["debts"].difference_kop == -5000
    assert breaks(home) == expected_breaks(found, str(START.shift(-1)))
    accounts = set(pl.read_csv(home / "registers" / "accounts.csv", infer_schema=False)["account_id"])
    charges = read(home, "history_charges")
    unknown = set(charges["account_id"]) - accounts
    assert unknown == {UNKNOWN_ACCOUNT} == {by_kind["unknown_account"].account_id}
    row = charges.filter(pl.col("account_id") == UNKNOWN_ACCOUNT)
    assert row.height == 1 and kop(row["amount"][0]) == by_kind["unknown_account"].difference_kop


def test_without_inconsistencies_everything_adds_up(city: Path, tmp_path: Path) -> None:
    shutil.copytree(city / "registers", tmp_path / "registers")
    shutil.copytree(city / "rules", tmp_path / "rules")
    assert write_old_export(tmp_path, inconsistencies=False) == []
    assert breaks(tmp_path) == {"closing": set(), "debts": set()}
    accounts = set(pl.read_csv(tmp_path / "registers" / "accounts.csv", infer_schema=False)["account_id"])
    assert set(read(tmp_path, "history_charges")["account_id"]) <= accounts


def test_the_history_has_what_a_move_needs(export: tuple[Path, list[Inconsistency]]) -> None:
    from pipeline.migrate.synth import _defaults_dir
    from pipeline.penalties.policy import load_policy

    home, _ = export
    charges, payments = read(home, "history_charges"), read(home, "history_payments")
    balances, debts = read(home, "history_balances"), read(home, "history_debts")
    # Charges by several methods; penalties accrued; openings non-zero for a few.
    assert {"meter", "norm", "area", "heating", "per_person", "common_property"} <= set(charges["method"])
    assert charges.filter(pl.col("service_id") == "penalty").height > 0
    assert read(home, "history_penalties").height > 0
    assert 0 < sum(1 for v in balances["opening"].drop_nulls() if kop(v) != 0) < 10
    # Split and unsplit payments; an advance; a debt 20 months old.
    assert payments["service_id"].null_count() > 0 and payments["service_id"].drop_nulls().len() > 0
    advances = debts.filter(pl.col("charge_period").is_null())
    assert advances.height > 0 and all(kop(v) < 0 for v in advances["amount"])
    assert advances["due_date"].null_count() == advances.height
    assert min(debts["charge_period"].drop_nulls()) <= str(START.shift(-21))
    policy = load_policy(_defaults_dir())
    for r in debts.filter(pl.col("charge_period").is_not_null() & (pl.col("service_id") != "penalty")).iter_rows(
            named=True):
        assert day(r["due_date"]) == policy.due_date(Period.parse(r["charge_period"]))
    for v in (*charges["amount"], *payments["amount"], *balances["closing"], *debts["amount"]):
        kop(v)  # rubles with at most two decimals


def test_readings_are_monotonic_and_give_the_volumes(export: tuple[Path, list[Inconsistency]]) -> None:
    home, _ = export
    readings = read(home, "history_readings")
    volumes = read(home, "history_meter_volumes")
    assert readings.height > 0 and set(volumes["method"]) <= {"meter", "average", "norm"}
    checked = 0
    for meter, rows in readings.group_by("meter_id"):
        points = sorted((day(d), Decimal(v.replace(",", "."))) for d, v in zip(rows["read_on"], rows["value"],
                                                                                  strict=True))
        assert all(a[1] <= b[1] for a, b in itertools.pairwise(points)), meter
        by_month = {str(Period.of(d)): v for d, v in points}
        for r in volumes.filter((pl.col("meter_id") == meter[0]) & (pl.col("method") == "meter")).iter_rows(
                named=True):
            before = str(Period.parse(r["period"]).shift(-1))
            if r["period"] in by_month and before in by_month:
                assert Decimal(r["volume"].replace(",", ".")) == by_month[r["period"]] - by_month[before]
                checked += 1
    assert checked > 100


def test_the_sample_in_data_has_exactly_its_listed_inconsistencies() -> None:
    root = Path(__file__).resolve().parents[2] / "data" / "migration-demo"
    assert sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) < 1_100_000
    listed = pl.read_csv(root / "inconsistencies.csv", infer_schema=False)
    found = [Inconsistency(r["kind"], r["account_id"], r["supplier_id"], r["service_id"], r["period"],
                           int(r["difference_kop"]), r["description"]) for r in listed.iter_rows(named=True)]
    assert [i.kind for i in found] == ["closing", "debts", "unknown_account", "payment_twice"]
    assert breaks(root) == expected_breaks(found, max(read(root, "history_balances")["period"]))
    accounts = set(pl.read_csv(root / "registers" / "accounts.csv", infer_schema=False)["account_id"])
    assert set(read(root, "history_charges")["account_id"]) - accounts == {UNKNOWN_ACCOUNT}
