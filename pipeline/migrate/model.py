"""The history brought from the previous system, in the engine's integers, and its place in the store.

:class:`History` is what :func:`pipeline.migrate.history.read_history` returns and what the
migrated periods and the reconciliation are made from. Money is ``<name>_kop`` (Int64
kopecks), volumes and readings ``*_micro`` (Int64, millionths), identifiers and months
(``YYYY-MM``) strings. ``store/migration/`` keeps it: one Parquet file per register and
``history.json`` (source, months, the export files' SHA-256).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pyarrow.parquet as pq

from pipeline.workspace import Workspace, atomic_write_bytes, write_parquet_atomic
from schemas.history import HISTORY

if TYPE_CHECKING:
    from pipeline.close.cut import Plan

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


#: Registers kept by month (``store/migration/<register>/<YYYY-MM>/*.parquet``): their rows have a
#: ``period``, and a million accounts' years of them do not fit in memory at once.
MONTHLY = ("history_charges", "history_recalculations", "history_payments", "history_balances",
           "history_meter_volumes")

#: What places a monthly register's row in a partition (:func:`migration_plan`): its meter for
#: the meter volumes, its account for the others.
PART_KEYS = {"history_meter_volumes": "meter_id"}

#: A region smaller than this many accounts is rebuilt in one process: a second one costs
#: its start (≈ 2 s of imports) and the per-table overhead twice, for months of a fraction
#: of a second each.
PARALLEL_FROM_ACCOUNTS = 10_000


def part_file(index: int, part: int, parts: int) -> str:
    """The staged file of piece ``index`` of a month, for partition ``part`` of ``parts``."""
    return f"{index:05d}.parquet" if parts <= 1 else f"{index:05d}-p{part:03d}.parquet"


def part_key(register: str) -> str:
    return PART_KEYS.get(register, "account_id")


def migration_plan(ws: Workspace, accounts: int | None = None) -> Plan | None:
    """The partitions the months are rebuilt in (``[migration] partition_accounts`` of whole
    buildings, :func:`pipeline.close.cut.plan`); None for one.

    With more than one worker (``[migration] workers``, 0 — the cores) and at least
    :data:`PARALLEL_FROM_ACCOUNTS` accounts a region is cut into at least as many partitions
    as workers, so that every worker has one.
    """
    from pipeline.close.cut import plan
    from pipeline.ingest.registers import load_store
    from pipeline.pool import default_workers

    settings = ws.typed_settings().migration
    regs = load_store(ws, names=["buildings", "premises", "accounts", "meters", "residents"])
    count = regs["accounts"].height if accounts is None else accounts
    size = settings.partition_accounts
    workers = settings.workers or default_workers()
    if workers > 1 and count >= PARALLEL_FROM_ACCOUNTS:
        size = min(size, -(-count // workers))
    if count <= size:
        return None
    cut = plan(regs, size)
    return cut if cut.count > 1 else None


@dataclass(frozen=True)
class History:
    """The migrated months and every history register, typed (see the module's units).

    A register is in ``frames`` (in memory) or, for :data:`MONTHLY` ones, in ``folder``:
    ``folder/<register>/<YYYY-MM>/<part>.parquet``, read a month at a time by :meth:`month`.
    """

    source: str
    months: tuple[str, ...]
    frames: dict[str, pl.DataFrame]
    files_sha256: dict[str, str]
    folder: Path | None = None
    #: the partitions the monthly registers were staged in (:func:`part_file`); None for one
    plan: Plan | None = None
    #: CPU seconds of the processes that read files for it (beside this one's own)
    worker_cpu_seconds: float = 0.0

    def _parts(self, register: str) -> list[Path]:
        if register in self.frames or self.folder is None or not (self.folder / register).is_dir():
            return []
        return sorted((self.folder / register).glob("*/*.parquet"))

    def frame(self, register: str) -> pl.DataFrame:
        """``register``'s frame, empty when the export had none (all months: mind the memory)."""
        parts = self._parts(register)
        if parts:
            return pl.read_parquet(parts).select(list(internal_schema(register)))
        return self.frames.get(register, empty(register))

    def month(self, register: str, month: str, part: int | None = None) -> pl.DataFrame:
        """``register``'s rows of one ``period`` (of partition ``part`` only, when given)."""
        if register in self.frames:
            return self.frames[register].filter(pl.col("period") == month)
        files = "*.parquet" if part is None else f"*-p{part:03d}.parquet"
        parts = sorted((self.folder / register / month).glob(files)) if self.folder is not None else []
        if parts:
            return pl.read_parquet(parts).select(list(internal_schema(register)))
        return empty(register)

    def periods(self, register: str) -> set[str | None]:
        """The ``period`` values ``register`` has rows of (None for rows without one)."""
        if register in self.frames:
            return set(self.frames[register]["period"].unique().to_list())
        return {p.parent.name for p in self._parts(register)}

    def rows(self, register: str) -> int:
        parts = self._parts(register)
        if parts:
            return sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        return self.frames[register].height if register in self.frames else 0

    @property
    def first(self) -> str:
        return self.months[0]

    @property
    def last(self) -> str:
        return self.months[-1]


def migration_store(ws: Workspace) -> Path:
    return ws.store / "migration"


def staging_folder(ws: Workspace) -> Path:
    """Where :func:`pipeline.migrate.history.read_history` writes the monthly registers while
    loading; :func:`save_history` moves them into the store."""
    return migration_store(ws) / ".loading"


def save_history(ws: Workspace, history: History) -> None:
    """Write ``history`` into ``store/migration/`` (the frames first, ``history.json`` last).

    A register in memory becomes ``<register>.parquet``; a monthly one read into
    :func:`staging_folder` is moved there as ``<register>/`` (the previous load's removed).
    """
    folder = migration_store(ws)
    folder.mkdir(parents=True, exist_ok=True)
    for register in HISTORY:
        single, parted = folder / f"{register}.parquet", folder / register
        source = history.folder / register if history.folder is not None else None
        if register not in history.frames and source is not None and source.is_dir() and source != parted:
            single.unlink(missing_ok=True)
            if parted.is_dir():
                shutil.rmtree(parted)
            source.rename(parted)
        elif register in history.frames or source is None or not source.is_dir():
            if parted.is_dir() and source != parted:
                shutil.rmtree(parted)
            write_parquet_atomic(history.frame(register).select(list(internal_schema(register))), single)
    meta = {"source": history.source, "months": list(history.months),
            "files_sha256": dict(sorted(history.files_sha256.items()))}
    atomic_write_bytes(folder / "history.json",
                       json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True).encode())
    if history.folder is not None and history.folder != folder and history.folder.is_dir():
        shutil.rmtree(history.folder)


def load_history(ws: Workspace) -> History | None:
    """The history saved by the last ``billing migrate load``; None when there was none."""
    folder = migration_store(ws)
    meta_path = folder / "history.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    frames = {register: pl.read_parquet(folder / f"{register}.parquet") if (
        folder / f"{register}.parquet").is_file() else empty(register) for register in HISTORY
        if not (folder / register).is_dir()}
    return History(meta.get("source", ""), tuple(meta["months"]), frames, dict(meta.get("files_sha256", {})),
                   folder)
