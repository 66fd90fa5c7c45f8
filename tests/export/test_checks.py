"""The exports ``[close] exports`` names are checked before the close (``check_export_settings``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.export.checks import check_export_settings
from pipeline.workspace import BillingError, Workspace, init_workspace

AGENT = '\n[[banks.agents]]\ncode = "sber"\n'


def _ws(tmp_path: Path, settings: str = "", limits: str | None = None) -> Workspace:
    ws = init_workspace(tmp_path / "home")
    with open(ws.settings_path, "a", encoding="utf-8") as fh:
        fh.write(settings)
    if limits is not None:
        (ws.rules / "gis_gkh.toml").write_text(limits, encoding="utf-8")
    return ws


def test_good_settings_and_kinds_without_settings_pass(tmp_path: Path) -> None:
    ws = _ws(tmp_path, AGENT + '\n[export_welfare]\nencoding = "utf-8"\n')
    check_export_settings(ws, ["banks", "post", "gis", "welfare"])
    check_export_settings(ws, [])


@pytest.mark.parametrize(("settings", "limits", "kind", "reason"), [
    ("", None, "banks", "не указан ни один банк или агент"),
    ('\n[[banks.agents]]\ncode = "sber"\nlayout = "vtb"\n', None, "banks", "layout"),
    ('\n[export_welfare]\nencodin = "cp1251"\n', None, "welfare", "неизвестный ключ «encodin»"),
    ("", "[limits]\ndocuments_per_message = 501\n", "gis", "documents_per_message = 501"),
])
def test_a_bad_section_stops_before_the_close_naming_the_export(
        tmp_path: Path, settings: str, limits: str | None, kind: str, reason: str) -> None:
    ws = _ws(tmp_path, settings, limits)
    with pytest.raises(BillingError) as err:
        check_export_settings(ws, ["post", kind])
    assert f"[close] exports называет «{kind}»" in str(err.value) and reason in str(err.value)
