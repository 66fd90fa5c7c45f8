"""Integer identifiers inside a close (pipeline.ids): codes keep the strings' order and come back exactly."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pytest

from pipeline.ids import CODE, coded, dictionary, id_type, key_code, map_frames, typed

ACCOUNTS = pl.DataFrame({"account_id": ["ЛС-10", "ЛС-2", "ЛС-1"], "premise_id": ["P2", None, "P1"]})
ITEMS = pl.DataFrame({"account_id": ["ЛС-2", "ЛС-9", None, "ЛС-2"], "amount_kop": [100, 200, 300, 400]})


def test_codes_are_ranks_so_sorting_by_code_sorts_by_string() -> None:
    codes = dictionary([ACCOUNTS, ITEMS])
    assert codes.names["account_id"].to_list() == ["ЛС-1", "ЛС-10", "ЛС-2", "ЛС-9"]
    coded_accounts = codes.encode(ACCOUNTS)
    assert coded_accounts.schema["account_id"] == CODE
    assert coded_accounts["account_id"].to_list() == [1, 2, 0]
    assert coded_accounts.sort("account_id")["account_id"].to_list() == [0, 1, 2]
    assert codes.decode(coded_accounts.sort("account_id"))["account_id"].to_list() == ["ЛС-1", "ЛС-10", "ЛС-2"]


@pytest.mark.parametrize("size", [4, 100])
def test_round_trip_keeps_nulls_on_both_paths(size: int) -> None:
    # A short frame against a long dictionary is coded by binary search, a long one by a join.
    many = pl.DataFrame({"account_id": [f"A{i:04d}" for i in range(1000)]})
    codes = dictionary([many, ITEMS])
    frame = pl.concat([ITEMS] * (size // 4))
    back = codes.decode(codes.encode(frame))
    assert back.equals(frame)
    assert back["account_id"].null_count() == frame["account_id"].null_count()


@pytest.mark.parametrize("size", [1, 100])
def test_a_value_outside_the_dictionary_is_refused(size: int) -> None:
    codes = dictionary([pl.DataFrame({"account_id": [f"A{i:04d}" for i in range(1000)]})])
    with pytest.raises(ValueError, match="account_id"):
        codes.encode(pl.DataFrame({"account_id": ["B0001"] * size}))


def test_decode_refuses_a_column_a_stage_left_as_string() -> None:
    codes = dictionary([ACCOUNTS])
    with pytest.raises(TypeError, match="typed"):
        codes.decode(ACCOUNTS)


def test_typed_follows_the_block() -> None:
    schema = {"account_id": pl.String, "service_id": pl.String, "amount_kop": pl.Int64}
    assert typed(schema)["account_id"] == pl.String()
    with coded():
        assert id_type() == CODE
        assert typed(schema) == pl.Schema({"account_id": CODE, "service_id": pl.String, "amount_kop": pl.Int64})
        assert pl.DataFrame({"account_id": [7]}, schema={"account_id": CODE}).select(
            key_code("account_id"))["account_id"].to_list() == [7]
    assert id_type() == pl.String()


@dataclass(frozen=True)
class _Holder:
    frames: list[pl.DataFrame]
    name: str


def test_map_frames_reaches_lists_dicts_and_dataclasses() -> None:
    codes = dictionary([ACCOUNTS, ITEMS])
    held = {"a": _Holder([ACCOUNTS, ITEMS], "x"), "b": 3}
    out = map_frames(held, codes.encode)
    assert out["b"] == 3 and out["a"].name == "x"
    assert [f.schema["account_id"] for f in out["a"].frames] == [CODE, CODE]
    assert map_frames(out, codes.decode)["a"].frames[1].equals(ITEMS)
