"""write_exports with its writer threads: many files in flight, still in order, still all or nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.app import run_close
from pipeline.export import (
    WRITER_THREADS,
    ExportFile,
    exports_dir,
    read_exports_manifest,
    stage_file,
    write_exports,
)
from pipeline.ingest.registers import ingest
from pipeline.workspace import BillingError, Workspace

PERIOD = "2026-08"
MANY = 3 * WRITER_THREADS + 2  # more than the writer holds in flight


@pytest.fixture
def sealed(town: Workspace) -> Workspace:
    ingest(town)
    run_close(town, PERIOD, receipts=False)
    return town


def _many(tag: bytes = b"") -> list[ExportFile]:
    return [ExportFile(f"m/{n:03d}.xml", b"<x>%d</x>" % n + tag, rows=1, total_kop=n) for n in range(MANY)]


def test_many_files_written_in_their_order_and_again_a_no_op(sealed: Workspace) -> None:
    report = write_exports(sealed, PERIOD, "gis", iter(_many()))
    assert report.written == tuple(f"gis/m/{n:03d}.xml" for n in range(MANY))
    assert report.total_kop == sum(range(MANY)) and report.rows == MANY
    folder = exports_dir(sealed, PERIOD)
    assert (folder / "gis" / "m" / "007.xml").read_bytes() == b"<x>7</x>"
    again = write_exports(sealed, PERIOD, "gis", iter(_many()))
    assert again.written == () and again.unchanged == report.written


def test_a_refused_file_among_many_takes_back_every_file_of_the_run(sealed: Workspace) -> None:
    write_exports(sealed, PERIOD, "gis", [ExportFile("m/005.xml", b"old", rows=1, total_kop=0)])
    before = read_exports_manifest(sealed, PERIOD)
    with pytest.raises(BillingError, match=r"m/005\.xml уже записан и отличается"):
        write_exports(sealed, PERIOD, "gis", iter(_many()))
    folder = exports_dir(sealed, PERIOD) / "gis" / "m"
    assert sorted(p.name for p in folder.iterdir()) == ["005.xml"]  # files before and after it too
    assert (folder / "005.xml").read_bytes() == b"old"
    assert read_exports_manifest(sealed, PERIOD) == before


def test_a_failure_of_the_maker_after_many_files_leaves_nothing(sealed: Workspace) -> None:
    def files() -> Iterator[ExportFile]:
        yield from _many()
        raise BillingError("сбой после многих файлов (тест)")

    with pytest.raises(BillingError, match="тест"):
        write_exports(sealed, PERIOD, "gis", files())
    folder = exports_dir(sealed, PERIOD) / "gis"
    assert not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))
    assert read_exports_manifest(sealed, PERIOD)["files"] == {}


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 17, 1 << 20])
def test_a_staged_file_holds_exactly_its_pieces_whatever_the_alignment(
        tmp_path: Path, size: int, direct: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A staged file (written past the page cache where the file system takes ``O_DIRECT``; by a
    plain write on a system without it) is its pieces one after another, no padding left, with
    their SHA-256 — bytes and memoryviews of an Arrow buffer alike; twice in a row from the same
    scratch buffer."""
    import hashlib
    import os

    import pyarrow as pa

    if not direct:
        monkeypatch.delattr(os, "O_DIRECT", raising=False)

    data = bytes((n * 7 + 3) % 256 for n in range(size))
    arrow = memoryview(pa.py_buffer(data[size // 3:]))
    for folder in (tmp_path, *([Path("/dev/shm")] if Path("/dev/shm").is_dir() else [])):
        for pieces in ([data], [data[:size // 3], arrow, b""]):
            staged = stage_file(folder, pieces)
            try:
                assert staged.path.read_bytes() == data
                assert staged.size == size
                assert staged.sha256 == hashlib.sha256(data).hexdigest()
            finally:
                staged.path.unlink()
