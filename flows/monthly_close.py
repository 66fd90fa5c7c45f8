"""``monthly_close(period)``: the month close as a Prefect flow.

Tasks are the stages of :mod:`pipeline.close`; the same functions are tested
without Prefect. Data moves between tasks in memory (no result persistence, no
input hashing: ``NO_CACHE``), the flow returns a small summary. The whole close
holds the workspace lock, so no ingest or payment import changes its inputs
between reading and sealing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import step
from pipeline import close as stages
from pipeline import progress
from pipeline.dates import Period
from pipeline.render.build import receipts_step
from pipeline.workspace import Workspace, workspace_lock


@task(name="load-inputs", cache_policy=NO_CACHE)
def load_inputs(home: str, period: str) -> stages.CloseInputs:
    return stages.load_inputs(Workspace(Path(home)), Period.parse(period))


@task(name="compute", cache_policy=NO_CACHE)
def compute(inputs: stages.CloseInputs) -> stages.CloseResult:
    return stages.compute(inputs)


@task(name="seal-with-receipts", cache_policy=NO_CACHE)
def seal(home: str, inputs: stages.CloseInputs, result: stages.CloseResult,
         receipts: bool) -> str:
    """Seal the period; the receipts are a step of the flow, rendered into the sealed folder."""
    ws = Workspace(Path(home))
    render = receipts_step(ws, inputs, result) if receipts else None
    return str(stages.seal(ws, result, inputs, render))


@flow(name="monthly_close", log_prints=False)
def monthly_close(period: str, home: str, dry_run: bool = False,
                  receipts: bool = True) -> dict[str, Any]:
    """Close ``period`` in the workspace ``home``; ``dry_run`` computes without sealing."""
    command = f"close --period {period}" + (" --dry-run" if dry_run else "")
    with workspace_lock(Workspace(Path(home)), command):
        inputs = step(load_inputs, home, period)
        count = progress.count_text
        accounts = inputs.regs["accounts"].height
        progress.stage(f"{period}: данные загружены — лицевых счетов {count(accounts)}, "
                       f"платежей {count(inputs.payments.height)}")
        result = step(compute, inputs)
        progress.stage(f"{period}: начисления рассчитаны — строк {count(result.lines.height)}")
        summary = stages.summary(result)
        if not dry_run:
            summary["period_dir"] = step(seal, home, inputs, result, receipts)
            progress.stage(f"{period}: период закрыт — " + _sealed_text(Path(summary["period_dir"])))
    return summary


def _sealed_text(folder: Path) -> str:
    """What the seal wrote, from its manifest: the receipts rendered."""
    import json

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    made = (manifest.get("receipts") or {}).get("count")
    return f"квитанций {progress.count_text(made)}" if made is not None else "без квитанций"
