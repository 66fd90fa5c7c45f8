"""Sealing a close: its tables, reports, receipts and manifest in one atomic directory.

``to_outputs`` turns a :class:`CloseResult` (integers) into the sealed tables declared in
:mod:`schemas.outputs`; :func:`write_tables` writes them — one file per table, or, for
part ``k`` of a partitioned close, ``<table>/part-000k.parquet``; :func:`finish` adds
what crosses partitions (the reports, over all parts' balances and allocations, and the
manifest with summed totals and row counts, chained to the previous period's) and
:func:`seal` does all of it for one unpartitioned result. Everything lands in a staging
directory renamed into ``periods/YYYY-MM/`` at the end: a sealed period is never rewritten
and a failed close leaves nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.close.compute import CloseResult
from pipeline.close.inputs import CloseInputs
from pipeline.dates import Period
from pipeline.sealed import part_name, read_internal
from pipeline.verify import manifest_bytes
from pipeline.workspace import Workspace, atomic_write_bytes, sha256_file, staging_dir, write_parquet_atomic
from schemas.outputs import OUTPUT_TABLES, to_sealed

__all__ = ["OUTPUT_TABLES", "finish", "seal", "to_outputs", "write_tables"]

#: What a receipts step returns after rendering into the staging directory.
Render = Callable[[Path], dict[str, Any]]


def _sealed(frame: pl.DataFrame | pl.LazyFrame, table: str, period: str) -> pl.DataFrame:
    return to_sealed(frame.lazy().with_columns(pl.lit(period).alias("period")), table).collect()


def to_outputs(result: CloseResult) -> dict[str, pl.DataFrame]:
    """The sealed tables of ``result`` (money DECIMAL(18,2) rubles, a ``period`` column)."""
    from pipeline.calc.common_property import SETTLEMENT_SCHEMA

    p = str(result.period)
    assert result.recalculations is not None and result.penalties is not None
    keys = ("account_id", "service_id", "supplier_id")
    settlements = result.settlements if result.settlements is not None else pl.DataFrame(
        schema=SETTLEMENT_SCHEMA)
    # Sorted where the stages' parallel group-bys keep no order, so that the same inputs give
    # byte-identical files. Lazy: the default (streaming) engine sorts these millions of
    # string-keyed rows with half the CPU of an eager sort.
    return {
        "charges": _sealed(result.lines, "charges", p),
        "recalculations": _sealed(result.recalculations.sort(*keys, "origin_period", "amount_kop"),
                                  "recalculations", p),
        "allocations": _sealed(result.allocations, "allocations", p),
        "penalties": _sealed(result.penalties, "penalties", p),
        "balances": _sealed(result.balances, "balances", p),
        "service_balances": _sealed(result.service_balances.lazy().sort(*keys, nulls_last=True),
                                    "service_balances", p),
        "debts": _sealed(result.debts.lazy().sort(*keys, "charge_period", nulls_last=True), "debts", p),
        "meter_volumes": _sealed(result.meter_volumes, "meter_volumes", p),
        "reading_issues": _sealed(result.reading_issues, "reading_issues", p),
        "settlements": _sealed(settlements, "settlements", p),
    }


def write_tables(outputs: dict[str, pl.DataFrame], folder: Path, part: int | None = None) -> dict[str, int]:
    """Write the sealed tables into ``folder`` (part ``part`` of each when given); their row counts."""
    for name, frame in outputs.items():
        path = folder / f"{name}.parquet" if part is None else folder / name / part_name(part)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A fixed row-group size: the lazily built frames' chunks vary with the engine's
        # morsels, the files must not (byte-identical for the same inputs). zstd level 1: a
        # month's tables are written with 18 % less CPU than at the default level, 4 % larger.
        write_parquet_atomic(frame, path, row_group_size=262_144, compression_level=1)
    return {name: frame.height for name, frame in outputs.items()}


def finish(ws: Workspace, tmp: Path, inputs: CloseInputs, period: Period, due: date | None,
           totals: dict[str, int], row_counts: dict[str, int], receipts: dict[str, Any] | None,
           partitions: int = 1, extra: dict[str, Any] | None = None, reports: bool = True) -> None:
    """The reports over all the tables in ``tmp`` and the manifest, written last.

    ``extra``: more manifest keys (a migrated period's ``migrated``, ``source``, …); never
    one the close writes itself. ``reports=False``: no ``reports/`` (a migrated month: the
    old system's reports are the originals; ``billing report osv`` builds ours from the tables).
    """
    from pipeline.reports import write_reports

    written: dict[str, int] | None = None
    if reports:
        balances = read_internal(tmp, "balances")
        allocations = read_internal(tmp, "allocations")
        written = write_reports(tmp / "reports", balances, allocations, inputs.registers(),
                                datetime.combine(period.last, time()))
        del balances, allocations
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest = {
        "period": str(period),
        "sealed": True,
        "store_version": inputs.store_version,
        "rules_sha256": inputs.rules_sha256,
        "charge_rules_sha256": inputs.charge_rules_sha256,
        "payments_sha256": inputs.payments_sha256,
        "due_date": str(due) if due else None,
        "totals_kop": totals,
        "row_counts": row_counts,
        "partitions": partitions,
        "receipts": receipts,
        "reports": written,
        "files": {str(p.relative_to(tmp)): sha256_file(p) for p in files},
    }
    if extra:
        assert not set(extra) & set(manifest), f"extra manifest keys collide: {set(extra) & set(manifest)}"
        manifest.update(extra)
    # Chained to the previous period's manifest and hashed itself (pipeline.verify).
    atomic_write_bytes(tmp / "manifest.json", manifest_bytes(ws, manifest))


def seal(ws: Workspace, result: CloseResult, inputs: CloseInputs, render: Render | None = None,
         extra: dict[str, Any] | None = None, reports: bool = True) -> Path:
    """Write the period directory of one unpartitioned result; ``render(tmp)`` adds receipts.

    ``extra``, ``reports``: as :func:`finish`.
    """
    final = ws.period_dir(str(result.period))
    with staging_dir(final) as tmp:
        counts = write_tables(to_outputs(result), tmp)
        receipts = render(tmp) if render is not None else None
        finish(ws, tmp, inputs, result.period, result.due_date, result.totals, counts, receipts,
               extra=extra, reports=reports)
    return final
