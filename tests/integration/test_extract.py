"""The выписка по лицевому счёту and the справка об отсутствии задолженности (issue 15), against
the sealed balances of the four-supplier town of tests/penalties/test_court_statement.py."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.render.extract import check_extract, extract_frame, nodebt_balances, write_extract, write_nodebt
from pipeline.reports import account_card, read_sealed
from pipeline.sealed import read_internal
from pipeline.workspace import BillingError, Workspace
from rules import read_rule_table
from tests.penalties.test_court_statement import PERIODS, collecting_town, pdf_text, rub

TODAY = date(2026, 11, 20)


@pytest.fixture(scope="module")
def town4(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return collecting_town(tmp_path_factory.mktemp("extract") / "home")


def balances(ws: Workspace, account: str) -> pl.DataFrame:
    return pl.concat([read_internal(ws.period_dir(p), "balances") for p in PERIODS]).filter(
        pl.col("account_id") == account)


def test_extract_figures_are_the_sealed_balances(town4: Workspace, tmp_path: Path) -> None:
    bal = balances(town4, "A3")
    services = read_rule_table(town4.rules, "services")
    frame = extract_frame("A3", read_sealed(town4, list(PERIODS)), services, list(PERIODS))
    for b in bal.iter_rows(named=True):
        rows = frame.filter((pl.col("period") == b["period"]) & (pl.col("supplier_id") == b["supplier_id"]))

        def total(entry: str, rows: pl.DataFrame = rows) -> int:
            return int(rows.filter(pl.col("entry") == entry)["amount_kop"].sum())

        assert (total("opening"), total("charge"), total("recalculation"), total("penalty"), -total("paid"),
                total("closing")) == (b["opening_kop"], b["charged_kop"], b["recalculated_kop"],
                                      b["penalty_kop"], b["paid_kop"], b["closing_kop"])
    # August's recalculation (posted in September) with its reason; October's penalties.
    recalc = frame.filter(pl.col("entry") == "recalculation")
    assert recalc["period"].to_list() == ["2026-09", "2026-09"] and recalc["amount_kop"].to_list() == [24_807,
                                                                                                       19_535]
    assert recalc["detail"].str.contains("за август 2026 г.").all()
    assert int(frame.filter(pl.col("entry") == "penalty")["amount_kop"].sum()) == int(
        bal["penalty_kop"].sum()) > 0

    pdf = write_extract(town4, "A3", "2026-08", "2026-10", tmp_path, today=TODAY)
    assert pdf.name == "A3-extract-2026-08-2026-10.pdf"
    text = pdf_text(pdf)
    assert "Выписка по лицевому счёту № A3" in text and "Сидоров Пётр Ильич" in text
    assert "за август 2026 г. — октябрь 2026 г. (01.08.2026 — 31.10.2026)" in text
    assert "Дата выдачи: 20.11.2026" in text and "ООО «УК Дом», ИНН 7707083893" in text  # the manager issues
    for b in bal.filter(pl.col("period") == "2026-10").iter_rows(named=True):
        assert rub(b["closing_kop"]) in text
    # A charge line with its volume, unit and tariff; a payment with its date and agent.
    assert "Холодное водоснабжение 4,745 м³ 52,28 248,07" in text
    assert "06.09.2026 post" in text
    last = bal.filter(pl.col("period") == "2026-10")
    assert f"Всего {rub(0)} {rub(int(bal['charged_kop'].sum()))} {rub(44_342)}" in text
    assert text.rstrip().count(rub(int(last["closing_kop"].sum()))) >= 1


def test_an_extract_that_does_not_add_up_is_refused(town4: Workspace) -> None:
    tables = read_sealed(town4, list(PERIODS))
    services = read_rule_table(town4.rules, "services")
    frame = extract_frame("A3", tables, services, list(PERIODS))
    names = dict(services.select("service_id", "name").iter_rows())
    regs = {"organizations": pl.DataFrame({"org_id": ["VK"], "name": ["АО «Водоканал»"]}),
            "premises": pl.DataFrame(), "accounts": pl.DataFrame(), "buildings": pl.DataFrame()}
    card = account_card("A3", tables, regs, names, list(PERIODS))
    bal = tables["balances"].filter(pl.col("account_id") == "A3")
    check_extract(frame, bal, card)
    broken = bal.with_columns(pl.when((pl.col("period") == "2026-09") & (pl.col("supplier_id") == "VK"))
                              .then(pl.col("paid_kop") + 1).otherwise(pl.col("paid_kop")).alias("paid_kop"))
    with pytest.raises(BillingError, match=r"Выписка не сходится: сентябрь 2026 г\., VK, оплачено: .*разница"):
        check_extract(frame, broken, card)
    shifted = frame.with_columns(pl.when((pl.col("entry") == "opening") & (pl.col("period") == "2026-10"))
                                 .then(pl.col("amount_kop") + 1).otherwise(pl.col("amount_kop")).alias("amount_kop"))
    with pytest.raises(BillingError, match="Выписка не сходится"):
        check_extract(shifted, bal, card)


def test_the_certificate_is_refused_to_a_debtor_and_given_to_a_payer(town4: Workspace, tmp_path: Path) -> None:
    with pytest.raises(BillingError, match=r"не выдаётся: у лицевого счёта A3 на 31\.10\.2026 задолженность: "
                                           r"НКО «Фонд капремонта» \(FKR\) — .*АО «Водоканал» \(VK\) — 2"):
        write_nodebt(town4, "A3", out_dir=tmp_path)
    assert not list(tmp_path.glob("*.pdf"))
    state = nodebt_balances(town4, "A1")
    assert state.period == "2026-10" and not state.debts and state.total_kop < 0
    assert state.total_kop == int(balances(town4, "A1").filter(pl.col("period") == "2026-10")["closing_kop"].sum())
    pdf = write_nodebt(town4, "A1", out_dir=tmp_path, today=TODAY)
    text = pdf_text(pdf)
    assert "Справка об отсутствии задолженности" in text and "Иванов Иван Иванович" in text
    assert "по состоянию на 31.10.2026 задолженности" in text
    assert f"Переплата (аванс) на 31.10.2026: {rub(-state.total_kop)} ₽" in text
    assert "Проверены расчётные периоды: август 2026 г. — октябрь 2026 г." in text
    # August: A1 had not paid yet — a debtor then.
    with pytest.raises(BillingError, match=r"на 31\.08\.2026 задолженность"):
        write_nodebt(town4, "A1", "2026-08", tmp_path)


def test_commands(town4: Workspace, tmp_path: Path) -> None:
    home = ["--home", str(town4.home)]
    res = CliRunner().invoke(app, ["extract", "A1", "--period", "09.2026", "--to", "2026-10", "--out",
                                   str(tmp_path), *home])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "A1-extract-2026-09-2026-10.pdf").is_file()
    res = CliRunner().invoke(app, ["extract", "A1", "--period", "2026-11", *home])
    assert res.exit_code == 1 and "Период 2026-11 не закрыт" in str(res.exception)
    res = CliRunner().invoke(app, ["nodebt", "A3", *home])
    assert res.exit_code == 1 and "не выдаётся" in str(res.exception)
    res = CliRunner().invoke(app, ["nodebt", "A1", "--out", str(tmp_path), *home])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "A1-nodebt-2026-10.pdf").is_file()
    log = (town4.audit / "log.jsonl").read_text(encoding="utf-8")
    assert '"command": "extract"' in log and '"command": "nodebt"' in log
