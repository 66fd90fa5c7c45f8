"""Receipts of a past period printed again from its sealed tables, marked as duplicates.

``billing receipts print --period P [--account A …]`` rebuilds the receipts of a sealed
period from what the close sealed — its charges, recalculations, penalties, allocations,
balances, meter volumes and reading issues — and the registers snapshot its manifest names,
so a duplicate shows exactly what the original showed. Each page says «Дубликат» with the
day it was printed. The duplicates go to ``HOME/duplicates/P/``; the sealed folder is never
written. Rule tables (service names), the QR switches and the collecting agent are today's.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from pipeline.close import CloseResult
from pipeline.dates import Period
from pipeline.ingest.registers import load_store
from pipeline.render.build import workspace_receipts
from pipeline.render.receipts import Receipt, RenderReport, check_pdf_stack, render_receipts
from pipeline.sealed import read_internal, read_table
from pipeline.settings import Receipts, load_section
from pipeline.workspace import BillingError, Workspace
from rules import read_rule_table

__all__ = ["duplicates_dir", "reprint_receipts", "sealed_receipts", "sealed_result"]

#: The sealed tables a receipt is built from.
_TABLES = ("charges", "meter_volumes", "allocations", "balances", "service_balances", "debts",
           "penalties", "recalculations")


def duplicates_dir(ws: Workspace, period: str) -> Path:
    """Where the duplicates of ``period`` are written."""
    return ws.home / "duplicates" / period


def sealed_result(ws: Workspace, period: str) -> tuple[CloseResult, dict]:
    """The sealed period as a :class:`CloseResult` (engine integers) and its manifest."""
    folder = ws.period_dir(period)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise BillingError(f"Период {period} не закрыт: дубликат печатается только из закрытого периода.")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    frames = {name: read_internal(folder, name) for name in _TABLES}
    due = manifest.get("due_date")
    result = CloseResult(
        period=Period.parse(period), lines=frames["charges"], meter_volumes=frames["meter_volumes"],
        reading_issues=read_table(folder, "reading_issues"), allocations=frames["allocations"],
        balances=frames["balances"], service_balances=frames["service_balances"], debts=frames["debts"],
        due_date=date.fromisoformat(due) if due else None, penalties=frames["penalties"],
        recalculations=frames["recalculations"])
    return result, manifest


def sealed_receipts(ws: Workspace, period: str, duplicate_on: date | None = None) -> list[Receipt]:
    """The receipts of the sealed ``period`` rebuilt from its tables, as its close built them
    (marked as duplicates printed on ``duplicate_on`` when given)."""
    result, manifest = sealed_result(ws, period)
    regs = load_store(ws, manifest["store_version"])
    return list(workspace_receipts(ws, result, regs, read_rule_table(ws.rules, "services"),
                                   read_rule_table(ws.rules, "legal_thresholds"), duplicate_on))


def reprint_receipts(ws: Workspace, period: str, accounts: list[str] | None = None,
                     today: date | None = None, out_dir: Path | None = None) -> RenderReport:
    """Duplicates of ``period``'s receipts (of ``accounts``, or all) in :func:`duplicates_dir`."""
    period = str(Period.parse(period))
    check_pdf_stack()
    wanted = set(accounts or [])
    receipts = [r for r in sealed_receipts(ws, period, duplicate_on=today or date.today())
                if not wanted or r.account_id in wanted]
    missing = sorted(wanted - {r.account_id for r in receipts})
    if missing:
        raise BillingError(f"В периоде {period} нет квитанции лицевого счёта {', '.join(missing)}.")
    out = out_dir or duplicates_dir(ws, period)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings = load_section(ws.settings_path, Receipts)
    return render_receipts(receipts, out, workers=settings.workers or None, batches=False)
