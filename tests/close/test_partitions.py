"""A close in partitions of whole buildings gives exactly the tables of a close in one.

One synthetic city (payments, late register news recalculating the first month, heating
by building meter and its January correction, penalties on the unpaid) is closed for three
months with 1, 3 and 7 partitions; every sealed table is compared row for row and the
manifests' totals and row counts too. A repeated partitioned close is byte-identical.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline.close import OUTPUT_TABLES, close_in_parts, load_inputs
from pipeline.close.partition import plan
from pipeline.dates import Period, month_periods
from pipeline.demo import _pay_and_import, fresh_demo_home, late_news
from pipeline.ingest.registers import ingest, load_store
from pipeline.sealed import read_table, table_files
from pipeline.synth import generate_city
from pipeline.workspace import Workspace

FIRST = Period(2026, 12)
MONTHS = 3


def _size_for(regs: dict[str, pl.DataFrame], parts: int) -> int:
    """A ``partition_accounts`` that cuts this city into exactly ``parts`` partitions."""
    n = regs["accounts"].height
    for size in range(max(1, n // (parts + 1)), n // max(1, parts - 1) + 2):
        if plan(regs, size).count == parts:
            return size
    raise AssertionError(f"no size gives {parts} partitions")


def _close_months(ws: Workspace, size: int) -> list[Path]:
    folders = []
    for period in month_periods(FIRST, MONTHS):
        if period == FIRST.shift(1):
            late_news(ws, FIRST, 2026)
            ingest(ws)
        if period != FIRST:
            _pay_and_import(ws, period.shift(-1))
        summary = close_in_parts(ws, load_inputs(ws, period), size)
        folders.append(Path(summary["period_dir"]))
    return folders


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[Path]]:
    base = tmp_path_factory.mktemp("city")
    ws = fresh_demo_home(Workspace(base / "seed"))
    generate_city(ws.home, accounts=1000, start=FIRST, months=MONTHS, seed=7)
    ingest(ws)
    regs = load_store(ws)
    out = {}
    for parts in (1, 3, 7):
        home = base / f"parts-{parts}"
        shutil.copytree(ws.home, home)
        out[parts] = _close_months(Workspace(home), _size_for(regs, parts))
    return out


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns, nulls_last=True)


@pytest.mark.parametrize("parts", [3, 7])
def test_every_table_is_the_same_whatever_the_partitions(closed: dict[int, list[Path]], parts: int) -> None:
    for one, many in zip(closed[1], closed[parts], strict=True):
        assert (one / "charges.parquet").is_file()  # a single partition writes one file a table
        assert len(table_files(many, "charges")) == parts  # … and partitions their parts
        for table in OUTPUT_TABLES:
            a, b = read_table(one, table), read_table(many, table)
            assert a.schema == b.schema, table
            assert _sorted(a).equals(_sorted(b)), f"{one.name}: {table}"
        m1, mn = (json.loads((f / "manifest.json").read_text()) for f in (one, many))
        assert m1["totals_kop"] == mn["totals_kop"]
        assert m1["row_counts"] == mn["row_counts"]
        assert (m1["partitions"], mn["partitions"]) == (1, parts)


def test_the_city_exercises_what_could_differ(closed: dict[int, list[Path]]) -> None:
    """The comparison means something: payments, recalculations and penalties are there."""
    folders = closed[7]
    assert read_table(folders[1], "allocations").height > 0
    assert read_table(folders[1], "recalculations").height > 0
    assert read_table(folders[2], "penalties").filter(pl.col("amount") != 0).height > 0
    methods = set(pl.concat([read_table(f, "charges") for f in folders])["method"].unique())
    assert {"meter", "norm", "area"} <= methods


def test_a_repeated_partitioned_close_is_byte_identical(closed: dict[int, list[Path]], tmp_path: Path) -> None:
    seed = closed[1][0].parents[2] / "seed"  # the city ingested, nothing closed
    folders = []
    for name in ("a", "b"):
        ws = Workspace(tmp_path / name)
        shutil.copytree(seed, ws.home)
        size = _size_for(load_store(ws), 3)
        folders.append(Path(close_in_parts(ws, load_inputs(ws, FIRST), size)["period_dir"]))
    a, b = folders
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for path in files:
        assert (a / path).read_bytes() == (b / path).read_bytes(), path
