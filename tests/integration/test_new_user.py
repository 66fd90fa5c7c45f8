"""What a new user meets: the register docs, the init templates, rule tables typed by hand, views.

A workspace is built from ``docs/registers.md`` and the templates of ``billing init``
alone; a decimal comma in a rule table is named at ingest (file, row, column), not
at the close; a service the rule tables name but ``services.csv`` lacks is a warning;
every view of ``billing sql`` exists before there is any data.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.analytics import connect, empty_schemas
from pipeline.close import OUTPUT_TABLES, compute, load_inputs, seal
from pipeline.dates import Period
from pipeline.docs import DOC_PATH, registers_markdown, template_csv
from pipeline.ingest.payments import import_payment_file
from pipeline.ingest.registers import current_version, ingest
from pipeline.workspace import BillingError, Workspace, init_workspace
from rules import load_rules
from schemas.history import HISTORY
from schemas.registers import PAYMENTS, REGISTERS
from schemas.rules import RULE_TABLES
from tests.conftest import ACCOUNTS, BUILDINGS, write_registers


def billing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
            ) -> tuple[int, str]:
    """``billing ARGS`` through the console entry point: exit code and everything printed."""
    from pipeline.cli import main

    monkeypatch.setattr(sys, "argv", ["billing", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out + out.err


def doc_examples(text: str) -> dict[str, list[str]]:
    """Each section's example as the docs show it: table name → header line and rows."""
    blocks = re.findall(r"^### `(\w+)` — [^\n]*\n.*?^```csv\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return {name: body.splitlines() for name, body in blocks}


# ------------------------------------------------------------------ the docs


def test_docs_registers_md_is_written_from_the_schemas() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == registers_markdown(), (
        "docs/registers.md устарел: выполните .venv/bin/python -m pipeline.docs")


def test_the_docs_show_every_register_payment_file_and_rule_table_with_an_example() -> None:
    examples = doc_examples(DOC_PATH.read_text(encoding="utf-8"))
    assert set(examples) == {*REGISTERS, "payments", *RULE_TABLES, *HISTORY}
    for name, spec in (*REGISTERS.items(), ("payments", PAYMENTS)):
        assert examples[name][0] + "\n" == template_csv(spec)
        assert len(examples[name]) >= 2, name


def test_the_readme_links_the_docs_and_the_sample() -> None:
    readme = (DOC_PATH.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Как это работает", 1)[1].split("```", 1)[0]
    assert "(docs/registers.md)" in section and "(data/sample/README.md)" in section


# ------------------------------------------------------------------ a workspace from the docs


@pytest.fixture(scope="module")
def docs_town(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A workspace from ``billing init`` whose templates got the docs' example rows, closed for 2026-08."""
    ws = init_workspace(tmp_path_factory.mktemp("docs") / "home")
    examples = doc_examples(DOC_PATH.read_text(encoding="utf-8"))
    for name in REGISTERS:
        template = ws.registers / f"{name}.csv"
        assert template.read_text(encoding="utf-8") == examples[name][0] + "\n"
        with open(template, "a", encoding="utf-8") as fh:
            fh.write("\n".join(examples[name][1:]) + "\n")
    result = ingest(ws)
    assert result.total_rejected == 0 and result.warnings == ()
    assert result.loaded == {name: len(examples[name]) - 1 for name in REGISTERS}
    payments = ws.home.parent / "payments.csv"
    payments.write_text("\n".join(examples["payments"]) + "\n", encoding="utf-8")
    imported = import_payment_file(ws, payments)
    assert imported.rejected == 0 and imported.accepted + imported.suspense == 1
    inputs = load_inputs(ws, Period(2026, 8))
    seal(ws, compute(inputs), inputs)
    return ws


def test_a_workspace_built_from_the_docs_and_the_templates_loads_and_closes(docs_town: Workspace) -> None:
    charges = pl.read_parquet(docs_town.period_dir("2026-08") / "charges.parquet")
    amounts = {r["service_id"]: (r["method"], str(r["amount"])) for r in charges.iter_rows(named=True)}
    # 50.00 m² × 31.50; 19.5 − 14.0 = 5.5 m³ × 52.28
    assert amounts == {"maintenance": ("area", "1575.00"), "cold_water": ("meter", "287.54")}
    recalcs = pl.read_parquet(docs_town.period_dir("2026-08") / "recalculations.parquet")
    # 12 h without cold water, 8 h allowed: 4 h × 0.15 % × 287.54 = 1.72524 → −1.73
    assert [(r["service_id"], str(r["amount"])) for r in recalcs.iter_rows(named=True)] == [
        ("cold_water", "-1.73")]


def test_the_history_examples_of_the_docs_read_without_a_reject(docs_town: Workspace) -> None:
    """The docs' history rows (billing migrate) pass the reader against the docs' registers."""
    from pipeline.migrate.history import read_history

    examples = doc_examples(DOC_PATH.read_text(encoding="utf-8"))
    folder = docs_town.home / "migration-docs"
    folder.mkdir()
    for name in HISTORY:
        (folder / f"{name}.csv").write_text("\n".join(examples[name]) + "\n", encoding="utf-8")
    history, rejects = read_history(docs_town, folder)
    assert rejects.height == 0, rejects
    assert history.months == ("2026-05",)
    assert {name: history.rows(name) for name in HISTORY} == {
        name: len(examples[name]) - 1 for name in HISTORY}


def test_empty_views_have_the_columns_and_types_of_the_real_ones(docs_town: Workspace,
                                                                   tmp_path: Path) -> None:
    fresh = init_workspace(tmp_path / "fresh")
    real, empty = connect(docs_town), connect(fresh)

    def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in con.execute(f'DESCRIBE "{table}"').fetchall()]

    for name in (*REGISTERS, "payments", "imported_files", *OUTPUT_TABLES):
        assert columns(empty, name) == columns(real, name), name
        assert empty.execute(f'SELECT count(*) FROM "{name}"').fetchone() == (0,)


# ------------------------------------------------------------------ a fresh workspace


def test_ingest_of_a_fresh_init_names_the_empty_required_registers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert billing(monkeypatch, capsys, "init", str(home))[0] == 0
    assert sorted(p.name for p in (home / "registers").iterdir()) == sorted(f"{n}.csv" for n in REGISTERS)
    code, out = billing(monkeypatch, capsys, "ingest", "--home", str(home))
    assert code == 1
    assert out == (
        "Ошибка: Пустые обязательные реестры (только строка заголовка): organizations.csv, buildings.csv, "
        "premises.csv, accounts.csv, building_services.csv. В каждом нужна хотя бы одна строка. Столбцы, "
        "допустимые значения и пример строки каждого реестра — в docs/registers.md; пример заполненных "
        "реестров — data/sample/registers/.\n")


def test_sql_over_payments_and_charges_works_in_a_fresh_workspace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    billing(monkeypatch, capsys, "init", str(home))
    for table in ("payments", "charges", "accounts", "balances"):
        code, out = billing(monkeypatch, capsys, "sql", f"select count(*) as n from {table}", "--home",
                            str(home), "--format", "csv")
        assert (code, out) == (0, "n\n0\n\n"), table
    names = {r[0] for r in connect(Workspace(home)).execute("SHOW TABLES").fetchall()}
    assert set(empty_schemas()) <= names


def test_empty_optional_templates_load_as_empty_registers(town: Workspace) -> None:
    empty = ("absences", "benefits", "outages", "access_refusals")  # the registers TOWN leaves out
    result = ingest(town)
    assert {n: (result.loaded[n], result.rejected[f"{n}.csv"]) for n in empty} == dict.fromkeys(empty, (0, 0))


def test_a_removed_empty_template_is_not_a_missing_register(town: Workspace) -> None:
    ingest(town)
    (town.registers / "absences.csv").unlink()
    assert not ingest(town).unchanged
    (town.registers / "residents.csv").unlink()
    with pytest.raises(BillingError, match="Реестр residents был в прошлой загрузке"):
        ingest(town)


def test_the_template_beside_an_xlsx_of_the_same_register_is_ignored(town: Workspace) -> None:
    from tests.ingest.test_ingest import write_xlsx

    accounts = pl.read_csv(town.registers / "accounts.csv", infer_schema=False)
    write_xlsx(town.registers / "accounts.xlsx", accounts)
    (town.registers / "accounts.csv").write_text(template_csv(REGISTERS["accounts"]), encoding="utf-8")
    assert ingest(town).loaded["accounts"] == 3
    write_registers(town, {"accounts": ACCOUNTS})
    with pytest.raises(BillingError, match="Реестр accounts задан двумя файлами"):
        ingest(town)


# ------------------------------------------------------------------ rule tables typed by hand


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


UNQUOTED = ("tariffs.csv, строка 2, столбец price = «48,73»: больше полей, чем в заголовке (6 вместо 5) — "
            "возможно, дробная часть через запятую без кавычек: 48,73; напишите 48.73 или \"48,73\" в кавычках")


def test_an_unquoted_decimal_comma_in_a_rule_table_is_named_at_ingest(town: Workspace) -> None:
    _edit(town.rules / "tariffs.csv", "cold_water,,2025-07-01,52.28,", "cold_water,,2025-07-01,48,73,")
    with pytest.raises(BillingError) as err:
        ingest(town)
    assert str(err.value).startswith(f"Ошибки в таблицах правил (rules/):\n  {UNQUOTED}\n")
    assert "Загрузка отменена, хранилище не изменено; отчёт: " in str(err.value)
    assert current_version(town) is None
    report = next(town.rejects.glob("ingest-*-rules.csv")).read_bytes().decode("utf-8-sig")
    assert report.splitlines()[1].startswith("tariffs.csv;2;price;48,73;")
    # The close meets the same message, not a traceback.
    with pytest.raises(BillingError) as at_close:
        load_rules(town.rules)
    assert str(at_close.value) == ("Ошибки в таблицах правил (rules/):\n  " + UNQUOTED
                                   + "\nИсправьте таблицу и повторите команду.")


def test_rules_are_checked_on_every_ingest_even_when_registers_are_unchanged(
        town: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert billing(monkeypatch, capsys, "ingest", "--home", str(town.home))[0] == 0
    _edit(town.rules / "norms.csv", "cold_water,2024-01-01,4.745,", "cold_water,2024-01-01,4,745,")
    code, out = billing(monkeypatch, capsys, "ingest", "--home", str(town.home))
    assert code == 1 and "Traceback" not in out
    assert ("norms.csv, строка 2, столбец value = «4,745»: больше полей, чем в заголовке (5 вместо 4) — "
            "возможно, дробная часть через запятую без кавычек: 4,745") in out


def test_a_bad_cell_of_a_rule_table_is_named_with_file_row_and_column(town: Workspace) -> None:
    _edit(town.rules / "quality_rules.csv", "cold_water,2011-09-01,8,4,0.15,month_total",
          "cold_water,2011-09-01,8,4,0.15,monthly")
    with pytest.raises(BillingError, match=r"quality_rules\.csv, строка 2, столбец excess_rule = «monthly»: "
                                           r"допустимые значения: month_total, greater_of"):
        ingest(town)


def test_a_decimal_comma_reads_with_semicolons_or_in_quotes(town: Workspace) -> None:
    path = town.rules / "tariffs.csv"
    _edit(path, "cold_water,,2025-07-01,52.28,", 'cold_water,,2025-07-01,"48,73",')
    assert ingest(town).warnings == ()
    tariffs = load_rules(town.rules).tariffs.filter(pl.col("service_id") == "cold_water")
    assert tariffs["price_kop"].to_list()[0] == 4873
    path.write_text("service_id;supplier_id;from;price;source\ncold_water;;2025-07-01;48,73;приказ\n"
                    "maintenance;;2025-07-01;31,50;\nheating;;2025-07-01;2874,12;\n"
                    "sewerage;;2025-07-01;41,17;\n", encoding="utf-8")
    ingest(town)
    result = compute(load_inputs(town, Period(2026, 8)))
    a1 = result.lines.filter((pl.col("account_id") == "A1") & (pl.col("service_id") == "cold_water"))
    assert a1["price_kop"].to_list() == [4873]
    assert a1["amount_kop"].to_list() == [36548]  # 7.5 m³ × 48.73 = 365.475 → 365.48


def test_a_service_missing_from_services_csv_is_a_warning_and_the_close_runs(
        town: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # A water utility narrows services.csv and keeps the default rule tables; the house
    # still lists heating, which services.csv no longer has.
    services = town.rules / "services.csv"
    kept = [line for line in services.read_text(encoding="utf-8").splitlines()
            if not line.startswith(("electricity", "intercom", "waste", "heating"))]
    services.write_text("\n".join(kept) + "\n", encoding="utf-8")
    code, out = billing(monkeypatch, capsys, "ingest", "--home", str(town.home))
    assert code == 0, out
    warning = next(line for line in out.splitlines() if line.startswith("Предупреждение"))
    assert warning.startswith("Предупреждение: в таблицах правил есть услуги, которых нет в services.csv; "
                              "их строки не используются: tariffs.csv — electricity, electricity_soi, "
                              "heating, intercom, waste; norms.csv — electricity, electricity_soi, heating;")
    # A service a building uses must still be in services.csv: that row is refused.
    assert "Отклонено строк: 1" in out
    rejects = pl.read_csv(next(town.rejects.glob("ingest-*.csv")), separator=";", infer_schema=False)
    assert rejects.select("file", "row", "column", "value").rows() == [
        ("building_services.csv", "5", "service_id", "heating")]
    result = compute(load_inputs(town, Period(2026, 8)))
    assert set(result.lines["service_id"]) == {"cold_water", "sewerage", "maintenance"}


def test_an_unquoted_decimal_comma_in_a_register_names_the_row(town: Workspace) -> None:
    write_registers(town, {"buildings": BUILDINGS.replace("UK1,1000.00,", "UK1,1000,00,")})
    with pytest.raises(BillingError) as err:
        ingest(town)
    assert str(err.value) == (
        "buildings.csv: файл не читается:\n  buildings.csv, строка 2, столбец total_area = «1000,00»: больше "
        "полей, чем в заголовке (6 вместо 5) — возможно, дробная часть через запятую без кавычек: 1000,00; "
        "напишите 1000.00 или \"1000,00\" в кавычках")


def test_a_register_left_only_as_its_template_needs_drop(town: Workspace) -> None:
    ingest(town)
    (town.registers / "readings.csv").write_text(template_csv(REGISTERS["readings"]), encoding="utf-8")
    with pytest.raises(BillingError) as err:
        ingest(town)
    assert str(err.value) == (
        "Реестр readings был в прошлой загрузке (readings.csv), а сейчас в registers/ он пуст (readings.csv — "
        "только строка заголовка): верните строки или, если реестр очищен намеренно, выполните "
        "billing ingest --drop readings")
    assert ingest(town, drop=["readings"]).loaded["readings"] == 0
