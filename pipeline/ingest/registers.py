"""``billing ingest``: validate ``registers/`` and load the good rows into the store.

Stage shape: ``check_registers(raw, known_services) -> (frames, rejects)`` is
pure; :func:`ingest` does the I/O around it. The store keeps each accepted
snapshot under ``store/registers/<version>/`` and names the current one in
``store/registers/CURRENT`` (replaced atomically), so a kill never leaves a
half-loaded store and the history of what was known when stays on disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.ingest.parse import empty_rejects, missing_columns, parse_table
from pipeline.ingest.readers import ROW, SUFFIXES, read_table
from pipeline.workspace import (
    BillingError,
    Workspace,
    atomic_write_bytes,
    sha256_file,
    staging_dir,
    write_parquet_atomic,
)
from rules import read_rule_table
from schemas.registers import LOAD_ORDER, REGISTERS, Col, Register


@dataclass(frozen=True)
class IngestResult:
    """What one ingest did: rows loaded and refused per register, where things went."""

    loaded: dict[str, int]
    rejected: dict[str, int]
    version: str | None
    unchanged: bool
    rejects_path: Path | None

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())


def find_register_files(directory: Path) -> dict[str, Path]:
    """Map register names to their files; two files for one register is an error."""
    found: dict[str, Path] = {}
    if not directory.is_dir():
        raise BillingError(f"Нет каталога реестров {directory}")
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in SUFFIXES or path.name.startswith("."):
            continue
        name = path.stem
        if name not in REGISTERS:
            continue
        if name in found:
            raise BillingError(
                f"Реестр {name} задан двумя файлами: {found[name].name} и {path.name}; "
                "оставьте один."
            )
        found[name] = path
    missing = [r.name for r in REGISTERS.values() if r.required_file and r.name not in found]
    if missing:
        raise BillingError(
            f"В {directory} нет обязательных реестров: {', '.join(missing)} "
            "(файлы CSV, XLSX или Parquet с такими именами)"
        )
    return found


def read_registers(files: dict[str, Path]) -> dict[str, pl.DataFrame]:
    """Read every register file as text; a missing required column stops everything."""
    raw: dict[str, pl.DataFrame] = {}
    for name, path in files.items():
        frame = read_table(path)
        missing = missing_columns(frame, REGISTERS[name])
        if missing:
            raise BillingError(
                f"{path.name}: нет обязательных столбцов: {', '.join(missing)}. "
                f"Ожидаются: {', '.join(c.name for c in REGISTERS[name].columns)}"
            )
        raw[name] = frame
    return raw


def _empty(register: Register) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {ROW: pl.Int64()}
    schema.update({c.name: c.dtype for c in register.columns})
    return pl.DataFrame(schema=schema)


def check_registers(
    raw: dict[str, pl.DataFrame], file_names: dict[str, str], known: dict[str, set[str]]
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """Parse, value-check and cross-check all registers.

    ``known`` holds keys that live outside the registers (``services`` from the
    rules). References are checked in :data:`LOAD_ORDER` against the rows
    already accepted, so a row whose parent was refused is refused too, with a
    reason that says so.
    """
    frames: dict[str, pl.DataFrame] = {}
    rejects = [empty_rejects()]
    keys: dict[tuple[str, str], pl.Series] = {
        (name, col): pl.Series(sorted(values), dtype=pl.String)
        for name, values in known.items()
        for col in ("service_id",)
    }
    for name in LOAD_ORDER:
        register = REGISTERS[name]
        if name not in raw:
            frames[name] = _empty(register)
            continue
        good, bad = parse_table(raw[name], register, file_names[name])
        rejects.append(bad)
        for ref in register.refs:
            target = keys.get((ref.target, ref.target_column))
            if target is None:
                target = frames[ref.target][ref.target_column]
            orphan = good.filter(
                pl.col(ref.column).is_not_null() & ~pl.col(ref.column).is_in(target.implode())
            )
            if orphan.height:
                target_title = REGISTERS[ref.target].title if ref.target in REGISTERS else ref.target
                rejects.append(orphan.select(
                    pl.lit(file_names[name]).alias("file"),
                    pl.col(ROW).alias("row"),
                    pl.lit(ref.column).alias("column"),
                    pl.col(ref.column).alias("value"),
                    pl.lit(f"нет такой записи в реестре «{target_title}» ({ref.target}): "
                           "её нет в файле или она отклонена").alias("reason"),
                ))
                good = good.filter(~pl.col(ROW).is_in(orphan[ROW].implode()))
        frames[name] = good
    all_rejects = pl.concat(rejects).sort("file", "row", "column")
    return frames, all_rejects


def _snapshot_id(files: dict[str, Path], rules_hash: str) -> str:
    return json.dumps(
        {"files": {n: sha256_file(p) for n, p in sorted(files.items())}, "rules": rules_hash},
        sort_keys=True,
    )


def current_version(ws: Workspace) -> str | None:
    pointer = ws.store / "registers" / "CURRENT"
    return pointer.read_text().strip() if pointer.is_file() else None


def ingest(ws: Workspace) -> IngestResult:
    """Load ``registers/`` into the store; write a reject report when anything was refused."""
    files = find_register_files(ws.registers)
    services = read_rule_table(ws.rules, "services")
    snapshot = _snapshot_id(files, sha256_file(ws.rules / "services.csv"))
    version = current_version(ws)
    if version:
        meta = json.loads((ws.store / "registers" / version / "ingest.json").read_text())
        if meta.get("snapshot") == snapshot:
            return IngestResult(meta["loaded"], meta["rejected"], version, True, None)

    raw = read_registers(files)
    names = {n: p.name for n, p in files.items()}
    frames, rejects = check_registers(raw, names, {"services": set(services["service_id"])})
    loaded = {n: f.height for n, f in frames.items()}
    rejected = {
        names[n]: int(rejects.filter(pl.col("file") == names[n])["row"].n_unique())
        for n in files
    }
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
    rejects_path = None
    if rejects.height:
        rejects_path = ws.rejects / f"ingest-{stamp}.csv"
        write_rejects(rejects, rejects_path)

    new_version = f"v{stamp}"
    with staging_dir(ws.store / "registers" / new_version) as tmp:
        for name, frame in frames.items():
            write_parquet_atomic(frame, tmp / f"{name}.parquet")
        meta = {"snapshot": snapshot, "loaded": loaded, "rejected": rejected,
                "files": {n: str(p) for n, p in files.items()}}
        atomic_write_bytes(tmp / "ingest.json", json.dumps(meta, ensure_ascii=False).encode())
    atomic_write_bytes(ws.store / "registers" / "CURRENT", new_version.encode())
    return IngestResult(loaded, rejected, new_version, False, rejects_path)


def write_rejects(rejects: pl.DataFrame, path: Path) -> None:
    """A reject report as CSV that Excel opens with Cyrillic intact (UTF-8 with BOM)."""
    body = rejects.write_csv(separator=";")
    atomic_write_bytes(path, b"\xef\xbb\xbf" + body.encode())


def _default(col: Col) -> pl.Expr:
    if col.default is None:
        return pl.lit(None, col.dtype)
    if col.kind == "bool":
        return pl.lit(col.default.lower() in ("true", "1", "да"))
    return pl.lit(col.default).cast(col.dtype)


def load_store(ws: Workspace, version: str | None = None) -> dict[str, pl.DataFrame]:
    """A register snapshot from the store: ``version`` or the current one."""
    version = version or current_version(ws)
    if version is None:
        raise BillingError("Хранилище пусто: сначала выполните «billing ingest».")
    base = ws.store / "registers" / version
    frames = {}
    for name, register in REGISTERS.items():
        path = base / f"{name}.parquet"
        # A snapshot taken by an older version may lack a newer register or column.
        frame = pl.read_parquet(path) if path.is_file() else _empty(register)
        missing = [c for c in register.columns if c.name not in frame.columns]
        frames[name] = frame.with_columns(_default(c).alias(c.name) for c in missing)
    return frames
