"""Shared fixtures: tiny workspaces written from inline register text."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.workspace import Workspace, init_workspace

ORGS = """\
org_id,name,inn,kpp,role,bank_name,bik,account,corr_account,address,phone
UK1,ООО «УК Дом»,7707083893,770701001,management,ПАО Сбербанк,044525225,40702810200000000001,30101810400000000225,г. Энск,+7 000
VK,АО «Водоканал»,7707083893,770701001,supplier,ПАО Сбербанк,044525225,40702810500000000002,30101810400000000225,г. Энск,+7 000
TS,АО «Теплосеть»,7707083893,770701001,supplier,ПАО Сбербанк,044525225,40702810800000000003,30101810400000000225,г. Энск,+7 000
"""

BUILDINGS = """\
building_id,address,manager_id,total_area,common_area
B1,"г. Энск, ул. Ленина, д. 1",UK1,1000.00,100.00
"""

PREMISES = """\
premise_id,building_id,number,kind,total_area,rooms,meter_possible
P1,B1,1,residential,50.00,2,true
P2,B1,2,residential,60.00,2,true
P3,B1,3,residential,40.00,1,false
"""

ACCOUNTS = """\
account_id,premise_id,payer_kind,payer_name,share,owners,opened_on,closed_on,email
A1,P1,person,Иванов Иван Иванович,1,1,2020-01-01,,
A2,P2,person,Петрова Анна Сергеевна,1,2,2020-01-01,,
A3,P3,person,Сидоров Пётр Ильич,1,1,2020-01-01,,
"""

BUILDING_SERVICES = """\
building_id,service_id,supplier_id,from,to
B1,cold_water,VK,2015-01-01,
B1,sewerage,VK,2015-01-01,
B1,maintenance,UK1,2015-01-01,
B1,heating,TS,2015-01-01,
"""

RESIDENTS = """\
person_id,account_id,full_name,birth_date,kind,from,to
R1,A1,Иванов Иван Иванович,1980-01-01,permanent,2020-01-01,
R2,A1,Иванова Мария Петровна,1982-01-01,permanent,2020-01-01,
R3,A2,Петрова Анна Сергеевна,1990-01-01,permanent,2020-01-01,
R4,A3,Сидоров Пётр Ильич,1970-01-01,permanent,2020-01-01,
"""

METERS = """\
meter_id,service_id,premise_id,building_id,serial,installed_on,removed_on,verified_until,digits,initial_value
M1,cold_water,P1,,111,2020-01-01,,2030-01-01,5,0
"""

READINGS = """\
meter_id,read_on,value,source
M1,2026-07-20,100.000,lk
M1,2026-08-20,107.500,lk
"""

#: Five months of M1's readings, 6 m³ a month: an own average for п.59 (≥ 3 months).
METER_HISTORY = """\
meter_id,read_on,value,source
M1,2026-03-20,68.000,lk
M1,2026-04-20,74.000,lk
M1,2026-05-20,80.000,lk
M1,2026-06-20,86.000,lk
M1,2026-07-20,92.000,lk
"""

TOWN = {
    "organizations": ORGS,
    "buildings": BUILDINGS,
    "premises": PREMISES,
    "accounts": ACCOUNTS,
    "building_services": BUILDING_SERVICES,
    "residents": RESIDENTS,
    "meters": METERS,
    "readings": READINGS,
}


def write_registers(ws: Workspace, registers: dict[str, str]) -> None:
    for name, text in registers.items():
        (ws.registers / f"{name}.csv").write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def town(tmp_path: Path) -> Workspace:
    """A three-flat house: metered cold water in A1, norm ×K in A2, meter impossible in A3."""
    ws = init_workspace(tmp_path / "home")
    write_registers(ws, TOWN)
    return ws


def run_billing(*args: str, home: Path, env: dict[str, str] | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
    """``billing ARGS`` in a process of its own, as a user runs it (no Prefect server)."""
    full = {**os.environ, "BILLING_HOME": str(home), **(env or {})}
    full.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=full,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"billing {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


#: Folders whose every test is an integration test (a real workspace, a `billing` process).
INTEGRATION_DIRS = ("integration", "flows")
#: Fixtures that put a workspace (or other files) on disk: every workspace fixture
#: (``town`` and the fixtures built on it) goes through ``tmp_path`` or ``tmp_path_factory``.
DISK_FIXTURES = frozenset({"town", "tmp_path", "tmp_path_factory"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark as ``integration`` what is not a unit test; ``-m "not integration"`` is the unit suite."""
    here = Path(__file__).resolve().parent
    for item in items:
        try:
            top = item.path.resolve().relative_to(here).parts[0]
        except ValueError:
            top = ""
        if top in INTEGRATION_DIRS or DISK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pdf_layout_text(pdf: Path) -> str:
    """The text layer of ``pdf`` as ``pdftotext -layout`` gives it, runs of spaces made one.

    Without poppler-utils the test is skipped, but fails under CI (scripts/setup.sh installs it)."""
    import shutil

    if shutil.which("pdftotext") is None:
        message = "нет pdftotext: scripts/setup.sh ставит poppler-utils"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True)
    return re.sub(r"[ \u00a0]+", " ", out.stdout)
