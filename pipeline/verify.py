"""Sealed periods are verified: every file against the period's ``manifest.json``.

A close seals ``periods/YYYY-MM/`` with a manifest whose ``files`` map each
relative path to its SHA-256 (a table sealed in parts lists each part,
``charges/part-0000.parquet``). This module checks a sealed period before anything
reads it:

* every listed file exists and its SHA-256 matches, and no file that the manifest
  does not list lies in the period directory;
* the manifest protects itself: ``manifest_sha256`` is the SHA-256 of its canonical
  JSON (sorted keys, no spaces) without that field, and ``previous_manifest_sha256``
  is the SHA-256 of the previous sealed period's ``manifest.json`` bytes (``null``
  for the first period). An edited manifest is refused by its own hash and, unless
  it is the last one, by the next period's chain; a removed or inserted period
  breaks the chain too. Manifests sealed before these fields existed are checked by
  their files only.

Readers (the next close, ``billing sql``, ``billing explain``, ``billing statement``)
check the tables (``tables_only``: ``receipts/`` and ``reports/`` are skipped to stay
fast) through a cache, ``store/verified.json``: a file once hashed is not hashed
again while its size, mtime, ctime and inode stay the same (any write changes them).
``billing verify`` rehashes every file of every period and ignores the cache.

This detects accidental and naive edits, not a forger who rewrites the last
period's manifest with a fresh self-hash (that needs a key kept outside the workspace).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.workspace import BillingError, Workspace, atomic_write_bytes, sha256_file

MANIFEST = "manifest.json"
#: SHA-256 of the manifest's canonical JSON without this field.
SELF_HASH = "manifest_sha256"
#: SHA-256 of the previous sealed period's manifest.json bytes (null for the first period).
CHAIN = "previous_manifest_sha256"
#: Directories readers skip (``tables_only``): many small files nothing else reads back.
BULKY_DIRS = ("receipts", "reports")
#: Exports added after the seal (:mod:`pipeline.export`), checked against their own manifest.
EXPORTS_DIR = "exports"
EXPORTS_MANIFEST = "manifest.json"
#: The verification cache, under ``store/``.
CACHE_FILE = "verified.json"

_RESTORE = "закрытые периоды не редактируются; восстановите файл из резервной копии"
_RESTORE_PERIOD = "Закрытые периоды не редактируются; восстановите период из резервной копии"


@dataclass(frozen=True)
class VerifyReport:
    """What ``billing verify`` checked."""

    periods: int
    files: int


def canonical_sha256(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON without :data:`SELF_HASH`."""
    body = {k: v for k, v in manifest.items() if k != SELF_HASH}
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_bytes(ws: Workspace, manifest: dict[str, Any]) -> bytes:
    """The manifest to write at seal time, with the chain and self-hash fields added.

    The previous sealed period is the last one before ``manifest["period"]``. No
    timestamps: the same inputs give the same bytes.
    """
    period = str(manifest["period"])
    before = [p for p in ws.sealed_periods() if p < period]
    previous = sha256_file(ws.period_dir(before[-1]) / MANIFEST) if before else None
    # Round-trip through JSON so the hash is of exactly what a reader will load.
    body: dict[str, Any] = json.loads(json.dumps({**manifest, CHAIN: previous}, ensure_ascii=False))
    body[SELF_HASH] = canonical_sha256(body)
    return json.dumps(body, ensure_ascii=False, indent=1).encode()


def verify_period(ws: Workspace, period: str, tables_only: bool = False, *,
                  use_cache: bool | None = None) -> int:
    """Check one sealed period; return the number of files checked.

    ``use_cache`` defaults to ``tables_only`` (readers use the cache, a full check
    rehashes). Raises :class:`BillingError` naming the period and the file.
    """
    cache = _Cache(ws, trusted=tables_only if use_cache is None else use_cache)
    try:
        return _verify_one(ws, period, tables_only, cache, ws.sealed_periods())
    finally:
        cache.save()


def verify_all(ws: Workspace, tables_only: bool = False, *,
               use_cache: bool | None = None) -> VerifyReport:
    """Check every sealed period (``billing verify``: all files, no cache)."""
    sealed = ws.sealed_periods()
    files = _verify_many(ws, sealed, tables_only,
                         tables_only if use_cache is None else use_cache)
    return VerifyReport(periods=len(sealed), files=files)


def check_sealed(ws: Workspace, periods: Iterable[str] | None = None) -> None:
    """What a reader calls before reading sealed tables: ``periods`` (default all), tables only, cached."""
    _verify_many(ws, ws.sealed_periods() if periods is None else list(periods), True, True)


def _verify_many(ws: Workspace, periods: list[str], tables_only: bool, use_cache: bool) -> int:
    if not periods:
        return 0
    sealed = ws.sealed_periods()
    cache = _Cache(ws, trusted=use_cache)
    try:
        return sum(_verify_one(ws, p, tables_only, cache, sealed) for p in periods)
    finally:
        cache.save()


def _broken(period: str, what: str) -> BillingError:
    return BillingError(f"Период {period} повреждён: {what} — {_RESTORE}.")


def _verify_one(ws: Workspace, period: str, tables_only: bool, cache: _Cache,
                sealed: list[str]) -> int:
    folder = ws.period_dir(period)
    path = folder / MANIFEST
    try:
        raw = path.read_bytes()
        manifest = json.loads(raw)
    except FileNotFoundError:
        raise _broken(period, f"нет файла {MANIFEST}") from None
    except (OSError, ValueError) as err:
        raise _broken(period, f"файл {MANIFEST} не читается ({err})") from None
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict):
        raise _broken(period, f"в файле {MANIFEST} нет списка файлов с контрольными суммами")
    if SELF_HASH in manifest and manifest[SELF_HASH] != canonical_sha256(manifest):
        raise _broken(period, f"файл {MANIFEST} изменён после закрытия (его контрольная сумма "
                              f"{SELF_HASH} не совпадает)")
    if manifest.get("period", period) != period:
        raise _broken(period, f"файл {MANIFEST} относится к периоду {manifest.get('period')}")
    if CHAIN in manifest:
        _check_chain(ws, period, manifest[CHAIN], sealed)

    checked = 1
    for rel, expected in sorted(listed.items()):
        parts = PurePosixPath(rel).parts
        if tables_only and parts and parts[0] in BULKY_DIRS:
            continue
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts or rel == MANIFEST:
            raise _broken(period, f"в файле {MANIFEST} недопустимый путь «{rel}»")
        file = folder.joinpath(*parts)
        if not file.is_file():
            raise _broken(period, f"файл {rel} отсутствует (он указан в {MANIFEST})")
        if _digest(file, expected, cache, cacheable=parts[0] not in BULKY_DIRS) != expected:
            raise _broken(period, f"файл {rel} не совпадает с {MANIFEST} (контрольная сумма)")
        checked += 1
    for file in _present(folder, tables_only):
        rel = file.relative_to(folder).as_posix()
        if PurePosixPath(rel).parts[0] == EXPORTS_DIR:
            continue  # added after the seal, checked against their own manifest below
        if rel != MANIFEST and rel not in listed:
            raise BillingError(
                f"Период {period} повреждён: файл {rel} не указан в {MANIFEST} — в закрытый период "
                "ничего не добавляют; уберите файл или восстановите период из резервной копии."
            )
    if not tables_only:
        checked += _verify_exports(folder, period)
    return checked


def _verify_exports(folder: Path, period: str) -> int:
    """The files of ``exports/`` against the exports manifest (:mod:`pipeline.export`)."""
    exports = folder / EXPORTS_DIR
    if not exports.is_dir():
        return 0
    where = f"{EXPORTS_DIR}/{EXPORTS_MANIFEST}"
    try:
        listed = json.loads((exports / EXPORTS_MANIFEST).read_bytes()).get("files")
    except FileNotFoundError:
        listed = {}
    except (OSError, ValueError, AttributeError) as err:
        raise _broken(period, f"файл {where} не читается ({err})") from None
    if not isinstance(listed, dict):
        raise _broken(period, f"в файле {where} нет списка файлов")
    for rel, entry in sorted(listed.items()):
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise _broken(period, f"в файле {where} недопустимый путь «{rel}»")
        file = exports.joinpath(*parts)
        if not file.is_file():
            raise _broken(period, f"файл выгрузки {EXPORTS_DIR}/{rel} отсутствует (он указан в {where})")
        if sha256_file(file) != (entry or {}).get("sha256"):
            raise _broken(period, f"файл выгрузки {EXPORTS_DIR}/{rel} не совпадает с {where}")
    for file in sorted(p for p in exports.rglob("*") if p.is_file() or p.is_symlink()):
        rel = file.relative_to(exports).as_posix()
        if file.name.startswith(".") and file.name.endswith(".tmp"):
            continue  # an export being written right now (atomic_write_bytes' scratch)
        if rel != EXPORTS_MANIFEST and rel not in listed:
            raise BillingError(f"Период {period}: файл {EXPORTS_DIR}/{rel} не указан в {where} — "
                               "выгрузки пишет только billing export; уберите файл.")
    return len(listed)


def _check_chain(ws: Workspace, period: str, expected: Any, sealed: list[str]) -> None:
    before = [p for p in sealed if p < period]
    if not before:
        if expected is not None:
            raise BillingError(
                f"Период {period} повреждён: нет предыдущего закрытого периода, на который ссылается "
                f"его {MANIFEST} ({CHAIN}) — каталог периода удалён? {_RESTORE_PERIOD}."
            )
        return
    previous = before[-1]
    if expected is None:
        raise BillingError(
            f"Период {previous} не входит в цепочку закрытых периодов: {MANIFEST} периода {period} "
            f"не ссылается на него — каталог добавлен после закрытия? {_RESTORE_PERIOD}."
        )
    try:
        actual = sha256_file(ws.period_dir(previous) / MANIFEST)
    except OSError:
        actual = None
    if actual != expected:
        raise _broken(previous, f"файл {MANIFEST} не совпадает с контрольной суммой, записанной "
                                f"в {MANIFEST} периода {period} ({CHAIN})")


def _present(folder: Path, tables_only: bool) -> Iterator[Path]:
    """Files in the period directory (``tables_only``: without the bulky directories)."""
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if tables_only and entry.name in BULKY_DIRS:
                continue
            yield from sorted(p for p in entry.rglob("*") if p.is_file() or p.is_symlink())
        else:
            yield entry


def _digest(file: Path, expected: Any, cache: _Cache, cacheable: bool) -> str:
    """The file's SHA-256: from the cache when trusted and the file is unchanged, else hashed.

    A matching table's digest is remembered (a full check refreshes what readers trust).
    """
    before = os.stat(file)
    known = cache.lookup(file, before)
    if known is not None:
        return known
    digest = sha256_file(file)
    if cacheable and digest == expected:
        cache.remember(file, before, digest)
    return digest


def _key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class _Cache:
    """``store/verified.json``: ``{relative path: [size, mtime_ns, ctime_ns, inode, sha256]}``.

    ``trusted=False`` (a full check) never answers from the file, only refreshes it.
    """

    def __init__(self, ws: Workspace, trusted: bool) -> None:
        self.ws = ws
        self.path = ws.store / CACHE_FILE
        self.entries = self._load() if trusted else {}
        self.fresh: dict[str, list[Any]] = {}

    def _load(self) -> dict[str, list[Any]]:
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        return files if isinstance(files, dict) else {}

    def _name(self, file: Path) -> str:
        try:
            return file.relative_to(self.ws.home).as_posix()
        except ValueError:
            return str(file)

    def lookup(self, file: Path, st: os.stat_result) -> str | None:
        entry = self.entries.get(self._name(file))
        if isinstance(entry, list) and len(entry) == 5 and entry[:4] == _key(st):
            return str(entry[4])
        return None

    def remember(self, file: Path, before: os.stat_result, digest: str) -> None:
        """Keep the digest only if the file did not change while it was hashed."""
        try:
            after = os.stat(file)
        except OSError:
            return
        if _key(after) == _key(before):
            self.fresh[self._name(file)] = [*_key(before), digest]

    def save(self) -> None:
        """Merge the new entries into the file (a concurrent writer loses at most some entries)."""
        if not self.fresh:
            return
        merged = {**self._load(), **self.fresh}
        body = json.dumps({"files": dict(sorted(merged.items()))}, ensure_ascii=False,
                          separators=(",", ":"))
        try:
            atomic_write_bytes(self.path, body.encode())
        except OSError:
            return  # a read-only store: verification still works, only slower
        self.entries.update(self.fresh)
        self.fresh = {}
