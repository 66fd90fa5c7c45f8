"""``billing ingest``: validate ``registers/`` and load the good rows into the store.

Stage shape: ``check_registers(raw, known_services) -> (frames, rejects)`` and
``guard_existing(...)`` (the comparison with the last snapshot: a refused row or a
vanished record that exists there) are pure; :func:`ingest` does the I/O around
them. The store keeps each accepted snapshot under ``store/registers/<version>/``
and names the current one in ``store/registers/CURRENT`` (replaced atomically), so
a kill never leaves a half-loaded store and the history of what was known when stays on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from pipeline.ingest.parse import empty_rejects, missing_columns, parse_keys, parse_table
from pipeline.ingest.readers import ROW, SUFFIXES, read_table
from pipeline.progress import plural
from pipeline.settings import Ingest, load_section
from pipeline.workspace import (
    BillingError,
    Workspace,
    atomic_write_bytes,
    locked,
    sha256_file,
    staging_dir,
    write_parquet_atomic,
)
from rules import (
    check_rules,
    load_rules,
    problem_lines,
    ragged_rows,
    read_rule_table,
    rule_errors_message,
)
from schemas.registers import LOAD_ORDER, REGISTERS, Col, Register


@dataclass(frozen=True)
class IngestResult:
    """What one ingest did: rows loaded and refused per register, where things went."""

    loaded: dict[str, int]
    rejected: dict[str, int]
    version: str | None
    unchanged: bool
    rejects_path: Path | None
    #: records whose refused row was replaced by their version from the last snapshot (keep_last)
    kept: dict[str, int] = field(default_factory=dict)
    #: Russian lines to show (rule tables naming services that services.csv lacks)
    warnings: tuple[str, ...] = ()

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
        if name in found and _header_only(found[name]):
            found[name] = path  # the untouched template of billing init beside the real file
            continue
        if name in found and _header_only(path):
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


def _header_only(path: Path) -> bool:
    """A CSV with a header and no row: the template ``billing init`` writes (it holds no data,
    so another file of the same register is read instead)."""
    if path.suffix.lower() != ".csv" or path.stat().st_size > 4096:
        return False
    return b"\n" not in path.read_bytes().strip()


def _refuse_empty_required(raw: dict[str, pl.DataFrame], files: dict[str, Path]) -> None:
    """A required register with no row (an unfilled template) stops the ingest, naming them all."""
    empty = [files[n].name for n in LOAD_ORDER
             if n in raw and REGISTERS[n].required_file and not raw[n].height]
    if empty:
        raise BillingError(
            f"Пустые обязательные реестры (только строка заголовка): {', '.join(empty)}. В каждом "
            "нужна хотя бы одна строка. Столбцы, допустимые значения и пример строки каждого "
            "реестра — в docs/registers.md; пример заполненных реестров — data/sample/registers/.")


def read_registers(files: dict[str, Path]) -> dict[str, pl.DataFrame]:
    """Read every register file as text; a missing required column stops everything."""
    raw: dict[str, pl.DataFrame] = {}
    for name, path in files.items():
        try:
            frame = read_table(path)
        except BillingError:
            # Only now scan the text (a register may be millions of rows): a row with more
            # fields than the header (48,73 unquoted) is named instead of «файл не читается».
            ragged = ragged_rows(path, REGISTERS[name])
            if ragged.height:
                raise BillingError(f"{path.name}: файл не читается:\n" + "\n".join(problem_lines(ragged))
                                   ) from None
            raise
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


#: Registers whose mass disappearance stops an ingest: (register, identifying column, title).
REMOVAL_CHECKS: tuple[tuple[str, str, str], ...] = (
    ("accounts", "account_id", "лицевые счета"),
    ("premises", "premise_id", "помещения"),
    ("residents", "person_id", "проживающие"),
)
_SHOWN = 5


@dataclass(frozen=True)
class IngestPolicy:
    """What an ingest may do to records of the last snapshot (settings.toml ``[ingest]``, options).

    ``on_rejected_existing``: ``refuse`` — a refused row whose key is in the last snapshot
    stops the whole ingest; ``keep_last`` — that record's last version is kept.
    ``max_removed_share``: more of the last snapshot's accounts, premises or persons than
    this share gone at once stops the ingest unless ``accept_removals``. ``dropped``:
    registers removed from ``registers/`` on purpose (``--drop``).
    """

    on_rejected_existing: str = Ingest.on_rejected_existing
    max_removed_share: float = Ingest.max_removed_share
    accept_removals: bool = False
    dropped: frozenset[str] = frozenset()


def ingest_policy(settings: Ingest, accept_removals: bool = False,
                  dropped: Iterable[str] = ()) -> IngestPolicy:
    """The policy of settings.toml ``[ingest]`` (checked by :mod:`pipeline.settings`) and the options."""
    return IngestPolicy(settings.on_rejected_existing, settings.max_removed_share, accept_removals,
                        frozenset(dropped))


@dataclass(frozen=True)
class Guarded:
    """:func:`guard_existing`'s answer: the frames to store, the rejects, why to refuse."""

    frames: dict[str, pl.DataFrame]
    rejects: pl.DataFrame
    #: Russian paragraphs; any makes :func:`ingest` refuse the whole load
    problems: list[str]
    kept: dict[str, int]


def guard_existing(
    frames: dict[str, pl.DataFrame],
    rejects: pl.DataFrame,
    raw: dict[str, pl.DataFrame],
    last: dict[str, pl.DataFrame] | None,
    policy: IngestPolicy,
    *,
    file_names: dict[str, str],
    last_version: str | None,
    known: dict[str, set[str]] | None = None,
) -> Guarded:
    """Compare the checked registers with the last snapshot ``last``; pure.

    A refused row (its own problem or a refused parent) whose key is in ``last``
    would delete that record, and the next close would reverse its sealed charges:
    by ``policy`` the ingest is refused, or the record's last version is kept (its
    references must still hold, else it counts as lost). Then, unless removals are
    accepted, too large a share of vanished accounts, premises or persons refuses.
    ``last`` may hold only the registers with refused rows and those of
    :data:`REMOVAL_CHECKS`; the others are not looked at.
    """
    if last is None:
        return Guarded(frames, rejects, [], {})
    frames = dict(frames)
    known = known or {}
    kept: dict[str, int] = {}
    notes: list[pl.DataFrame] = []
    lost: list[pl.DataFrame] = []
    lost_ids: dict[str, pl.Series] = {}
    keep_note = f"строка отклонена; оставлена прежняя версия записи из загрузки {last_version}"
    lost_note = (f"запись есть в прошлой загрузке {last_version}: загрузка отменена, чтобы не потерять "
                 "запись")
    for name in LOAD_ORDER:
        register = REGISTERS[name]
        key = list(register.key)
        if name not in raw or not key:
            continue
        file = file_names[name]
        refused = rejects.filter(pl.col("file") == file).select(pl.col("row").alias(ROW)).unique()
        if not refused.height:
            continue
        previous = last.get(name)
        if previous is None:
            continue
        keyed = parse_keys(raw[name].join(refused, on=ROW, how="semi"), register).drop_nulls(key)
        hits = keyed.join(previous.select(key).unique(), on=key, how="semi").sort(ROW)
        if not hits.height:
            continue
        if policy.on_rejected_existing == "keep_last":
            restored = previous.join(hits.select(key).unique(), on=key, how="semi").join(
                frames[name].select(key), on=key, how="anti")
            for ref in register.refs:
                if ref.target in frames:
                    target = frames[ref.target][ref.target_column]
                else:
                    target = pl.Series(sorted(known.get(ref.target, set())), dtype=pl.String)
                restored = restored.filter(pl.col(ref.column).is_null()
                                           | pl.col(ref.column).is_in(target.implode()))
            # The kept record takes the number of the first refused row with its key.
            first = hits.group_by(key).agg(pl.col(ROW).min())
            restored = restored.drop(ROW, strict=False).join(first, on=key)
            good = frames[name]
            restored = restored.select(
                (pl.col(c) if c in restored.columns else pl.lit(None)).cast(dtype).alias(c)
                for c, dtype in good.schema.items())
            frames[name] = pl.concat([good, restored]).sort(ROW)
            if restored.height:
                kept[name] = restored.height
            saved = hits.join(restored.select(key), on=key, how="semi")
            notes.append(saved.select(pl.lit(file).alias("file"), pl.col(ROW).alias("row"),
                                      pl.lit(keep_note).alias("_note")))
            hits = hits.join(restored.select(key), on=key, how="anti")
        if hits.height:
            lost_ids.update((n, hits[c]) for n, c, _ in REMOVAL_CHECKS if n == name)
            notes.append(hits.select(pl.lit(file).alias("file"), pl.col(ROW).alias("row"),
                                     pl.lit(lost_note).alias("_note")))
            lost.append(hits.select(
                pl.lit(file).alias("file"), pl.col(ROW).alias("row"),
                pl.concat_str([pl.lit(f"{k}=") + pl.col(k).cast(pl.String) for k in key],
                              separator=", ").alias("key")))
    keeping = policy.on_rejected_existing == "keep_last"
    problems = [_lost_message(pl.concat(lost), rejects, last_version, keeping)] if lost else []
    if notes:
        marks = pl.concat(notes).unique(["file", "row"], keep="first")
        rejects = rejects.join(marks, on=["file", "row"], how="left", maintain_order="left").with_columns(
            pl.when(pl.col("_note").is_null()).then(pl.col("reason"))
            .otherwise(pl.col("reason") + pl.lit("; ") + pl.col("_note")).alias("reason")
        ).drop("_note")
    if not policy.accept_removals:
        removals = _removal_lines(frames, last, policy, lost_ids)
        if removals:
            problems.append(
                f"Загрузка отменена: за одну загрузку исчезло бы больше {policy.max_removed_share * 100:g} % "
                f"записей прошлой загрузки {last_version} (удалены из файла или отклонены; settings.toml "
                f"[ingest] max_removed_share = {policy.max_removed_share:g}):\n" + "\n".join(removals))
    return Guarded(frames, rejects, problems, kept)


def _lost_message(lost: pl.DataFrame, rejects: pl.DataFrame, last_version: str | None,
                  keeping: bool) -> str:
    records = lost.select("file", "key").n_unique()
    first_reason = rejects.group_by("file", "row", maintain_order=True).agg(pl.col("reason").first())
    shown = lost.head(_SHOWN).join(first_reason, on=["file", "row"], how="left", maintain_order="left")
    lines = [f"  {r['file']}, строка {r['row']} ({r['key']}): {r['reason']}"
             for r in shown.iter_rows(named=True)]
    if lost.height > _SHOWN:
        lines.append(f"  … и ещё строк: {lost.height - _SHOWN}")
    why = ("; прежние версии этих записей оставить нельзя: записей, на которые они ссылаются, в новой "
           "загрузке нет" if keeping else "")
    advice = "" if keeping else (
        "; чтобы вместо отказа оставлять прежние версии таких записей, задайте в settings.toml "
        '[ingest] on_rejected_existing = "keep_last"')
    gone = plural(records, "запись", "записи", "записей")
    return (f"Загрузка отменена: отклонены строки записей, которые есть в прошлой загрузке {last_version}"
            f"{why}, — иначе из реестров пропали бы {gone}, а следующее закрытие сторнировало "
            "бы их начисления. Первые:\n" + "\n".join(lines)
            + f"\nИсправьте эти строки и повторите billing ingest{advice}.")


def _removal_lines(frames: dict[str, pl.DataFrame], last: dict[str, pl.DataFrame],
                   policy: IngestPolicy, lost: dict[str, pl.Series]) -> list[str]:
    """Registers losing too many records; those already named as refused rows are not counted again."""
    lines = []
    for name, column, title in REMOVAL_CHECKS:
        if name in policy.dropped or name not in last:
            continue
        before = last[name][column].drop_nulls().unique().sort()
        if not before.len():
            continue
        after = frames[name][column].drop_nulls().unique()
        removed = before.filter(~before.is_in(after.implode()))
        if name in lost:
            removed = removed.filter(~removed.is_in(lost[name].implode()))
        if removed.len() / before.len() <= policy.max_removed_share:
            continue
        examples = ", ".join(removed.head(_SHOWN).to_list()) + (", …" if removed.len() > _SHOWN else "")
        # Leading zeros a spreadsheet dropped: 0001000011 is gone and 1000011 is new.
        new = after.filter(~after.is_in(before.implode()))
        unpadded = pl.col("id").str.strip_chars_start("0").alias("_k")
        zeros = pl.DataFrame({"id": removed}).with_columns(unpadded).join(
            pl.DataFrame({"id": new}).with_columns(unpadded), on="_k", suffix="_new").sort("id").head(3)
        hint = ("похоже, в номерах потеряны ведущие нули (" + ", ".join(
            f"{o} → {n}" for o, n in zeros.select("id", "id_new").iter_rows()) + ")") if zeros.height else (
            "проверьте, не потеряны ли ведущие нули в номерах")
        lines.append(f"  {title}: исчезнут {removed.len()} из {before.len()} ({examples}); {hint}; "
                     "если удаление намеренное — billing ingest --accept-removals")
    return lines


def _dropped(drop: Iterable[str], files: dict[str, Path], directory: Path) -> frozenset[str]:
    dropped = frozenset(drop)
    for name in sorted(dropped):
        if name not in REGISTERS:
            raise BillingError(f"--drop {name}: нет такого реестра; реестры: {', '.join(REGISTERS)}")
        if name in files and not _header_only(files[name]):
            raise BillingError(f"--drop {name}: файл {files[name].name} есть в {directory}; уберите файл "
                               f"или не указывайте --drop {name}")
    return dropped


def _refuse_missing_registers(last_files: dict[str, str], files: dict[str, Path],
                              dropped: frozenset[str], last_loaded: dict[str, int] | None = None) -> None:
    """A register of the last snapshot whose file is gone is not silently emptied.

    Nor is one whose file is now only a header (the real file moved away from beside the
    template of ``billing init``, or cut to its header). One that had no row (an empty
    template removed) loses nothing and is not named.
    """
    loaded = last_loaded or {}
    lines = []
    for n, p in sorted(last_files.items()):
        if n not in REGISTERS or n in dropped or loaded.get(n) == 0:
            continue
        before = f"Реестр {n} был в прошлой загрузке ({Path(p).name}), а сейчас"
        if n not in files:
            lines.append(f"{before} его нет в registers/: верните файл или, если реестр удалён "
                         f"намеренно, выполните billing ingest --drop {n}")
        elif _header_only(files[n]):
            lines.append(f"{before} в registers/ он пуст ({files[n].name} — только строка заголовка): "
                         f"верните строки или, если реестр очищен намеренно, выполните billing ingest "
                         f"--drop {n}")
    if lines:
        raise BillingError("\n".join(lines))


def _snapshot_id(files: dict[str, Path], rules_hash: str) -> str:
    return json.dumps(
        {"files": {n: sha256_file(p) for n, p in sorted(files.items())}, "rules": rules_hash},
        sort_keys=True,
    )


def current_version(ws: Workspace) -> str | None:
    pointer = ws.store / "registers" / "CURRENT"
    return pointer.read_text().strip() if pointer.is_file() else None


@locked("ingest")
def ingest(ws: Workspace, *, accept_removals: bool = False, drop: Iterable[str] = ()) -> IngestResult:
    """Load ``registers/`` into the store; write a reject report when anything was refused.

    Against the last snapshot (see :func:`guard_existing`, settings.toml ``[ingest]``):
    a register file that was loaded last time must be there unless named in ``drop``;
    a refused row of an existing record refuses the ingest (or keeps the record's last
    version); too many vanished accounts, premises or persons refuse it unless
    ``accept_removals``. A refused ingest writes its reject report and nothing else.
    Every rule table is checked first, also when the registers are unchanged
    (:func:`check_rule_tables`).
    """
    warnings = check_rule_tables(ws)
    files = find_register_files(ws.registers)
    dropped = _dropped(drop, files, ws.registers)
    services = read_rule_table(ws.rules, "services")
    snapshot = _snapshot_id(files, sha256_file(ws.rules / "services.csv"))
    version = current_version(ws)
    policy = IngestPolicy()
    if version:
        meta = json.loads((ws.store / "registers" / version / "ingest.json").read_text())
        if meta.get("snapshot") == snapshot:
            return IngestResult(meta["loaded"], meta["rejected"], version, True, None, warnings=warnings)
        _refuse_missing_registers(meta.get("files", {}), files, dropped, meta.get("loaded"))
        policy = ingest_policy(load_section(ws.settings_path, Ingest), accept_removals, dropped)

    raw = read_registers(files)
    _refuse_empty_required(raw, files)
    names = {n: p.name for n, p in files.items()}
    known = {"services": set(services["service_id"])}
    frames, rejects = check_registers(raw, names, known)
    # Of the last snapshot, only what the guard compares: registers with refused rows, and
    # those whose removals are counted (readings can be millions of rows).
    compared = {n for n in names if names[n] in set(rejects["file"])} | {n for n, _, _ in REMOVAL_CHECKS}
    last = load_store(ws, version, compared) if version else None
    guarded = guard_existing(frames, rejects, raw, last, policy,
                             file_names=names, last_version=version, known=known)
    frames, rejects = guarded.frames, guarded.rejects
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
    if guarded.problems:
        raise BillingError("\n".join(guarded.problems) + (
            f"\nОтчёт об отклонённых строках: {rejects_path}" if rejects_path else "")
            + f"\nХранилище не изменено: текущей остаётся загрузка {version}.")

    new_version = f"v{stamp}"
    with staging_dir(ws.store / "registers" / new_version) as tmp:
        for name, frame in frames.items():
            write_parquet_atomic(frame, tmp / f"{name}.parquet")
        meta = {"snapshot": snapshot, "loaded": loaded, "rejected": rejected, "kept": guarded.kept,
                "files": {n: str(p) for n, p in files.items()}}
        atomic_write_bytes(tmp / "ingest.json", json.dumps(meta, ensure_ascii=False).encode())
    atomic_write_bytes(ws.store / "registers" / "CURRENT", new_version.encode())
    return IngestResult(loaded, rejected, new_version, False, rejects_path, guarded.kept, warnings)


def check_rule_tables(ws: Workspace) -> tuple[str, ...]:
    """Check every rule table as the close will read it; a problem refuses the ingest.

    Run by every ingest, also when the registers are unchanged: a rule edited since
    must not first meet the close. Bad cells go to a reject report (file, row, column,
    value, reason) and the message; the tables' cross-row checks (penalty schemes,
    rate caps, the electricity norm matrix) stop with their own message. Returns the
    warnings (services that ``services.csv`` lacks).
    """
    from pipeline.penalties.policy import load_policy

    checked = check_rules(ws.rules)
    if checked.rejects.height:
        path = ws.rejects / f"ingest-{datetime.now().strftime('%Y%m%dT%H%M%S%f')}-rules.csv"
        write_rejects(checked.rejects, path)
        raise BillingError(rule_errors_message(checked.rejects)
                           + f"\nЗагрузка отменена, хранилище не изменено; отчёт: {path}")
    load_rules(ws.rules)
    load_policy(ws.rules)
    return checked.warnings


def write_rejects(rejects: pl.DataFrame, path: Path) -> None:
    """A reject report as CSV that Excel opens with Cyrillic intact (UTF-8 with BOM, ``;``),
    numbers with a decimal comma (:func:`pipeline.tables.excel_csv_bytes`); the cells'
    values stay the text the file had."""
    from pipeline.tables import excel_csv_bytes

    atomic_write_bytes(path, excel_csv_bytes(rejects))


def _default(col: Col) -> pl.Expr:
    if col.default is None:
        return pl.lit(None, col.dtype)
    if col.kind == "bool":
        return pl.lit(col.default.lower() in ("true", "1", "да"))
    return pl.lit(col.default).cast(col.dtype)


def load_store(ws: Workspace, version: str | None = None,
               names: Iterable[str] | None = None) -> dict[str, pl.DataFrame]:
    """A register snapshot from the store: ``version`` or the current one (``names``: only those)."""
    version = version or current_version(ws)
    if version is None:
        raise BillingError("Хранилище пусто: сначала выполните «billing ingest».")
    base = ws.store / "registers" / version
    wanted = set(REGISTERS) if names is None else set(names)
    frames = {}
    for name, register in REGISTERS.items():
        if name not in wanted:
            continue
        path = base / f"{name}.parquet"
        # A snapshot taken by an older version may lack a newer register or column.
        frame = pl.read_parquet(path) if path.is_file() else _empty(register)
        missing = [c for c in register.columns if c.name not in frame.columns]
        frames[name] = frame.with_columns(_default(c).alias(c.name) for c in missing)
    return frames
