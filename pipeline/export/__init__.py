"""Exports of a sealed period: the files banks, the post, ГИС ЖКХ and social welfare read.

Every ``billing export KIND --period P`` builds its files from the sealed tables and the
registers snapshot the period's manifest names (never from today's registers), then hands
them to :func:`write_exports`, which writes them into ``periods/P/exports/KIND/``:

* each file atomically (a temporary name renamed in place);
* listed in the exports manifest ``periods/P/exports/manifest.json`` with its SHA-256,
  row count and control sum, so :mod:`pipeline.verify` checks exports like the tables;
* **never rewritten**: a sealed period's exports may be added later, one kind at a time,
  but a file once written stays. Exporting again with the same content is a no-op (the
  builders are deterministic: no clock, no random identifiers); a different content under
  an existing name is refused with the reason.

The period's own ``manifest.json`` (sealed at the close) does not list ``exports/``; the
exports manifest is append-only and is not chained like the period manifests (an edit to
an export file is detected by its hash; an edit of the exports manifest itself is not).
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import shutil
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.verify import EXPORTS_DIR, EXPORTS_MANIFEST, check_sealed
from pipeline.workspace import BillingError, Workspace, atomic_write_bytes, sha256_file, workspace_lock

__all__ = ["EXPORTS_DIR", "EXPORTS_MANIFEST", "LEFT_OUT", "SAME_ROWS_AS", "WRITER_THREADS", "ExportFile",
           "ExportReport", "Piece", "StagedFile", "export_after_close", "exports_dir",
           "read_exports_manifest", "sealed_manifest", "stage_file", "staging_folder", "write_exports"]



#: ``ExportFile.extra`` key: the name of the file whose records this one repeats.
SAME_ROWS_AS = "same_rows_as"

#: ``ExportFile.extra`` key (``True``): this file lists what the export left out (nothing in it is
#: sent). Its rows are not the export's records: :class:`ExportReport` keeps its other, integer
#: extras apart as ``left_out`` (``{"documents": 3, "meters": 1, "left_out_kop": 1234}``).
LEFT_OUT = "left_out"


@dataclass(frozen=True)
class StagedFile:
    """An export file's bytes written already by their maker (a pool worker of a region's export,
    :func:`stage_file`) into a scratch file of a :func:`staging_folder`, not yet flushed to disk:
    :func:`write_exports` flushes it and renames it into place. Its bytes never cross a pipe."""

    path: Path
    sha256: str
    size: int


#: The bytes of a file as pieces written one after another (``bytes`` or a ``memoryview`` of
#: bytes: a slice of an Arrow buffer, say, so that a message's documents are never copied into
#: a ``bytes`` of their own before they are written).
Piece = bytes | memoryview

#: Alignment of a write that bypasses the page cache (``O_DIRECT``): the page size, a multiple of
#: every disk's logical block.
DIRECT_ALIGN = 4096

_local = threading.local()
#: The file systems (``st_dev``) that refused ``O_DIRECT`` in this process (tmpfs and some
#: network file systems do not take it): staged there by a plain write.
_no_direct: set[int] = set()


def _aligned(size: int) -> memoryview:
    """A page-aligned scratch buffer of at least ``size`` bytes rounded up to
    :data:`DIRECT_ALIGN`, kept by the thread for its next file (faulted in once)."""
    need = max(DIRECT_ALIGN, -(-size // DIRECT_ALIGN) * DIRECT_ALIGN)
    buf: mmap.mmap | None = getattr(_local, "buffer", None)
    if buf is None or len(buf) < need:
        grown = max(need, 2 * len(buf)) if buf is not None else need
        if buf is not None:
            buf.close()
        buf = mmap.mmap(-1, grown)
        _local.buffer = buf
    return memoryview(buf)[:need]


def _write_direct(path: Path, pieces: Sequence[Piece], size: int) -> str:
    """``pieces`` copied into an aligned buffer, hashed and written to a new file ``path`` past the
    page cache (``O_DIRECT``); returns the SHA-256. The data is on the disk when this returns
    (but for its last part-block, written through the page cache, and its size and name:
    :func:`write_exports` still ``fsync``s it before the rename).

    Why: the export's gigabytes are written once and read by nobody soon. Through the page cache
    every byte is copied into the kernel and flushed later by the kernel's own threads — on this
    project's virtual machine that cost 1.9 CPU seconds a gigabyte, 0.55 with ``O_DIRECT``
    (``docs/benchmarks.md``). Raises :class:`OSError` (``EINVAL``) where the file system refuses it.
    """
    import fcntl  # POSIX: only where O_DIRECT is

    view = _aligned(size)
    try:
        at = 0
        for piece in pieces:
            view[at:at + len(piece)] = piece
            at += len(piece)
        digest = hashlib.sha256(view[:size]).hexdigest()
        whole = size - size % DIRECT_ALIGN  # the whole blocks go direct, the tail through the cache
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
        try:
            done = 0
            while done < whole:
                done += os.write(fd, view[done:whole])
                if done % DIRECT_ALIGN:  # a short write off the alignment: cannot go on direct
                    raise OSError(errno.EINVAL, "short O_DIRECT write")
            if whole < size:
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
                while done < size:
                    done += os.write(fd, view[done:size])
        finally:
            os.close(fd)
        return digest
    finally:
        view.release()


def stage_file(folder: Path, data: bytes | Sequence[Piece]) -> StagedFile:
    """``data`` (bytes, or pieces written one after another) into a scratch file (``.NAME.tmp``:
    :mod:`pipeline.verify` passes over it) of ``folder``: past the page cache where the file
    system allows (:func:`_write_direct`), else by a plain write."""
    pieces: Sequence[Piece] = [data] if isinstance(data, bytes) else data
    pieces = [p if isinstance(p, bytes) or (p.format == "B" and p.ndim == 1) else p.cast("B") for p in pieces]
    size = sum(len(p) for p in pieces)
    path = folder / f".{uuid.uuid4().hex}.tmp"
    device = folder.stat().st_dev
    if hasattr(os, "O_DIRECT") and device not in _no_direct:
        try:
            return StagedFile(path, _write_direct(path, pieces, size), size)
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise
            _no_direct.add(device)
            path.unlink(missing_ok=True)
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for piece in pieces:
            digest.update(piece)
            fh.write(piece)
    return StagedFile(path, digest.hexdigest(), size)


@contextmanager
def staging_folder(ws: Workspace, period: str) -> Iterator[Path]:
    """A scratch folder inside the period's ``exports/`` for :func:`stage_file`; removed at the end
    with whatever :func:`write_exports` did not rename into place (a failed or abandoned export)."""
    folder = exports_dir(ws, period) / f".staging-{uuid.uuid4().hex}.tmp"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class ExportFile:
    """One file of an export: its name inside ``exports/KIND/``, bytes and control figures."""

    #: Relative name inside ``exports/KIND/`` (may hold a sub-folder: ``sber/xxx.txt``).
    name: str
    data: bytes
    #: Records in the file (payers, documents, readings) — what its header or footer counts.
    rows: int
    #: Its control sum in kopecks (what its footer sums); 0 where it carries no money.
    total_kop: int
    #: Who reads it, in Russian (``Сбербанк``, ``Почта России``, ``ГИС ЖКХ``…).
    recipient: str = ""
    #: More figures worth keeping in the manifest (per file). ``extra[SAME_ROWS_AS]`` names the
    #: file this one repeats in another form (an XLSX beside its CSV): its records count once.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The bytes written already (``data`` is then empty): see :class:`StagedFile`.
    staged: StagedFile | None = None

    @property
    def size(self) -> int:
        return self.staged.size if self.staged is not None else len(self.data)


@dataclass(frozen=True)
class ExportReport:
    """What :func:`write_exports` did."""

    kind: str
    folder: Path
    written: tuple[str, ...]
    #: Files already there with exactly these bytes (an export run again).
    unchanged: tuple[str, ...]
    #: Records of the files sent (a report of what was left out not counted) and their sum.
    rows: int
    total_kop: int
    #: What was left out, by kind (the :data:`LEFT_OUT` file's counts), and that file's name.
    left_out: dict[str, int] = field(default_factory=dict)
    left_out_file: str = ""


def exports_dir(ws: Workspace, period: str) -> Path:
    return ws.period_dir(period) / EXPORTS_DIR


def sealed_manifest(ws: Workspace, period: str) -> dict[str, Any]:
    """The sealed period's manifest, its tables verified; a Russian refusal when not closed."""
    path = ws.period_dir(period) / "manifest.json"
    if period not in ws.sealed_periods() or not path.is_file():
        raise BillingError(f"Период {period} не закрыт: выгрузки делаются только по закрытому периоду "
                           f"(billing close --period {period}).")
    check_sealed(ws, [period])
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def read_exports_manifest(ws: Workspace, period: str) -> dict[str, Any]:
    """``{"files": {"KIND/NAME": {...}}}``; empty when nothing was exported yet."""
    path = exports_dir(ws, period) / EXPORTS_MANIFEST
    if not path.is_file():
        return {"period": period, "files": {}}
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise BillingError(f"{path}: манифест выгрузок не читается ({err}); "
                           "восстановите его из резервной копии.") from None
    if not isinstance(data.get("files"), dict):
        raise BillingError(f"{path}: в манифесте выгрузок нет списка файлов; "
                           "восстановите его из резервной копии.")
    return data


def _check_name(kind: str, name: str) -> str:
    rel = PurePosixPath(kind, name)
    if (not name or rel.is_absolute() or ".." in rel.parts or any(p.startswith(".") for p in rel.parts)
            or "\\" in name or len(rel.parts) > 3):
        raise ValueError(f"недопустимое имя файла выгрузки «{name}»")
    return rel.as_posix()


#: Files hashed and written at once by :func:`write_exports`' threads (hashing, the copy into the
#: page cache and the fsync release the GIL, so a large export's disk waits overlap with making
#: its next files).
WRITER_THREADS = 4


def _put(path: Path, period: str, rel: str, f: ExportFile, old: dict[str, Any] | None) -> tuple[str, str]:
    """One file of :func:`write_exports`: ``("written"|"unchanged", sha256)``; a Russian refusal when
    the name is taken by other bytes."""
    digest = f.staged.sha256 if f.staged is not None else hashlib.sha256(f.data).hexdigest()
    if old is not None or path.exists():
        if old is not None and old.get("sha256") == digest and path.is_file() and sha256_file(path) == digest:
            if f.staged is not None:
                f.staged.path.unlink(missing_ok=True)
            return "unchanged", digest
        raise BillingError(
            f"Выгрузка за {period}: файл exports/{rel} уже записан и отличается от новой "
            "выгрузки. Выгрузки закрытого периода не переписываются: если данные для "
            "получателя изменились, это перерасчёт в следующем периоде; если изменились "
            "настройки выгрузки, выгрузите следующий период с новыми настройками.")
    if f.staged is None:
        atomic_write_bytes(path, f.data)
        return "written", digest
    fd = os.open(f.staged.path, os.O_RDONLY)  # on disk before it is renamed in: never a torn file
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(f.staged.path, path)
    return "written", digest


def write_exports(ws: Workspace, period: str, kind: str, files: Iterable[ExportFile],
                  now: datetime | None = None) -> ExportReport:
    """Write ``files`` into ``periods/P/exports/KIND/`` and list them in the exports manifest.

    Under the workspace lock; ``period`` must be sealed. ``files`` may be a generator: each file
    is written as it comes (a region's export is not held in memory at once; up to
    ``2 × WRITER_THREADS`` files are being hashed and written while the next are made). A file
    whose name exists with other bytes, or any failure on the way, removes what this run wrote
    and raises: the exports of the period are then as they were. Returns what was written and
    what was already there unchanged, in the order of ``files``.
    """
    sealed_manifest(ws, period)
    with workspace_lock(ws, f"export {kind}"):
        folder = exports_dir(ws, period)
        manifest = read_exports_manifest(ws, period)
        listed: dict[str, Any] = manifest["files"]
        stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        written: list[str] = []
        unchanged: list[str] = []
        seen: set[str] = set()
        rows = total = 0
        left_out: dict[str, int] = {}
        left_out_file = ""
        added: dict[str, Any] = {}
        pending: deque[tuple[str, ExportFile, Future[tuple[str, str]]]] = deque()

        def settle() -> None:
            rel, f, job = pending.popleft()
            outcome, digest = job.result()
            if outcome == "unchanged":
                unchanged.append(rel)
                return
            written.append(rel)
            added[rel] = {"kind": kind, "sha256": digest, "bytes": f.size, "rows": f.rows,
                          "total_kop": f.total_kop, "recipient": f.recipient, "written_at": stamp,
                          **({"extra": f.extra} if f.extra else {})}

        with ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="export-writer") as pool:
            try:
                for f in files:
                    rel = _check_name(kind, f.name)
                    if rel in seen:
                        raise ValueError(f"выгрузка {kind}: имя файла {f.name} повторяется")
                    seen.add(rel)
                    if LEFT_OUT in f.extra:  # a report of what is not sent: apart
                        left_out = {k: v for k, v in f.extra.items() if k != LEFT_OUT and isinstance(v, int)}
                        left_out_file = rel
                    elif SAME_ROWS_AS not in f.extra:  # an XLSX twin is counted once
                        rows, total = rows + f.rows, total + f.total_kop
                    pending.append((rel, f, pool.submit(_put, folder / rel, period, rel, f,
                                                             listed.get(rel))))
                    if len(pending) > 2 * WRITER_THREADS:
                        settle()
                while pending:
                    settle()
            except BaseException:
                for rel, _, job in pending:  # let every file in flight land, then take back this run's
                    if not job.cancel() and job.exception() is None and job.result()[0] == "written":
                        written.append(rel)
                for rel in written:  # new files only: nothing listed before is ever touched
                    (folder / rel).unlink(missing_ok=True)
                close = getattr(files, "close", None)
                if close is not None:  # a generator's own clean-up (its staging folder) runs now
                    close()
                raise
        if added:
            manifest["period"] = period
            manifest["files"] = dict(sorted({**listed, **added}.items()))
            atomic_write_bytes(folder / EXPORTS_MANIFEST,
                               json.dumps(manifest, ensure_ascii=False, indent=1).encode())
    return ExportReport(kind=kind, folder=folder / kind, written=tuple(written),
                        unchanged=tuple(unchanged), rows=rows, total_kop=total, left_out=left_out,
                        left_out_file=left_out_file)


def export_after_close(ws: Workspace, period: str, kinds: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The exports ``[close] exports`` names, made right after ``period`` was sealed.

    Each is ``billing export KIND`` (:func:`write_exports` of its ``build_files``). One that
    fails is reported (``{"error": …}``) and the others still run: the period is sealed
    whatever an export does, and a failed export can be run again by hand.
    """
    import importlib

    done: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        try:
            module = importlib.import_module(f"pipeline.export.{kind}")
            report = write_exports(ws, period, kind, module.build_files(ws, period))
        except (BillingError, ValueError) as err:
            done[kind] = {"error": str(err)}
            continue
        done[kind] = {"files": len(report.written) + len(report.unchanged), "rows": report.rows,
                      "total_kop": report.total_kop, "folder": str(report.folder),
                      "left_out": report.left_out, "left_out_file": report.left_out_file}
    return done
