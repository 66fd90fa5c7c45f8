"""``billing sql`` only reads, and only the workspace's views."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.analytics import run_sql
from pipeline.close import compute, load_inputs, seal
from pipeline.dates import Period
from pipeline.ingest.payments import import_payment_file
from pipeline.ingest.registers import ingest
from pipeline.workspace import BillingError, Workspace

PAYMENTS = """\
payment_id,paid_on,account_id,amount,period,agent
p1,2026-08-05,A1,1000.00,2026-08,sber
"""


@pytest.fixture
def home(town: Workspace, tmp_path: Path) -> Workspace:
    """The town with payments imported and 2026-08 sealed; a first query has run."""
    ingest(town)
    pay = tmp_path / "pay.csv"
    pay.write_text(PAYMENTS, encoding="utf-8")
    import_payment_file(town, pay)
    inputs = load_inputs(town, Period(2026, 8))
    seal(town, compute(inputs), inputs)
    run_sql(town, "select 1")  # readers' verification cache is written once
    return town


def tree(ws: Workspace) -> dict[str, str]:
    """Every file of the workspace (outside /tmp checks too) with its SHA-256."""
    return {str(p.relative_to(ws.home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ws.home.rglob("*")) if p.is_file()}


REFUSED = {
    "copy_onto_payments": ("COPY (select * from payments where false) TO '{home}/store/payments.parquet'",
                           "«COPY» запрещена"),
    "copy_no_tmp_file": ("COPY (select * from payments where false) TO '{home}/store/payments.parquet' "
                         "(FORMAT parquet, USE_TMP_FILE false)", "«COPY» запрещена"),
    "copy_onto_sealed_balances": ("COPY (select * from balances where false) TO "
                                  "'{home}/periods/2026-08/balances.parquet'", "«COPY» запрещена"),
    "copy_onto_audit": ("copy (select 'x' as a) to '{home}/audit/log.jsonl' (format csv)",
                        "«COPY» запрещена"),
    "attach_and_create": ("ATTACH '{tmp}/x.duckdb' AS x; CREATE TABLE x.t AS SELECT * FROM residents",
                          "«ATTACH» запрещена"),
    "create_table": ("CREATE TABLE t AS SELECT * FROM residents", "«CREATE» запрещена"),
    "create_macro": ("create macro m() as 1", "«CREATE» запрещена"),
    "insert": ("with a as (select 1) insert into t select * from a", "«INSERT» запрещена"),
    "read_csv_outside": ("select * from read_csv('/etc/passwd')", "к файлу «/etc/passwd» запрещён"),
    "read_text_outside": ("select * from read_text('/etc/hostname')", "к файлу «/etc/hostname» запрещён"),
    "glob_outside": ("select * from glob('/etc/*')", "запрещён"),
    "raw_register": ("select * from read_csv('{home}/registers/residents.csv')",
                     "registers/residents.csv» запрещён"),
    "settings": ("select * from read_csv('{home}/settings.toml')", "settings.toml» запрещён"),
    "install": ("INSTALL httpfs", "«INSTALL» запрещена"),
    "load": ("LOAD httpfs", "«LOAD» запрещена"),
    "set": ("SET enable_external_access = true", "«SET» запрещена"),
    "reset": ("RESET lock_configuration", "«RESET» запрещена"),
    "pragma": ("PRAGMA enable_profiling", "«PRAGMA» запрещена"),
    "export": ("EXPORT DATABASE '{tmp}/dump'", "«EXPORT» запрещена"),
    "call": ("CALL pragma_version()", "«CALL» запрещена"),
    "select_then_copy": ("select 1; copy (select 1) to '{home}/store/x.csv'", "«COPY» запрещена"),
    "explain_analyze_create": ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
                               "«EXPLAIN» разрешена только для SELECT"),
    "comment_first": ("/* read */ -- only\nCOPY (select 1) TO '{home}/store/x.csv'", "«COPY» запрещена"),
    "empty": ("  ;  ", "Пустой запрос"),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_writes_and_outside_reads_are_refused(home: Workspace, tmp_path: Path, case: str) -> None:
    query, message = REFUSED[case]
    before = tree(home)
    with pytest.raises(BillingError, match=re.escape(message)):
        run_sql(home, query.format(home=home.home, tmp=tmp_path))
    assert tree(home) == before
    assert not (tmp_path / "x.duckdb").exists() and not (tmp_path / "dump").exists()


@pytest.mark.parametrize("query", [
    "select count(*) as n from charges",
    "with t as (select account_id, sum(amount) s from charges group by 1) select count(*) from t",
    "select count(*) from payments; select count(*) from residents",
    "explain select * from balances",
    "from balances join accounts using (account_id) select count(*)",
    "describe charges",
    "show tables",
    "select count(*) from read_parquet('{home}/periods/2026-08/charges.parquet')",
])
def test_reading_queries_still_work(home: Workspace, query: str) -> None:
    before = tree(home)
    assert run_sql(home, query.format(home=home.home), "csv")
    assert tree(home) == before


def test_results_are_unchanged(home: Workspace) -> None:
    assert run_sql(home, "select count(*) as n, sum(amount) as s from payments", "csv") == "n,s\n1,1000.00\n"
    assert run_sql(home, "select account_id from accounts order by 1", "csv") == "account_id\nA1\nA2\nA3\n"


def test_cli_refuses_with_exit_1(home: Workspace) -> None:
    before = tree(home)
    env = {k: v for k, v in os.environ.items() if k not in ("BILLING_HOME", "PREFECT_API_URL")}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "sql",
         f"COPY (select * from payments where false) TO '{home.home}/store/payments.parquet'",
         "--home", str(home.home)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Команда SQL «COPY» запрещена: billing sql только читает данные" in proc.stderr
    after = tree(home)
    assert {k: v for k, v in after.items() if not k.startswith("audit/")} == \
        {k: v for k, v in before.items() if not k.startswith("audit/")}
