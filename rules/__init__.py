"""Rules as data: the one place that reads rule tables.

``rules/defaults/`` holds the tables a new workspace starts with (``billing
init`` copies them into ``HOME/rules/``). Every table is dated by ``from``; a
change of law is a new row. Each row carries its legal ``source``.

Where the law is unclear the default is chosen, documented next to the row and
switchable by editing the table; see ``docs/rules.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.ingest.parse import missing_columns, parse_table
from pipeline.ingest.readers import read_table
from pipeline.workspace import BillingError
from schemas.rules import RULE_TABLES


@dataclass(frozen=True)
class Rules:
    """Parsed rule tables (integers with their scale in the name, never floats).

    Attributes:
        services: service_id, name, unit, kind, penalty_scheme, order.
        tariffs: service_id, supplier_id (null = any supplier), from, price_kop.
        norms: service_id, from, norm_micro (units × 10⁻⁶ per person or per m² a month).
        coefficients: service_id, from, coef_milli (1.5 → 1500); a service without
            rows has no increasing coefficient.
        key_rates: from, rate_bp (percent × 100).
        absence_rules: service_id, from, meter_impossible_only — the services whose
            norm charge is reduced for temporary absence (п.86–97; ТКО п.148(44)).
        quality_rules: service_id, from, month_hours, once_hours, percent_per_hour,
            excess_rule — allowed interruptions and the reduction (Прил. 1).
        failed_meter_rules: service_id, from, coefficient_applies — whether the norm
            after a failed meter's 3 averaged periods carries the coefficient (п.60).
        soi_settlement: from, settle_month, parts, carry_over — the yearly КР на СОИ
            settlement against the building meter (Правила 491 п.29(3)).
    """

    services: pl.DataFrame
    tariffs: pl.DataFrame
    norms: pl.DataFrame
    coefficients: pl.DataFrame
    key_rates: pl.DataFrame
    absence_rules: pl.DataFrame
    quality_rules: pl.DataFrame
    failed_meter_rules: pl.DataFrame
    soi_settlement: pl.DataFrame = field(default_factory=pl.DataFrame)


def read_rule_table(rules_dir: Path, name: str) -> pl.DataFrame:
    """Read and check one rule table; any bad row stops with a message naming it."""
    spec = RULE_TABLES[name]
    path = rules_dir / f"{name}.csv"
    if not path.is_file():
        if spec.required_file:
            raise BillingError(f"Нет таблицы правил {path}")
        return pl.DataFrame(schema={c.name: c.dtype for c in spec.columns})
    raw = read_table(path)
    missing = missing_columns(raw, spec)
    if missing:
        raise BillingError(f"{path.name}: нет обязательных столбцов: {', '.join(missing)}")
    good, rejects = parse_table(raw, spec, path.name)
    if rejects.height:
        lines = [
            f"  строка {r['row']}, столбец {r['column']} = «{r['value']}»: {r['reason']}"
            for r in rejects.head(20).iter_rows(named=True)
        ]
        raise BillingError(f"Ошибки в таблице правил {path}:\n" + "\n".join(lines))
    return good


def load_rules(rules_dir: Path) -> Rules:
    services = read_rule_table(rules_dir, "services")
    tariffs = read_rule_table(rules_dir, "tariffs").select(
        "service_id", "supplier_id", "from",
        (pl.col("price") * 100).cast(pl.Int64).alias("price_kop"), "source", "source_row",
    )
    norms = read_rule_table(rules_dir, "norms").select(
        "service_id", "from", (pl.col("value") * 1_000_000).cast(pl.Int64).alias("norm_micro"),
        "source", "source_row",
    )
    coefficients = read_rule_table(rules_dir, "increasing_coefficients").select(
        "service_id", "from", (pl.col("value") * 1000).cast(pl.Int64).alias("coef_milli"),
        "source", "source_row",
    )
    key_rates = read_rule_table(rules_dir, "key_rates").select(
        "from", (pl.col("rate") * 100).cast(pl.Int64).alias("rate_bp"), "confidence",
    )
    absence_rules = read_rule_table(rules_dir, "absence_rules").select(
        "service_id", "from", "meter_impossible_only")
    known = set(services["service_id"])
    for name, table in (("tariffs", tariffs), ("norms", norms),
                        ("increasing_coefficients", coefficients)):
        unknown = sorted(set(table["service_id"]) - known)
        if unknown:
            raise BillingError(
                f"{name}.csv: неизвестные услуги {', '.join(unknown)} (нет в services.csv)"
            )
    metered = set(services.filter(pl.col("kind") == "metered")["service_id"])
    wrong = services.filter(pl.col("settled_by").is_not_null()
                            & ~pl.col("settled_by").is_in(list(metered)))
    for row in wrong.iter_rows(named=True):
        raise BillingError(
            f"services.csv, строка {row['source_row']}, столбец settled_by = «{row['settled_by']}»: "
            "нужен код услуги-ресурса с прибором учёта (kind = metered) из services.csv")
    quality_rules = read_rule_table(rules_dir, "quality_rules")
    failed_meter_rules = read_rule_table(rules_dir, "failed_meter_rules").select(
        "service_id", "from", "coefficient_applies")
    soi_settlement = read_rule_table(rules_dir, "soi_settlement").drop("source_row", strict=False)
    return Rules(services, tariffs, norms, coefficients, key_rates, absence_rules, quality_rules,
                 failed_meter_rules, soi_settlement)
