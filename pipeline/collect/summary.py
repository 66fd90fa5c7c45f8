"""What ``billing collect list`` prints: the cases and a summary per stage (pure)."""

from __future__ import annotations

import polars as pl

from pipeline.collect.cases import STAGE_NAMES, STAGES, STATUS_NAMES

CASE_TITLES = {
    "case_id": "Дело", "account_id": "Лицевой счёт", "supplier_id": "Поставщик", "payer": "Плательщик",
    "services": "Услуги", "stage": "Стадия", "status": "Состояние", "opened_on": "Открыто",
    "debt_opened": "Долг при открытии, руб.", "debt": "Долг, руб.", "recovered": "Взыскано, руб.",
}
SUMMARY_TITLES = {"stage": "Стадия", "cases": "Дел", "debt": "Долг, руб.",
                  "recovered": "Взыскано с открытия, руб."}
PAYER_NAMES = {"person": "гражданин", "organization": "организация"}


def _rub(column: str) -> pl.Expr:
    from pipeline.money import kopecks_to_decimal_expr

    return kopecks_to_decimal_expr(column)


def case_table(cases: pl.DataFrame, stage: str | None = None, supplier: str | None = None,
               service_names: dict[str, str] | None = None) -> pl.DataFrame:
    """The cases as people read them (Russian stage, status and service names, money in rubles)."""
    names = service_names or {}
    if stage:
        cases = cases.filter(pl.col("stage") == stage)
    if supplier:
        cases = cases.filter(pl.col("supplier_id") == supplier)
    return cases.sort("case_id").select(
        "case_id", "account_id", "supplier_id",
        pl.col("payer_kind").replace_strict(PAYER_NAMES, default=pl.col("payer_kind")).alias("payer"),
        pl.col("service_ids").list.eval(pl.element().replace(names)).list.join(", ").alias("services"),
        pl.col("stage").replace_strict(STAGE_NAMES, default=pl.col("stage")),
        pl.col("status").replace_strict(STATUS_NAMES, default=pl.col("status")), "opened_on",
        _rub("debt_opened_kop").alias("debt_opened"), _rub("debt_kop").alias("debt"),
        _rub("recovered_kop").alias("recovered"))


def stage_summary(cases: pl.DataFrame) -> pl.DataFrame:
    """Per stage of the active cases, then the paid and the closed: cases, debt now, recovered.

    Columns: stage (Russian), cases, debt_kop, recovered_kop; a last row «Итого».
    """
    active = cases.filter(pl.col("status").is_in(["open", "paused"]))
    rows = []
    for stage in STAGES:
        part = active.filter(pl.col("stage") == stage)
        if part.height:
            rows.append((STAGE_NAMES[stage], part.height, int(part["debt_kop"].sum()),
                         int(part["recovered_kop"].sum())))
    for status in ("paid", "closed"):
        part = cases.filter(pl.col("status") == status)
        if part.height:
            rows.append((STATUS_NAMES[status], part.height, int(part["debt_kop"].sum()),
                         int(part["recovered_kop"].sum())))
    rows.append(("Итого", cases.height, int(cases["debt_kop"].sum() or 0),
                 int(cases["recovered_kop"].sum() or 0)))
    return pl.DataFrame(rows, schema={"stage": pl.String, "cases": pl.Int64, "debt_kop": pl.Int64,
                                      "recovered_kop": pl.Int64}, orient="row")


def summary_table(cases: pl.DataFrame) -> pl.DataFrame:
    """:func:`stage_summary` with money in rubles, for the screen."""
    return stage_summary(cases).select("stage", "cases", _rub("debt_kop").alias("debt"),
                                       _rub("recovered_kop").alias("recovered"))
