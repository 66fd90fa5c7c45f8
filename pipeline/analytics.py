"""``billing sql``: DuckDB views over the store, the rules and the sealed periods.

Views: one per register (current snapshot), one per rule table, ``payments``,
and one per output table across all sealed periods (each row has ``period``).
Only sealed periods are visible: a dry run or an interrupted close is not.

Read-only and confined to the workspace: the sealed periods are verified against
their manifests first (:func:`pipeline.verify.check_sealed`); once the views are
defined the connection may read only the views' own files (``allowed_paths``,
``enable_external_access=false``), loads no extension and its configuration is
locked; and :func:`run_sql` runs only SELECT statements (and EXPLAIN of one).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from pipeline.close import OUTPUT_TABLES
from pipeline.ingest.registers import current_version
from pipeline.workspace import BillingError, Workspace
from schemas.registers import REGISTERS


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def connect(ws: Workspace) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with every view defined, closed to anything else.

    The views read the current register snapshot, the rule tables, the store's
    payments and the verified sealed periods; afterwards no other file can be read
    or written, no extension loaded and no setting changed.
    """
    from pipeline.verify import check_sealed

    sealed = ws.sealed_periods()
    check_sealed(ws, sealed)
    con = duckdb.connect(":memory:")
    readable: list[Path] = []
    version = current_version(ws)
    if version:
        base = ws.store / "registers" / version
        for name in REGISTERS:
            path = base / f"{name}.parquet"
            if path.is_file():
                readable.append(path)
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_quote(path)})")
    for path in sorted(ws.rules.glob("*.csv")):
        readable.append(path)
        con.execute(
            f'CREATE VIEW "{path.stem}" AS SELECT * FROM read_csv({_quote(path)}, header=true, '
            "all_varchar=false)"
        )
    for name in ("payments", "imported_files"):
        path = ws.store / f"{name}.parquet"
        if path.is_file():
            readable.append(path)
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_quote(path)})")
    for table in OUTPUT_TABLES:
        files = [ws.period_dir(p) / f"{table}.parquet" for p in sealed]
        files = [f for f in files if f.is_file()]
        if files:
            readable.extend(files)
            listing = ", ".join(_quote(f) for f in files)
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listing}], union_by_name=true)"
            )
    _confine(con, readable)
    return con


def _confine(con: duckdb.DuckDBPyConnection, readable: list[Path]) -> None:
    """Only the views' files stay readable; no extension, no further setting."""
    listing = ", ".join(_quote(p) for p in readable)
    con.execute(f"SET allowed_paths = [{listing}]" if readable else "SET allowed_paths = []")
    for setting in ("enable_external_access = false", "autoinstall_known_extensions = false",
                    "autoload_known_extensions = false", "lock_configuration = true"):
        con.execute(f"SET {setting}")


_EXPLAIN = re.compile(r"\s*explain\s+(?:analy[sz]e\s+)?(.*)", re.IGNORECASE | re.DOTALL)
_KEYWORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*([A-Za-z_]+)", re.DOTALL)


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but SELECT (or EXPLAIN of a SELECT), statement by statement."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as err:
        raise BillingError(f"Ошибка SQL: {err}") from err
    if not statements:
        raise BillingError("Пустой запрос SQL: укажите SELECT …")
    for statement in statements:
        if statement.type == duckdb.StatementType.SELECT:
            continue
        if statement.type == duckdb.StatementType.EXPLAIN:
            inner = _EXPLAIN.match(statement.query)
            try:
                explained = con.extract_statements(inner.group(1)) if inner else []
            except duckdb.Error:
                explained = []
            if len(explained) == 1 and explained[0].type == duckdb.StatementType.SELECT:
                continue
            raise BillingError("Команда SQL «EXPLAIN» разрешена только для SELECT: billing sql "
                               "только читает данные.")
        word = _KEYWORD.match(statement.query)
        keyword = word.group(1).upper() if word else ""
        if keyword in ("", "WITH"):  # WITH … INSERT: name what it does
            keyword = statement.type.name
        raise BillingError(f"Команда SQL «{keyword}» запрещена: billing sql только читает данные "
                           "(разрешён SELECT).")


def run_sql(ws: Workspace, query: str, fmt: str = "table") -> str:
    """Run a read-only query and format the result (``table``, ``csv`` or ``json``)."""
    with duckdb.connect(":memory:") as parser:  # before anything is opened or verified
        check_read_only(parser, query)
    con = connect(ws)
    try:
        rel = con.sql(query)
    except duckdb.PermissionException as err:
        named = re.search(r'"([^"]+)"', str(err))
        what = f"к файлу «{named.group(1)}»" if named else "к файлам"
        raise BillingError(
            f"Доступ {what} запрещён: billing sql читает только представления рабочего "
            "пространства (реестры, правила, платежи, закрытые периоды)."
        ) from err
    except duckdb.Error as err:
        raise BillingError(f"Ошибка SQL: {err}") from err
    if rel is None:
        return "OK"
    frame = rel.pl()
    if fmt == "csv":
        return frame.write_csv()
    if fmt == "json":
        return frame.write_json()
    import polars as pl

    with pl.Config(tbl_rows=200, tbl_cols=50, tbl_width_chars=200, fmt_str_lengths=60,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=False):
        return str(frame)
