"""The contract's commands end to end, as a user runs them (no Prefect server: in-process).

One small demo covers the wiring; the stages are tested without Prefect.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import run_billing

pytestmark = pytest.mark.prefect


billing = run_billing


def test_demo_two_months_sealed_with_receipts(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    out = billing("demo", "--accounts", "60", "--months", "2", home=home).stdout
    assert "Период закрыт: 2026-12" in out and "Период закрыт: 2027-01" in out

    # The demo prints the last month's receipts; an earlier month's come from its sealed tables.
    assert "billing receipts print --period 2026-12" in out
    assert not list((home / "periods" / "2026-12" / "receipts").glob("*.pdf"))
    billing("receipts", "print", "--period", "2026-12", "--account", "1000000001", "--account", "1000000002",
            home=home)
    assert sorted(p.name for p in (home / "duplicates" / "2026-12").glob("*.pdf")) == [
        "1000000001.pdf", "1000000002.pdf"]
    # Organization payers get invoices (``ACCOUNT-YYYYMM-N.pdf``) with the receipts, not duplicates.
    folder = home / "periods" / "2027-01"
    invoiced = {p.stem.split("-")[0] for p in (folder / "invoices").glob("*.pdf")}
    charged = pl.read_parquet(folder / "charges.parquet")["account_id"].unique()
    receipts = {p.stem for p in (folder / "receipts").glob("*.pdf")}
    assert set(charged) <= receipts | invoiced and not receipts & invoiced
    for period in ("2026-12", "2027-01"):
        folder = home / "periods" / period
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["row_counts"]["charges"] == pl.read_parquet(folder / "charges.parquet").height
    assert (home / "periods" / "2027-01" / "receipts" / "batches").is_dir()
    # The close's summary says what it rendered (from the manifest), for the month that rendered.
    made = json.loads((home / "periods" / "2027-01" / "manifest.json").read_text())["receipts"]
    assert f"квитанции: {made['count']}, пачек для печати {made['batches']} — " in out
    assert f"счета организациям (с актами): {made['invoices']} — " in out
    assert len(re.findall(r"квитанции: \d", out)) == 1  # December was closed without PDFs

    # Closing a sealed period again is refused and changes nothing.
    before = {p: p.stat().st_mtime_ns for p in (home / "periods").rglob("*")}
    again = billing("close", "--period", "2027-01", home=home, check=False)
    assert again.returncode == 1 and "уже закрыт" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in (home / "periods").rglob("*")} == before

    count = billing("sql", "select count(*) as n from charges", "--format", "csv", home=home).stdout
    assert int(count.splitlines()[1]) > 0
    paid = billing("sql", "select sum(amount) as s from allocations", "--format", "csv",
                   home=home).stdout
    assert float(paid.splitlines()[1]) > 0

    dry = billing("close", "--period", "2027-02", "--dry-run", home=home)
    assert "Пробный расчёт (период не закрыт): 2027-02" in dry.stdout
    assert not (home / "periods" / "2027-02").exists()

    audit = (home / "audit" / "log.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in audit]
    assert [e["command"] for e in entries if e.get("status") != "error"].count("close") == 3
    # The refused second close of 2027-01 is audited too, with its reason.
    assert [e["error"] for e in entries if e.get("status") == "error"] == [again.stderr.strip()[
        len("Ошибка: "):]]
    _check_demo_shows_every_method(home, out)


def _check_demo_shows_every_method(home: Path, out: str) -> None:
    """Methods and mechanisms of the engine in a small demo, and `billing explain` on each example."""
    from pipeline.calc.quality import REASON as INTERRUPTION
    from pipeline.calc.recalc import heating_true_up_reason
    from pipeline.explain import explain_account
    from pipeline.workspace import Workspace

    charges = pl.concat([pl.read_parquet(home / "periods" / p / "charges.parquet")
                         for p in ("2026-12", "2027-01")])
    methods = set(charges["method"])
    assert methods >= {"meter", "average", "norm", "norm_increased", "heating", "heating_average",
                       "common_property", "area", "per_person", "fixed"}, methods
    # December is paid by the previous year's building-meter average; January corrects it.
    recalcs = pl.read_parquet(home / "periods" / "2027-01" / "recalculations.parquet")
    reasons = set(recalcs.filter(pl.col("origin_period") == "2026-12")["reason"])
    assert heating_true_up_reason(2026) in reasons
    # The late news about the closed December are recalculated in January.
    assert "изменение числа зарегистрированных (проживающих)" in reasons and INTERRUPTION in reasons
    news = re.search(r"лицевой счёт (\d+): жилец R\d+ зарегистрирован", out)
    away = re.search(r"лицевой счёт (\d+): жилец R\d+ отсутствовал", out)
    assert news and away, out
    for account, service in ((news[1], "waste"), (away[1], "waste")):
        mine = recalcs.filter((pl.col("account_id") == account) & (pl.col("service_id") == service)
                              & (pl.col("origin_period") == "2026-12"))
        assert mine.height == 1, (account, service)
    assert mine["amount"][0] < 0  # the absent resident pays less for waste

    # Every example printed at the end runs through `billing explain`.
    examples = re.findall(r"^  (.+): billing explain (\d+) --period (\S+) --home", out, flags=re.M)
    labels = {label for label, _, _ in examples}
    assert len(examples) >= 15 and any("формула 3(1)" in label for label in labels), labels
    assert any(label.startswith("Перерасчёт: корректировка платы за отопление") for label in labels)
    ws = Workspace(home)
    for label, account, period in examples:
        text = explain_account(ws, account, period)
        assert f"Лицевой счёт {account}, период {period}" in text, label
        if "формула 3(1)" in label:
            assert "способ: по среднему ОДПУ дома за прошлый год" in text  # heating_average
        if label.startswith("Перерасчёт"):
            assert "Перерасчёт за " in text, label


def test_bad_usage_exits_2_and_business_error_exits_1(tmp_path: Path) -> None:
    assert billing("close", home=tmp_path, check=False).returncode == 2
    missing = billing("ingest", home=tmp_path / "nope", check=False)
    assert missing.returncode == 1 and "billing init" in missing.stderr


def test_demo_with_heating_paid_in_season_shows_formula_3(tmp_path: Path) -> None:
    home = tmp_path / "season"
    out = billing("demo", "--accounts", "60", "--months", "1", "--no-receipts", "--heating", "in_season",
                  home=home).stdout
    assert "Отопление по ОДПУ за месяц (формула 3)" in out
    methods = set(pl.read_parquet(home / "periods" / "2026-12" / "charges.parquet")["method"])
    assert {"heating_meter", "heating"} <= methods and "heating_average" not in methods
    assert billing("demo", "--heating", "monthly", home=home, check=False).returncode == 1
