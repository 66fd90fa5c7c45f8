"""The parallel run's comparison of two months of charges, line by line (pipeline.migrate.compare)."""

from __future__ import annotations

import io

import polars as pl

from pipeline.migrate.compare import compare_lines

SCHEMA = {"account_id": pl.String, "service_id": pl.String, "supplier_id": pl.String, "amount_kop": pl.Int64,
          "volume_micro": pl.Int64}


def frame(text: str) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(text), schema=SCHEMA)


OURS = frame("""account_id,service_id,supplier_id,amount_kop,volume_micro
A1,cold_water,S1,17583,3000000
A1,maintenance,S2,150000,
A2,cold_water,S1,10000,2000000
A2,cold_water,S1,5000,1000000
A3,cold_water,S1,5861,1000000
A4,heating,S3,200000,
""")

THEIRS = frame("""account_id,service_id,supplier_id,amount_kop,volume_micro
A1,cold_water,S1,17583,3000000
A1,maintenance,S2,150000,
A2,cold_water,S1,15000,3000000
A3,cold_water,S1,5861,2000000
A5,heating,S3,100000,
""")


def test_every_kind_of_difference_and_nothing_else() -> None:
    found = compare_lines(OURS, THEIRS)
    rows = {(r["account_id"], r["service_id"]): (r["kind"], r["difference_kop"]) for r in found.iter_rows(named=True)}
    # A1 agrees; A2's two pieces add up to the old system's one line: no difference either.
    assert rows == {
        ("A3", "cold_water"): ("volume", 0),
        ("A4", "heating"): ("only_ours", 200000),
        ("A5", "heating"): ("only_theirs", -100000),
    }


def test_a_changed_tariff_line_is_an_amount_difference() -> None:
    theirs = THEIRS.with_columns(
        pl.when((pl.col("account_id") == "A1") & (pl.col("service_id") == "maintenance"))
        .then(pl.lit(149000, pl.Int64)).otherwise(pl.col("amount_kop")).alias("amount_kop"))
    found = compare_lines(OURS, theirs).filter(pl.col("account_id") == "A1")
    assert found.select("kind", "ours_kop", "theirs_kop", "difference_kop").rows() == [
        ("amount", 150000, 149000, 1000)]


def test_the_same_month_compares_clean() -> None:
    assert compare_lines(OURS, OURS).height == 0
