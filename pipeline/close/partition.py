"""Partitions of a close: whole buildings, about ``[close] partition_accounts`` accounts each.

Everything a charge depends on is per account or per building — a building's premises,
accounts, residents, meters and their readings, building meters, outages, КР на СОИ and
heating shares — so a partition of whole buildings closes alone and its tables are exactly
its rows of the whole close's tables. :func:`plan` cuts the buildings (in their id order)
into consecutive groups; :func:`split` gives the :class:`CloseInputs` of one group.

What the registers no longer name (an account removed from them, with its open items,
payments or past charges still to reverse; a removed meter's history) belongs to no
building: it goes to partition 0, where it meets nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import polars as pl

from pipeline.close.inputs import CloseInputs


@dataclass(frozen=True)
class Plan:
    """Which partition each building, premise, account, meter and person belongs to."""

    count: int
    buildings: pl.DataFrame  # building_id, part
    premises: pl.DataFrame  # premise_id, part
    accounts: pl.DataFrame  # account_id, part
    meters: pl.DataFrame  # meter_id, part
    persons: pl.DataFrame  # person_id, part (a person living in two partitions is in both)
    sizes: tuple[int, ...]  # accounts per partition


def plan(regs: dict[str, pl.DataFrame], partition_accounts: int) -> Plan:
    """Buildings in id order, cut into consecutive partitions of about ``partition_accounts`` accounts.

    A partition starts at the building where the count of accounts before it reaches the
    next multiple of ``partition_accounts``; a building is never split, so one building
    larger than the size is a partition of its own size.
    """
    premises = regs["premises"].select("premise_id", "building_id")
    per_building = regs["accounts"].select("premise_id").join(premises, on="premise_id").group_by(
        "building_id").len("n")
    buildings = regs["buildings"].select("building_id").join(
        per_building, on="building_id", how="left").with_columns(pl.col("n").fill_null(0)).sort(
        "building_id").with_columns(before=pl.col("n").cum_sum() - pl.col("n"))
    buildings = buildings.with_columns(
        part=(pl.col("before") // max(1, partition_accounts)).rank("dense").cast(pl.Int32) - 1)
    count = int(buildings["part"].max()) + 1 if buildings.height else 1  # type: ignore[arg-type]
    sizes = buildings.group_by("part").agg(pl.col("n").sum()).sort("part")["n"].to_list()
    b = buildings.select("building_id", "part")
    p = premises.join(b, on="building_id").select("premise_id", "part")
    a = regs["accounts"].select("account_id", "premise_id").join(p, on="premise_id").select(
        "account_id", "part")
    meters = regs["meters"]
    m = pl.concat([
        meters.filter(pl.col("premise_id").is_not_null()).select("meter_id", "premise_id").join(
            p, on="premise_id").select("meter_id", "part"),
        meters.filter(pl.col("premise_id").is_null()).select("meter_id", "building_id").join(
            b, on="building_id").select("meter_id", "part"),
    ])
    persons = regs["residents"].select("person_id", "account_id").join(a, on="account_id").select(
        "person_id", "part").unique().sort("person_id", "part")
    return Plan(count, b, p, a, m, persons, tuple(int(n) for n in sizes) or (0,))


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
