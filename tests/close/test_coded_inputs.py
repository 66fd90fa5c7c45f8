"""A close's inputs with identifiers as codes (pipeline.close.inputs.coded_inputs)."""

from __future__ import annotations

import polars as pl

from pipeline.close.inputs import CloseInputs, coded_inputs
from pipeline.dates import Period
from pipeline.ids import CODE


def inputs(readings_meters: list[str]) -> CloseInputs:
    regs = {
        "buildings": pl.DataFrame({"building_id": ["B1"]}),
        "premises": pl.DataFrame({"premise_id": ["P1", "P2"], "building_id": ["B1", "B1"]}),
        "accounts": pl.DataFrame({"account_id": ["A2", "A1"], "premise_id": ["P2", "P1"]}),
        "residents": pl.DataFrame({"person_id": ["R1"], "account_id": ["A1"]}),
        "meters": pl.DataFrame({"meter_id": ["M1", "M2"], "premise_id": ["P1", "P2"]}),
        "readings": pl.DataFrame({"meter_id": readings_meters, "value": list(range(len(readings_meters)))}),
    }
    empty = pl.DataFrame(schema={"account_id": pl.String, "amount_kop": pl.Int64})
    return CloseInputs(
        period=Period(2026, 8), regs=regs, rules=None, window_end_day=25,  # type: ignore[arg-type]
        # A payment of an account the registers no longer hold: its code comes from the past.
        payments=pl.DataFrame({"account_id": ["A9"], "amount_kop": [100]}),
        earlier_allocations=None, opening=empty, open_items=empty,
        averaged_before=pl.DataFrame(schema={"meter_id": pl.String}), due_date=None,
        store_version=None, payments_sha256=None, spike_multiple=5)


def test_codes_come_from_the_defining_registers_and_the_past() -> None:
    coded = coded_inputs(inputs(["M2", "M1", "M2"]))
    assert coded.codes is not None
    assert coded.codes.names["account_id"].to_list() == ["A1", "A2", "A9"]
    assert coded.regs["readings"].schema["meter_id"] == CODE
    assert coded.regs["readings"]["meter_id"].to_list() == [1, 0, 1]
    assert coded.payments["account_id"].to_list() == [2]
    assert coded.registers()["readings"].equals(inputs(["M2", "M1", "M2"]).regs["readings"])


def test_an_identifier_only_a_register_reference_names_still_gets_a_code() -> None:
    # A reading of a meter the meters register does not hold (a store written before the
    # reference was checked): the dictionary is then made from every frame, nothing is lost.
    coded = coded_inputs(inputs(["M1", "M7"]))
    assert coded.codes is not None and coded.codes.names["meter_id"].to_list() == ["M1", "M2", "M7"]
    assert coded.registers()["readings"]["meter_id"].to_list() == ["M1", "M7"]
