"""``billing sql``: DuckDB views over the store, the rules and the sealed periods.

Views: one per register (current snapshot), one per rule table, ``payments``,
and one per output table across all sealed periods (each row has ``period``).
Only sealed periods are visible: a dry run or an interrupted close is not.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline.close import OUTPUT_TABLES
from pipeline.ingest.registers import current_version
from pipeline.workspace import BillingError, Workspace
from schemas.registers import REGISTERS


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def connect(ws: Workspace) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with every view defined."""
    con = duckdb.connect(":memory:")
    version = current_version(ws)
    if version:
        base = ws.store / "registers" / version
        for name in REGISTERS:
            path = base / f"{name}.parquet"
            if path.is_file():
                con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_quote(path)})")
    for path in sorted(ws.rules.glob("*.csv")):
        con.execute(
            f'CREATE VIEW "{path.stem}" AS SELECT * FROM read_csv({_quote(path)}, header=true, '
            "all_varchar=false)"
        )
    for name in ("payments", "imported_files"):
        path = ws.store / f"{name}.parquet"
        if path.is_file():
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_quote(path)})")
    sealed = ws.sealed_periods()
    for table in OUTPUT_TABLES:
        files = [ws.period_dir(p) / f"{table}.parquet" for p in sealed]
        files = [f for f in files if f.is_file()]
        if files:
            listing = ", ".join(_quote(f) for f in files)
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listing}], union_by_name=true)"
            )
    return con


def run_sql(ws: Workspace, query: str, fmt: str = "table") -> str:
    """Run one query and format the result (``table``, ``csv`` or ``json``)."""
    con = connect(ws)
    try:
        rel = con.sql(query)
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
