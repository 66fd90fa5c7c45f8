"""The cut of a region into partitions of whole buildings, about ``partition_accounts`` accounts each.

:func:`plan` places every building, premise, account, meter and person in a partition; the
close (:mod:`pipeline.close.partition`) and the migration's months
(:func:`pipeline.migrate.model.migration_plan`) both cut with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


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
