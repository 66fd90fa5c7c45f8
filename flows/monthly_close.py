"""``monthly_close(period)``: the month close as a Prefect flow.

Tasks are the steps of :mod:`pipeline.close`; the same functions are tested without
Prefect. ``load-inputs`` reads one snapshot; then every partition of whole buildings
(``[close] partition_accounts``) is a ``close-partition`` task that computes, writes its
parts of the tables and renders its receipts (the receipts are a step of the flow:
:func:`pipeline.render.build.receipts_step`, handed down as a factory); the flow then
finishes the period (reports, manifest, one atomic rename). With ``workers`` or
``cluster`` the partitions run on Dask (:mod:`flows.cluster`): a local cluster of that
many worker processes, or the scheduler at that address. Data moves between tasks in
memory (``NO_CACHE``); the flow returns a small summary. The whole close holds the
workspace lock, so no ingest or payment import changes its inputs between reading and
sealing.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import step
from flows.cluster import partition_runner
from pipeline import close as stages
from pipeline import progress
from pipeline.dates import Period
from pipeline.export import export_after_close
from pipeline.export.checks import check_export_settings
from pipeline.render.build import drop_receipt_cache, receipts_step
from pipeline.render.receipts import check_pdf_stack
from pipeline.workspace import Workspace, workspace_lock


@task(name="load-inputs", cache_policy=NO_CACHE)
def load_inputs(home: str, period: str) -> stages.CloseInputs:
    return stages.load_inputs(Workspace(Path(home)), Period.parse(period))


@task(name="close-partition", cache_policy=NO_CACHE)
def close_partition(job: stages.PartJob) -> stages.PartDone:
    """One partition: compute, write its parts of the tables, render its receipts."""
    return stages.close_part(job)


@flow(name="monthly_close", log_prints=False)
def monthly_close(period: str, home: str, dry_run: bool = False, receipts: bool = True,
                  workers: int | None = None, cluster: str | None = None) -> dict[str, Any]:
    """Close ``period`` in the workspace ``home``; ``dry_run`` computes without sealing."""
    command = f"close --period {period}" + (" --dry-run" if dry_run else "")
    ws = Workspace(Path(home))
    with workspace_lock(ws, command):
        if receipts and not dry_run:
            check_pdf_stack()  # before anything is computed: a missing library is named at once
        # The exports made after the seal: their settings are checked now, not after the seal.
        check_export_settings(ws, ws.typed_settings().close.exports)
        inputs = step(load_inputs, home, period)
        count = progress.count_text
        accounts = inputs.regs["accounts"].height
        progress.stage(f"{period}: данные загружены — лицевых счетов {count(accounts)}, "
                       f"платежей {count(inputs.payments.height)}")
        size = ws.typed_settings().close.partition_accounts
        with partition_runner(close_partition, workers, cluster) as (run, on_dask):
            # A Dask worker is a daemon process: it renders its receipts itself, without a pool.
            render = (partial(receipts_step, workers=1) if on_dask else receipts_step) if receipts else None
            summary = stages.close_in_parts(ws, inputs, size, dry_run=dry_run, render=render, run=run)
        parts = summary["partitions"]
        progress.stage(f"{period}: начисления рассчитаны — строк {count(summary['charge_lines'])}"
                       + (f", частей {parts}" if parts > 1 else ""))
        if not dry_run:
            drop_receipt_cache(ws, period)  # the sealed receipts are the record now
            made = _sealed_receipts(Path(summary["period_dir"]))
            summary["receipts"] = made
            progress.stage(f"{period}: период закрыт — " + (
                f"квитанций {progress.count_text(made['count'])}" if made else "без квитанций"))
            kinds = ws.typed_settings().close.exports
            if kinds:  # after the seal: a failed export is reported, the close stands
                summary["exports"] = export_after_close(ws, period, kinds)
                progress.stage(f"{period}: выгрузки — " + ", ".join(
                    f"{k}: {'не выполнена' if 'error' in v else 'файлов ' + str(v['files'])}"
                    for k, v in summary["exports"].items()))
    return summary


def _sealed_receipts(folder: Path) -> dict[str, Any] | None:
    """What the seal rendered, from its manifest (``count``, ``batches``, ``invoices``); None: no PDFs."""
    import json

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    made = manifest.get("receipts")
    return dict(made) if made and made.get("count") is not None else None
