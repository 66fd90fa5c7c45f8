"""``billing sql``: DuckDB views over the store, the rules and the sealed periods.

Views: one per register (current snapshot), one per rule table, ``payments``,
and one per output table across all sealed periods (each row has ``period``).
Only sealed periods are visible: a dry run or an interrupted close is not.

Read-only and confined to the workspace: the sealed periods are verified against
their manifests first (:func:`pipeline.verify.check_sealed`); once the views are
defined the connection may read only the views' own files (``allowed_paths``; a table
sealed in parts through its parts' glob, so that one directory is ``allowed_directories``;
``enable_external_access=false``), loads no extension and its configuration is
locked; and :func:`run_sql` runs only SELECT statements (and EXPLAIN of one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from pipeline.ingest.registers import current_version
from pipeline.sealed import PART_GLOB, duckdb_source
from pipeline.workspace import BillingError, Workspace
from schemas.outputs import OUTPUT_TABLES
from schemas.outputs import empty as empty_output
from schemas.registers import REGISTERS
from schemas.rules import RULE_TABLES

if TYPE_CHECKING:
    import polars as pl


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
    parts_dirs: list[Path] = []
    version = current_version(ws)
    empty = empty_schemas()
    base = ws.store / "registers" / version if version else None
    for name in REGISTERS:
        path = base / f"{name}.parquet" if base else None
        if path is not None and path.is_file():
            readable.append(path)
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_quote(path)})")
        else:
            _empty_view(con, name, empty[name])
    for path in sorted(ws.rules.glob("*.csv")):
        readable.append(path)
        con.execute(
            f'CREATE VIEW "{path.stem}" AS SELECT * FROM read_csv({_quote(path)}, header=true, '
            "all_varchar=false)"
        )
    for name in RULE_TABLES:
        if not (ws.rules / f"{name}.csv").is_file():
            _empty_view(con, name, empty[name])
    for name in ("payments", "imported_files", "agent_settlements"):
        path = ws.store / f"{name}.parquet"
        if path.is_file():
            readable.append(path)
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_quote(path)})")
        else:
            _empty_view(con, name, empty[name])
    for table in OUTPUT_TABLES:
        # One file per period, or the glob of its parts (pipeline.sealed): the parts'
        # directory becomes readable, only it (DuckDB expands the glob when queried).
        sources = [Path(s) for p in sealed if (s := duckdb_source(ws.period_dir(p), table)) is not None]
        if sources:
            for source in sources:
                if source.name == PART_GLOB:
                    parts_dirs.append(source.parent)
                else:
                    readable.append(source)
            listing = ", ".join(_quote(source) for source in sources)
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listing}], union_by_name=true)"
            )
        else:
            _empty_view(con, table, empty[table])
    _confine(con, readable, parts_dirs)
    return con


def empty_schemas() -> dict[str, pl.Schema]:
    """The columns of every view while it has no data: registers, rule tables, payments,
    imported files and the sealed tables (as :mod:`schemas.outputs` declares them)."""
    import polars as pl

    from pipeline.ingest.onec import SETTLEMENTS_SCHEMA
    from pipeline.ingest.payments import FILES_SCHEMA, STORE_SCHEMA

    schemas: dict[str, pl.Schema] = {
        spec.name: pl.Schema({"source_row": pl.Int64(), **{c.name: c.dtype for c in spec.columns}})
        for spec in (*REGISTERS.values(), *RULE_TABLES.values())
    }
    schemas["payments"] = STORE_SCHEMA
    schemas["imported_files"] = FILES_SCHEMA
    schemas["agent_settlements"] = SETTLEMENTS_SCHEMA
    schemas.update((name, empty_output(name).schema) for name in OUTPUT_TABLES)
    return schemas


def _sql_type(dtype: pl.DataType) -> str:
    """DuckDB's name of a polars type (the ones the views' files hold)."""
    import polars as pl

    if isinstance(dtype, pl.Decimal):
        return f"DECIMAL({dtype.precision or 38}, {dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    names = {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Int32: "INTEGER", pl.Int16: "SMALLINT",
             pl.Int8: "TINYINT", pl.Float64: "DOUBLE", pl.Float32: "FLOAT", pl.Boolean: "BOOLEAN",
             pl.Date: "DATE"}
    for polars_type, name in names.items():
        if dtype == polars_type:
            return name
    raise TypeError(f"no DuckDB type for {dtype}")


def _empty_view(con: duckdb.DuckDBPyConnection, name: str, schema: pl.Schema) -> None:
    """A typed view without rows, reading no file (the view a table has before its data)."""
    columns = ", ".join(f'CAST(NULL AS {_sql_type(dtype)}) AS "{column.replace(chr(34), chr(34) * 2)}"'
                        for column, dtype in schema.items())
    con.execute(f'CREATE VIEW "{name}" AS SELECT {columns} WHERE false')


def _confine(con: duckdb.DuckDBPyConnection, readable: list[Path],
             parts_dirs: Sequence[Path] = ()) -> None:
    """Only the views' files and partitioned tables' part directories stay readable;
    no extension, no further setting."""
    listing = ", ".join(_quote(p) for p in readable)
    con.execute(f"SET allowed_paths = [{listing}]" if readable else "SET allowed_paths = []")
    # With a trailing separator: that directory, not every path beginning with its name.
    dirs = ", ".join("'" + str(d).replace("'", "''") + "/'" for d in parts_dirs)
    con.execute(f"SET allowed_directories = [{dirs}]")
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


#: Rows ``billing sql --format table`` prints (the rest: ``--format csv|xlsx --out FILE``).
TABLE_ROWS = 200


def run_sql(ws: Workspace, query: str, fmt: str = "table") -> str:
    """Run a read-only query and format the result (``table``, ``csv`` or ``json``)."""
    frame = query_frame(ws, query)
    if frame is None:
        return "OK"
    if fmt == "csv":
        return frame.write_csv()
    if fmt == "json":
        return frame.write_json()
    from pipeline.tables import render_table

    return render_table(frame, limit=TABLE_ROWS, max_width=60)


def query_frame(ws: Workspace, query: str) -> pl.DataFrame | None:
    """The result of a read-only query (None for a statement without rows)."""
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
        return None
    return rel.pl()
