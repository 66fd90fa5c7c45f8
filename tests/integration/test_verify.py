"""Sealed periods are verified against their manifests before anything reads them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

import pipeline.verify as verify_module
from pipeline.analytics import run_sql
from pipeline.close import compute, load_inputs, seal
from pipeline.dates import Period
from pipeline.explain import explain_account
from pipeline.ingest.registers import ingest
from pipeline.penalties.court import account_statement
from pipeline.verify import (
    CACHE_FILE,
    CHAIN,
    SELF_HASH,
    canonical_sha256,
    check_sealed,
    verify_all,
    verify_period,
)
from pipeline.workspace import BillingError, Workspace, sha256_file


def close(ws: Workspace, period: str) -> Path:
    inputs = load_inputs(ws, Period.parse(period))
    return seal(ws, compute(inputs), inputs)


def billing(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BILLING_HOME", "PREFECT_API_URL")}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1),
                                          encoding="utf-8")


@pytest.fixture
def sealed(town: Workspace) -> Workspace:
    """The town with 2026-08 closed (the next close would be 2026-09)."""
    ingest(town)
    close(town, "2026-08")
    return town


def flip_byte(folder: Path) -> str:
    path = folder / "balances.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return "balances.parquet"


def edit_store_version(folder: Path) -> str:
    manifest = manifest_of(folder)
    manifest["store_version"] = "v00000000T000000000000"  # the next close would skip a recalculation
    write_manifest(folder, manifest)
    return "manifest.json"


def add_file(folder: Path) -> str:
    (folder / "extra.parquet").write_bytes(b"PAR1")
    return "extra.parquet"


def drop_account(folder: Path) -> str:
    import polars as pl

    path = folder / "debts.parquet"
    pl.read_parquet(path).filter(pl.col("account_id") != "A2").write_parquet(path)
    return "debts.parquet"


def remove_table(folder: Path) -> str:
    (folder / "charges.parquet").unlink()
    return "charges.parquet"


TAMPERS: dict[str, Callable[[Path], str]] = {
    "byte_flipped": flip_byte, "store_version_edited": edit_store_version, "file_added": add_file,
    "account_dropped": drop_account, "file_removed": remove_table,
}


def test_untouched_workspace_verifies_clean(sealed: Workspace) -> None:
    close(sealed, "2026-09")
    first, second = (manifest_of(sealed.period_dir(p)) for p in ("2026-08", "2026-09"))
    assert first[CHAIN] is None
    assert second[CHAIN] == sha256_file(sealed.period_dir("2026-08") / "manifest.json")
    for manifest in (first, second):
        assert manifest[SELF_HASH] == canonical_sha256(manifest)
    report = verify_all(sealed)
    assert report.periods == 2
    assert report.files == len(first["files"]) + len(second["files"]) + 2  # + the manifests
    proc = billing("verify", "--home", str(sealed.home))
    assert proc.returncode == 0, proc.stderr
    assert "Проверено периодов: 2, файлов: " in proc.stdout and "всё совпадает" in proc.stdout
    assert '"command": "verify"' in (sealed.audit / "log.jsonl").read_text(encoding="utf-8")


def test_verify_without_sealed_periods(town: Workspace) -> None:
    assert verify_all(town).periods == 0
    proc = billing("verify", "--home", str(town.home))
    assert proc.returncode == 0 and "Закрытых периодов нет" in proc.stdout


@pytest.mark.parametrize("tamper", list(TAMPERS), ids=list(TAMPERS))
def test_tampered_period_is_refused_by_every_reader(sealed: Workspace, tamper: str) -> None:
    folder = sealed.period_dir("2026-08")
    assert explain_account(sealed, "A1", "2026-08")  # readers fill the cache first
    name = TAMPERS[tamper](folder)
    named = f"Период 2026-08 повреждён: файл {name}"

    with pytest.raises(BillingError, match=re.escape(named)):
        load_inputs(sealed, Period(2026, 9))
    with pytest.raises(BillingError, match=re.escape(named)):
        run_sql(sealed, "select count(*) from charges")
    with pytest.raises(BillingError, match=re.escape(named)):
        explain_account(sealed, "A1", "2026-08")
    with pytest.raises(BillingError, match=re.escape(named)):
        account_statement(sealed, "A1", date(2026, 12, 31), sealed.home / "statements")
    with pytest.raises(BillingError, match=re.escape(named)):
        verify_all(sealed)
    proc = billing("verify", "--home", str(sealed.home))
    assert proc.returncode == 1
    assert named in proc.stderr and "восстановите" in proc.stderr
    assert not sealed.period_dir("2026-09").exists()


def test_edited_manifest_is_caught_by_the_next_periods_chain(sealed: Workspace) -> None:
    """Even with its self-hash recomputed, an edited manifest breaks the next period's chain."""
    close(sealed, "2026-09")
    folder = sealed.period_dir("2026-08")
    manifest = manifest_of(folder)
    manifest["store_version"] = "v00000000T000000000000"
    manifest[SELF_HASH] = canonical_sha256(manifest)
    write_manifest(folder, manifest)
    verify_period(sealed, "2026-08")  # consistent on its own
    chained = ("Период 2026-08 повреждён: файл manifest.json не совпадает с контрольной суммой, "
               "записанной в manifest.json периода 2026-09")
    with pytest.raises(BillingError, match=re.escape(chained)):
        verify_all(sealed)
    with pytest.raises(BillingError, match=re.escape("Период 2026-08 повреждён: файл manifest.json")):
        load_inputs(sealed, Period(2026, 10))


def test_a_removed_period_breaks_the_chain(sealed: Workspace) -> None:
    close(sealed, "2026-09")
    import shutil

    shutil.rmtree(sealed.period_dir("2026-08"))
    gone = "Период 2026-09 повреждён: нет предыдущего закрытого периода"
    with pytest.raises(BillingError, match=re.escape(gone)):
        verify_all(sealed)


def test_manifest_without_the_new_fields_is_checked_by_its_files(sealed: Workspace) -> None:
    """A period sealed before the chain existed still verifies, and its files are still checked."""
    folder = sealed.period_dir("2026-08")
    manifest = manifest_of(folder)
    del manifest[SELF_HASH], manifest[CHAIN]
    write_manifest(folder, manifest)
    assert verify_all(sealed).periods == 1
    close(sealed, "2026-09")  # chains onto the old manifest's bytes
    assert verify_all(sealed).periods == 2
    flip_byte(folder)
    with pytest.raises(BillingError, match=re.escape("Период 2026-08 повреждён: файл balances.parquet")):
        verify_all(sealed)


def test_readers_hash_a_file_once_and_verify_rehashes(sealed: Workspace,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = verify_module.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(verify_module, "sha256_file", counting)
    check_sealed(sealed)
    hashed = len(calls)
    assert hashed and (sealed.store / CACHE_FILE).is_file()
    assert not [p for p in calls if "reports" in p.parts]  # readers skip receipts/ and reports/
    calls.clear()
    check_sealed(sealed)
    assert calls == []  # unchanged files are trusted by (size, mtime, ctime, inode)
    verify_all(sealed)
    assert len(calls) == len(manifest_of(sealed.period_dir("2026-08"))["files"])  # everything again

    # Any write changes the file's stat: the reader hashes it again and sees the change.
    flip_byte(sealed.period_dir("2026-08"))
    with pytest.raises(BillingError, match=re.escape("balances.parquet")):
        check_sealed(sealed)


def test_verify_ignores_a_forged_cache(sealed: Workspace) -> None:
    """The cache only spares readers the hashing; ``billing verify`` never trusts it."""
    check_sealed(sealed)
    folder = sealed.period_dir("2026-08")
    flip_byte(folder)
    path = folder / "balances.parquet"
    st = path.stat()
    cache = json.loads((sealed.store / CACHE_FILE).read_text())
    cache["files"]["periods/2026-08/balances.parquet"] = [
        st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
        manifest_of(folder)["files"]["balances.parquet"]]
    (sealed.store / CACHE_FILE).write_text(json.dumps(cache))
    check_sealed(sealed)  # trusted (a forger who writes store/ by hand fools the readers' cache)
    with pytest.raises(BillingError, match=re.escape("файл balances.parquet не совпадает")):
        verify_all(sealed)


def test_reports_are_checked_by_verify_not_by_readers(sealed: Workspace) -> None:
    folder = sealed.period_dir("2026-08")
    with open(folder / "reports" / "turnover.csv", "ab") as fh:
        fh.write(b"x")
    assert verify_period(sealed, "2026-08", tables_only=True) > 1
    with pytest.raises(BillingError, match=re.escape("файл reports/turnover.csv не совпадает")):
        verify_period(sealed, "2026-08")


def test_a_staging_directory_is_not_a_sealed_period(sealed: Workspace) -> None:
    staging = sealed.periods / ".2026-09.0123.tmp"
    staging.mkdir()
    (staging / "manifest.json").write_text("{}")
    assert sealed.sealed_periods() == ["2026-08"]
    assert verify_all(sealed).periods == 1
