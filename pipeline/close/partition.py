"""Partitions of a close: whole buildings, about ``[close] partition_accounts`` accounts each.

Everything a charge depends on is per account or per building — a building's premises,
accounts, residents, meters and their readings, building meters, outages, КР на СОИ and
heating shares — so a partition of whole buildings closes alone and its tables are exactly
its rows of the whole close's tables. :func:`plan` cuts the buildings (in their id order)
into consecutive groups; :func:`split` gives the :class:`CloseInputs` of one group.

What the registers no longer name (an account removed from them, with its open items,
payments or past charges still to reverse; a removed meter's history) belongs to no
building: it goes to partition 0, where it meets nothing else.

The cut itself (:class:`Plan`, :func:`plan`) is :mod:`pipeline.close.cut`, which the migration
shares without the close's inputs.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import polars as pl

from pipeline.close.cut import Plan, plan
from pipeline.close.inputs import CloseInputs

__all__ = ["Plan", "cutter", "plan", "split"]


#: Register → the key that places its rows (looked up in the plan's frame of that key).
_REGISTER_KEYS = {
    "buildings": "building_id", "premises": "building_id", "building_services": "building_id",
    "outages": "building_id", "accounts": "account_id", "residents": "account_id",
    "access_refusals": "premise_id", "readings": "meter_id", "meters": "meter_id",
    "absences": "person_id", "benefits": "person_id",
}


def _keyed(plan: Plan, key: str) -> pl.DataFrame:
    return {"building_id": plan.buildings, "premise_id": plan.premises, "account_id": plan.accounts,
            "meter_id": plan.meters, "person_id": plan.persons}[key]


class _Cutter:
    """Cuts frames by partition: each frame's partition column is computed once, then filtered.

    A key placed in exactly one partition (a building, premise, account or meter) is looked
    up once per row (a left join of the key column alone, in row order; the other columns are
    not copied)
    and every partition after is one integer comparison; a person, who may live in two
    partitions, goes through a semi-join. A key in no partition belongs to partition 0.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._parts: dict[int, tuple[pl.DataFrame, pl.Series]] = {}

    def _part_column(self, frame: pl.DataFrame, key: str) -> pl.Series:
        cached = self._parts.get(id(frame))
        if cached is not None and cached[0] is frame:
            return cached[1]
        placed = _keyed(self.plan, key)
        parts = frame.select(key).join(placed, on=key, how="left", maintain_order="left")[
            "part"].fill_null(0)
        self._parts[id(frame)] = (frame, parts)  # the frame is kept, so its id is not reused
        return parts

    def take(self, frame: pl.DataFrame, key: str, part: int) -> pl.DataFrame:
        """The rows of ``frame`` in ``part``; in partition 0 also those whose key is in no partition."""
        if key == "person_id":
            placed = _keyed(self.plan, key)
            if part == 0:
                elsewhere = placed.filter(pl.col("part") != 0).select(key).unique().join(
                    placed.filter(pl.col("part") == 0).select(key), on=key, how="anti")
                return frame.join(elsewhere, on=key, how="anti")
            return frame.join(placed.filter(pl.col("part") == part).select(key), on=key, how="semi")
        return frame.filter(self._part_column(frame, key) == part)


def _key_of(frame: pl.DataFrame) -> str | None:
    for key in ("account_id", "meter_id"):
        if key in frame.columns:
            return key
    return None


def _split_value(value: Any, cut: _Cutter, part: int) -> Any:
    if isinstance(value, pl.DataFrame):
        key = _key_of(value)
        return value if key is None else cut.take(value, key, part)
    if isinstance(value, list):
        return [_split_value(v, cut, part) for v in value]
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        changed = {f.name: _split_value(getattr(value, f.name), cut, part) for f in fields(value)
                   if isinstance(getattr(value, f.name), pl.DataFrame | list)}
        return replace(value, **changed) if changed else value
    return value


def split(inputs: CloseInputs, plan: Plan, part: int, cut: _Cutter | None = None) -> CloseInputs:
    """The inputs of partition ``part``: its buildings' registers and its accounts' and meters' past.

    Give the same ``cut`` (:func:`cutter`) for every partition of one close: each frame's
    partition column is then computed once.
    """
    if plan.count == 1:
        return inputs
    cut = cut or cutter(plan)
    regs = {name: (cut.take(frame, _REGISTER_KEYS[name], part) if name in _REGISTER_KEYS else frame)
            for name, frame in inputs.regs.items()}
    changed: dict[str, Any] = {"regs": regs}
    for f in fields(inputs):
        if f.name in ("regs", "rules", "penalty_policy"):
            continue
        value = getattr(inputs, f.name)
        if isinstance(value, pl.DataFrame | list) or hasattr(value, "__dataclass_fields__"):
            changed[f.name] = _split_value(value, cut, part)
    return replace(inputs, **changed)


def cutter(plan: Plan) -> _Cutter:
    """What :func:`split` cuts with; one per close, shared by its partitions."""
    return _Cutter(plan)
