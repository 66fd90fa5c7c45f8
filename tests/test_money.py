"""The one rounding rule and the exact split, at their boundaries."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.money import (
    div_half_up,
    div_half_up_int,
    parse_fixed,
    parse_rubles,
    split_column,
    split_largest_remainder,
)


@pytest.mark.parametrize(
    ("num", "den", "expected"),
    [(5, 10, 1), (4, 10, 0), (15, 10, 2), (-5, 10, -1), (-4, 10, 0), (-15, 10, -2),
     (0, 7, 0), (10**20 + 5, 10, 10**19 + 1)],
)
def test_half_up_away_from_zero(num: int, den: int, expected: int) -> None:
    assert div_half_up_int(num, den) == expected


@given(st.integers(-(10**15), 10**15), st.integers(1, 10**9))
def test_vectorised_rounding_equals_scalar(num: int, den: int) -> None:
    got = pl.DataFrame({"n": [num]}).select(div_half_up(pl.col("n"), den))["n"][0]
    assert got == div_half_up_int(num, den)


@pytest.mark.parametrize(
    ("text", "kop"), [("0,01", 1), ("1 234,56", 123456), ("-7", -700), ("10.5", 1050)]
)
def test_parse_rubles(text: str, kop: int) -> None:
    assert parse_rubles(text) == kop


@pytest.mark.parametrize("text", ["1.234", "abc", "", "1,2,3"])
def test_parse_rubles_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="копейки"):
        parse_rubles(text)


def test_parse_fixed_refuses_extra_decimals() -> None:
    with pytest.raises(ValueError, match="знаков"):
        parse_fixed("1.0000001", 6)


@given(st.integers(-(10**9), 10**9), st.lists(st.integers(0, 10**6), min_size=1, max_size=12))
def test_split_adds_up_and_is_fair(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        weights = [*weights[:-1], 1]
    parts = split_largest_remainder(total, weights)
    assert sum(parts) == total
    for part, w in zip(parts, weights, strict=True):
        exact = total * w / sum(weights)
        assert abs(part - exact) < 1


@given(st.lists(st.tuples(st.integers(-(10**7), 10**7),
                          st.lists(st.integers(0, 10**5), min_size=1, max_size=6)),
                min_size=1, max_size=8))
def test_vectorised_split_equals_scalar(groups: list[tuple[int, list[int]]]) -> None:
    rows = []
    for g, (total, weights) in enumerate(groups):
        if sum(weights) == 0:
            weights = [*weights[:-1], 1]
        rows += [{"g": g, "t": total, "w": w, "o": i} for i, w in enumerate(weights)]
    frame = split_column(pl.DataFrame(rows), "t", "w", ["g"], "o", "s")
    for g, (total, _) in enumerate(groups):
        sub = frame.filter(pl.col("g") == g)
        assert sub["s"].to_list() == split_largest_remainder(total, sub["w"].to_list())
