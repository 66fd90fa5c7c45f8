"""``billing migrate load``: read the export, keep what was refused, seal the months, reconcile.

One command under the workspace lock: :func:`pipeline.migrate.history.read_history` (the
mapping, the checks, a reject report for every refused cell), the history saved in
``store/migration/``, every month sealed as a migrated period
(:func:`pipeline.migrate.periods.seal_months`), then the reconciliation
(:func:`pipeline.migrate.reconcile.reconcile`) with its reports. Audited.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.workspace import Workspace, audit, locked
from schemas.history import HISTORY


@dataclass(frozen=True)
class MigrationResult:
    """What ``billing migrate load`` did (for the CLI's summary and the audit)."""

    source: str
    months: tuple[str, ...]
    rows: dict[str, int]
    rejected: int
    rejects_path: Path | None
    periods: list[Path]
    differences: int
    difference_kop: int
    reports: list[Path]
    #: wall seconds of each step: read, seal, save, reconcile
    seconds: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of the processes that read files and rebuilt partitions (beside this one's)
    worker_cpu_seconds: float = 0.0

    def audit_details(self) -> dict[str, Any]:
        return {"source": self.source, "months": list(self.months), "rows": self.rows,
                "rejected": self.rejected, "rejects": str(self.rejects_path or ""),
                "periods": [p.name for p in self.periods], "differences": self.differences,
                "difference_kop": self.difference_kop, "reports": [str(p) for p in self.reports],
                "seconds": self.seconds, "worker_cpu_seconds": round(self.worker_cpu_seconds, 2)}


@locked("migrate load")
def migrate_load(ws: Workspace, directory: Path | None = None, replace: bool = False) -> MigrationResult:
    """Load the old system's export from ``directory`` (default ``HOME/migration``) and seal it."""
    from pipeline.migrate.history import read_history, write_history_rejects
    from pipeline.migrate.model import save_history, staging_folder
    from pipeline.migrate.periods import seal_months
    from pipeline.migrate.reconcile import reconcile

    seconds: dict[str, float] = {}
    start = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal start
        now = time.perf_counter()
        seconds[step] = round(now - start, 2)
        start = now

    history, rejects = read_history(ws, directory)
    rows = {name: history.rows(name) for name in HISTORY}
    lap("read")
    try:
        rejects_path = write_history_rejects(ws, rejects)
        sealed = seal_months(ws, history, replace=replace)
        lap("seal")
        save_history(ws, history)
        lap("save")
    finally:  # the months read into the staging folder go to the store, or away
        shutil.rmtree(staging_folder(ws), ignore_errors=True)
    found = reconcile(ws, sealed.closing)  # the months compared while they were sealed
    lap("reconcile")
    result = MigrationResult(
        history.source, history.months, rows,
        rejects.height, rejects_path, sealed.periods, found.differences.height, found.total_abs_kop,
        [found.xlsx_path, found.pdf_path], seconds, history.worker_cpu_seconds + sealed.worker_cpu_seconds)
    audit(ws, "migrate load", inputs={"directory": str(directory or ws.home / "migration"),
                                      "replace": replace, "files_sha256": history.files_sha256},
          outputs=result.audit_details())
    return result
