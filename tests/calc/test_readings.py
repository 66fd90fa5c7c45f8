"""Readings → consumption: windows, rollover, rejected readings and the п.61 settlement."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.close import compute, load_inputs
from pipeline.dates import Period
from pipeline.ingest.registers import ingest
from pipeline.workspace import Workspace
from tests.calc.test_recalc import close
from tests.conftest import METER_HISTORY as HISTORY
from tests.conftest import write_registers


def cold_water(ws: Workspace, period: str) -> list[tuple[str, str, str]]:
    charges = pl.read_parquet(ws.period_dir(period) / "charges.parquet").filter(
        (pl.col("account_id") == "A1") & (pl.col("service_id") == "cold_water"))
    return [(r["method"], str(r["volume"]), str(r["amount"])) for r in charges.iter_rows(named=True)]


def test_reading_after_averaged_months_is_settled_to_actual(town: Workspace) -> None:
    """Two months by average (6 m³ each), then a reading: only what was not charged yet (п.61)."""
    write_registers(town, {"readings": HISTORY})
    close(town, "2026-08")
    close(town, "2026-09")
    assert cold_water(town, "2026-09") == [("average", "6.000000", "313.68")]
    with open(town.registers / "readings.csv", "a", encoding="utf-8") as fh:
        fh.write("M1,2026-10-20,110.000,lk\n")
    close(town, "2026-10")
    # 110 − 92 = 18 m³ since the last reading, 12 already charged by average → 6 × 58.61
    assert cold_water(town, "2026-10") == [("meter", "6.000000", "351.66")]
    from pipeline.explain import explain_account

    assert "прибор M1: 110 (2026-10-20) − 92 (2026-07-20) = 18 − уже начислено по среднему 12 (п.61) = 6" \
        in explain_account(town, "A1", "2026-10")


def test_late_reading_counts_for_the_next_month(town: Workspace) -> None:
    write_registers(town, {"readings": HISTORY + "M1,2026-08-27,99.000,lk\n"})
    close(town, "2026-08")
    # Taken on the 27th, after the window's 25th: August is charged by average.
    assert cold_water(town, "2026-08") == [("average", "6.000000", "313.68")]
    close(town, "2026-09")
    # September: 99 − 92 − 6 (August's average) = 1 m³ × 52.28
    assert cold_water(town, "2026-09") == [("meter", "1.000000", "52.28")]


def test_rollover_by_the_meter_digits(town: Workspace) -> None:
    write_registers(town, {"readings": "meter_id,read_on,value,source\n"
                                       "M1,2026-07-20,99998.000,lk\nM1,2026-08-20,3.000,lk\n"})
    ingest(town)
    result = compute(load_inputs(town, Period(2026, 8)))
    a1 = result.lines.filter((pl.col("account_id") == "A1") & (pl.col("service_id") == "cold_water"))
    # 5 digits: 99998 → 100000 → 3 = 5 m³ × 52.28 = 261.40
    assert a1.select("method", "volume_micro", "amount_kop").rows() == [("meter", 5_000_000, 26140)]
    assert result.reading_issues.height == 0
    from pipeline.explain import explain_account

    assert "+ 10^5 (переход через ноль) = 5" in explain_account(town, "A1", "2026-08")


def test_lower_reading_is_reported_and_not_used(town: Workspace) -> None:
    write_registers(town, {"readings": HISTORY + "M1,2026-08-20,90.000,lk\n"})
    ingest(town)
    result = compute(load_inputs(town, Period(2026, 8)))
    assert result.reading_issues.select("meter_id", "reason").rows() == [
        ("M1", "показания меньше предыдущих: не приняты до подтверждения")]
    a1 = result.lines.filter((pl.col("account_id") == "A1") & (pl.col("service_id") == "cold_water"))
    assert a1["method"].to_list() == ["average"]
    from pipeline.explain import explain_account

    text = explain_account(town, "A1", "2026-08")
    assert "Показания не приняты: прибор M1, 2026-08-20, 90 — показания меньше предыдущих" in text
    assert "показаний за месяц нет или они не приняты — среднемесячный объём 6" in text


def test_refused_reading_does_not_become_the_next_months_start(town: Workspace) -> None:
    """A spike refused in August (a typo: 152 for 98) is skipped; September counts from July."""
    write_registers(town, {"readings": HISTORY + "M1,2026-08-20,152.000,lk\n"})
    close(town, "2026-08")
    assert cold_water(town, "2026-08") == [("average", "6.000000", "313.68")]
    with open(town.registers / "readings.csv", "a", encoding="utf-8") as fh:
        fh.write("M1,2026-09-20,104.000,lk\n")
    close(town, "2026-09")
    # 104 − 92 (July, the last accepted) − 6 charged by average in August = 6 m³
    assert cold_water(town, "2026-09") == [("meter", "6.000000", "313.68")]


@pytest.mark.parametrize(("settle", "expected"), [
    # 130 − 92 = 38 m³; charged meanwhile 3 × 6 by average + 9.49 by norm → 10.51 × 58.61
    ("true", ("meter", "10.510000", "615.99")),
    # switched off: only the averages are settled → 20 × 58.61
    ("false", ("meter", "20.000000", "1172.20")),
])
def test_reading_after_norm_months_settles_them_too(town: Workspace, settle: str,
                                                    expected: tuple[str, str, str]) -> None:
    """3 months by average, the 4th by the norm, then a reading: all of it is settled (п.60, п.61)."""
    settings = town.home / "settings.toml"
    settings.write_text(settings.read_text(encoding="utf-8").replace(
        "settle_norm_months = true", f"settle_norm_months = {settle}"), encoding="utf-8")
    write_registers(town, {"readings": HISTORY})
    for period in ("2026-08", "2026-09", "2026-10", "2026-11"):
        close(town, period)
    assert cold_water(town, "2026-11") == [("norm", "9.490000", "556.21")]
    volumes = pl.read_parquet(town.period_dir("2026-11") / "meter_volumes.parquet")
    assert volumes.select("meter_id", "method", pl.col("volume").cast(pl.String)).rows() == [
        ("M1", "norm", "9.490000")]
    with open(town.registers / "readings.csv", "a", encoding="utf-8") as fh:
        fh.write("M1,2026-12-20,130.000,lk\n")
    close(town, "2026-12")
    assert cold_water(town, "2026-12") == [expected]
