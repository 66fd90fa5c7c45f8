"""Who is a debtor (должник): pure functions over frames and the collection rules.

The debt comes from a sealed period's open items (``debts``: per account, service, supplier
and charge period); a month's debt counts once its due date has passed (``due_dates.csv``,
:func:`pipeline.calc.due.due_date`). The rule of ``rules/collection.csv`` for the service
and the payer kind (:mod:`pipeline.collect.policy`) says when the debt makes a debtor:

* ``norm_months`` (utilities, Правила 354 п.118) — per service: the overdue debt exceeds
  ``months`` monthly charges computed from the norm at the tariff of the day, whatever the
  meters (:func:`norm_month_charges`);
* ``amount`` (maintenance, capital repair, organizations) — per account, supplier and rule
  row, the services' overdue debt added up: more than ``amount`` and the oldest unpaid month
  overdue at least ``age_days`` days.

A repayment agreement in force (``accounts.repayment_agreement_until`` or a row of the
optional ``repayment_agreements`` register that is not broken on the day) pauses the case
(п.118: «при отсутствии заключенного … соглашения о погашении задолженности и (или) при
невыполнении … условий такого соглашения»).
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pipeline.calc.charges import SEWERAGE_WATER, matrix_cells, rule_pieces
from pipeline.calc.due import due_date
from pipeline.collect.policy import applied_rules
from pipeline.dates import OPEN_END, Period
from pipeline.money import div_half_up
from pipeline.penalties.monthly import PENALTY_SERVICE
from rules import Rules

MICRO = 1_000_000
I128 = pl.Int128

#: Service kinds whose monthly charge by the norm п.118 compares the debt with.
NORM_KINDS = ("metered", "sewerage", "heating", "per_person", "area", "fixed")

CANDIDATE_SCHEMA = {
    "account_id": pl.String, "supplier_id": pl.String, "service_id": pl.String, "payer_kind": pl.String,
    "debt_kop": pl.Int64, "oldest_due": pl.Date, "threshold": pl.String, "threshold_kop": pl.Int64,
    "norm_charge_kop": pl.Int64, "meets": pl.Boolean, "restrictable": pl.Boolean,
    "warning_days": pl.Int64, "rule_row": pl.Int64,
}


def _principal() -> pl.Expr:
    """Open items of the services, not the penalty (пени are claimed apart, by the statement)."""
    return (pl.col("outstanding_kop") > 0) & (pl.col("service_id").fill_null("") != PENALTY_SERVICE)


def due_dates(due_rules: pl.DataFrame, periods: list[str]) -> pl.DataFrame:
    """charge_period → due_on for ``periods`` (null when no rule is in force; an advance's empty
    period is left out)."""
    rows = [(p, due_date(due_rules, Period.parse(p))) for p in sorted({p for p in periods if p})]
    return pl.DataFrame(rows, schema={"charge_period": pl.String, "due_on": pl.Date}, orient="row")


def overdue_debts(debts: pl.DataFrame, dues: pl.DataFrame, on: date) -> pl.DataFrame:
    """Per account, supplier and service the debt of the months overdue on ``on``.

    ``debts``: account_id, service_id, supplier_id, charge_period, outstanding_kop (a sealed
    ``debts`` table in integers). ``dues``: charge_period, due_on (:func:`due_dates`). A month
    is overdue from the day after its due date. Returns account_id, supplier_id, service_id,
    debt_kop (> 0; penalties left out), oldest_due, through_period (the latest overdue month counted).
    """
    rows = debts.filter(_principal()).join(dues, on="charge_period", how="left").filter(
        pl.col("due_on").is_not_null() & (pl.col("due_on") < on))
    return rows.group_by("account_id", "supplier_id", "service_id").agg(
        pl.col("outstanding_kop").sum().cast(pl.Int64).alias("debt_kop"),
        pl.col("due_on").min().alias("oldest_due"),
        pl.col("charge_period").max().alias("through_period"),
    ).sort("account_id", "supplier_id", "service_id")


def persons_on(regs: dict[str, pl.DataFrame], on: date) -> pl.DataFrame:
    """account_id → persons registered on ``on`` (owners when nobody is, Правила 354 п.56(2))."""
    residents = regs["residents"].filter(
        (pl.col("from") <= on) & (pl.col("to").fill_null(OPEN_END) >= on)
    ).group_by("account_id").agg(pl.len().cast(pl.Int64).alias("_registered"))
    accounts = regs["accounts"].select("account_id", "owners")
    return accounts.join(residents, on="account_id", how="left").select(
        "account_id",
        pl.when(pl.col("_registered").fill_null(0) > 0).then(pl.col("_registered"))
        .otherwise(pl.col("owners").fill_null(1)).cast(pl.Int64).alias("persons"))


def block_of_flats(premises: pl.DataFrame) -> pl.DataFrame:
    """building_id → whether it is a block of flats (МКД): two premises or more (``premises``).

    The registers have no kind of building; a house with one premise is a private house
    (жилой дом), where п.122 allows cold water to be restricted.
    """
    return premises.group_by("building_id").agg(
        (pl.len() >= 2).alias("block_of_flats"))


def norm_month_charges(regs: dict[str, pl.DataFrame], rules: Rules, keys: pl.DataFrame,
                       on: date) -> pl.DataFrame:
    """The monthly charge by the norm at the tariff of ``on`` (Правила 354 п.118), per key.

    ``keys``: account_id, service_id, supplier_id. Formula by the service kind, whatever the
    meters: metered ``n × N × T`` (electricity with a matrix: the cell of the premise's rooms ×
    persons × stove); sewerage ``n × (N_cold + N_hot) × T`` over the water services the
    building has on the day; heating ``S × share × N × T``; per_person ``n × T``; area
    ``S × share × T``; fixed ``T``. ``n`` = persons registered on the day (owners when nobody
    is). Tariffs and norms are those of :func:`pipeline.calc.charges.rule_pieces` on the day
    (a supplier's own tariff wins). Rounded once, half up. Adds norm_charge_kop (null: no
    norm or tariff in force, or a kind without one).
    """
    period = Period.of(on)
    kinds = rules.services.select("service_id", "kind")
    combos = keys.select("service_id", "supplier_id").unique()
    water = regs["building_services"].filter(
        pl.col("service_id").is_in(list(SEWERAGE_WATER)) & (pl.col("from") <= on)
        & (pl.col("to").fill_null(OPEN_END) >= on)
    ).select("building_id", "service_id", "supplier_id").unique()
    pieces = rule_pieces(rules, pl.concat([combos, water.select("service_id", "supplier_id")]).unique(),
                         period).filter((pl.col("piece_from") <= on) & (pl.col("piece_to") >= on))
    accounts = regs["accounts"].select(
        "account_id", "premise_id", (pl.col("share") * 10_000).cast(pl.Int64).alias("share_e4")).join(
        regs["premises"].select("premise_id", "building_id", "rooms", "stove",
                                (pl.col("total_area") * 100).cast(pl.Int64).alias("area_centi")),
        on="premise_id", how="left").join(persons_on(regs, on), on="account_id", how="left")
    lines = keys.join(accounts, on="account_id", how="left").join(kinds, on="service_id", how="left").join(
        pieces.select("service_id", "supplier_id", "piece_from", "price_kop", "norm_micro", "matrix_from"),
        on=["service_id", "supplier_id"], how="left")
    # Electricity by the rooms × persons matrix (law.md §1.3), where the service has one.
    with_matrix = pieces.filter(pl.col("matrix_from").is_not_null())
    if with_matrix.height:
        cells = matrix_cells(rules, with_matrix).select(
            "service_id", "supplier_id", "norm_rooms", "norm_persons", "norm_stove", "cell_micro")
        lines = lines.with_columns(
            pl.col("rooms").clip(1, 4).alias("norm_rooms"),
            pl.col("persons").clip(1, 5).alias("norm_persons"),
            pl.col("stove").alias("norm_stove"),
        ).join(cells, on=["service_id", "supplier_id", "norm_rooms", "norm_persons", "norm_stove"],
               how="left").with_columns(
            pl.when(pl.col("matrix_from").is_not_null() & pl.col("rooms").is_not_null())
            .then(pl.col("cell_micro")).otherwise(pl.col("norm_micro")).alias("norm_micro"))
    water_norms = water.join(pieces.select("service_id", "supplier_id", "norm_micro"),
                             on=["service_id", "supplier_id"], how="left").group_by("building_id").agg(
        pl.col("norm_micro").sum().alias("water_micro"))
    lines = lines.join(water_norms, on="building_id", how="left")
    n, price = pl.col("persons").cast(I128), pl.col("price_kop").cast(I128)
    area = pl.col("area_centi").cast(I128) * pl.col("share_e4").cast(I128)
    kind = pl.col("kind")
    amount = (
        pl.when(kind == "metered").then(div_half_up(n * pl.col("norm_micro").cast(I128) * price, MICRO))
        .when(kind == "sewerage").then(div_half_up(n * pl.col("water_micro").cast(I128) * price, MICRO))
        .when(kind == "heating").then(div_half_up(area * pl.col("norm_micro").cast(I128) * price,
                                                  100 * 10_000 * MICRO))
        .when(kind == "per_person").then(n * price)
        .when(kind == "area").then(div_half_up(area * price, 100 * 10_000))
        .when(kind == "fixed").then(price)
    )
    return keys.join(lines.select("account_id", "service_id", "supplier_id",
                                  amount.cast(pl.Int64).alias("norm_charge_kop")),
                     on=["account_id", "service_id", "supplier_id"], how="left")


def find_debtors(overdue: pl.DataFrame, norm_charges: pl.DataFrame, accounts: pl.DataFrame,
                 collection: pl.DataFrame, buildings_kind: pl.DataFrame, premises: pl.DataFrame,
                 on: date) -> pl.DataFrame:
    """Every overdue (account, supplier, service) with its threshold and whether it is met.

    ``overdue``: :func:`overdue_debts`; ``norm_charges``: :func:`norm_month_charges` of the same
    keys; ``accounts``: account_id, premise_id, payer_kind; ``collection``: the loaded
    ``collection.csv``; ``buildings_kind``: :func:`block_of_flats`. Returns
    :data:`CANDIDATE_SCHEMA` columns: ``meets`` is the rule met (a ``norm_months`` service on its
    own, an ``amount`` service by its account, supplier and rule row together), ``restrictable``
    whether the service may be restricted in this building (п.122).
    """
    if not overdue.height:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    base = overdue.join(accounts.select("account_id", "premise_id", pl.col("payer_kind").fill_null("person")),
                        on="account_id", how="left").join(
        premises.select("premise_id", "building_id"), on="premise_id", how="left").join(
        buildings_kind, on="building_id", how="left")
    ruled = applied_rules(collection, base.select("service_id", "payer_kind").unique(), on)
    rows = base.join(ruled, on=["service_id", "payer_kind"], how="left").join(
        norm_charges.select("account_id", "service_id", "supplier_id", "norm_charge_kop"),
        on=["account_id", "service_id", "supplier_id"], how="left")
    group = ["account_id", "supplier_id", "rule_row"]
    amount_debt = pl.col("debt_kop").sum().over(group)
    oldest = pl.col("oldest_due").min().over(group)
    by_norm = pl.col("threshold") == "norm_months"
    threshold_kop = (pl.when(by_norm).then(pl.col("months") * pl.col("norm_charge_kop"))
                     .when(pl.col("threshold") == "amount").then(pl.col("amount_kop")))
    meets = (
        pl.when(by_norm).then(pl.col("norm_charge_kop").is_not_null()
                              & (pl.col("debt_kop") > pl.col("months") * pl.col("norm_charge_kop")))
        .when(pl.col("threshold") == "amount").then(
            (amount_debt > pl.col("amount_kop"))
            & ((pl.lit(on) - oldest).dt.total_days() >= pl.col("age_days").fill_null(0)))
        .otherwise(pl.lit(False))
    )
    restrictable = (pl.col("restriction") == "allowed") | (
        (pl.col("restriction") == "not_in_block_of_flats") & ~pl.col("block_of_flats").fill_null(True))
    return rows.select(
        "account_id", "supplier_id", "service_id", "payer_kind", "debt_kop", "oldest_due",
        "threshold", threshold_kop.cast(pl.Int64).alias("threshold_kop"), "norm_charge_kop",
        meets.fill_null(False).alias("meets"),
        ((pl.col("payer_kind") == "person") & restrictable.fill_null(False)).alias("restrictable"),
        pl.col("warning_days").cast(pl.Int64), pl.col("rule_row").cast(pl.Int64),
    ).sort("account_id", "supplier_id", "service_id")


def agreements_in_force(accounts: pl.DataFrame, agreements: pl.DataFrame | None, on: date) -> pl.DataFrame:
    """account_id, supplier_id (null = every supplier) of the repayment agreements kept on ``on``.

    ``accounts.repayment_agreement_until`` ≥ ``on`` is an agreement with every supplier; a row of
    ``repayment_agreements`` is kept from ``from`` to ``to`` unless ``broken_on`` ≤ ``on``.
    """
    out = [accounts.filter(pl.col("repayment_agreement_until").is_not_null()
                           & (pl.col("repayment_agreement_until") >= on))
           .select("account_id", pl.lit(None, pl.String).alias("supplier_id"))]
    if agreements is not None and agreements.height:
        out.append(agreements.filter(
            (pl.col("from") <= on) & (pl.col("to") >= on)
            & (pl.col("broken_on").is_null() | (pl.col("broken_on") > on))
        ).select("account_id", pl.col("supplier_id").cast(pl.String)))
    return pl.concat(out).unique().sort("account_id", "supplier_id", nulls_last=True)


def is_paused(kept: pl.DataFrame, account_id: str, supplier_id: str) -> bool:
    """Whether an agreement of :func:`agreements_in_force` covers this account and supplier."""
    rows = kept.filter((pl.col("account_id") == account_id)
                       & (pl.col("supplier_id").is_null() | (pl.col("supplier_id") == supplier_id)))
    return rows.height > 0


def paused_keys(kept: pl.DataFrame, keys: pl.DataFrame) -> set[tuple[str, str]]:
    """The (account, supplier) of ``keys`` that an agreement of :func:`agreements_in_force` covers."""
    every = keys.join(kept.filter(pl.col("supplier_id").is_null()).select("account_id"), on="account_id")
    own = keys.join(kept.filter(pl.col("supplier_id").is_not_null()), on=["account_id", "supplier_id"])
    return {(a, s) for a, s in pl.concat([every, own.select(every.columns)]).iter_rows()}


def case_debts(debts: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """The debt now of each case: the supplier's open items of the months the case covers.

    ``keys``: case_id, account_id, supplier_id, through_period. Returns case_id, debt_kop (the
    positive outstanding of charge periods up to ``through_period``, any service).
    """
    joined = keys.join(debts.filter(_principal()), on=["account_id", "supplier_id"],
                       how="left").filter(
        pl.col("charge_period").is_null() | (pl.col("charge_period") <= pl.col("through_period")))
    return keys.select("case_id").join(
        joined.group_by("case_id").agg(pl.col("outstanding_kop").sum().fill_null(0).cast(pl.Int64)
                                       .alias("debt_kop")),
        on="case_id", how="left").with_columns(pl.col("debt_kop").fill_null(0))
