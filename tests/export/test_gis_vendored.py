"""The ГИС ЖКХ schemas in schemas/gis_gkh/ are the official files, byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.export.gis_schema import schema_dir

ROOT = Path(__file__).resolve().parents[2]


def test_vendored_package_matches_its_checksums() -> None:
    folder = ROOT / "schemas" / "gis_gkh"
    assert schema_dir() == folder
    listed = [line.split() for line in (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines() if line]
    assert len(listed) >= 18
    for digest, name in listed:
        assert hashlib.sha256((folder / name.lstrip("*")).read_bytes()).hexdigest() == digest, name
