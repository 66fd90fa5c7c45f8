"""Where the partitions of a close run: here, on a local Dask cluster, or on a remote one.

:func:`partition_runner` yields a runner for :func:`pipeline.close.close_in_parts`:

- neither ``workers`` nor ``cluster``: the ``close-partition`` task in this process, one
  partition after another (a Prefect task run each on a server, a plain call otherwise);
- on a Prefect server whose flow run has a ``DaskTaskRunner`` (prefect-dask, set by
  :func:`task_runner` — ``pipeline.app.run_close`` does): the task is submitted to it, so
  each partition is a task run of the flow, executed on the cluster;
- without a server (Prefect 3 tracks no task run without one, stack-notes §1.1): the
  task's function is sent to the same Dask cluster through ``distributed`` directly.

``workers`` starts a ``LocalCluster`` of that many single-threaded worker processes for
the close and stops it after; ``cluster`` (``tcp://host:8786``) uses a running scheduler
whose workers have this package installed and see the workspace at the same path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from flows import step
from pipeline.workspace import BillingError

#: How long to wait for a Dask scheduler to answer before the close gives up.
CONNECT_SECONDS = 30


def task_runner(workers: int | None, cluster: str | None) -> Any:
    """prefect-dask's task runner for ``workers`` local processes or the scheduler ``cluster``."""
    from prefect_dask import DaskTaskRunner

    _quiet_distributed()  # the runner starts its cluster before the flow's code runs
    if cluster:
        return DaskTaskRunner(address=cluster)
    return DaskTaskRunner(cluster_kwargs=_local_kwargs(workers or 1))


def _local_kwargs(workers: int) -> dict[str, Any]:
    # No memory limit: a partition's size is chosen by [close] partition_accounts, and a
    # nanny that kills a worker over a limit would only turn a slow close into a failed one.
    return {"n_workers": workers, "threads_per_worker": 1, "processes": True,
            "dashboard_address": None, "memory_limit": 0}


def _quiet_distributed() -> None:
    """Only errors from the cluster's scheduler and nannies: their INFO lines are noise to a user."""
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)


def _on_dask_task_runner() -> bool:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context is not None and type(context.task_runner).__name__ == "DaskTaskRunner"


@contextmanager
def partition_runner(task: Any, workers: int | None, cluster: str | None
                     ) -> Iterator[tuple[Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]], bool]]:
    """(runner, whether it runs on Dask) for the partitions of one close."""
    if not workers and not cluster:
        yield (lambda _fn, jobs: [step(task, job) for job in jobs]), False
        return
    if _on_dask_task_runner():
        def on_prefect(_fn: Callable[[Any], Any], jobs: Iterable[Any]) -> list[Any]:
            futures = [task.submit(job) for job in jobs]
            return [future.result() for future in futures]

        yield on_prefect, True
        return
    from distributed import Client, LocalCluster

    _quiet_distributed()
    local = LocalCluster(**_local_kwargs(workers or 1)) if not cluster else None
    try:
        try:
            client = Client(cluster or local, set_as_default=False, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError) as exc:
            raise BillingError(f"Кластер Dask {cluster} недоступен ({exc}); период не закрыт. Проверьте "
                               "адрес планировщика и что он запущен (docs/scaling.md).") from exc
        with client:
            def on_dask(_fn: Callable[[Any], Any], jobs: Iterable[Any]) -> list[Any]:
                # Submitted one by one as the jobs are cut, so only the futures stay here.
                futures = [client.submit(task.fn, job, pure=False) for job in jobs]
                return client.gather(futures)

            yield on_dask, True
    finally:
        if local is not None:
            local.close()
