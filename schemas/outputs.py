"""The tables a close seals, declared once: columns, types and the scale of every number.

Inside the engine every amount is an integer with its scale in its name (``amount_kop``,
``volume_micro``, ``share_e4``); a sealed table carries the same numbers as DECIMAL with
the contract's name (``amount`` DECIMAL(18,2) rubles). :data:`OUTPUTS` says, per table and
column, which is which; :func:`to_sealed` writes by it and :func:`to_internal` reads back
by it, so no reader converts a column by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

import polars as pl


@dataclass(frozen=True)
class Scaled:
    """A sealed DECIMAL column held inside as an integer ``internal`` = value × 10^scale."""

    internal: str
    scale: int
    precision: int = 18

    @property
    def dtype(self) -> pl.Decimal:
        return pl.Decimal(self.precision, self.scale)


def _money(internal: str) -> Scaled:
    return Scaled(internal, 2)


def _micro(internal: str) -> Scaled:
    return Scaled(internal, 6)


S, D, I64, I32, B = pl.String, pl.Date, pl.Int64, pl.Int32, pl.Boolean
BALANCE_MONEY = ("opening", "charged", "recalculated", "paid", "penalty", "closing")

#: table → column → a Polars type (kept as is) or :class:`Scaled` (integer inside).
OUTPUTS: dict[str, dict[str, pl.DataType | type[pl.DataType] | Scaled]] = {
    "charges": {
        "period": S, "account_id": S, "service_id": S, "supplier_id": S, "method": S,
        "volume": _micro("volume_micro"), "tariff": _money("price_kop"), "amount": _money("amount_kop"),
        "coefficient": Scaled("coef_milli", 3, 9), "line_from": D, "line_to": D, "days": I64,
        "days_in_month": I64, "person_days": I64, "absent_days": I64, "persons_basis": S,
        "area": Scaled("area_centi", 2), "common_area": Scaled("common_area_centi", 2),
        "building_area": Scaled("building_area_centi", 2), "share": Scaled("share_e4", 4, 9),
        "norm": _micro("norm_micro"), "meter_volume": _micro("meter_volume_micro"),
        "tariff_row": I64, "norm_row": I64, "coef_row": I64, "norm_table": S, "norm_rooms": I64,
        "norm_persons": I64, "norm_stove": S,
    },
    "recalculations": {
        "period": S, "account_id": S, "service_id": S, "supplier_id": S, "origin_period": S,
        "amount": _money("amount_kop"), "reason": S, "excess_minutes": I64, "kind": S, "settles_year": I32,
    },
    "allocations": {
        "period": S, "payment_id": S, "agent": S, "account_id": S, "service_id": S, "supplier_id": S,
        "charge_period": S, "amount": _money("amount_kop"), "paid_on": D, "kind": S,
    },
    "penalties": {
        "period": S, "account_id": S, "supplier_id": S, "charge_period": S, "amount": _money("amount_kop"),
        "cumulative": _money("cumulative_kop"), "debt": _money("debt_kop"), "scheme": S, "due_date": D,
    },
    "balances": {"period": S, "account_id": S, "supplier_id": S,
                 **{m: _money(f"{m}_kop") for m in BALANCE_MONEY}},
    "service_balances": {"period": S, "account_id": S, "service_id": S, "supplier_id": S,
                         **{m: _money(f"{m}_kop") for m in BALANCE_MONEY}},
    "debts": {"period": S, "account_id": S, "service_id": S, "supplier_id": S, "charge_period": S,
              "outstanding": _money("outstanding_kop")},
    "meter_volumes": {
        "period": S, "meter_id": S, "service_id": S, "premise_id": S, "method": S,
        "volume": _micro("volume_micro"), "prev_read_on": D, "prev_value": _micro("prev_value_micro"),
        "curr_read_on": D, "curr_value": _micro("curr_value_micro"),
    },
    "reading_issues": {"meter_id": S, "read_on": D, "reason": S, "value": pl.Decimal(38, 6), "period": S},
    "settlements": {
        "period": S, "account_id": S, "service_id": S, "supplier_id": S, "building_id": S, "year": I32,
        "months": S, "building_volume": _micro("building_volume_micro"),
        "premises_volume": _micro("premises_volume_micro"), "charged_volume": _micro("charged_volume_micro"),
        "difference": _micro("difference_micro"), "area": Scaled("area_centi", 2),
        "building_area": Scaled("building_area_centi", 2), "share": Scaled("share_e4", 4, 9),
        "tariff": _money("price_kop"), "amount": _money("amount_kop"), "parts": I32, "first_period": S,
        "carry_over": B,
    },
}

#: The sealed tables in the order a close writes them.
OUTPUT_TABLES = tuple(OUTPUTS)


def _sealed_expr(column: str, kind: pl.DataType | type[pl.DataType] | Scaled) -> pl.Expr:
    if isinstance(kind, Scaled):
        # Exact: the integer becomes a DECIMAL of the same digits, times 10^-scale (an exact
        # decimal literal: one int128 multiplication, about twice as fast as a division).
        unit = pl.lit(Decimal(1).scaleb(-kind.scale), pl.Decimal(38, kind.scale))
        return (pl.col(kind.internal).cast(pl.Decimal(38, 0)) * unit).cast(kind.dtype).alias(column)
    return pl.col(column).cast(kind)


F = TypeVar("F", pl.DataFrame, pl.LazyFrame)


def to_sealed(frame: F, table: str) -> F:
    """The internal frame as the sealed ``table``: its columns, in its order, with its types."""
    return frame.select(_sealed_expr(c, k) for c, k in OUTPUTS[table].items())


def internal_expr(table: str, column: str) -> pl.Expr:
    """One sealed DECIMAL ``column`` of ``table`` as the engine's integer (``amount`` → ``amount_kop``)."""
    kind = OUTPUTS[table][column]
    assert isinstance(kind, Scaled), f"{table}.{column} is not a scaled number"
    exact = pl.col(column).cast(pl.Decimal(38, kind.scale)) * 10 ** kind.scale
    return exact.cast(pl.Int64).alias(kind.internal)


def to_internal(frame: F, table: str, columns: list[str] | None = None) -> F:
    """A sealed ``table`` (or its ``columns``) back in the engine's integers, named as inside.

    A column the table lacks (a period sealed before it was added) comes back null.
    """
    have = set(frame.collect_schema().names())
    out = []
    for column in columns or list(OUTPUTS[table]):
        kind = OUTPUTS[table][column]
        if isinstance(kind, Scaled):
            out.append(internal_expr(table, column) if column in have
                       else pl.lit(None, pl.Int64).alias(kind.internal))
        else:
            out.append(pl.col(column) if column in have else pl.lit(None, kind).alias(column))
    return frame.select(out)


def empty(table: str) -> pl.DataFrame:
    """A sealed ``table`` with no rows (its schema)."""
    return pl.DataFrame(schema={c: k.dtype if isinstance(k, Scaled) else k
                                for c, k in OUTPUTS[table].items()})
