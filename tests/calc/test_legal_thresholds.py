"""Legal thresholds as dated rule rows (``legal_thresholds.csv``): a new row changes the law from its date."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from pipeline.calc.charges import access_refused, person_days
from pipeline.calc.readings import Averaging, consumption
from pipeline.dates import Period
from pipeline.penalties import load_policy
from pipeline.penalties.statement import limitation_cutoff
from pipeline.workspace import BillingError
from rules import check_rules, default_thresholds, read_rule_table, threshold
from schemas.rules import LEGAL_THRESHOLDS

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = ROOT / "rules" / "defaults"


def with_row(name: str, start: str, value: int) -> pl.DataFrame:
    """The default table plus one dated row: a change of law."""
    row = pl.DataFrame({"threshold": [name], "from": [date.fromisoformat(start)], "value": [value],
                        "source": ["новая редакция (тест)"], "source_row": [99]})
    return pl.concat([default_thresholds(), row.select(default_thresholds().columns)], how="vertical_relaxed")


# ------------------------------------------------------------------ the lookup


def test_the_row_in_force_is_the_latest_from_not_after_the_day() -> None:
    table = with_row("average_unread_max_periods", "2026-10-01", 4)
    assert threshold(table, "average_unread_max_periods", date(2026, 9, 30)) == 3
    assert threshold(table, "average_unread_max_periods", date(2026, 10, 1)) == 4
    assert threshold(table, "average_unread_max_periods", date(2030, 1, 1)) == 4


def test_a_threshold_without_a_row_in_force_is_refused_in_russian() -> None:
    with pytest.raises(BillingError, match=r"нет строки порога «average_min_months», действующей на "
                                           r"01\.01\.2016 \(первая строка — с 01\.01\.2017\)"):
        threshold(default_thresholds(), "average_min_months", date(2016, 1, 1))
    table = default_thresholds().filter(pl.col("threshold") != "limitation_years")
    with pytest.raises(BillingError, match=r"нет строки порога «limitation_years», действующей на 18\.04\.2024"):
        threshold(table, "limitation_years", date(2024, 4, 18))
    with pytest.raises(ValueError, match="unknown legal threshold"):
        threshold(table, "limitation_yeras", date(2024, 4, 18))


def test_the_default_table_has_a_row_for_every_threshold_the_code_asks_for() -> None:
    asked = set()
    for path in [*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "rules").rglob("*.py")]:
        asked |= set(re.findall(r"\bthreshold\(\s*[^,()]*(?:\(\))?[^,]*,\s*\"([a-z_]+)\"",
                                path.read_text(encoding="utf-8")))
    assert asked == set(LEGAL_THRESHOLDS)  # every name the code asks for is declared, none is dead
    for name in LEGAL_THRESHOLDS:
        assert threshold(default_thresholds(), name, date(2017, 1, 1)) >= 1
    assert sorted(read_rule_table(DEFAULTS, "legal_thresholds")["source"].str.len_chars().to_list())[0] > 40


def test_ingest_check_refuses_a_missing_threshold_and_an_unknown_name(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(DEFAULTS, rules)
    path = rules / "legal_thresholds.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(ln for ln in lines if not ln.startswith("limitation_years,")), encoding="utf-8")
    rejects = check_rules(rules).rejects
    assert rejects.select("file", "column", "value").rows() == [
        ("legal_thresholds.csv", "threshold", "limitation_years")]
    assert "нет ни одной строки этого порога" in rejects["reason"][0]
    with pytest.raises(BillingError, match="limitation_years"):
        load_policy(rules)
    path.write_text("".join(lines) + "limitation_yaers,2030-01-01,5,опечатка\n", encoding="utf-8")
    assert check_rules(rules).rejects.select("column", "value").rows() == [("threshold", "limitation_yaers")]


# ------------------------------------------------------------------ a dated row changes behaviour


METERS = pl.DataFrame({
    "meter_id": ["M1"], "service_id": ["cold_water"], "premise_id": ["P1"], "building_id": [None],
    "installed_on": [date(2025, 1, 1)], "removed_on": [None], "verified_until": [date(2035, 1, 1)],
    "digits": [5], "initial_value": [Decimal("0")],
}, schema_overrides={"building_id": pl.String, "removed_on": pl.Date, "initial_value": pl.Decimal(18, 3)})
# 6 m³ a month, January to June 2026 (read on the 20th), then nothing.
READINGS = pl.DataFrame({
    "meter_id": ["M1"] * 7, "read_on": [date(2025, 12, 20), *(date(2026, m, 20) for m in range(1, 7))],
    "value": [Decimal(6 * i) for i in range(7)], "confirmed": [False] * 7,
}, schema_overrides={"value": pl.Decimal(18, 3)})


def averaged(period: Period, table: pl.DataFrame) -> list[tuple[str, int]]:
    out, _ = consumption(METERS, READINGS, period, 25, averaging=Averaging.on(table, period.first))
    return [(r["method"], r["volume_micro"]) for r in out.iter_rows(named=True)]


def test_a_new_row_shortens_averaging_from_its_date() -> None:
    law = default_thresholds()
    changed = with_row("average_unread_max_periods", "2026-09-01", 2)
    # The last reading counts for June: July–September by average (3 periods), October by the norm.
    assert averaged(Period(2026, 8), law) == averaged(Period(2026, 8), changed) == [("average", 6_000_000)]
    assert averaged(Period(2026, 9), law) == [("average", 6_000_000)]
    assert averaged(Period(2026, 9), changed) == []  # from September only 2 periods by average
    assert averaged(Period(2026, 10), law) == []
    # No fallback: the thresholds must be passed (the workspace's rules).
    with pytest.raises(TypeError):
        consumption(METERS, READINGS, Period(2026, 9), 25)  # type: ignore[call-arg]


def test_a_longer_minimum_history_means_the_norm() -> None:
    strict = with_row("average_min_months", "2026-08-01", 7)
    assert averaged(Period(2026, 7), strict) == [("average", 6_000_000)]
    assert averaged(Period(2026, 8), strict) == []  # 6 months of history < 7


def test_absence_threshold_from_its_date() -> None:
    # 01.10 → 07.10 and 01.09 → 07.09: 5 full days between departure and return (п.87).
    table = with_row("absence_min_full_days", "2026-10-01", 5)
    residents = pl.DataFrame({"person_id": ["R1"], "account_id": ["A1"], "from": [date(2020, 1, 1)],
                              "to": [None]}, schema_overrides={"to": pl.Date})

    def absent(period: Period) -> int:
        lines = pl.DataFrame({"line_id": [0], "account_id": ["A1"], "line_from": [period.first],
                              "line_to": [period.last], "absence_ok": [True]}, schema_overrides={"line_id": pl.UInt32})
        away = pl.DataFrame({"person_id": ["R1"], "from": [period.first], "to": [period.first.replace(day=7)]})
        days = person_days(lines, residents, away,
                           min_full_days=threshold(table, "absence_min_full_days", period.first))
        return int(days["absent_days"][0])

    assert absent(Period(2026, 9)) == 0  # more than 5 days needed: 5 do not count
    assert absent(Period(2026, 10)) == 5


def test_access_refusals_threshold_from_its_date() -> None:
    acts = pl.DataFrame({"premise_id": ["P1", "P1"], "service_id": ["cold_water"] * 2,
                         "refused_on": [date(2026, 3, 1), date(2026, 5, 1)], "resolved_on": [None, None]},
                        schema_overrides={"resolved_on": pl.Date})
    table = with_row("access_refusals_min", "2026-10-01", 3)
    assert access_refused(acts, Period(2026, 9), table)["premise_id"].to_list() == ["P1"]
    assert access_refused(acts, Period(2026, 10), table).height == 0


def test_limitation_years_from_its_date() -> None:
    policy = load_policy(DEFAULTS)
    longer = replace(policy, legal_thresholds=with_row("limitation_years", "2030-01-01", 5))
    assert limitation_cutoff(date(2029, 12, 31), longer.limitation_years(date(2029, 12, 31))) == date(2026, 12, 31)
    assert limitation_cutoff(date(2030, 1, 1), longer.limitation_years(date(2030, 1, 1))) == date(2025, 1, 1)
    assert policy.limitation_years(date(2030, 1, 1)) == 3
