"""Reading the old system's export (``HOME/migration/``) into :class:`~pipeline.migrate.model.History`.

One file per history register (``schemas.history.HISTORY``), named after it (``.csv``,
``.xlsx`` or ``.parquet``), and ``mapping.toml`` that turns the old system's column names
and codes into ours (docs/migration.md). Each file goes the way of every register: read as
text (:func:`pipeline.ingest.readers.read_table`), columns renamed and codes mapped by the
mapping, parsed and value-checked (:func:`pipeline.ingest.parse.parse_table`), then the
checks of a history: months ``YYYY-MM``, references to the store's registers and the
services of the rules, months inside the migrated ones. Every refused cell is a reject row
(file, row, column as the file names it, value, reason in Russian); the good rows are kept.
Money and volumes leave here as the engine's integers (``amount`` → ``amount_kop``, …:
:data:`pipeline.migrate.model.SCALED`), exactly, never through a float.
"""

from __future__ import annotations

import shutil
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline.ingest.parse import REJECT_SCHEMA, duplicate_key_rejects, empty_rejects, parse_table
from pipeline.ingest.readers import FORMULA_CELLS, ROW, SUFFIXES, in_pieces, iter_table, read_table
from pipeline.migrate.model import (
    MONTHLY,
    SCALED,
    History,
    empty,
    internal_schema,
    migration_plan,
    part_file,
    part_key,
    staging_folder,
)
from pipeline.workspace import BillingError, Workspace, sha256_file, write_parquet_atomic
from schemas.history import HISTORY, PENALTY_SERVICE
from schemas.registers import Register

if TYPE_CHECKING:
    from pipeline.close.cut import Plan

MAPPING_FILE = "mapping.toml"
#: Columns holding a month ``YYYY-MM``.
PERIOD_COLUMNS = ("period", "origin_period", "charge_period")
#: A real month: a year of this era and a month 01–12.
MONTH_PATTERN = r"^(19|20)\d{2}-(0[1-9]|1[0-2])$"
_MONTH_REASON = "не месяц в виде ГГГГ-ММ (год и месяц 01–12, например 2026-03)"
_ENCODINGS = ("utf-8", "utf8", "cp1251", "windows-1251")
#: Hidden column keeping a code as the file had it (before the mapping), for the reject report.
_ORIGINAL = "__file_"


@dataclass(frozen=True)
class Mapping:
    """``mapping.toml``: the old system's names for our columns and codes.

    Attributes:
        source: ``[source] system``, the old system's name ("" when not given).
        decimal: ``[source] decimal`` of the CSV files ("," or "."); None — either.
        encoding: ``[source] encoding`` as written (the readers tell UTF-8 from cp1251 themselves).
        columns: register → our column → the old system's column.
        codes: our column → the old system's code → our code.
        file: the mapping's file name, for messages.
    """

    source: str = ""
    decimal: str | None = None
    encoding: str | None = None
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    file: str = MAPPING_FILE

    def renames(self, register: str) -> dict[str, str]:
        """The old system's column → ours, for ``register``."""
        return {their: our for our, their in self.columns.get(register, {}).items()}


def _mapping_error(path: Path, key: str, text: str) -> BillingError:
    return BillingError(f"{path.name}: ключ {key}: {text}")


def read_mapping(path: Path) -> Mapping:
    """Read and check ``mapping.toml``; any mistake is a :class:`BillingError` naming the file and key."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise BillingError(f"{path}: файл сопоставления не найден") from None
    except tomllib.TOMLDecodeError as err:
        raise BillingError(f"{path.name}: файл сопоставления не читается: {err}") from err
    except UnicodeDecodeError as err:  # tomllib wants UTF-8
        raise BillingError(f"{path.name}: файл сопоставления не в кодировке UTF-8: {err}") from err
    for key in data:
        if key not in ("source", "columns", "codes"):
            raise _mapping_error(path, key, "неизвестный раздел; допустимы [source], [columns.<реестр>], "
                                            "[codes.<столбец>]")
    source = _table(path, "source", data.get("source", {}))
    for key in source:
        if key not in ("system", "decimal", "encoding"):
            raise _mapping_error(path, f"source.{key}",
                                 "неизвестный ключ; допустимы system, decimal, encoding")
    system = source.get("system", "")
    if not isinstance(system, str):
        raise _mapping_error(path, "source.system", "нужна строка — название прежней системы")
    decimal = source.get("decimal")
    if decimal is not None and decimal not in (",", "."):
        raise _mapping_error(path, "source.decimal",
                             f"разделитель дробной части — \",\" или \".\", а не {decimal!r}")
    encoding = source.get("encoding")
    if encoding is not None and (not isinstance(encoding, str) or encoding.lower() not in _ENCODINGS):
        raise _mapping_error(path, "source.encoding", f"кодировка — utf-8 или cp1251, а не {encoding!r}")
    columns = {register: _columns(path, register, table)
               for register, table in _table(path, "columns", data.get("columns", {})).items()}
    codes = {column: _codes(path, column, table)
             for column, table in _table(path, "codes", data.get("codes", {})).items()}
    return Mapping(system, decimal, encoding, columns, codes, path.name)


def _table(path: Path, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _mapping_error(path, key, "нужен раздел (таблица TOML), а не значение")
    return value


def _columns(path: Path, register: str, table: Any) -> dict[str, str]:
    key = f"columns.{register}"
    if register not in HISTORY:
        raise _mapping_error(path, key, f"нет такого реестра истории; реестры: {', '.join(HISTORY)}")
    ours = [c.name for c in HISTORY[register].columns]
    seen: dict[str, str] = {}
    for our, their in _table(path, key, table).items():
        if our not in ours:
            raise _mapping_error(path, f"{key}.{our}", f"в реестре {register} нет такого столбца; "
                                                      f"столбцы: {', '.join(ours)}")
        if not isinstance(their, str) or not their.strip():
            raise _mapping_error(path, f"{key}.{our}", "нужно название столбца прежней системы (строка)")
        their = their.strip()
        if their in seen:
            raise _mapping_error(path, f"{key}.{our}", f"столбец «{their}» уже сопоставлен столбцу "
                                                      f"{seen[their]}; у каждого столбца — свой")
        seen[their] = our
    return {our: their for their, our in seen.items()}


def _code_columns() -> set[str]:
    return {c.name for r in HISTORY.values() for c in r.columns
            if c.kind in ("id", "text", "enum") and c.name not in PERIOD_COLUMNS}


def _codes(path: Path, column: str, table: Any) -> dict[str, str]:
    key = f"codes.{column}"
    allowed = _code_columns()
    if column not in allowed:
        raise _mapping_error(path, key,
                             f"коды сопоставляются только в столбцах: {', '.join(sorted(allowed))}")
    out: dict[str, str] = {}
    for our, theirs in _table(path, key, table).items():
        values = [theirs] if isinstance(theirs, str) else theirs
        if not isinstance(values, list) or not values or not all(
                isinstance(v, str) and v.strip() for v in values):
            raise _mapping_error(path, f"{key}.{our}", "нужен список кодов прежней системы, например "
                                                      f'{our} = ["ХВС"]')
        for their in (v.strip() for v in values):
            if out.get(their, our) != our:
                raise _mapping_error(path, f"{key}.{our}",
                                     f"код «{their}» уже сопоставлен коду {out[their]}; "
                                     "один код прежней системы — один наш")
            out[their] = our
    return out


def _mapping_path(ws: Workspace, directory: Path | None = None) -> Path | None:
    """The mapping beside the export (``directory``), else the workspace's; None when there is none."""
    for folder in (directory, ws.home / "migration"):
        if folder is not None and (folder / MAPPING_FILE).is_file():
            return folder / MAPPING_FILE
    return None


def _workspace_mapping(ws: Workspace, directory: Path | None = None) -> Mapping:
    """:func:`_mapping_path`'s mapping; without one the files use our names and codes."""
    path = _mapping_path(ws, directory)
    return read_mapping(path) if path is not None else Mapping()


# --- one file -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    """One export file, parsed: the good rows (typed, with ``source_row``) and the rejects."""

    good: pl.DataFrame
    rejects: pl.DataFrame
    #: our column → the file's column (for the reject report)
    back: dict[str, str]


def _frame_text(raw: pl.DataFrame, register: Register, mapping: Mapping, path: Path) -> tuple[
        pl.DataFrame, dict[str, str]]:
    """Rename the file's columns to ours; a required column missing, or named twice, stops."""
    renames = {their: our for their, our in mapping.renames(register.name).items() if their in raw.columns}
    final = [renames.get(c, c) for c in raw.columns]
    twice = sorted({c for c in final if final.count(c) > 1})
    if twice:
        names = ", ".join(
            f"{c} (в файле: {', '.join(f'«{o}»' for o in raw.columns if renames.get(o, o) == c)})"
            for c in twice)
        raise BillingError(f"{path.name}: столбец задан дважды: {names}; оставьте один "
                           f"(сопоставление столбцов — {mapping.file} [columns.{register.name}])")
    frame = raw.rename(renames)
    if FORMULA_CELLS in frame.columns and renames:  # XLSX formulas without a value name their cell's column
        cell = pl.element().struct
        frame = frame.with_columns(pl.col(FORMULA_CELLS).list.eval(
            pl.struct(cell.field("column").replace(renames), cell.field("value"))))
    back = {our: their for their, our in renames.items()}
    theirs = mapping.columns.get(register.name, {})
    missing = [c.name for c in register.columns if c.required and c.name not in frame.columns]
    if missing:
        shown = ", ".join(f"«{theirs[c]}» ({c})" if c in theirs else c for c in missing)
        raise BillingError(f"{path.name}: нет обязательных столбцов: {shown}. Ожидаются: "
                           f"{', '.join(c.name for c in register.columns)} или их названия в прежней "
                           f"системе в {mapping.file} [columns.{register.name}]")
    return frame, back


def _numbers(frame: pl.DataFrame, register: Register, mapping: Mapping, path: Path, file: str) -> tuple[
        pl.DataFrame, pl.DataFrame]:
    """Decimal columns' text made parseable: group separators removed; in a CSV with ``[source] decimal``,
    the other separator refused (12.50 where the decimal mark is a comma is not guessed)."""
    problems = [empty_rejects()]
    csv = path.suffix.lower() == ".csv"
    for col in register.columns:
        if col.kind != "decimal" or col.name not in frame.columns:
            continue
        text = pl.col(col.name)
        grouped = text.str.contains(r"^[+-]?\d{1,3}([ \u00a0\u202f']\d{3})+([.,]\d+)?$")
        text = pl.when(grouped).then(text.str.replace_all(r"[ \u00a0\u202f']", "")).otherwise(text)
        if csv and mapping.decimal is not None:
            mark, other = mapping.decimal, "." if mapping.decimal == "," else ","
            # 1.234,56 (decimal comma) or 1,234.56 (decimal point): the other mark groups thousands.
            thousands = text.str.contains(rf"^[+-]?\d{{1,3}}(\{other}\d{{3}})+\{mark}\d+$")
            text = pl.when(thousands).then(text.str.replace_all(rf"\{other}", "")).otherwise(text)
            frame = frame.with_columns(text.alias(col.name))
            bad = frame.filter(pl.col(col.name).str.contains(other, literal=True))
            if bad.height:
                said = "запятая" if mark == "," else "точка"
                problems.append(bad.select(
                    pl.lit(file).alias("file"), pl.col(ROW).alias("row"), pl.lit(col.name).alias("column"),
                    pl.col(col.name).alias("value"),
                    pl.lit(f"«{other}» в числе, а разделитель дробной части по {mapping.file} — {said} "
                           f"([source] decimal = \"{mark}\")").alias("reason")))
        else:
            frame = frame.with_columns(text.alias(col.name))
    return frame, pl.concat(problems)


def _months_text(frame: pl.DataFrame, register: Register) -> pl.DataFrame:
    """``MM.YYYY`` (as many old systems write a month) becomes ``YYYY-MM``; other text stays for the check."""
    cols = [c.name for c in register.columns if c.name in PERIOD_COLUMNS and c.name in frame.columns]
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(r"^\d{2}\.\d{4}$"))
        .then(pl.col(c).str.slice(3, 4) + "-" + pl.col(c).str.slice(0, 2))
        .otherwise(pl.col(c)).alias(c) for c in cols)


def _map_codes(frame: pl.DataFrame, mapping: Mapping) -> pl.DataFrame:
    """Codes of the old system → ours (an unmapped code stays); the file's code is kept aside."""
    cols = [c for c in mapping.codes if c in frame.columns]
    return frame.with_columns(
        *[pl.col(c).alias(_ORIGINAL + c) for c in cols],
        *[pl.col(c).replace(mapping.codes[c]).alias(c) for c in cols])


def _reject(rows: pl.DataFrame, file: str, column: str, reason: str | pl.Expr) -> pl.DataFrame:
    original = _ORIGINAL + column
    value = pl.col(original) if original in rows.columns else pl.col(column).cast(pl.String)
    text = reason if isinstance(reason, pl.Expr) else pl.lit(reason)
    return rows.select(pl.lit(file).alias("file"), pl.col(ROW).alias("row"), pl.lit(column).alias("column"),
                       value.alias("value"), text.cast(pl.String).alias("reason"))


def _drop_rejected(good: pl.DataFrame, found: list[pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rejects = pl.concat([empty_rejects(), *found])
    return good.filter(~pl.col(ROW).is_in(rejects["row"].unique().implode())), rejects


@dataclass(frozen=True)
class _Known:
    """What history rows may refer to: the store's registers and the rules' services."""

    accounts: pl.Series
    suppliers: pl.Series
    meters: pl.Series
    services: pl.Series

    @staticmethod
    def of(ws: Workspace) -> _Known:
        from pipeline.ingest.registers import load_store
        from rules import read_rule_table

        store = load_store(ws, names=["accounts", "organizations", "meters"])
        services = read_rule_table(ws.rules, "services")["service_id"]
        return _Known(store["accounts"]["account_id"], store["organizations"]["org_id"],
                      store["meters"]["meter_id"], services)


def _checks(good: pl.DataFrame, register: Register, known: _Known, file: str, mapping: Mapping) -> tuple[
        pl.DataFrame, pl.DataFrame]:
    """Months ``YYYY-MM`` and references; each failure refuses its row."""
    found: list[pl.DataFrame] = []
    names = {c.name for c in register.columns}
    for column in PERIOD_COLUMNS:
        if column in names:
            bad = good.filter(pl.col(column).is_not_null() & ~pl.col(column).str.contains(MONTH_PATTERN))
            found.append(_reject(bad, file, column, _MONTH_REASON))
    with_penalty = pl.concat([known.services, pl.Series([PENALTY_SERVICE])])
    # Recalculations name a service of the rules; elsewhere the old system's penalty (пени) is a service too.
    service_ref = any(ref.target == "services" for ref in register.refs)
    targets = {
        "account_id": (known.accounts, "нет такого лицевого счёта в реестре «Лицевые счета» (accounts): "
                                        "загрузите реестры (billing ingest) или исправьте код"),
        "supplier_id": (known.suppliers, "нет такой организации в реестре «Организации» (organizations)"),
        "meter_id": (known.meters, "нет такого прибора учёта в реестре «Приборы учёта» (meters)"),
        "service_id": (known.services if service_ref else with_penalty,
                       "нет такой услуги в rules/services.csv"
                       + ("" if service_ref else f" (пени прежней системы — услуга {PENALTY_SERVICE})")),
    }
    for column, (values, reason) in targets.items():
        if column not in names:
            continue
        bad = good.filter(pl.col(column).is_not_null() & ~pl.col(column).is_in(values.implode()))
        if not bad.height:
            continue
        original = _ORIGINAL + column
        text: str | pl.Expr = reason
        if original in bad.columns:  # say what the mapping made of the file's code
            text = pl.when(pl.col(original) != pl.col(column)).then(
                pl.lit(f"{reason}; по {mapping.file} [codes.{column}] это код ") + pl.col(column)
            ).otherwise(pl.lit(reason))
        found.append(_reject(bad, file, column, text))
    return _drop_rejected(good, found)


def _payment_checks(good: pl.DataFrame, file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Booked month defaults to the month of payment; parts of a split payment are coherent."""
    good = good.with_columns(pl.col("period").fill_null(pl.col("paid_on").dt.strftime("%Y-%m")))
    payment = ["agent", "payment_id"]
    parts = pl.len().over(payment) > 1
    found = [
        _reject(good.filter(parts & pl.col("service_id").is_null()), file, "service_id",
                "платёж в нескольких строках (тот же агент и номер платежа): у каждой части должна быть "
                "услуга — иначе это повтор платежа"),
        _reject(good.filter(parts & ((pl.col("account_id").n_unique().over(payment) > 1)
                                     | (pl.col("paid_on").n_unique().over(payment) > 1))), file, "account_id",
                "части одного платежа (тот же агент и номер) с разными лицевыми счетами или датами оплаты"),
        _reject(good.filter(pl.col("service_id").is_not_null() & pl.col("supplier_id").is_null()), file,
                "supplier_id", "у части платежа с услугой должен быть поставщик"),
    ]
    return _drop_rejected(good, found)


def _read_piece(raw: pl.DataFrame, path: Path, register: Register, mapping: Mapping, known: _Known) -> _Read:
    """One piece of a file (all of it, or a part of a large CSV): renamed, parsed and checked.

    The key check of the register waits for the whole file (:func:`_unique_keys`); here
    only the cells and the references are checked."""
    file = path.name
    text, back = _frame_text(raw, register, mapping, path)
    text, number_rejects = _numbers(text, register, mapping, path, file)
    text = _map_codes(_months_text(text, register), mapping)
    good, rejects = parse_table(text, replace(register, key=()), file)
    good, more = _checks(good, register, known, file, mapping)
    good, rejects = _drop_rejected(good, [rejects, number_rejects, more])
    return _Read(good, rejects, back)


def _unique_keys(item: _Read, register: Register, file: str) -> _Read:
    """Rows of ``item`` sharing a key refused (all of them, as :func:`parse_table` does)."""
    dup = duplicate_key_rejects(item.good, register, file)
    return _Read(*_drop_rejected(item.good, [item.rejects, dup]), item.back)


def _read_file(path: Path, register: Register, mapping: Mapping, known: _Known) -> _Read:
    """A whole file, checked as a register (its payment checks too)."""
    item = _unique_keys(_read_piece(read_table(path), path, register, mapping, known), register, path.name)
    if register.name == "history_payments":
        good, paid = _payment_checks(item.good, path.name)
        item = _Read(*_drop_rejected(good, [item.rejects, paid]), item.back)
    return item


def _internal(good: pl.DataFrame, register: str) -> pl.DataFrame:
    """The typed rows in the engine's integers, exactly the columns of :func:`internal_schema`."""
    out = []
    for col in HISTORY[register].columns:
        if col.name in SCALED:
            internal, scale = SCALED[col.name]
            exact = pl.col(col.name).cast(pl.Decimal(38, scale)) * 10 ** scale
            out.append(exact.cast(pl.Int64).alias(internal))
        else:
            out.append(pl.col(col.name))
    return good.select(out).cast(dict(internal_schema(register)))  # type: ignore[arg-type]


def _report(rejects: pl.DataFrame, back: dict[str, str]) -> pl.DataFrame:
    """Reject rows naming the columns as the file names them."""
    if back and rejects.height:
        rejects = rejects.with_columns(pl.col("column").replace(back))
    return rejects.select(list(REJECT_SCHEMA)).cast(dict(REJECT_SCHEMA))  # type: ignore[arg-type]


# --- the whole export ----------------------------------------------------------------------------


def find_history_files(directory: Path) -> dict[str, Path]:
    """The export's files by register; a register given twice or a required one missing stops."""
    if not directory.is_dir():
        raise BillingError(f"Нет каталога выгрузки прежней системы {directory}: положите в него файлы "
                           f"{', '.join(HISTORY)} и {MAPPING_FILE} (docs/migration.md)")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in SUFFIXES:
            continue
        if path.stem in HISTORY:
            if path.stem in found:
                raise BillingError(f"Реестр {path.stem} задан двумя файлами: {found[path.stem].name} и "
                                   f"{path.name}; оставьте один.")
            found[path.stem] = path
    missing = [r.name for r in HISTORY.values() if r.required_file and r.name not in found]
    if missing:
        raise BillingError(f"В {directory} нет обязательных файлов истории: {', '.join(missing)} "
                           "(CSV, XLSX или Parquet с такими именами)")
    return found


def _missing_months(months: list[str]) -> list[str]:
    first, last = months[0], months[-1]
    year, month = int(first[:4]), int(first[5:])
    have, gap = set(months), []
    while f"{year:04d}-{month:02d}" < last:
        if f"{year:04d}-{month:02d}" not in have:
            gap.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return gap


def _fail(ws: Workspace, message: str, rejects: pl.DataFrame) -> BillingError:
    """A refusal of the whole load; the rows refused so far go to a report it names."""
    path = write_history_rejects(ws, rejects)
    return BillingError(message + (f"\nОтчёт об отклонённых строках: {path}" if path else ""))


def read_history(ws: Workspace, directory: Path | None = None) -> tuple[History, pl.DataFrame]:
    """Read, map and check the export in ``directory`` (default ``HOME/migration``).

    The mapping is ``directory/mapping.toml``, else the workspace's ``migration/mapping.toml``,
    else none (the files use our column names). Returns the history (every register, an
    absent optional file empty) and the rejects (:data:`REJECT_SCHEMA`). Refused as a whole
    (:class:`BillingError`): a required file missing or without an accepted row, a gap in
    the months of ``history_charges`` (naming the missing months).

    A large CSV is read in pieces (:func:`pipeline.ingest.readers.iter_table`); the
    :data:`~pipeline.migrate.model.MONTHLY` registers go to
    :func:`~pipeline.migrate.model.staging_folder` month by month (the key check of a
    month over all its pieces), so memory holds a piece and a month, never the whole
    export. :func:`~pipeline.migrate.model.save_history` moves them into the store.
    """
    directory = directory or ws.home / "migration"
    files = find_history_files(directory)
    mapping_path = _mapping_path(ws, directory)
    mapping = read_mapping(mapping_path) if mapping_path is not None else Mapping()
    known = _Known.of(ws)
    plan = migration_plan(ws, known.accounts.len())
    hashed = [*files.values(), *([mapping_path] if mapping_path is not None else [])]
    # The files' SHA-256 in a thread while they are read (hashlib lets go of the GIL): 40 GB
    # of a million accounts' export hash in half a minute.
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrate-sha256")
    digests = hasher.map(sha256_file, hashed)
    hasher.shutdown(wait=False)
    staging = staging_folder(ws)
    if staging.exists():
        shutil.rmtree(staging)
    found: list[pl.DataFrame] = [empty_rejects()]

    def all_rejects() -> pl.DataFrame:
        return pl.concat(found).sort("file", "row", "column")

    def fail(message: str) -> BillingError:
        shutil.rmtree(staging, ignore_errors=True)
        return _fail(ws, message, all_rejects())

    try:
        charges = files["history_charges"].name
        beside = {name: files[name] for name in _BESIDE_CHARGES if name in files and _csv(files[name])}
        if (read_workers(ws) < 2 or not beside or not _csv(files["history_charges"])
                or sum(p.stat().st_size for p in [files["history_charges"], *beside.values()])
                <= PARALLEL_READ_BYTES):
            beside = {}
        worker_cpu: list[float] = []
        backs = _stage_beside(files["history_charges"], beside, mapping, known, staging, plan, found,
                              worker_cpu)
        months = sorted(p.name for p in (staging / "history_charges").iterdir()) if (
            staging / "history_charges").is_dir() else []
        if not months:
            raise fail(f"{charges}: нет ни одной принятой строки начислений — перенести нечего")
        gap = _missing_months(months)
        if gap:
            raise fail(f"{charges}: месяцы истории идут с пропуском — нет начислений за {', '.join(gap)} "
                       f"(переносятся все месяцы с {months[0]} по {months[-1]} подряд; если строки этих "
                       "месяцев отклонены, они в отчёте)")
        for name, back in backs.items():
            found.append(_out_of_months(staging / name, months, files[name].name, back))
        frames: dict[str, pl.DataFrame] = {}
        for name, path in files.items():
            if name == "history_charges" or name in beside:
                continue
            kept, _ = _stage(path, HISTORY[name], mapping, known, staging, months, found, plan)
            if kept is not None:
                frames[name] = kept
        for name in HISTORY:
            if name not in frames and not (staging / name).is_dir():
                frames[name] = empty(name)
        if not (staging / "history_balances").is_dir():
            raise fail(f"{files['history_balances'].name}: нет ни одной принятой строки сальдо — "
                       "сверять не с чем")
    except BaseException:
        hasher.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(staging, ignore_errors=True)  # nothing of a refused load stays behind
        raise
    sha = {(MAPPING_FILE if path == mapping_path else path.name): digest
           for path, digest in zip(hashed, digests, strict=True)}
    return History(mapping.source, tuple(months), frames, sha, staging, plan, sum(worker_cpu)), all_rejects()


def _csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _stage_beside(charges: Path, beside: dict[str, Path], mapping: Mapping, known: _Known, staging: Path,
                  plan: Plan | None, found: list[pl.DataFrame], cpu_seconds: list[float]
                  ) -> dict[str, dict[str, str]]:
    """The charges staged, and the ``beside`` files at the same time, each in a process of its
    own; their rejects appended to ``found``, the processes' CPU seconds to ``cpu_seconds``.
    Returns, for each of ``beside``, our column → the file's (its months are checked after)."""
    from pipeline.pool import worker_pool

    if not beside:
        _stage(charges, HISTORY["history_charges"], mapping, known, staging, None, found, plan)
        return {}
    backs: dict[str, dict[str, str]] = {}
    with worker_pool(2, threads=2) as pool:
        assert pool is not None
        jobs = {name: pool.submit(_stage_job, path, name, mapping, known, staging, plan)
                for name, path in [("history_charges", charges), *beside.items()]}
        for name, job in jobs.items():
            rejects, back, cpu = job.result()
            found.extend(rejects)
            cpu_seconds.append(cpu)
            if name != "history_charges":
                backs[name] = back
    return backs


def _stage(path: Path, register: Register, mapping: Mapping, known: _Known, staging: Path,
           months: list[str] | None, found: list[pl.DataFrame], plan: Plan | None = None
           ) -> tuple[pl.DataFrame | None, dict[str, str]]:
    """Read one export file piece by piece; its rejects appended to ``found`` (named as the file
    names its columns). A :data:`MONTHLY` register is written to
    ``staging/<register>/<month>/<piece>.parquet`` (None returned), any other returned; with a
    ``plan`` of partitions, a piece's rows of each partition to their own file
    (:func:`~pipeline.migrate.model.part_file`). ``months``: the migrated months (None for the
    charges, which define them, and for the balances read beside them: :func:`_out_of_months`).
    Also returned: our column → the file's (for its rejects).

    Memory holds a piece and its months, whatever the file's size: the hashes of a monthly
    register's keys wait on disk (``staging/.keys/``) and are compared a month at a time at the
    end; a payments file larger than a piece is checked in :data:`PAYMENT_BUCKETS` buckets of
    whole payments (``staging/.spill/``), every part of a payment in one bucket."""
    file = path.name
    monthly = register.name in MONTHLY
    pieces: list[pl.DataFrame] = []
    payments = register.name == "history_payments"  # checked by whole payments: parts of a payment
    back: dict[str, str] = {}
    folder = staging / register.name
    keys = staging / _KEYS / register.name  # <month>/<piece>.parquet: (source_row, hash of the key)
    spill = staging / _SPILL / register.name  # <bucket>/<piece>.parquet: the checked rows of payments
    buckets = PAYMENT_BUCKETS if payments and in_pieces(path) else 1
    key = list(register.key)
    parts = plan.count if plan is not None else 1
    # Three things at once (Polars releases the GIL): the next piece is read in one thread and
    # this piece's months written in another while this one is checked.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrate-stage") as writer:
        writing: list[Future[None]] = []
        for index, raw in enumerate(_ahead(iter_table(path))):
            item = _read_piece(raw, path, register, mapping, known)
            del raw
            good, rejects, back = item.good, [item.rejects], item.back
            if months is not None and not payments:
                good, more = _month_range(good, register, months, file)
                rejects.append(more)
            found.append(_report(pl.concat(rejects), back))
            for future in writing:  # the previous piece written: memory holds one piece's months
                future.result()
            writing = []
            if monthly and not payments:
                # Each piece's rows of a month are a part of that month, written once; the key
                # check over all pieces waits for the last one, on hashes of the keys.
                spilled = _internal(good, register.name).with_columns(good.get_column(ROW))
                del good, item
                by_month = _by_month(spilled, plan, register.name)
                del spilled
                hashed: dict[str, list[pl.DataFrame]] = {}
                for (month, part), rows in by_month.items():
                    writing.append(writer.submit(write_parquet_atomic, rows,
                                                 folder / month / part_file(index, part, parts)))
                    hashed.setdefault(month, []).append(rows.select(ROW, pl.struct(key).hash().alias("_h")))
                writing += [writer.submit(_scratch, pl.concat(frames), keys / month / f"{index:05d}.parquet")
                            for month, frames in hashed.items()]
                del by_month, hashed
            elif buckets > 1:
                bucket = (pl.struct("agent", "payment_id").hash() % buckets).alias("_bucket")
                by_bucket = good.with_columns(bucket).partition_by("_bucket", as_dict=True)
                writing += [writer.submit(_scratch, rows.drop("_bucket"),
                                          spill / f"{b:03d}" / f"{index:05d}.parquet")
                            for (b,), rows in by_bucket.items()]
                del by_bucket, good, item
            else:
                pieces.append(good)
        for future in writing:
            future.result()
    if payments:
        return _stage_payments(pieces, spill, buckets, register, file, back, folder, months or [], plan,
                               found), back
    if not monthly:
        if not pieces:
            return empty(register.name), back
        item = _unique_keys(_Read(pl.concat(pieces), empty_rejects(), back), register, file)
        found.append(_report(item.rejects, back))
        return _internal(item.good, register.name), back
    for month_keys in sorted(keys.iterdir()) if keys.is_dir() else []:
        rows = pl.read_parquet(sorted(month_keys.glob("*.parquet")))
        suspects = rows.filter(pl.col("_h").is_duplicated())[ROW]
        del rows
        if suspects.len():  # rows sharing a key hash: compared exactly, refused if their keys are equal
            _refuse_repeated_keys(folder / month_keys.name, suspects, register, file, back, found)
    _remove_scratch(keys)
    return None, back


#: Buckets a payments file larger than a piece is checked in (:func:`_stage`).
PAYMENT_BUCKETS = 16
#: Scratch folders of :func:`_stage` inside the staging folder (removed once used).
_KEYS, _SPILL = ".keys", ".spill"


def _scratch(frame: pl.DataFrame, path: Path) -> None:
    """A scratch file of the staging (read once and removed): quick to write, not kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, compression="lz4", statistics=False)


def _remove_scratch(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if folder.parent.is_dir() and not any(folder.parent.iterdir()):
        folder.parent.rmdir()


def _stage_payments(pieces: list[pl.DataFrame], spill: Path, buckets: int, register: Register, file: str,
                    back: dict[str, str], folder: Path, months: list[str], plan: Plan | None,
                    found: list[pl.DataFrame]) -> pl.DataFrame | None:
    """The payments' checks over whole payments (the key, the parts of a split payment, the
    months), a bucket at a time: ``pieces`` (one bucket), or the ``buckets`` spilled to
    ``spill``; the checked rows staged by month and partition. An empty frame when no row
    was accepted (None once staged)."""
    parts = plan.count if plan is not None else 1
    staged = False
    for bucket in range(buckets):
        if buckets > 1:
            paths = sorted((spill / f"{bucket:03d}").glob("*.parquet"))
            pieces = [pl.read_parquet(paths)] if paths else []
        if not pieces:
            continue
        item = _unique_keys(_Read(pl.concat(pieces), empty_rejects(), back), register, file)
        pieces = []
        good, paid = _payment_checks(item.good, file)
        good, more = _month_range(good, register, months, file)
        found.append(_report(pl.concat([item.rejects, paid, more]), back))
        for (month, part), rows in _by_month(_internal(good, register.name), plan, register.name).items():
            write_parquet_atomic(rows, folder / month / part_file(bucket, part, parts))
            staged = True
    _remove_scratch(spill)
    return None if staged else empty(register.name)


#: The charges and balances files are read at once, each in a process of its own, when they
#: hold together more than this many bytes and ``[migration] workers`` allows two processes
#: (below, starting a process costs more than it saves).
PARALLEL_READ_BYTES = 64 << 20

#: The registers read beside the charges; their months are checked once the charges'
#: months are known (:func:`_out_of_months`).
_BESIDE_CHARGES = ("history_balances",)


def read_workers(ws: Workspace) -> int:
    """The processes the export is read in: ``[migration] workers`` (0 — the cores), at most 2."""
    from pipeline.pool import default_workers

    return min(2, ws.typed_settings().migration.workers or default_workers())


def _stage_job(path: Path, name: str, mapping: Mapping, known: _Known, staging: Path, plan: Plan | None
               ) -> tuple[list[pl.DataFrame], dict[str, str], float]:
    """:func:`_stage` of one monthly file without its months (a task of a process pool): its
    rejects, our column → the file's, and the CPU seconds of the process."""
    started = time.process_time()
    found: list[pl.DataFrame] = []
    _, back = _stage(path, HISTORY[name], mapping, known, staging, None, found, plan)
    return found, back, time.process_time() - started


def _out_of_months(folder: Path, months: list[str], file: str, back: dict[str, str]) -> pl.DataFrame:
    """The rows of a register staged without the months (``folder``: its ``<month>/`` folders) that
    lie outside ``months``, refused as :func:`_month_range` refuses them, their folders removed."""
    found = [empty_rejects()]
    first, last = months[0], months[-1]
    for month in sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []:
        if first <= month <= last:
            continue
        rows = pl.read_parquet(sorted((folder / month).glob("*.parquet")), columns=[ROW, "period"])
        found.append(_report(_reject(rows, file, "period", _outside_reason(months)), back))
        shutil.rmtree(folder / month)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return pl.concat(found)


def _by_month(frame: pl.DataFrame, plan: Plan | None = None, register: str = "") -> dict[
        tuple[str, int], pl.DataFrame]:
    """``frame``'s rows by ``period`` and partition of ``plan`` (0 without one), in their order
    (split on a categorical: 3× faster than on text). A row whose account or meter no partition
    holds (one the checks let through only in a hand-made call) goes to partition 0."""
    frame = frame.with_columns(pl.col("period").cast(pl.Categorical))
    if plan is None:
        parts = {(month, 0): rows for (month,), rows in frame.partition_by("period", as_dict=True).items()}
    else:
        key = part_key(register)
        where = (plan.meters if key == "meter_id" else plan.accounts).select(
            key, pl.col("part").alias("_part"))
        placed = frame.join(where, on=key, how="left", maintain_order="left").with_columns(
            pl.col("_part").fill_null(0))
        parts = {(month, int(part)): rows.drop("_part")
                 for (month, part), rows in placed.partition_by("period", "_part", as_dict=True).items()}
    return {(str(month), part): rows.with_columns(pl.col("period").cast(pl.String))
            for (month, part), rows in parts.items()}


_END = object()


def _ahead(frames: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """``frames`` with the next one made in a second thread while the caller works on this one
    (one frame ahead, no more: memory holds two pieces of a file)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrate-read") as reader:
        coming = reader.submit(next, frames, _END)
        while True:
            frame = coming.result()
            if frame is _END:
                return
            coming = reader.submit(next, frames, _END)
            yield frame  # type: ignore[misc]
            del frame


def _refuse_repeated_keys(folder: Path, suspects: pl.Series, register: Register, file: str,
                          back: dict[str, str], found: list[pl.DataFrame]) -> None:
    """Rows ``suspects`` of a month's parts in ``folder`` checked for a repeated key; the
    repeated ones refused (reported in ``found``) and taken out of the parts."""
    paths = sorted(folder.glob("*.parquet"))
    rows = pl.concat([pl.read_parquet(p).filter(pl.col(ROW).is_in(suspects.implode())) for p in paths])
    dup = duplicate_key_rejects(rows, register, file)
    if not dup.height:
        return
    found.append(_report(dup, back))
    refused = dup["row"].unique().implode()
    for path in paths:
        part = pl.read_parquet(path)
        kept = part.filter(~pl.col(ROW).is_in(refused))
        if kept.height == part.height:
            continue
        if kept.height:
            write_parquet_atomic(kept, path)
        else:
            path.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def _outside_reason(months: list[str]) -> str:
    return f"месяц вне переносимых месяцев {months[0]}–{months[-1]} (по history_charges)"


def _month_range(good: pl.DataFrame, register: Register, months: list[str], file: str) -> tuple[
        pl.DataFrame, pl.DataFrame]:
    """A row of a month the history does not cover would be lost: it is refused instead."""
    first, last = months[0], months[-1]
    names = {c.name for c in register.columns}
    found = []
    if register.name != "history_charges" and "period" in names:
        found.append(_reject(good.filter(pl.col("period").is_not_null()
                                         & ((pl.col("period") < first) | (pl.col("period") > last))),
                             file, "period", _outside_reason(months)))
    if "origin_period" in names:
        found.append(_reject(good.filter(pl.col("origin_period") > pl.col("period")), file, "origin_period",
                             "месяц, за который сделан перерасчёт, позже месяца перерасчёта"))
    if "charge_period" in names:
        found.append(_reject(good.filter(pl.col("charge_period") > last), file, "charge_period",
                             f"месяц позже последнего переносимого месяца {last}"))
    return _drop_rejected(good, found)


def read_charges_file(ws: Workspace, path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One file of the old system's charges (the columns of ``history_charges``, through the
    workspace's mapping), in the engine's integers, and its rejects (the parallel run)."""
    if not path.is_file():
        raise BillingError(f"{path}: файл не найден")
    item = _read_file(path, HISTORY["history_charges"], _workspace_mapping(ws), _Known.of(ws))
    rejects = _report(item.rejects, item.back).sort("file", "row", "column")
    return _internal(item.good, "history_charges"), rejects


def write_history_rejects(ws: Workspace, rejects: pl.DataFrame) -> Path | None:
    """The reject report of a migration load in ``rejects/``; None when nothing was refused."""
    from pipeline.ingest.registers import write_rejects

    if not rejects.height:
        return None
    path = ws.rejects / f"migration-{datetime.now().strftime('%Y%m%dT%H%M%S%f')}.csv"
    write_rejects(rejects, path)
    return path
