"""The collection rules as data: ``rules/collection.csv`` and ``rules/state_duty.csv``.

``collection.csv`` says, per service (``*`` = any service without its own row) and payer
kind, dated by ``from``:

* ``threshold`` — ``norm_months``: the debt for the service exceeds ``months`` monthly
  charges computed from the norm at the tariff of the day (Правила 354 п.118, whatever the
  meters); ``amount``: the overdue debt exceeds ``amount`` and its oldest unpaid month is
  overdue at least ``age_days`` days (maintenance, capital repair, organizations — a choice of
  the settlement centre, not the law);
* ``warning_days`` — days to pay after the warning is delivered (п.119: 20) or after an
  organization's claim (претензия; АПК 4 ч.5: 30);
* ``restriction`` — ``allowed``, ``never`` (heating, п.122) or ``not_in_block_of_flats``
  (cold water, п.122).

``state_duty.csv`` is the state duty scale (НК 333.19, 333.21), dated: per ``court`` the row
with the largest ``above`` below the claim gives ``base + percent × (claim − above)``, rounded
to whole rubles (НК 52 п.6), then ``min``/``max``; ``order`` (court order) is ``percent`` of the
``general`` claim fee with its ``min``. The amounts are UNVERIFIED (law.md §6.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from pipeline.money import div_half_up_int
from pipeline.workspace import BillingError
from rules import read_rule_table

ANY_SERVICE = "*"

COLLECTION_EMPTY = pl.DataFrame(schema={
    "service": pl.String, "payer_kind": pl.String, "from": pl.Date, "threshold": pl.String,
    "months": pl.Int64, "amount_kop": pl.Int64, "age_days": pl.Int64, "warning_days": pl.Int64,
    "restriction": pl.String, "source": pl.String, "source_row": pl.Int64,
})
STATE_DUTY_EMPTY = pl.DataFrame(schema={
    "court": pl.String, "from": pl.Date, "above_kop": pl.Int64, "base_kop": pl.Int64,
    "percent_e4": pl.Int64, "min_kop": pl.Int64, "max_kop": pl.Int64, "source": pl.String,
    "source_row": pl.Int64,
})


def _kop(column: str, alias: str) -> pl.Expr:
    return (pl.col(column) * 100).cast(pl.Int64).alias(alias)


def load_collection(rules_dir: Path) -> pl.DataFrame:
    """``collection.csv`` in integers (``amount_kop``); a missing file is no rule at all."""
    if not (rules_dir / "collection.csv").is_file():
        return COLLECTION_EMPTY
    table = read_rule_table(rules_dir, "collection")
    return table.select(
        "service", "payer_kind", "from", "threshold", "months", _kop("amount", "amount_kop"),
        "age_days", "warning_days", "restriction", "source", "source_row",
    ).sort("service", "payer_kind", "from")


def load_state_duty(rules_dir: Path) -> pl.DataFrame:
    """``state_duty.csv`` in integers (kopecks, ``percent_e4`` = percent × 10 000)."""
    if not (rules_dir / "state_duty.csv").is_file():
        return STATE_DUTY_EMPTY
    table = read_rule_table(rules_dir, "state_duty")
    return table.select(
        "court", "from", _kop("above", "above_kop"), _kop("base", "base_kop"),
        (pl.col("percent") * 10_000).cast(pl.Int64).alias("percent_e4"),
        _kop("min", "min_kop"), _kop("max", "max_kop"), "source", "source_row",
    ).sort("court", "from", "above_kop")


@dataclass(frozen=True)
class CollectionRule:
    """The row of ``collection.csv`` in force for one service and payer kind on a day.

    Attributes:
        service: the row's service (``*`` when it is the general row).
        payer_kind: person | organization.
        threshold: norm_months | amount.
        months: monthly norm charges the debt must exceed (``norm_months``).
        amount_kop: the overdue debt must exceed this (``amount``).
        age_days: the oldest overdue month must be overdue this many days (``amount``).
        warning_days: days to pay after the warning (persons) or the claim (organizations).
        restriction: allowed | never | not_in_block_of_flats.
        source: the legal source of the row; source_row: its row in the file.
    """

    service: str
    payer_kind: str
    threshold: str
    months: int | None
    amount_kop: int | None
    age_days: int | None
    warning_days: int
    restriction: str
    source: str | None
    source_row: int


def rules_on(table: pl.DataFrame, on: date) -> pl.DataFrame:
    """Per (service, payer kind) the row in force on ``on`` (latest ``from`` not after it)."""
    return (table.filter(pl.col("from") <= on).sort("from")
            .group_by("service", "payer_kind", maintain_order=True).last()
            .sort("service", "payer_kind"))


def rule_for(table: pl.DataFrame, service_id: str, payer_kind: str, on: date) -> CollectionRule | None:
    """The rule for ``service_id`` (its own row, else ``*``) and ``payer_kind`` on ``on``."""
    current = rules_on(table, on).filter(pl.col("payer_kind") == payer_kind)
    for service in (service_id, ANY_SERVICE):
        rows = current.filter(pl.col("service") == service)
        if rows.height:
            r = rows.row(0, named=True)
            return CollectionRule(
                service=r["service"], payer_kind=r["payer_kind"], threshold=r["threshold"],
                months=r["months"], amount_kop=r["amount_kop"], age_days=r["age_days"],
                warning_days=int(r["warning_days"]), restriction=r["restriction"], source=r["source"],
                source_row=int(r["source_row"]))
    return None


def applied_rules(table: pl.DataFrame, keys: pl.DataFrame, on: date) -> pl.DataFrame:
    """``keys`` (service_id, payer_kind) joined with their rule on ``on`` (own row, else ``*``).

    Adds threshold, months, amount_kop, age_days, warning_days, restriction, rule_row; a key
    with no rule keeps nulls (it is never a debtor).
    """
    current = rules_on(table, on).select(
        "service", "payer_kind", "threshold", "months", "amount_kop", "age_days", "warning_days",
        "restriction", pl.col("source_row").alias("rule_row"))
    own = keys.join(current, left_on=["service_id", "payer_kind"], right_on=["service", "payer_kind"],
                    how="left")
    general = current.filter(pl.col("service") == ANY_SERVICE).drop("service")
    cols = [c for c in general.columns if c != "payer_kind"]
    fallback = keys.join(general, on="payer_kind", how="left").select(
        "service_id", "payer_kind", *[pl.col(c).alias(f"_{c}") for c in cols])
    joined = own.join(fallback, on=["service_id", "payer_kind"], how="left")
    has_own = pl.col("rule_row").is_not_null()
    return joined.with_columns(
        pl.when(has_own).then(pl.col(c)).otherwise(pl.col(f"_{c}")).alias(c) for c in cols
    ).drop([f"_{c}" for c in cols])


def _whole_rubles(kop: int) -> int:
    """НК 52 п.6: a tax is counted in whole rubles, 50 kopecks and more rounded up."""
    return div_half_up_int(kop, 100) * 100


def _scale_fee(rows: pl.DataFrame, claim_kop: int) -> int:
    below = rows.filter(pl.col("above_kop") < claim_kop) if claim_kop > 0 else rows.head(1)
    row = (below if below.height else rows).sort("above_kop").row(-1, named=True)
    excess = max(claim_kop - int(row["above_kop"]), 0)
    fee = _whole_rubles(int(row["base_kop"]) + div_half_up_int(excess * int(row["percent_e4"]), 1_000_000))
    if row["min_kop"] is not None:
        fee = max(fee, int(row["min_kop"]))
    if row["max_kop"] is not None:
        fee = min(fee, int(row["max_kop"]))
    return fee


def _in_force(table: pl.DataFrame, court: str, on: date) -> pl.DataFrame:
    rows = table.filter((pl.col("court") == court) & (pl.col("from") <= on))
    if not rows.height:
        raise BillingError(f"state_duty.csv: нет строк вида «{court}», действующих на {on:%d.%m.%Y}. "
                           "Добавьте шкалу госпошлины (образец — в rules/defaults/state_duty.csv).")
    latest = rows["from"].max()
    return rows.filter(pl.col("from") == latest)


def state_duty_kop(table: pl.DataFrame, court: str, claim_kop: int, on: date) -> int:
    """The state duty in kopecks (whole rubles) for a claim of ``claim_kop`` filed on ``on``.

    ``court``: ``general`` (иск, НК 333.19), ``arbitration`` (НК 333.21) or ``order``
    (судебный приказ: a share of the ``general`` fee, with a minimum).

    >>> t = pl.DataFrame({"court": ["general", "general", "order"], "from": [date(2024, 9, 8)] * 3,
    ...     "above_kop": [0, 10_000_000, 0], "base_kop": [400_000, 400_000, 0],
    ...     "percent_e4": [0, 30_000, 500_000], "min_kop": [None, None, 200_000],
    ...     "max_kop": [None, None, None]})
    >>> state_duty_kop(t, "general", 15_000_000, date(2025, 1, 1))  # 4 000 + 3 % of 50 000
    550000
    >>> state_duty_kop(t, "order", 15_000_000, date(2025, 1, 1))  # 50 % of 5 500, at least 2 000
    275000
    >>> state_duty_kop(t, "order", 1_000_000, date(2025, 1, 1))
    200000
    """
    if court == "order":
        share = _in_force(table, "order", on).row(0, named=True)
        fee = _whole_rubles(div_half_up_int(
            _scale_fee(_in_force(table, "general", on), claim_kop) * int(share["percent_e4"]), 1_000_000))
        if share["min_kop"] is not None:
            fee = max(fee, int(share["min_kop"]))
        if share["max_kop"] is not None:
            fee = min(fee, int(share["max_kop"]))
        return fee
    return _scale_fee(_in_force(table, court, on), claim_kop)


def duty_source(table: pl.DataFrame, court: str, on: date) -> str:
    """The legal source of the scale used (its first row's ``source``), for the document."""
    rows = _in_force(table, court, on)
    return str(rows.sort("above_kop")["source"][0] or "")
