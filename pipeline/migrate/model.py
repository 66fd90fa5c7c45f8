"""The history brought from the previous system, in the engine's integers, and its place in the store.

:class:`History` is what :func:`pipeline.migrate.history.read_history` returns and what the
migrated periods and the reconciliation are made from. Money is ``<name>_kop`` (Int64
kopecks), volumes and readings ``*_micro`` (Int64, millionths), identifiers and months
(``YYYY-MM``) strings. ``store/migration/`` keeps it: one Parquet file per register and
``history.json`` (source, months, the export files' SHA-256).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.workspace import Workspace, atomic_write_bytes, write_parquet_atomic
from schemas.history import HISTORY

#: Export column → the integer column it becomes inside, and its scale (10**scale units).
SCALED = {"amount": ("amount_kop", 2), "tariff": ("price_kop", 2), "opening": ("opening_kop", 2),
          "closing": ("closing_kop", 2), "accrued": ("accrued_kop", 2), "volume": ("volume_micro", 6),
          "value": ("value_micro", 6)}


def internal_schema(register: str) -> pl.Schema:
    """The columns of ``register`` as :class:`History` holds them."""
    out: dict[str, pl.DataType] = {}
    for col in HISTORY[register].columns:
        if col.name in SCALED:
            out[SCALED[col.name][0]] = pl.Int64()
        else:
            out[col.name] = col.dtype
    return pl.Schema(out)


def empty(register: str) -> pl.DataFrame:
    """An empty frame of ``register`` (an optional file that was not given)."""
    return pl.DataFrame(schema=internal_schema(register))


@dataclass(frozen=True)
class History:
    """The migrated months and every history register, typed (see the module's units)."""

    source: str
    months: tuple[str, ...]
    frames: dict[str, pl.DataFrame]
    files_sha256: dict[str, str]

    def frame(self, register: str) -> pl.DataFrame:
        """``register``'s frame, empty when the export had none."""
        return self.frames.get(register, empty(register))

    @property
    def first(self) -> str:
        return self.months[0]

    @property
    def last(self) -> str:
        return self.months[-1]


def migration_store(ws: Workspace) -> Path:
    return ws.store / "migration"


def save_history(ws: Workspace, history: History) -> None:
    """Write ``history`` into ``store/migration/`` (the frames first, ``history.json`` last)."""
    folder = migration_store(ws)
    for register in HISTORY:
        write_parquet_atomic(history.frame(register).select(list(internal_schema(register))),
                             folder / f"{register}.parquet")
    meta = {"source": history.source, "months": list(history.months),
            "files_sha256": dict(sorted(history.files_sha256.items()))}
    atomic_write_bytes(folder / "history.json",
                       json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True).encode())


def load_history(ws: Workspace) -> History | None:
    """The history saved by the last ``billing migrate load``; None when there was none."""
    folder = migration_store(ws)
    meta_path = folder / "history.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    frames = {register: pl.read_parquet(folder / f"{register}.parquet") if (
        folder / f"{register}.parquet").is_file() else empty(register) for register in HISTORY}
    return History(meta.get("source", ""), tuple(meta["months"]), frames, dict(meta.get("files_sha256", {})))
