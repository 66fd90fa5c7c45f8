"""``billing migrate load``: read the export, keep what was refused, seal the months, reconcile.

One command under the workspace lock: :func:`pipeline.migrate.history.read_history` (the
mapping, the checks, a reject report for every refused cell), the history saved in
``store/migration/``, every month sealed as a migrated period
(:func:`pipeline.migrate.periods.seal_history`), then the reconciliation
(:func:`pipeline.migrate.reconcile.reconcile`) with its reports. Audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.workspace import Workspace, audit, locked


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

    def audit_details(self) -> dict[str, Any]:
        return {"source": self.source, "months": list(self.months), "rows": self.rows,
                "rejected": self.rejected, "rejects": str(self.rejects_path or ""),
                "periods": [p.name for p in self.periods], "differences": self.differences,
                "difference_kop": self.difference_kop, "reports": [str(p) for p in self.reports]}


@locked("migrate load")
def migrate_load(ws: Workspace, directory: Path | None = None, replace: bool = False) -> MigrationResult:
    """Load the old system's export from ``directory`` (default ``HOME/migration``) and seal it."""
    from pipeline.migrate.history import read_history, write_history_rejects
    from pipeline.migrate.model import save_history
    from pipeline.migrate.periods import seal_history
    from pipeline.migrate.reconcile import reconcile

    history, rejects = read_history(ws, directory)
    rejects_path = write_history_rejects(ws, rejects)
    periods = seal_history(ws, history, replace=replace)
    save_history(ws, history)
    found = reconcile(ws)
    result = MigrationResult(
        history.source, history.months, {name: frame.height for name, frame in history.frames.items()},
        rejects.height, rejects_path, periods, found.differences.height, found.total_abs_kop,
        [found.xlsx_path, found.pdf_path])
    audit(ws, "migrate load", inputs={"directory": str(directory or ws.home / "migration"),
                                      "replace": replace, "files_sha256": history.files_sha256},
          outputs=result.audit_details())
    return result
