"""``nightly_payment_import()``: every file in ``inbox/`` imported and archived.

Each file is moved to ``inbox/archive/YYYY-MM-DD/`` with its outcome
(``imported``, ``duplicate`` or ``refused``) in the name of the folder, so the
inbox holds only what still waits. Importing is idempotent, so a crash between
import and move only repeats a no-op next night.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from pipeline.ingest.payments import import_inbox
from pipeline.workspace import Workspace


@task(name="import-inbox", cache_policy=NO_CACHE)
def import_all(home: str) -> list[dict[str, Any]]:
    return import_inbox(Workspace(Path(home)))


@flow(name="nightly_payment_import")
def nightly_payment_import(home: str | None = None) -> list[dict[str, Any]]:
    """Import the inbox of ``home`` (default: ``BILLING_HOME`` or ``./billing-home``)."""
    from pipeline.cli import default_home

    return import_all(str(Path(home) if home else default_home()))
