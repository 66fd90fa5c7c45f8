"""A close whose ``[close] exports`` names an export with bad settings stops before it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.app import run_close
from pipeline.ingest.registers import ingest
from pipeline.workspace import BillingError, init_workspace
from tests.conftest import TOWN, write_registers


def test_a_close_naming_banks_without_agents_stops_before_the_seal(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "home")
    write_registers(ws, TOWN)
    ingest(ws)
    text = ws.settings_path.read_text(encoding="utf-8")
    assert "\nexports = []" in text
    ws.settings_path.write_text(text.replace("\nexports = []", '\nexports = ["post", "banks"]'), encoding="utf-8")
    with pytest.raises(BillingError, match=r"\[close\] exports называет «banks».*\[\[banks.agents\]\]"):
        run_close(ws, "2026-08", receipts=False)
    assert ws.sealed_periods() == []
