"""What a person reads: Russian method names and help, one date parser, ОСВ and the account
card over sealed periods, stage lines of long commands, a fast ``billing --help``."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from pipeline import progress
from pipeline.cli import app
from pipeline.cliargs import parse_day, parse_period
from pipeline.close import compute, load_inputs, seal
from pipeline.dates import Period
from pipeline.explain import explain_account
from pipeline.ingest.payments import import_payment_file
from pipeline.ingest.registers import ingest, load_store
from pipeline.methods import METHOD_NAMES
from pipeline.reports import account_card, check_card, check_osv, osv, read_sealed
from pipeline.workspace import BillingError, Workspace
from tests.conftest import run_billing

NBSP = "\u00a0"

#: p1 names August; p2 names no period. Both are paid in September.
PAYMENTS = """\
payment_id,paid_on,account_id,amount,period,agent
p1,2026-09-05,A1,1000.00,2026-08,sber
p2,2026-09-06,A2,500.00,,post
"""


def close(ws: Workspace, period: str) -> None:
    inputs = load_inputs(ws, Period.parse(period))
    seal(ws, compute(inputs), inputs)


@pytest.fixture
def two_months(town: Workspace, tmp_path: Path) -> Workspace:
    """The town's August and September sealed, two payments made in September."""
    ingest(town)
    close(town, "2026-08")
    path = tmp_path / "payments.csv"
    path.write_text(PAYMENTS, encoding="utf-8")
    import_payment_file(town, path, today=date(2026, 9, 30))
    close(town, "2026-09")
    return town


# --------------------------------------------------------------------------- method names

def test_explain_names_methods_in_russian(town: Workspace) -> None:
    ingest(town)
    close(town, "2026-08")
    text = "\n".join(explain_account(town, a, "2026-08") for a in ("A1", "A2", "A3"))
    shown = re.findall(r"способ: ([^;]+);", text)
    assert set(shown) <= set(METHOD_NAMES.values())
    # A1 metered, A2 can fit a meter but has none (×K), A3 cannot: the three names of cold water.
    assert {"по прибору учёта", "по нормативу с повышающим коэффициентом", "по нормативу",
            "по площади", "по нормативу на м²"} <= set(shown)
    assert not re.search(r"\b(meter|norm|norm_increased|area|average|heating|fixed|per_person)\b", text)


def test_receipt_lines_use_the_same_names(town: Workspace) -> None:
    from pipeline.render.build import build_receipts

    ingest(town)
    inputs = load_inputs(town, Period(2026, 8))
    receipts = list(build_receipts(compute(inputs), inputs.registers(), inputs.rules.services))
    labels = {ln.method_label for r in receipts for ln in r.lines if ln.service_name != "Пени"}
    assert "по прибору учёта" in labels
    assert "по нормативу с повышающим коэффициентом 3" in labels  # cold water ×3 since 06.12.2025 (A2)
    assert all(label.startswith(tuple(METHOD_NAMES.values())) for label in labels), labels


# --------------------------------------------------------------------------- dates

@pytest.mark.parametrize("text", ["2026-11-30", "30.11.2026", " 30.11.2026 "])
def test_both_day_forms(text: str) -> None:
    assert parse_day(text) == date(2026, 11, 30)


@pytest.mark.parametrize("text", ["30/11/2026", "2026-11-31", "31.02.2026", "30.11.26", ""])
def test_bad_day_says_both_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"дата должна быть ГГГГ-ММ-ДД или ДД\.ММ\.ГГГГ"):
        parse_day(text)


def test_periods_iso_and_month_year() -> None:
    assert parse_period("2026-11") == parse_period("11.2026") == "2026-11"
    for bad in ("2026-13", "13.2026", "2026/11", "11-2026"):
        with pytest.raises(ValueError, match=r"период должен быть ГГГГ-ММ или ММ\.ГГГГ"):
            parse_period(bad)


def test_statement_takes_both_forms(town: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.penalties.court import StatementFiles

    seen: list[date] = []

    def fake_statements(ws: Workspace, account: str, day: date, out: Path | None) -> list[StatementFiles]:
        seen.append(day)
        return [StatementFiles("UK1", ws.home / "s.pdf", ws.home / "s.xlsx")]

    monkeypatch.setattr("pipeline.penalties.court.account_statements", fake_statements)
    for until in ("2026-11-30", "30.11.2026"):
        res = CliRunner().invoke(app, ["statement", "A1", "--until", until, "--home", str(town.home)])
        assert res.exit_code == 0, res.output
    assert seen == [date(2026, 11, 30)] * 2


def test_penalty_takes_both_forms(town: Workspace) -> None:
    outs = []
    for period, until, paid in (("2019-05", "2024-04-18", "2020-01-01=100"),
                                ("05.2019", "18.04.2024", "01.01.2020=100")):
        res = CliRunner().invoke(app, ["penalty", "--amount", "1000", "--period", period, "--until", until,
                                       "--payment", paid, "--rate", "9,5", "--json",
                                       "--home", str(town.home)])
        assert res.exit_code == 0, res.output
        outs.append(res.output)
    assert outs[0] == outs[1] and '"total": "836.37"' in outs[0]


def test_wrong_date_is_a_russian_usage_message(tmp_path: Path) -> None:
    proc = run_billing("statement", "A1", "--until", "31.02.2026", home=tmp_path, check=False)
    assert proc.returncode == 2
    said, usage, where = proc.stderr.splitlines()  # the program is `python -m pipeline.cli` here
    assert said == ("Ошибка в команде: недопустимое значение --until: дата должна быть ГГГГ-ММ-ДД или "
                    "ДД.ММ.ГГГГ, получено «31.02.2026»")
    assert usage.startswith("Вызов: ") and usage.endswith(" statement [ПАРАМЕТРЫ] {СЧЁТ}")
    assert where.startswith("Справка: ") and where.endswith(" statement --help")
    missing = run_billing("penalty", "--amount", "1", "--period", "2019-05", home=tmp_path, check=False)
    assert missing.returncode == 2
    assert missing.stderr.startswith("Ошибка в команде: не указан обязательный параметр --until")


def test_every_help_page_is_russian() -> None:
    root = get_command(app)
    pages = [[]]
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        pages.append([name])
        pages.extend([name, sub] for sub in getattr(command, "commands", {}))
    english = re.compile(r"Usage|Options|Arguments|Commands|Show this|\[required\]|\[default|<str>|<int|<path>"
                         r"|<bool>")
    for words in pages:
        out = CliRunner().invoke(app, [*words, "--help"], prog_name="billing", env={"COLUMNS": "300"}).output
        assert "Вызов: billing" in out and "Показать эту справку и выйти." in out, words
        assert not english.search(out), (words, english.search(out))
        for line in out.splitlines():  # an option without help would show an empty description
            if re.match(r"^│\s+\*?\s*--", line):
                assert re.search(r"[А-Яа-яЁё]", line), (words, line)


# --------------------------------------------------------------------------- ОСВ and the account card

def test_osv_by_account_over_two_periods(two_months: Workspace) -> None:
    periods = ["2026-08", "2026-09"]
    tables = read_sealed(two_months, periods)
    sheet = osv(tables["balances"], load_store(two_months), periods, "account")
    check_osv(sheet)
    rows = {r["account_id"]: r for r in sheet.iter_rows(named=True)}
    # A1, August: cold water 7.5 m³ × 52,28 = 392,10; sewerage 7.5 × 41,17 = 308,775 → 308,78;
    # heating 50 m² × 0.0198 × 2874,12 = 2845,3788 → 2845,38; maintenance 50 × 31,50 = 1575,00.
    # September (no reading: the norm, 2 persons × 4.745 = 9.49 m³): 496,14 + 390,70 + 2845,38 + 1575,00.
    assert (rows["A1"]["opening_kop"], rows["A1"]["charged_kop"], rows["A1"]["paid_kop"],
            rows["A1"]["closing_kop"]) == (0, 512_126 + 530_722, 100_000, 942_848)
    assert (rows["A2"]["charged_kop"], rows["A2"]["paid_kop"], rows["A2"]["closing_kop"]) == (
        1_248_802, 50_000, 1_198_802)
    assert (rows["A3"]["charged_kop"], rows["A3"]["paid_kop"], rows["A3"]["closing_kop"]) == (
        795_944, 0, 795_944)
    assert rows["A1"]["address"] == "г. Энск, ул. Ленина, д. 1, кв. 1"
    for r in rows.values():  # the balance identity, row by row
        assert r["opening_kop"] + r["charged_kop"] + r["recalculated_kop"] + r["penalty_kop"] \
            - r["paid_kop"] == r["closing_kop"]
    # The range's opening is the first period's, not a sum of openings.
    september = osv(tables["balances"], load_store(two_months), ["2026-09"], "account")
    a1 = september.filter(pl.col("account_id") == "A1").row(0, named=True)
    assert (a1["opening_kop"], a1["charged_kop"], a1["closing_kop"]) == (512_126, 530_722, 942_848)
    # The same money by supplier and by building.
    for by in ("supplier", "building"):
        other = osv(tables["balances"], load_store(two_months), periods, by)
        check_osv(other)
        assert other["closing_kop"].sum() == sheet["closing_kop"].sum() == 942_848 + 1_198_802 + 795_944


def test_osv_refuses_an_open_period_and_a_broken_row(two_months: Workspace) -> None:
    with pytest.raises(BillingError, match="Период 2026-10 не закрыт"):
        read_sealed(two_months, ["2026-09", "2026-10"])
    sheet = osv(read_sealed(two_months, ["2026-08"])["balances"], load_store(two_months), ["2026-08"])
    broken = sheet.with_columns(pl.when(pl.col("account_id") == "A2").then(pl.col("closing_kop") + 1)
                                .otherwise(pl.col("closing_kop")).alias("closing_kop"))
    with pytest.raises(BillingError, match=r"ОСВ не сходится в строке A2: .* разница 0,01 ₽"):
        check_osv(broken)


def test_osv_csv_for_russian_excel(two_months: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "osv.csv"
    res = CliRunner().invoke(app, ["report", "osv", "--period", "08.2026", "--to", "2026-09", "--format", "csv",
                                   "--out", str(out), "--home", str(two_months.home)])
    assert res.exit_code == 0, res.output
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[0] == ("Лицевой счёт;Плательщик;Адрес;Сальдо на начало;Начислено;Перерасчёт;Пени;"
                        "Оплачено;Сальдо на конец")
    assert lines[1] == "A1;Иванов Иван Иванович;г. Энск, ул. Ленина, д. 1, кв. 1;0,00;10428,48;0,00;0,00;" \
                       "1000,00;9428,48"
    assert lines[-1] == "Итого;;;0,00;30875,94;0,00;0,00;1500,00;29375,94"
    book = tmp_path / "osv.xlsx"
    res = CliRunner().invoke(app, ["report", "osv", "--period", "2026-08", "--to", "2026-09", "--by", "supplier",
                                   "--format", "xlsx", "--out", str(book), "--home", str(two_months.home)])
    assert res.exit_code == 0, res.output
    from openpyxl import load_workbook

    sheet = load_workbook(book).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == "Поставщик (код)" and rows[-1][0] == "Итого"
    assert Decimal(str(rows[-1][-1])) == Decimal("29375.94")
    png = CliRunner().invoke(app, ["report", "osv", "--period", "2026-08", "--format", "png",
                                   "--home", str(two_months.home)])
    assert png.exit_code == 2


def test_account_card_lists_payments_with_dates(two_months: Workspace) -> None:
    periods = ["2026-08", "2026-09"]
    services = {"cold_water": "Холодное водоснабжение", "sewerage": "Водоотведение",
                "heating": "Отопление", "maintenance": "Содержание жилого помещения"}
    card = account_card("A1", read_sealed(two_months, periods), load_store(two_months), services, periods)
    check_card(card)
    paid = card.filter(pl.col("entry") == "Оплата")
    assert paid.select("period", "day", "detail", "amount_kop").rows() == [
        ("2026-09", date(2026, 9, 5), "платёж p1 (sber)", -100_000)]
    edges = card.filter(pl.col("entry").str.starts_with("Сальдо")).select("period", "entry", "amount_kop").rows()
    assert edges == [("2026-08", "Сальдо на начало", 0), ("2026-08", "Сальдо на конец", 512_126),
                     ("2026-09", "Сальдо на начало", 512_126), ("2026-09", "Сальдо на конец", 942_848)]
    charged = card.filter((pl.col("entry") == "Начислено") & (pl.col("period") == "2026-08"))
    assert dict(zip(charged["detail"], charged["amount_kop"], strict=True)) == {
        "Холодное водоснабжение (по прибору учёта)": 39_210, "Водоотведение (по прибору учёта)": 30_878,
        "Отопление (по нормативу на м²)": 284_538, "Содержание жилого помещения (по площади)": 157_500}

    res = CliRunner().invoke(app, ["report", "card", "A1", "--period", "2026-08", "--to", "09.2026",
                                   "--home", str(two_months.home)])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if "Оплата" in x)
    assert "05.09.2026" in line and "платёж p1 (sber)" in line and line.endswith(f"-1{NBSP}000,00")
    unknown = CliRunner().invoke(app, ["report", "card", "NOPE", "--period", "2026-08",
                                       "--home", str(two_months.home)])
    assert isinstance(unknown.exception, BillingError)


# --------------------------------------------------------------------------- progress

def test_stage_lines_of_a_close_and_an_import(town: Workspace, tmp_path: Path) -> None:
    from pipeline.cli import run_close

    ingest(town)
    err = io.StringIO()
    with progress.reporting(stream=err):
        run_close(town, "2026-08", receipts=False)
        path = tmp_path / "payments.csv"
        path.write_text(PAYMENTS, encoding="utf-8")
        import_payment_file(town, path, today=date(2026, 9, 30))
    lines = err.getvalue().splitlines()
    stages = [re.sub(r"^  \[\d+,\d с\] ", "", x) for x in lines]
    assert all(x != y for x, y in zip(stages, lines, strict=True)), lines  # each with its time
    # The first close of a process also says that Prefect is loaded (it takes seconds).
    assert [x for x in stages if not x.startswith("Prefect ")] == [
        "2026-08: данные загружены — лицевых счетов 3, платежей 0",
        "2026-08: начисления рассчитаны — строк 12",
        "2026-08: период закрыт — без квитанций",
        "payments.csv: прочитан (csv) — платежей 2",
        "payments.csv: проверен — принято 2, невыясненных 0, повторных 0",
    ]
    # Outside a reporting block nothing is printed.
    progress.stage("не видно")


def test_progress_only_when_asked_or_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress.wanted(None) is False
    assert progress.wanted(True) is True

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert progress.wanted(None) is True and progress.wanted(False) is False


# --------------------------------------------------------------------------- start-up

def test_billing_help_imports_no_polars() -> None:
    """A deterministic proxy of a fast ``billing --help`` (polars alone takes ≈ 0.1 s)."""
    code = "import sys; import pipeline.cli; print(sorted(m for m in ('polars', 'pandera', 'numpy', 'duckdb', " \
           "'prefect') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
