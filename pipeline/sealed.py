"""The one reader of sealed periods: where a table's files are, and the table read back.

A sealed table is either one file ``periods/2026-12/charges.parquet`` or, when the close
ran in several partitions, a directory of parts of the same name
``periods/2026-12/charges/part-0000.parquet`` … (pipeline/close/seal.py writes both). Every
reader — the next close, explain, statements, reports, analytics, the demo — goes through
:func:`table_files`, :func:`scan_table`, :func:`read_table` or :func:`read_internal`, so it
accepts both shapes. The rows of a table are the same whatever the number of parts; only
their order follows the parts (each part is sorted by the table's key).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from schemas.outputs import empty, to_internal

PART_GLOB = "part-*.parquet"


def part_name(index: int) -> str:
    """The file name of part ``index`` of a partitioned table."""
    return f"part-{index:04d}.parquet"


def table_files(folder: Path, table: str) -> list[Path]:
    """The Parquet files holding ``table`` in the period ``folder``: one, its parts, or none."""
    single = folder / f"{table}.parquet"
    if single.is_file():
        return [single]
    parts = folder / table
    if parts.is_dir():
        return sorted(parts.glob(PART_GLOB))
    return []


def has_table(folder: Path, table: str) -> bool:
    """Whether the period ``folder`` has ``table`` (as a file or as parts)."""
    return bool(table_files(folder, table))


def scan_table(folder: Path, table: str) -> pl.LazyFrame:
    """``table`` of one sealed period, lazily (an absent table scans as no rows of its schema)."""
    files = table_files(folder, table)
    if not files:
        return empty(table).lazy()
    return pl.scan_parquet(files)


def read_table(folder: Path, table: str, columns: list[str] | None = None) -> pl.DataFrame:
    """``table`` of one sealed period (or its ``columns``), as sealed: DECIMAL money."""
    files = table_files(folder, table)
    if not files:
        frame = empty(table)
        return frame.select(columns) if columns else frame
    if len(files) == 1:
        return pl.read_parquet(files[0], columns=columns)
    return pl.concat([pl.read_parquet(f, columns=columns) for f in files], how="vertical_relaxed")


def read_internal(folder: Path, table: str, columns: list[str] | None = None) -> pl.DataFrame:
    """``table`` of one sealed period in the engine's integers (``amount`` → ``amount_kop``)."""
    frame = read_table(folder, table)
    return to_internal(frame, table, columns)


def scan_internal(folder: Path, table: str, columns: list[str] | None = None) -> pl.LazyFrame:
    """:func:`read_internal`, lazily: a filter on it reads only what it keeps (and ``columns``)."""
    return to_internal(scan_table(folder, table), table, columns)


def read_periods(folders: list[Path], table: str, columns: list[str] | None = None
                 ) -> pl.DataFrame | None:
    """``table`` of several sealed periods stacked in their order; None when none has it."""
    frames = [read_table(f, table, columns) for f in folders if has_table(f, table)]
    if not frames:
        return None
    return pl.concat(frames, how="vertical_relaxed")


def duckdb_source(folder: Path, table: str) -> str | None:
    """A DuckDB ``read_parquet`` argument for ``table``: the file, or its parts' glob."""
    single = folder / f"{table}.parquet"
    if single.is_file():
        return str(single)
    if (folder / table).is_dir() and any((folder / table).glob(PART_GLOB)):
        return str(folder / table / PART_GLOB)
    return None
