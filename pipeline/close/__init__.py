"""Month close (закрытие периода): inputs → pure stages → sealed period directory.

Read in this order:

- :mod:`pipeline.close.inputs` — ``load_inputs``: everything one close reads, from one
  snapshot of each input (the only I/O before the seal);
- :mod:`pipeline.close.compute` — ``compute``: the stages in order and the money check;
- :mod:`pipeline.close.partition` — ``plan``/``split``: whole buildings into partitions;
- :mod:`pipeline.close.seal` — ``to_outputs``/``write_tables``/``finish``/``seal``: the
  sealed tables (declared in :mod:`schemas.outputs`), reports and manifest, atomically;
- :mod:`pipeline.close.parts` — ``close_in_parts``: a close run partition by partition
  (here or on a Dask cluster), combined at the end.

A sealed period is never rewritten; corrections are recalculation lines of a later one.
"""

from pipeline.close.compute import SETTLED_COLUMNS, CloseResult, combine_summaries, compute, summary
from pipeline.close.inputs import (
    CHARGE_RULES,
    CloseInputs,
    SettleInputs,
    check_can_close,
    load_inputs,
    rules_sha256,
)
from pipeline.close.parts import PartDone, PartJob, close_in_parts, close_part, run_here
from pipeline.close.seal import OUTPUT_TABLES, finish, seal, to_outputs, write_tables

__all__ = [
    "CHARGE_RULES", "OUTPUT_TABLES", "SETTLED_COLUMNS", "CloseInputs", "CloseResult", "PartDone", "PartJob",
    "SettleInputs", "check_can_close", "close_in_parts", "close_part", "combine_summaries", "compute",
    "finish", "load_inputs", "rules_sha256", "run_here", "seal", "summary", "to_outputs", "write_tables",
]
