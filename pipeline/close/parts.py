"""A close run partition by partition: each computes and writes its parts, the end combines.

:func:`close_in_parts` plans the partitions (:mod:`pipeline.close.partition`), hands one
:class:`PartJob` per partition to ``run`` — in this process one after another by default,
or as tasks on a Dask cluster (``flows.monthly_close``) — and, unless it is a dry run,
finishes the period (:func:`pipeline.close.seal.finish`) from what the parts wrote and
returned: reports over all parts, summed totals and row counts, one manifest, one atomic
rename. :func:`close_part` is the task: a plain picklable function of a picklable job, so
a worker process on another machine runs exactly what this process would. The parts share
the staging directory, which must be on a filesystem every worker sees.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.close.compute import CloseResult, combine_summaries, compute, summary
from pipeline.close.inputs import CloseInputs
from pipeline.close.partition import Plan, cutter, plan, split
from pipeline.close.seal import finish, to_outputs, write_tables
from pipeline.workspace import BillingError, Workspace, staging_dir

#: (workspace, a partition's inputs, its result) → the receipts step rendering into a directory.
RenderFactory = Callable[[Workspace, CloseInputs, CloseResult], Callable[[Path], dict[str, Any]]]


@dataclass
class PartJob:
    """One partition of a close: its inputs and where its parts go (None: a dry run)."""

    home: str
    index: int
    count: int
    inputs: CloseInputs
    folder: str | None
    render: RenderFactory | None = None


@dataclass
class PartDone:
    """What a partition hands back: small facts only, its tables are on disk."""

    index: int
    summary: dict[str, Any]
    totals: dict[str, int]
    row_counts: dict[str, int] = field(default_factory=dict)
    receipts: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # compute, write, receipts (wall)


def close_part(job: PartJob) -> PartDone:
    """Compute one partition; unless a dry run, write its tables (and receipts) into the staging folder."""
    started = time.perf_counter()
    result = compute(job.inputs)
    done = PartDone(job.index, summary(result), dict(result.totals))
    done.seconds["compute"] = time.perf_counter() - started
    done.seconds.update({f"compute:{stage}": value for stage, value in result.seconds.items()})
    if job.folder is not None:
        folder = Path(job.folder)
        started = time.perf_counter()
        done.row_counts = write_tables(to_outputs(result), folder, job.index if job.count > 1 else None)
        done.seconds["write"] = time.perf_counter() - started
        if job.render is not None:
            started = time.perf_counter()
            done.receipts = job.render(Workspace(Path(job.home)), job.inputs, result)(folder)
            done.seconds["receipts"] = time.perf_counter() - started
    return done


Runner = Callable[[Callable[[PartJob], PartDone], Iterable[PartJob]], list[PartDone]]


def run_here(task: Callable[[PartJob], PartDone], jobs: Iterable[PartJob]) -> list[PartDone]:
    """Run the partitions in this process, one at a time (each job's inputs are made just before)."""
    return [task(job) for job in jobs]


def _jobs(ws: Workspace, inputs: CloseInputs, cut: Plan, folder: Path | None,
          render: RenderFactory | None) -> Iterator[PartJob]:
    frames = cutter(cut)
    for index in range(cut.count):
        yield PartJob(str(ws.home), index, cut.count, split(inputs, cut, index, frames),
                      str(folder) if folder is not None else None, render)


def _add(parts: list[PartDone], attr: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for key, value in getattr(part, attr).items():
            total[key] = total.get(key, 0) + int(value)
    return total


def _seconds(parts: list[PartDone]) -> dict[str, float]:
    total: dict[str, float] = {}
    for part in parts:
        for key, value in part.seconds.items():
            total[key] = round(total.get(key, 0.0) + value, 3)
    return total


def _receipts(parts: list[PartDone]) -> dict[str, Any] | None:
    made = [p.receipts for p in parts if p.receipts is not None]
    if not made:
        return None
    keys = dict.fromkeys(key for r in made for key in r)  # a part may render no invoice at all
    return {key: sum(int(r.get(key, 0)) for r in made) for key in keys}


def close_in_parts(ws: Workspace, inputs: CloseInputs, partition_accounts: int, *,
                   dry_run: bool = False, render: RenderFactory | None = None,
                   run: Runner = run_here) -> dict[str, Any]:
    """Close ``inputs.period`` in partitions of about ``partition_accounts`` accounts; its summary.

    The summary is that of :func:`pipeline.close.compute.summary` over the whole region, plus
    ``partitions`` and ``stage_seconds`` (the partitions' compute, write and receipts wall
    seconds added up, and the finish); a sealed close adds ``period_dir``.
    """
    cut = plan(inputs.regs, partition_accounts)
    if dry_run:
        parts = sorted(run(close_part, _jobs(ws, inputs, cut, None, None)), key=lambda p: p.index)
        return {**combine_summaries([p.summary for p in parts]), "partitions": cut.count,
                "stage_seconds": _seconds(parts)}
    final = ws.period_dir(str(inputs.period))
    with staging_dir(final) as tmp:
        parts = sorted(run(close_part, _jobs(ws, inputs, cut, tmp, render)), key=lambda p: p.index)
        if [p.index for p in parts] != list(range(cut.count)):
            raise BillingError(f"Закрытие {inputs.period}: рассчитаны не все части "
                               f"({len(parts)} из {cut.count}); период не закрыт.")
        totals = _add(parts, "totals")
        started = time.perf_counter()
        finish(ws, tmp, inputs, inputs.period, inputs.due_date, totals, _add(parts, "row_counts"),
               _receipts(parts), cut.count)
        seconds = {**_seconds(parts), "finish": round(time.perf_counter() - started, 3)}
    return {**combine_summaries([p.summary for p in parts]), "partitions": cut.count,
            "stage_seconds": seconds, "period_dir": str(final)}
