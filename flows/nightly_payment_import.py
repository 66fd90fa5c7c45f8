"""``nightly_payment_import()``: every file in ``inbox/`` imported and archived.

Each file is moved to ``inbox/archive/YYYY-MM-DD/`` with its outcome
(``imported``, ``duplicate`` or ``refused``) in the name of the folder, so the
inbox holds only what still waits. A file not complete yet (``settings.toml``
``[inbox.complete]``: footer, settle or done marker) or refused as incomplete stays
in the inbox as ``waiting`` («ожидает», with the reason) and is tried next night.
Importing is idempotent, so a crash between import and move only repeats a no-op
next night.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import run_logger, step
from pipeline.ingest.payments import import_inbox
from pipeline.workspace import Workspace, audit, default_home


@task(name="import-inbox", cache_policy=NO_CACHE)
def import_all(home: str) -> list[dict[str, Any]]:
    ws = Workspace(Path(home)).require()
    outcomes = import_inbox(ws)
    logger = run_logger()
    for info in outcomes:
        logger.info("%s", info)
        if info["outcome"] == "waiting":
            logger.warning("Файл %s ожидает: %s", info["file"], info["reason"])
        suspense: Any = info.get("suspense_list")
        if suspense:
            logger.warning("Файл %s: %s", info["file"], "\n".join(suspense))
    totals = {
        "files": len(outcomes),
        "accepted": sum(int(str(o.get("accepted", 0))) for o in outcomes),
        "accepted_kop": sum(int(str(o.get("accepted_kop", 0))) for o in outcomes),
        "suspense": sum(int(str(o.get("suspense", 0))) for o in outcomes),
        "refused_files": sum(o["outcome"] == "refused" for o in outcomes),
        "waiting_files": sum(o["outcome"] == "waiting" for o in outcomes),
    }
    logger.warning("Ночной импорт платежей: %s", totals)
    audit(ws, "nightly_payment_import", outputs={"files": outcomes, "totals": totals})
    return outcomes


@flow(name="nightly_payment_import")
def nightly_payment_import(home: str | None = None) -> list[dict[str, Any]]:
    """Import the inbox of ``home`` (default: ``BILLING_HOME`` or ``./billing-home``)."""
    target = Path(home).resolve() if home else default_home().resolve()
    outcomes: list[dict[str, Any]] = step(import_all, str(target))
    return outcomes
