"""``billing explain`` texts of norm × K carry the legal thresholds in force, in correct Russian."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from pipeline.dates import Period
from pipeline.explain import _increased_reasons
from pipeline.progress import plural
from pipeline.workspace import Workspace
from rules import default_thresholds
from tests.conftest import write_registers

METERS = pl.DataFrame({
    "meter_id": ["M1"], "premise_id": ["P1"], "service_id": ["hot_water"],
    "installed_on": [date(2020, 1, 1)], "removed_on": [None], "verified_until": [date(2026, 3, 31)],
}, schema_overrides={"removed_on": pl.Date})
ACTS = pl.DataFrame({
    "premise_id": ["P1"] * 3, "service_id": ["cold_water"] * 3,
    "refused_on": [date(2026, 3, 1), date(2026, 4, 1), date(2026, 5, 1)], "resolved_on": [None] * 3,
}, schema_overrides={"resolved_on": pl.Date})


def with_row(name: str, start: str, value: int) -> pl.DataFrame:
    row = pl.DataFrame({"threshold": [name], "from": [date.fromisoformat(start)], "value": [value],
                        "source": ["новая редакция (тест)"], "source_row": [99]})
    return pl.concat([default_thresholds(), row.select(default_thresholds().columns)],
                     how="vertical_relaxed")


@pytest.mark.parametrize(("n", "text"), [
    (1, "1 месяц"), (2, "2 месяца"), (4, "4 месяца"), (5, "5 месяцев"), (11, "11 месяцев"),
    (12, "12 месяцев"), (14, "14 месяцев"), (21, "21 месяц"), (22, "22 месяца"), (25, "25 месяцев"),
    (111, "111 месяцев"), (101, "101 месяц"),
])
def test_plural_forms(n: int, text: str) -> None:
    assert plural(n, "месяц", "месяца", "месяцев") == text


def test_default_texts_name_the_defaults() -> None:
    why = _increased_reasons({"meters": METERS, "access_refusals": ACTS}, "P1", Period(2026, 9),
                             default_thresholds())
    assert why == {
        "hot_water": "срок поверки прибора M1 истёк 2026-03-31, срок начисления по среднему — "
                     "3 месяца — прошёл (п.60)",
        "cold_water": "не менее 2 актов о недопуске к прибору учёта (п.85(3), п.60)",
    }


def test_texts_follow_a_new_row_from_its_date() -> None:
    table = pl.concat([with_row("access_refusals_min", "2026-09-01", 3),
                       with_row("average_failed_max_periods", "2026-09-01", 5).tail(1)])
    before = _increased_reasons({"meters": METERS, "access_refusals": ACTS}, "P1", Period(2026, 8), table)
    after = _increased_reasons({"meters": METERS, "access_refusals": ACTS}, "P1", Period(2026, 9), table)
    assert "не менее 2 актов" in before["cold_water"] and "— 3 месяца —" in before["hot_water"]
    assert "не менее 3 актов" in after["cold_water"] and "— 5 месяцев —" in after["hot_water"]


def test_fewer_acts_than_the_threshold_give_no_reason() -> None:
    table = with_row("access_refusals_min", "2026-09-01", 4)
    why = _increased_reasons({"meters": METERS.clear(), "access_refusals": ACTS}, "P1", Period(2026, 9),
                             table)
    assert why == {}


def test_demo_labels_refused_access_by_the_threshold_in_force(town: Workspace) -> None:
    from pipeline.demo import explain_examples
    from tests.calc.test_recalc import close

    write_registers(town, {"access_refusals": "premise_id,service_id,refused_on,resolved_on\n"
                                              "P1,cold_water,2026-06-10,\nP1,cold_water,2026-07-10,\n"})
    close(town, "2026-08")
    label = "Недопуск к прибору учёта дважды: норматив × K (п.85(3))"
    assert (label, "A1", "2026-08") in explain_examples(town, [Period(2026, 8)])
    with open(town.rules / "legal_thresholds.csv", "a", encoding="utf-8") as fh:
        fh.write('access_refusals_min,2026-08-01,3,"новая редакция (тест)"\n')
    assert label not in [e[0] for e in explain_examples(town, [Period(2026, 8)])]
