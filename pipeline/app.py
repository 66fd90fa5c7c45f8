"""The application layer: what the command line, the demo and the bench share.

Running a close (the ``monthly_close`` flow, audited) and the Russian summary of
one live here, so ``pipeline.cli`` and ``pipeline.demo`` both call down into this
module and never into each other, and the flows import neither (the flows sit
below: this module runs them). The layers and their check:
``scripts/check_imports.py`` and docs/architecture.md.

Heavy modules (Prefect, polars) are imported inside the functions, so importing
this module from ``billing --help`` costs nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from pipeline.workspace import Workspace, audit, default_home

__all__ = ["close_summary_lines", "default_home", "run_close"]


def run_close(ws: Workspace, period: str, dry_run: bool = False, receipts: bool = True,
              workers: int | None = None, cluster: str | None = None) -> dict[str, Any]:
    """Run the ``monthly_close`` flow (``billing close``, ``demo``); audit the outcome.

    ``workers`` (a local Dask cluster of that many processes) or ``cluster`` (a scheduler's
    address) run the partitions on Dask: on a Prefect server through prefect-dask's task
    runner, otherwise through ``distributed`` directly (:mod:`flows.cluster`).
    """
    from flows import configure_prefect, on_server, run_flow
    from pipeline import progress
    from pipeline.close import check_can_close
    from pipeline.dates import Period

    check_can_close(ws, Period.parse(period))
    configure_prefect(ws.home)
    first = "flows.monthly_close" not in sys.modules
    from flows.monthly_close import monthly_close

    if first:  # importing Prefect takes seconds: say where they went
        progress.stage("Prefect и этапы закрытия загружены")
    started = time.perf_counter()
    flow = monthly_close
    if on_server() and (workers or cluster):
        from flows.cluster import task_runner

        flow = monthly_close.with_options(task_runner=task_runner(workers, cluster))
    summary: dict[str, Any] = run_flow(flow, period=period, home=str(ws.home), dry_run=dry_run,
                                       receipts=receipts, workers=workers, cluster=cluster)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    if ws.audit.is_dir():
        audit(ws, "close", period=period, dry_run=dry_run, outputs=summary)
    return summary


def close_summary_lines(s: dict[str, Any], dry_run: bool) -> list[str]:
    """What a close says to the user (Russian), from the summary :func:`run_close` returns."""
    from pipeline.methods import method_name
    from pipeline.money import rubles_text as rub

    head = "Пробный расчёт (период не закрыт)" if dry_run else "Период закрыт"
    lines = [
        f"{head}: {s['period']} за {s['seconds']} с",
        f"  лицевых счетов с начислениями: {s['accounts']}, строк начислений: {s['charge_lines']}",
        "  способы расчёта: " + ", ".join(f"{method_name(k)} — {v}" for k, v in s["methods"].items()),
        f"  входящее сальдо: {rub(s['opening_kop'])}",
        f"  начислено:       {rub(s['charged_kop'])}",
    ]
    if s.get("recalculated_kop"):
        lines.append(f"  перерасчёты:     {rub(s['recalculated_kop'])}")
    if s.get("penalty_kop"):
        lines.append(f"  пени:            {rub(s['penalty_kop'])}")
    lines.append(f"  оплачено:        {rub(s['allocated_kop'])} (платежей: {s['payments']})")
    lines.append(f"  исходящее сальдо: {rub(s['closing_kop'])}")
    if s.get("partitions", 1) > 1:
        lines.append(f"  рассчитано частями: {s['partitions']} (целые дома, [close] partition_accounts)")
    if s.get("due_date"):
        lines.append(f"  срок оплаты: {s['due_date']}")
    if s["reading_issues"]:
        lines.append(f"  показаний не принято: {s['reading_issues']} (таблица reading_issues)")
    if s.get("period_dir"):
        lines.append(f"  результаты: {s['period_dir']}")
    made = s.get("receipts")
    if made:  # what the seal rendered (its manifest's figures)
        text = f"  квитанции: {made['count']}"
        if made.get("batches"):
            text += f", пачек для печати {made['batches']}"
        lines.append(f"{text} — {s['period_dir']}/receipts")
        if made.get("invoices"):
            lines.append(f"  счета организациям (с актами): {made['invoices']} — {s['period_dir']}/invoices")
    for kind, done in (s.get("exports") or {}).items():  # [close] exports, made after the seal
        if "error" in done:
            lines.append(f"  выгрузка {kind} не выполнена: {done['error']} — период закрыт; после "
                         f"исправления: billing export {kind} --period {s['period']}")
        else:
            lines.append(f"  выгрузка {kind}: файлов {done['files']}, записей {done['rows']} — "
                         f"{done['folder']}")
            left = left_out_text(done.get("left_out") or {}, done.get("left_out_file") or "")
            if left:
                lines.append(f"    {left}")
    return lines


def left_out_text(left_out: dict[str, int], file: str) -> str:
    """What an export left out, in Russian (empty when nothing): ГИС ЖКХ's documents and meters.

    >>> left_out_text({"documents": 2, "meters": 1, "left_out_kop": 12345}, "gis/x.csv")
    'не выгружено: платёжных документов 2 (на 123,45 ₽), приборов учёта 1 — причины в gis/x.csv'
    """
    from pipeline.money import rubles_text as rub

    parts = []
    if left_out.get("documents"):
        money = rub(left_out.get("left_out_kop", 0))
        parts.append(f"платёжных документов {left_out['documents']} (на {money})")
    if left_out.get("meters"):
        parts.append(f"приборов учёта {left_out['meters']}")
    return f"не выгружено: {', '.join(parts)} — причины в {file}" if parts else ""
