"""The exports' common part: written once into a sealed period, listed, verified, never rewritten."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pipeline.app import run_close
from pipeline.export import ExportFile, exports_dir, write_exports
from pipeline.ingest.registers import ingest
from pipeline.verify import verify_period
from pipeline.workspace import BillingError, Workspace

PERIOD = "2026-08"


@pytest.fixture
def sealed(town: Workspace) -> Workspace:
    ingest(town)
    run_close(town, PERIOD, receipts=False)
    return town


def _files(text: str = "1;2\n") -> list[ExportFile]:
    return [ExportFile("a/реестр.txt", text.encode("cp1251"), rows=2, total_kop=150, recipient="Банк"),
            ExportFile("b.csv", b"x\n", rows=1, total_kop=0)]


def test_written_listed_and_verified(sealed: Workspace) -> None:
    report = write_exports(sealed, PERIOD, "banks", _files())
    assert report.written == ("banks/a/реестр.txt", "banks/b.csv") and report.total_kop == 150
    folder = exports_dir(sealed, PERIOD)
    assert (folder / "banks" / "a" / "реестр.txt").read_bytes() == "1;2\n".encode("cp1251")
    listed = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["files"]
    assert listed["banks/a/реестр.txt"]["rows"] == 2 and listed["banks/b.csv"]["recipient"] == ""
    assert verify_period(sealed, PERIOD) > 2  # the exports are checked by a full verify


def test_again_is_a_no_op_and_other_bytes_are_refused(sealed: Workspace) -> None:
    write_exports(sealed, PERIOD, "banks", _files())
    again = write_exports(sealed, PERIOD, "banks", _files())
    assert again.written == () and len(again.unchanged) == 2
    with pytest.raises(BillingError, match="уже записан и отличается"):
        write_exports(sealed, PERIOD, "banks", _files("1;3\n"))
    assert (exports_dir(sealed, PERIOD) / "banks" / "a" / "реестр.txt").read_bytes() == b"1;2\n"
    # another kind is added later beside the first
    assert write_exports(sealed, PERIOD, "post", _files()).written == ("post/a/реестр.txt", "post/b.csv")


def test_edited_or_unlisted_export_is_found(sealed: Workspace) -> None:
    write_exports(sealed, PERIOD, "banks", _files())
    folder = exports_dir(sealed, PERIOD)
    (folder / "banks" / "b.csv").write_bytes(b"y\n")
    with pytest.raises(BillingError, match=r"banks/b\.csv не совпадает"):
        verify_period(sealed, PERIOD)
    (folder / "banks" / "b.csv").write_bytes(b"x\n")
    (folder / "banks" / "лишний.txt").write_bytes(b"")
    with pytest.raises(BillingError, match="не указан"):
        verify_period(sealed, PERIOD)


def test_open_period_and_bad_names_refused(sealed: Workspace) -> None:
    with pytest.raises(BillingError, match="2026-09 не закрыт"):
        write_exports(sealed, "2026-09", "banks", _files())
    with pytest.raises(ValueError, match="недопустимое имя"):
        write_exports(sealed, PERIOD, "banks", [ExportFile("../x", b"", 0, 0)])


def test_a_failure_midway_removes_what_the_run_wrote(sealed: Workspace) -> None:
    def files() -> Iterator[ExportFile]:
        yield ExportFile("first.txt", b"1", rows=1, total_kop=1)
        raise BillingError("сбой посреди выгрузки (тест)")

    with pytest.raises(BillingError, match="тест"):
        write_exports(sealed, PERIOD, "gis", files())
    assert not (exports_dir(sealed, PERIOD) / "gis" / "first.txt").exists()
    assert verify_period(sealed, PERIOD) > 0


def test_close_makes_the_exports_of_its_settings_and_survives_a_failed_one(town: Workspace) -> None:
    from pipeline.app import close_summary_lines

    settings = town.settings_path
    # The agent's contract organization is not registered: found only by the export, after the
    # seal (settings alone — none listed, a bad value — are checked before the close).
    settings.write_text(settings.read_text(encoding="utf-8").replace(
        "exports = []", 'exports = ["banks", "post", "gis"]') + '\n[[banks.agents]]\ncode = "sber"\norg_id = "NOPE"\n',
        encoding="utf-8")
    ingest(town)
    summary = run_close(town, PERIOD, receipts=False)
    assert "организации «NOPE» нет в реестре организаций" in summary["exports"]["banks"]["error"]
    assert summary["exports"]["post"]["files"] == 2 and summary["exports"]["post"]["rows"] == 3
    assert (exports_dir(town, PERIOD) / "post").is_dir() and verify_period(town, PERIOD) > 2
    text = "\n".join(close_summary_lines(summary, dry_run=False))
    assert "выгрузка banks не выполнена" in text and "billing export banks --period 2026-08" in text
    # The town has no ГИС identifiers: every document is left out, and the summary says so.
    gis = summary["exports"]["gis"]
    assert gis["rows"] == 0 and gis["left_out"]["documents"] == 3
    assert "не выгружено: платёжных документов 3 (на " in text and "причины в gis/пропущено.csv" in text
