"""Prefect flows: ``monthly_close(period)`` and ``nightly_payment_import()``.

The flows are thin: coarse tasks around the plain stage functions of
``pipeline`` (each flow run costs ≥ 1 s in Prefect, stack-notes.md §1.2, so
there is no per-account or per-batch task). :func:`configure_prefect` must run
before ``prefect`` is imported: without ``PREFECT_API_URL`` a temporary local
server is started, sandboxed in the workspace's ``.prefect`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def configure_prefect(home: Path) -> None:
    """Environment defaults for Prefect; explicit settings of the user win."""
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_HOME", str(home / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")
