"""Prefect flows: ``monthly_close(period)`` and ``nightly_payment_import()``.

The flows are thin: coarse tasks around the plain stage functions of
``pipeline`` (each flow run costs ≥ 1 s in Prefect, stack-notes.md §1.2, so
there is no per-account or per-batch task).

Where they run: with ``PREFECT_API_URL`` set, on that Prefect server (runs,
logs and schedules visible there); without it, in this process through the
flows' plain functions (``flow.fn``, each task's ``.fn``) — no temporary server,
so a command never depends on one starting in time (stack-notes.md §1.2: 10–23 s,
and it times out on a loaded machine). :func:`configure_prefect` must run before
``prefect`` is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def on_server() -> bool:
    """Whether flows run on a Prefect server (``PREFECT_API_URL`` is set)."""
    return bool(os.environ.get("PREFECT_API_URL"))


def configure_prefect(home: Path) -> None:
    """Environment defaults for Prefect; explicit settings of the user win."""
    if not on_server():
        os.environ.setdefault("PREFECT_HOME", str(home / ".prefect"))
        # In-process runs never call the API; should anything try, fail at once
        # instead of silently starting a temporary server.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")


def run_flow(flow: Any, **parameters: Any) -> Any:
    """Run ``flow`` on the Prefect server when there is one, else in this process."""
    return flow(**parameters) if on_server() else flow.fn(**parameters)


def step(task: Any, *args: Any) -> Any:
    """Call a task as a Prefect task inside a flow run, as a plain function outside one."""
    from prefect.context import FlowRunContext

    return task(*args) if FlowRunContext.get() is not None else task.fn(*args)


def run_logger() -> Any:
    """The flow run's logger inside a run, else the module logger (in-process runs)."""
    import logging

    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("billing.flows")
