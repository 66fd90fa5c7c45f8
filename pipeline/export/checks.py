"""Checks made before a close of the exports it will make after its seal (``[close] exports``).

A module of its own: it imports the exports' modules, which import :mod:`pipeline.export`.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.workspace import BillingError, Workspace

__all__ = ["check_export_settings"]


def check_export_settings(ws: Workspace, kinds: Iterable[str]) -> None:
    """The settings and rule files of the exports ``[close] exports`` names, checked before the
    close starts: a bad ``[[banks.agents]]`` (or none), ``[export_welfare]``, ``rules/gis_gkh.toml``
    or ``rules/welfare_categories.csv`` would otherwise be found only after the seal, by
    :func:`pipeline.export.export_after_close`. What needs the sealed period (an agent's ``org_id`` in the
    registers, ГИС identifiers) is still checked by the export itself.
    """
    for kind in kinds:
        try:
            if kind == "banks":
                from pipeline.export.banks import listed_agents

                listed_agents(ws)
            elif kind == "welfare":
                from pipeline.settings import ExportWelfare, load_section
                from rules import welfare_categories

                load_section(ws.settings_path, ExportWelfare)
                welfare_categories(ws.rules)
            elif kind == "gis":
                from pipeline.export.gis import load_limits

                load_limits(ws.rules)
        except (BillingError, ValueError) as err:
            raise BillingError(f"settings.toml [close] exports называет «{kind}», но выгрузка после "
                               f"закрытия не сможет выполниться: {err}") from None
